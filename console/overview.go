package console

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
)

// overview is what the front page shows.
type overview struct {
	// From the metrics registry (absent without one).
	Metrics bool
	// Finished counts events by result since kdsync started; Rates per
	// second over the last minute (nil until two samples are a few
	// seconds apart).
	Finished map[string]float64
	Rates    map[string]float64
	RateOver time.Duration
	Breaker  string
	// Lag is the consumer's pending events, AckPending those delivered
	// and not yet acknowledged.
	Lag, AckPending float64
	LagKnown        bool
	// Throttling: retries by class, and the time spent honouring
	// Retry-After.
	Retries        map[string]float64
	RetryAfterSecs float64
	KooDrive       map[string]float64 // requests by code class

	// From the stores.
	DeadLetters   uint64
	DLQError      string
	GuardOn       bool
	GuardPending  int
	GuardDecided  int
	GuardError    string
	Events        uint64
	Outcomes      uint64
	StreamError   string
	ConsumerError string
}

// metric families read.
const (
	mFinished   = "kdsync_events_finished_total"
	mBreaker    = "kdsync_breaker_state"
	mPending    = "kdsync_consumer_pending_events"
	mAckPending = "kdsync_consumer_ack_pending_events"
	mRetries    = "kdsync_retries_total"
	mRetryAfter = "kdsync_retry_after_seconds_total"
	mRequests   = "kdsync_koodrive_requests_total"
)

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// fromMetrics fills o from the registry's families.
func (o *overview) fromMetrics(fams []*dto.MetricFamily) {
	o.Metrics = true
	o.Finished, o.Retries, o.KooDrive = map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			v := value(m)
			switch f.GetName() {
			case mFinished:
				o.Finished[label(m, "result")] += v
			case mBreaker:
				o.Breaker = [...]string{"closed", "half-open", "open"}[min(max(int(v), 0), 2)]
			case mPending:
				o.Lag, o.LagKnown = v, true
			case mAckPending:
				o.AckPending = v
			case mRetries:
				o.Retries[label(m, "class")] += v
			case mRetryAfter:
				o.RetryAfterSecs += v
			case mRequests:
				o.KooDrive[label(m, "code_class")] += v
			}
		}
	}
}

// rates keeps samples of the finished counters for the front page's
// rates.
type rates struct {
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at       time.Time
	finished map[string]float64
}

// add records a sample and drops those older than two minutes.
func (r *rates) add(at time.Time, finished map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, sample{at, finished})
	i := 0
	for i < len(r.samples)-1 && at.Sub(r.samples[i].at) > 2*time.Minute {
		i++
	}
	r.samples = r.samples[i:]
}

// per returns the rates per second between now's counters and the oldest
// sample within the last minute (at least 5s old).
func (r *rates) per(now time.Time, cur map[string]float64) (map[string]float64, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.samples {
		d := now.Sub(s.at)
		if d > 70*time.Second {
			continue
		}
		if d < 5*time.Second {
			break
		}
		out := map[string]float64{}
		for k, v := range cur {
			out[k] = max(0, v-s.finished[k]) / d.Seconds()
		}
		return out, d.Round(time.Second)
	}
	return nil, 0
}

// fromStores fills o from the streams, the consumer and the guard.
func (s *Server) fromStores(ctx context.Context, o *overview) {
	js := s.opts.JetStream
	if st, err := js.Stream(ctx, s.opts.DLQStream); err == nil {
		o.DeadLetters = st.CachedInfo().State.Msgs
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		o.DLQError = err.Error()
	}
	if st, err := js.Stream(ctx, s.opts.Stream); err == nil {
		o.Events = st.CachedInfo().State.Msgs
	} else {
		o.StreamError = err.Error()
	}
	if st, err := js.Stream(ctx, s.opts.OutcomeStream); err == nil {
		o.Outcomes = st.CachedInfo().State.Msgs
	}
	if !o.LagKnown && s.opts.Consumer != "" {
		c, err := js.Consumer(ctx, s.opts.Stream, s.opts.Consumer)
		if err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = c.Info(ctx); err == nil {
				o.Lag, o.AckPending, o.LagKnown = float64(info.NumPending), float64(info.NumAckPending), true
			}
		}
		if err != nil {
			o.ConsumerError = fmt.Sprintf("consumer %s: %v", s.opts.Consumer, err)
		}
	}
	g, err := s.guard(ctx)
	switch {
	case errors.Is(err, errGuardOff):
	case err != nil:
		o.GuardError = err.Error()
	default:
		o.GuardOn = true
		held, err := g.Held(ctx)
		if err != nil {
			o.GuardError = err.Error()
		}
		for _, h := range held {
			if h.Decision == "" {
				o.GuardPending++
			} else {
				o.GuardDecided++
			}
		}
	}
}
