package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/handlers"
)

// Metrics export reconciliation passes, for a periodic mode in kdsync run:
//
//	kdsync_drift_users{kind}                            users drifted at the last pass that compared, per kind
//	kdsync_reconcile_runs_total{result}                 passes, result ok or error
//	kdsync_reconcile_last_success_timestamp_seconds     end of the last successful pass
//	kdsync_reconcile_duration_seconds                   duration of the last successful pass
//	kdsync_reconcile_koodrive_requests_total            KooDrive requests made by passes
//	kdsync_reconcile_repairs_published_total{action}    repair events published (hired, changed, disabled)
//
// A pass that could not read both sides changes only
// runs_total{result="error"}: the drift gauges keep the last pass that
// could.
type Metrics struct {
	drift       *prometheus.GaugeVec
	runs        *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	duration    prometheus.Gauge
	requests    prometheus.Counter
	repairs     *prometheus.CounterVec
}

// NewMetrics registers the reconciliation metrics on reg and sets every
// series to zero.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns = "kdsync"
	m := &Metrics{
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "drift_users",
			Help: "Users whose KooDrive state differed from the desired state at the last reconciliation pass that read both sides, by kind (missing, unexpected, dept, role, status)."}, []string{"kind"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_runs_total",
			Help: "Reconciliation passes, by result (ok, error)."}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "reconcile_last_success_timestamp_seconds",
			Help: "Unix time the last successful reconciliation pass ended."}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "reconcile_duration_seconds",
			Help: "Duration of the last successful reconciliation pass."}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_koodrive_requests_total",
			Help: "KooDrive requests made by reconciliation passes."}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_repairs_published_total",
			Help: "Repair events reconciliation published into the identity stream, by action."}, []string{"action"}),
	}
	for name, c := range map[string]prometheus.Collector{
		"drift_users": m.drift, "reconcile_runs_total": m.runs, "reconcile_last_success_timestamp_seconds": m.lastSuccess,
		"reconcile_duration_seconds": m.duration, "reconcile_koodrive_requests_total": m.requests,
		"reconcile_repairs_published_total": m.repairs,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("reconcile: registering kdsync_%s: %w", name, err)
		}
	}
	for _, k := range Kinds {
		m.drift.WithLabelValues(string(k))
	}
	for _, r := range []string{"ok", "error"} {
		m.runs.WithLabelValues(r)
	}
	for _, a := range []handlers.Action{handlers.Hired, handlers.Changed, handlers.Disabled} {
		m.repairs.WithLabelValues(string(a))
	}
	return m, nil
}

// Observe records a pass: its result (nil when the pass failed before
// comparing) and error. The drift gauges follow every pass that compared
// both sides, also one that then failed to publish.
func (m *Metrics) Observe(res *Result, err error) {
	if res != nil {
		m.requests.Add(float64(res.Requests))
		if res.Publish != nil {
			for a, n := range res.Publish.ByAction {
				m.repairs.WithLabelValues(string(a)).Add(float64(n))
			}
		}
		for _, k := range Kinds {
			m.drift.WithLabelValues(string(k)).Set(float64(res.Totals.ByKind[k]))
		}
	}
	if err != nil || res == nil {
		m.runs.WithLabelValues("error").Inc()
		return
	}
	m.runs.WithLabelValues("ok").Inc()
	m.duration.Set(res.Duration.Seconds())
	m.lastSuccess.Set(float64(res.StartedAt.Add(res.Duration).Unix()))
}

// Every runs a pass now and then every interval until ctx ends, exporting
// each to m (when not nil) and logging a line per pass. options is called
// before each pass, so that a source file is opened afresh (its close
// function, when not nil, is called after the pass). It returns ctx's
// error.
//
// This is the body of a periodic mode in kdsync run
// (KDSYNC_RECONCILE_INTERVAL): see docs/reconcile.md for the hook.
//
// When options returns ErrSkip the pass is not run, not exported and not
// logged above debug: another instance reconciles.
func Every(ctx context.Context, interval time.Duration, options func() (Options, func(), error), m *Metrics, log *slog.Logger) error {
	if interval <= 0 {
		return errors.New("reconcile: the interval must be positive")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		res, err := pass(ctx, options)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrSkip) {
			log.Debug("reconciliation skipped", "reason", err)
			t.Reset(interval)
			continue
		}
		if m != nil {
			m.Observe(res, err)
		}
		switch {
		case err != nil:
			log.Warn("reconciliation failed", "err", err)
		default:
			args := []any{"run_id", res.RunID, "duration", res.Duration.Round(time.Millisecond), "requests", res.Requests,
				"desired", res.Totals.Desired, "koodrive", res.Totals.KooDrive, "drifted", res.Totals.Drifted}
			for _, k := range Kinds {
				args = append(args, string(k), res.Totals.ByKind[k])
			}
			if res.Publish != nil {
				args = append(args, "published", res.Publish.Published, "superseded", res.Publish.Superseded)
			}
			log.Info("reconciliation done", args...)
		}
		t.Reset(interval)
	}
}

// ErrSkip, returned (or wrapped) by Every's options, skips a pass.
var ErrSkip = errors.New("reconcile: pass skipped")

func pass(ctx context.Context, options func() (Options, func(), error)) (*Result, error) {
	o, done, err := options()
	if done != nil {
		defer done()
	}
	if err != nil {
		return nil, err
	}
	return Run(ctx, o)
}
