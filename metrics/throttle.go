package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/throttle"
)

// SetThrottle makes the pacing metrics (kdsync_concurrency_limit,
// kdsync_koodrive_calls_in_flight, kdsync_koodrive_rate_limit,
// kdsync_koodrive_throttled_total, kdsync_koodrive_throttled_seconds_total,
// kdsync_koodrive_paused, kdsync_koodrive_timeouts_total) read f at each
// scrape, once per scrape. Pass (*throttle.Limiter).Stats. Until it is
// called they read 0.
func (m *Metrics) SetThrottle(f func() throttle.Stats) {
	m.throttle.f.Store(&f)
}

// throttleCollector reports the pacer's figures from one Stats call.
type throttleCollector struct {
	f                                     atomic.Pointer[func() throttle.Stats]
	limit, inFlight, rate, paused         *prometheus.Desc
	throttled, throttledSeconds, timeouts *prometheus.Desc
}

func newThrottleCollector() *throttleCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, nil, nil)
	}
	return &throttleCollector{
		limit: d("concurrency_limit",
			"KooDrive calls kdsync allows in flight now: adaptive, between KDSYNC_CONCURRENCY_MIN and KDSYNC_CONCURRENCY."),
		inFlight: d("koodrive_calls_in_flight", "KooDrive calls sent and not yet answered, sampled at scrape."),
		rate: d("koodrive_rate_limit",
			"KooDrive requests per second kdsync allows itself now (learnt from 429s, or KDSYNC_API_RATE's share); 0 when unlimited."),
		paused: d("koodrive_paused", "1 while a Retry-After from KooDrive holds every call back, else 0."),
		throttled: d("koodrive_throttled_total",
			"KooDrive answers 429 (too many requests): throttled, not failing."),
		throttledSeconds: d("koodrive_throttled_seconds_total",
			"Time during which some KooDrive call waited for a Retry-After, the rate learnt from 429s or KDSYNC_API_RATE: the rate of this counter is the share of time kdsync is held back by a quota."),
		timeouts: d("koodrive_timeouts_total", "KooDrive calls that timed out (each lowers the concurrency limit)."),
	}
}

// Describe sends the descriptors.
func (c *throttleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.limit, c.inFlight, c.rate, c.paused, c.throttled, c.throttledSeconds, c.timeouts} {
		ch <- d
	}
}

// Collect calls the stats function once and reports its figures.
func (c *throttleCollector) Collect(ch chan<- prometheus.Metric) {
	var s throttle.Stats
	if f := c.f.Load(); f != nil && *f != nil {
		s = (*f)()
	}
	paused := 0.0
	if s.Paused {
		paused = 1
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	ctr := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.limit, float64(s.Limit))
	g(c.inFlight, float64(s.InFlight))
	g(c.rate, s.Rate)
	g(c.paused, paused)
	ctr(c.throttled, float64(s.Throttled))
	ctr(c.throttledSeconds, s.ThrottledSeconds)
	ctr(c.timeouts, float64(s.Timeouts))
}
