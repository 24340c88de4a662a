package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

const namespace = "kdsync"

// Histogram buckets, in seconds.
var (
	// eventLatencyBuckets span 5 ms (a change applied at once) to 1 h (a
	// lane held back by an outage or a long retry budget).
	eventLatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	// requestDurationBuckets span 1 ms to 30 s, the client's default
	// timeout range.
	requestDurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// BuildInfo identifies the running build, for kdsync_build_info.
type BuildInfo struct {
	// Version is the release, e.g. "v1.2.0"; "unknown" when empty.
	Version string
	// Revision is the VCS revision; "unknown" when empty.
	Revision string
	// GoVersion is the toolchain; runtime.Version() when empty.
	GoVersion string
}

// Metrics holds kdsync's collectors. Build it with New; its methods are safe
// for concurrent use.
type Metrics struct {
	received        prometheus.Counter
	finished        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	retries         *prometheus.CounterVec
	retryAfter      prometheus.Counter
	breaker         prometheus.Gauge

	stats    *statsCollector
	throttle *throttleCollector

	pending     prometheus.Gauge
	ackPending  prometheus.Gauge
	redelivered prometheus.Gauge
	infoErrors  prometheus.Counter

	natsConnected  prometheus.Gauge
	natsReconnects prometheus.Counter
	natsMu         sync.Mutex
	natsUp         bool // the last state reported
	natsEverUp     bool // a first connection has been made
}

// New builds the collectors, registers them on reg together with the Go and
// process collectors and kdsync_build_info, and creates every label
// combination so that each series starts at 0. It returns an error, and
// does not panic, when a registration fails (e.g. reg already holds them).
func New(reg prometheus.Registerer, build BuildInfo) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: a registerer is required")
	}
	m := &Metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "events_received_total",
			Help: "Messages delivered to kdsync by JetStream, redeliveries included.",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "events_finished_total",
			Help: "Events whose outcome was stored, by action, result (applied, skipped, deadlettered) and reason (none, a skip reason or an error class).",
		}, []string{"action", "result", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "event_latency_seconds",
			Help:    "Time from an event's time to its being applied in KooDrive, by action. Applied events with a time only.",
			Buckets: eventLatencyBuckets,
		}, []string{"action"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "koodrive_requests_total",
			Help: "KooDrive API calls, by operation and how they ended (ok or the failure's class).",
		}, []string{"operation", "code_class"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "koodrive_request_duration_seconds",
			Help:    "Duration of KooDrive API calls, failures included, by operation.",
			Buckets: requestDurationBuckets,
		}, []string{"operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "retries_total",
			Help: "Attempts that failed transiently and were retried, by the failure's class.",
		}, []string{"class"}),
		retryAfter: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "retry_after_seconds_total",
			Help: "Time lanes waited to honour KooDrive's Retry-After.",
		}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "breaker_state",
			Help: "State of the circuit breaker in front of KooDrive: 0 closed, 1 half-open, 2 open.",
		}),
		stats:    newStatsCollector(),
		throttle: newThrottleCollector(),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "consumer_pending_events",
			Help: "Events in the stream not yet delivered to kdsync's consumer, at the last poll.",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "consumer_ack_pending_events",
			Help: "Events delivered to kdsync's consumer and not yet acknowledged, at the last poll.",
		}),
		redelivered: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "consumer_redelivered_events",
			Help: "Events being redelivered to kdsync's consumer, at the last poll.",
		}),
		infoErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "consumer_info_errors_total",
			Help: "Failed polls of the JetStream consumer's info; the consumer gauges are stale meanwhile.",
		}),
		natsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "nats_connected",
			Help: "1 when connected to NATS, else 0.",
		}),
		natsReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "nats_reconnects_total",
			Help: "Times the NATS connection came back after being lost.",
		}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "The running build; always 1.",
		ConstLabels: prometheus.Labels{
			"version":   cmp.Or(build.Version, "unknown"),
			"revision":  cmp.Or(build.Revision, "unknown"),
			"goversion": cmp.Or(build.GoVersion, runtime.Version()),
		},
	})
	buildInfo.Set(1)

	cs := []struct {
		name string
		c    prometheus.Collector
	}{
		{"events_received_total", m.received},
		{"events_finished_total", m.finished},
		{"event_latency_seconds", m.latency},
		{"koodrive_requests_total", m.requests},
		{"koodrive_request_duration_seconds", m.requestDuration},
		{"retries_total", m.retries},
		{"retry_after_seconds_total", m.retryAfter},
		{"breaker_state", m.breaker},
		{"lane gauges", m.stats},
		{"pacing metrics", m.throttle},
		{"consumer_pending_events", m.pending},
		{"consumer_ack_pending_events", m.ackPending},
		{"consumer_redelivered_events", m.redelivered},
		{"consumer_info_errors_total", m.infoErrors},
		{"nats_connected", m.natsConnected},
		{"nats_reconnects_total", m.natsReconnects},
		{"build_info", buildInfo},
		{"Go collector", collectors.NewGoCollector()},
		{"process collector", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
	}
	for _, c := range cs {
		if err := reg.Register(c.c); err != nil {
			return nil, fmt.Errorf("metrics: registering %s: %w", c.name, err)
		}
	}
	m.initialise()
	return m, nil
}

