package metrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// EventReceived counts a delivered message in kdsync_events_received_total.
func (m *Metrics) EventReceived() {
	m.received.Inc()
}

// EventFinished counts an outcome in kdsync_events_finished_total and, for
// an applied event with a time, observes latency in
// kdsync_event_latency_seconds (a negative latency, from clock skew, counts
// as 0). Labels outside the fixed sets become "unknown" (action) or "other"
// (result, reason).
func (m *Metrics) EventFinished(action handlers.Action, result outcome.Result, reason outcome.Reason, latency time.Duration, hasTime bool) {
	a := actionLabel(action)
	m.finished.WithLabelValues(a, resultLabel(result), reasonLabel(string(reason))).Inc()
	if hasTime && result == outcome.Applied && a != string(handlers.Unknown) {
		m.latency.WithLabelValues(a).Observe(max(latency.Seconds(), 0))
	}
}

// Retry counts a retry in kdsync_retries_total by class (one of
// handlers.KooDriveReasons, else "other") and, when the wait honours a
// Retry-After, adds it to kdsync_retry_after_seconds_total.
func (m *Metrics) Retry(class string, wait time.Duration, retryAfter bool) {
	m.retries.WithLabelValues(classLabel(class)).Inc()
	if retryAfter && wait > 0 {
		m.retryAfter.Add(wait.Seconds())
	}
}

// BreakerState sets kdsync_breaker_state: 0 closed, 1 half-open, 2 open.
func (m *Metrics) BreakerState(state int) {
	m.breaker.Set(float64(state))
}

// ObserveCall records one KooDrive call in kdsync_koodrive_requests_total
// and kdsync_koodrive_request_duration_seconds. Its signature is that of
// handlers.Handler.Observe: err nil is "ok", otherwise the code class is
// handlers.Classify(err)'s (an error from elsewhere is "permanent"). An
// op outside handlers.Ops is labelled "other".
func (m *Metrics) ObserveCall(op handlers.Op, d time.Duration, err error) {
	o := opLabel(op)
	m.requests.WithLabelValues(o, codeClassLabel(err)).Inc()
	m.requestDuration.WithLabelValues(o).Observe(max(d.Seconds(), 0))
}

// NATSConnected sets kdsync_nats_connected and counts a reconnect in
// kdsync_nats_reconnects_total on each change from down to up after the
// first connection. Pass it as consumer.Connect's onChange.
func (m *Metrics) NATSConnected(up bool) {
	m.natsMu.Lock()
	defer m.natsMu.Unlock()
	if up && !m.natsUp && m.natsEverUp {
		m.natsReconnects.Inc()
	}
	m.natsUp = up
	m.natsEverUp = m.natsEverUp || up
	if up {
		m.natsConnected.Set(1)
	} else {
		m.natsConnected.Set(0)
	}
}

// DefaultPollInterval is PollConsumer's interval when given none.
const DefaultPollInterval = 15 * time.Second

// maxInfoTimeout bounds one Info request.
const maxInfoTimeout = 10 * time.Second

// PollConsumer sets kdsync_consumer_pending_events,
// kdsync_consumer_ack_pending_events and kdsync_consumer_redelivered_events
// from the Info of the consumers get returns, summed (with partitions, the
// ones this instance works; none gives zeros), at once and then every every
// (DefaultPollInterval when not positive), until ctx ends. A nil consumer
// (not bound yet) is skipped; a failed Info counts in
// kdsync_consumer_info_errors_total and leaves the gauges as they were. Run
// it in its own goroutine; it returns when ctx ends. Pass
// (*consumer.Consumer).JetStreamConsumer as get.
func (m *Metrics) PollConsumer(ctx context.Context, every time.Duration, get func() []jetstream.Consumer) {
	if every <= 0 {
		every = DefaultPollInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for ctx.Err() == nil {
		m.pollConsumer(ctx, min(every, maxInfoTimeout), get)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

func (m *Metrics) pollConsumer(ctx context.Context, timeout time.Duration, get func() []jetstream.Consumer) {
	if get == nil {
		return
	}
	cs := get()
	if cs == nil {
		return // not bound yet
	}
	// An empty list is an instance working no partition now: zeros.
	var pending, ackPending, redelivered uint64
	for _, c := range cs {
		if c == nil {
			return
		}
		ictx, cancel := context.WithTimeout(ctx, timeout)
		info, err := c.Info(ictx)
		cancel()
		if err != nil || info == nil {
			if ctx.Err() == nil { // not an error: shutting down
				m.infoErrors.Inc()
			}
			return
		}
		pending += info.NumPending
		ackPending += uint64(info.NumAckPending)
		redelivered += uint64(info.NumRedelivered)
	}
	m.pending.Set(float64(pending))
	m.ackPending.Set(float64(ackPending))
	m.redelivered.Set(float64(redelivered))
}