// initialise creates every label combination an operator may alert on.
func (m *Metrics) initialise() {
	for _, a := range handlers.Actions {
		m.finished.WithLabelValues(string(a), string(outcome.Applied), reasonNone)
		for _, r := range skipReasons {
			m.finished.WithLabelValues(string(a), string(outcome.Skipped), r)
		}
		for _, r := range deadLetterReasons {
			m.finished.WithLabelValues(string(a), string(outcome.Deadlettered), r)
		}
		m.finished.WithLabelValues(string(a), string(outcome.Deadlettered), labelOther)
	}
	// An event whose action could not be read was never sent to KooDrive:
	// it is a duplicate, bad input or a panic.
	unknown := string(handlers.Unknown)
	m.finished.WithLabelValues(unknown, string(outcome.Skipped), string(outcome.SkipDuplicate))
	for _, r := range inputReasons {
		m.finished.WithLabelValues(unknown, string(outcome.Deadlettered), r)
	}
	m.finished.WithLabelValues(unknown, string(outcome.Deadlettered), string(outcome.ClassPanic))
	m.finished.WithLabelValues(unknown, string(outcome.Deadlettered), labelOther)

	for _, a := range handlers.Actions {
		m.latency.WithLabelValues(string(a))
	}
	for _, op := range handlers.Ops {
		m.requestDuration.WithLabelValues(string(op))
		for _, c := range codeClasses {
			m.requests.WithLabelValues(string(op), c)
		}
	}
	for _, c := range retriedClasses {
		m.retries.WithLabelValues(c)
	}
}

// SetStats makes kdsync_lanes_busy, kdsync_events_in_flight and
// kdsync_oldest_unapplied_event_age_seconds read f at each scrape, once per
// scrape. The service passes the consumer's Stats. Until it is called, or when f is
// nil, the gauges read 0.
func (m *Metrics) SetStats(f func() Stats) {
	m.stats.f.Store(&f)
}

// statsCollector reports the consumer's lane figures, sampled at scrape
// time from one Stats call.
type statsCollector struct {
	f                                         atomic.Pointer[func() Stats]
	lanes, held, oldestS, guardHeldS, parkedS *prometheus.Desc
	// The per-user records' cache and the state bucket's reads and writes.
	cached, cachedBytes, hits, misses, evictions, reads, writes *prometheus.Desc
}

func newStatsCollector() *statsCollector {
	return &statsCollector{
		lanes: prometheus.NewDesc(namespace+"_lanes_busy",
			"Users with events held in kdsync (busy lanes), sampled at scrape.", nil, nil),
		held: prometheus.NewDesc(namespace+"_events_in_flight",
			"Events held in kdsync and not yet acknowledged, sampled at scrape.", nil, nil),
		oldestS: prometheus.NewDesc(namespace+"_oldest_unapplied_event_age_seconds",
			"Time since kdsync received the oldest event it holds unfinished; 0 when none. Sampled at scrape.", nil, nil),
		guardHeldS: prometheus.NewDesc(namespace+"_guard_held_events",
			"Deprovisioning events this instance holds for the mass-deprovisioning guard, awaiting an operator. Sampled at scrape.", nil, nil),
		parkedS: prometheus.NewDesc(namespace+"_parked_events",
			"Events this instance's consumer parked out of the ack window: held deprovisions and the later events of their users, in order, until released or rejected. Sampled at scrape.", nil, nil),
		cached: prometheus.NewDesc(namespace+"_state_cache_entries",
			"Per-user records (watermarks) cached, within KDSYNC_STATE_CACHE.", nil, nil),
		cachedBytes: prometheus.NewDesc(namespace+"_state_cache_bytes",
			"Estimated memory of the cached per-user records.", nil, nil),
		hits: prometheus.NewDesc(namespace+"_state_cache_hits_total",
			"Events whose user's record was in the cache.", nil, nil),
		misses: prometheus.NewDesc(namespace+"_state_cache_misses_total",
			"Events whose user's record was not in the cache (read from the state bucket).", nil, nil),
		evictions: prometheus.NewDesc(namespace+"_state_cache_evictions_total",
			"Per-user records evicted from the cache past its budget (least recently used first).", nil, nil),
		reads: prometheus.NewDesc(namespace+"_state_reads_total",
			"Reads of per-user records from the state bucket (KV).", nil, nil),
		writes: prometheus.NewDesc(namespace+"_state_writes_total",
			"Writes of per-user records to the state bucket (KV), compare-and-set retries included.", nil, nil),
	}
}

// Describe sends the descriptors.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lanes
	ch <- c.held
	ch <- c.oldestS
	ch <- c.guardHeldS
	ch <- c.parkedS
	for _, d := range []*prometheus.Desc{c.cached, c.cachedBytes, c.hits, c.misses, c.evictions, c.reads, c.writes} {
		ch <- d
	}
}

// Collect calls the stats function once and reports its figures.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	var s Stats
	if f := c.f.Load(); f != nil && *f != nil {
		s = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(c.lanes, prometheus.GaugeValue, float64(s.Lanes))
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(c.oldestS, prometheus.GaugeValue, max(s.Oldest.Seconds(), 0))
	ch <- prometheus.MustNewConstMetric(c.guardHeldS, prometheus.GaugeValue, float64(s.GuardHeld))
	ch <- prometheus.MustNewConstMetric(c.parkedS, prometheus.GaugeValue, float64(s.Parked))
	st := s.State
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.GaugeValue, float64(st.Cached))
	ch <- prometheus.MustNewConstMetric(c.cachedBytes, prometheus.GaugeValue, float64(st.CachedBytes))
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(st.Hits))
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(st.Misses))
	ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(st.Reads))
	ch <- prometheus.MustNewConstMetric(c.writes, prometheus.CounterValue, float64(st.Writes))
}
