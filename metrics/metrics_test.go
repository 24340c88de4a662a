package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, BuildInfo{Version: "v1.2.3", Revision: "abc123"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// families gathers reg and indexes the families by name.
func families(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// snapshot gathers reg once, for many lookups.
func snapshot(t *testing.T, reg prometheus.Gatherer) prometheus.Gatherer {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
}

// labels turns "k", "v", ... pairs into a map.
func labels(kv ...string) map[string]string {
	out := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// series returns the series of family name whose labels are exactly want,
// as gathered from reg; nil when absent.
func series(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mf := families(t, reg)[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is the value of a counter or gauge series, failing when absent.
func value(t *testing.T, reg prometheus.Gatherer, name string, kv ...string) float64 {
	t.Helper()
	m := series(t, reg, name, labels(kv...))
	switch {
	case m == nil:
		t.Fatalf("%s%v: series absent", name, kv)
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s%v: neither counter nor gauge", name, kv)
	return 0
}

// histogram returns a histogram series' count and sum, failing when absent.
func histogram(t *testing.T, reg prometheus.Gatherer, name string, kv ...string) (uint64, float64) {
	t.Helper()
	m := series(t, reg, name, labels(kv...))
	if m == nil || m.Histogram == nil {
		t.Fatalf("%s%v: histogram series absent", name, kv)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewRegistersEveryFamilyAtZero(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	want := map[string]dto.MetricType{
		"kdsync_events_received_total":              dto.MetricType_COUNTER,
		"kdsync_events_finished_total":              dto.MetricType_COUNTER,
		"kdsync_event_latency_seconds":              dto.MetricType_HISTOGRAM,
		"kdsync_koodrive_requests_total":            dto.MetricType_COUNTER,
		"kdsync_koodrive_request_duration_seconds":  dto.MetricType_HISTOGRAM,
		"kdsync_retries_total":                      dto.MetricType_COUNTER,
		"kdsync_retry_after_seconds_total":          dto.MetricType_COUNTER,
		"kdsync_breaker_state":                      dto.MetricType_GAUGE,
		"kdsync_lanes_busy":                         dto.MetricType_GAUGE,
		"kdsync_events_in_flight":                   dto.MetricType_GAUGE,
		"kdsync_oldest_unapplied_event_age_seconds": dto.MetricType_GAUGE,
		"kdsync_consumer_pending_events":            dto.MetricType_GAUGE,
		"kdsync_consumer_ack_pending_events":        dto.MetricType_GAUGE,
		"kdsync_consumer_redelivered_events":        dto.MetricType_GAUGE,
		"kdsync_consumer_info_errors_total":         dto.MetricType_COUNTER,
		"kdsync_nats_connected":                     dto.MetricType_GAUGE,
		"kdsync_nats_reconnects_total":              dto.MetricType_COUNTER,
		"kdsync_build_info":                         dto.MetricType_GAUGE,
		"go_goroutines":                             dto.MetricType_GAUGE,
		"go_memstats_heap_alloc_bytes":              dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                 dto.MetricType_COUNTER,
		"process_open_fds":                          dto.MetricType_GAUGE,
	}
	fams := families(t, reg)
	for name, typ := range want {
		mf := fams[name]
		if mf == nil {
			t.Errorf("family %s absent after New", name)
			continue
		}
		if mf.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, mf.GetType(), typ)
		}
		if !strings.HasPrefix(name, "kdsync_") || name == "kdsync_build_info" {
			continue
		}
		for _, s := range mf.GetMetric() {
			v := s.GetCounter().GetValue() + s.GetGauge().GetValue() + float64(s.GetHistogram().GetSampleCount())
			if v != 0 {
				t.Errorf("%s%v = %v at start, want 0", name, s.GetLabel(), v)
			}
		}
	}

	// The combinations dashboards and alerts use exist before any event.
	snap := snapshot(t, reg)
	if got := testutil.ToFloat64(m.finished.WithLabelValues("hired", "applied", "none")); got != 0 {
		t.Errorf("finished{hired,applied,none} = %v, want 0", got)
	}
	for _, a := range handlers.Actions {
		value(t, snap, "kdsync_events_finished_total", "action", string(a), "result", "applied", "reason", "none")
		value(t, snap, "kdsync_events_finished_total", "action", string(a), "result", "skipped", "reason", "duplicate")
		value(t, snap, "kdsync_events_finished_total", "action", string(a), "result", "skipped", "reason", "noop")
		value(t, snap, "kdsync_events_finished_total", "action", string(a), "result", "skipped", "reason", "stale")
		for _, r := range []string{"permanent", "not_found", "auth", "retry_budget_exhausted", "panic", "invalid_field", "other"} {
			value(t, snap, "kdsync_events_finished_total", "action", string(a), "result", "deadlettered", "reason", r)
		}
		histogram(t, snap, "kdsync_event_latency_seconds", "action", string(a))
	}
	for _, r := range handlers.InputReasons {
		value(t, snap, "kdsync_events_finished_total", "action", "unknown", "result", "deadlettered", "reason", string(r))
	}
	value(t, snap, "kdsync_events_finished_total", "action", "unknown", "result", "deadlettered", "reason", "bad_input")
	value(t, snap, "kdsync_events_finished_total", "action", "unknown", "result", "skipped", "reason", "duplicate")
	for _, op := range handlers.Ops {
		for _, c := range []string{"ok", "retryable", "auth", "not_found", "already_exists", "permanent"} {
			value(t, snap, "kdsync_koodrive_requests_total", "operation", string(op), "code_class", c)
		}
		histogram(t, snap, "kdsync_koodrive_request_duration_seconds", "operation", string(op))
	}
	value(t, snap, "kdsync_retries_total", "class", "retryable")
	value(t, snap, "kdsync_retries_total", "class", "auth")

	if got := value(t, snap, "kdsync_build_info", "version", "v1.2.3", "revision", "abc123", "goversion", runtime.Version()); got != 1 {
		t.Errorf("build_info = %v, want 1", got)
	}
}

func TestBuildInfoDefaults(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := New(reg, BuildInfo{}); err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "kdsync_build_info", "version", "unknown", "revision", "unknown", "goversion", runtime.Version()); got != 1 {
		t.Errorf("build_info = %v, want 1", got)
	}
}

func TestNewReturnsErrorsInsteadOfPanicking(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, BuildInfo{}); err == nil {
		t.Error("New(nil) succeeded")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(reg, BuildInfo{}); err != nil {
		t.Fatal(err)
	}
	_, err := New(reg, BuildInfo{})
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second New on one registry: err = %v, want an AlreadyRegisteredError", err)
	}
}

func TestEventReceived(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	for range 3 {
		m.EventReceived()
	}
	if got := testutil.ToFloat64(m.received); got != 3 {
		t.Errorf("received = %v, want 3", got)
	}
	if got := value(t, reg, "kdsync_events_received_total"); got != 3 {
		t.Errorf("scraped received = %v, want 3", got)
	}
}

func TestEventFinishedLabels(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		action                handlers.Action
		result                outcome.Result
		reason                outcome.Reason
		wantAction, wantReson string
		wantResult            string
	}{
		"applied":             {handlers.Hired, outcome.Applied, "", "hired", "none", "applied"},
		"duplicate":           {handlers.Changed, outcome.Skipped, outcome.SkipDuplicate, "changed", "duplicate", "skipped"},
		"noop":                {handlers.Changed, outcome.Skipped, outcome.SkipNoop, "changed", "noop", "skipped"},
		"stale":               {handlers.Disabled, outcome.Skipped, outcome.SkipStale, "disabled", "stale", "skipped"},
		"input reason":        {handlers.Unknown, outcome.Deadlettered, outcome.Reason(handlers.ReasonMalformed), "unknown", "malformed_json", "deadlettered"},
		"bad input":           {handlers.Unknown, outcome.Deadlettered, "bad_input", "unknown", "bad_input", "deadlettered"},
		"kdapi class":         {handlers.Deleted, outcome.Deadlettered, outcome.Reason(kdapi.ClassNotFound.String()), "deleted", "not_found", "deadlettered"},
		"budget":              {handlers.Enabled, outcome.Deadlettered, outcome.ClassBudgetExhausted, "enabled", "retry_budget_exhausted", "deadlettered"},
		"panic":               {handlers.Hired, outcome.Deadlettered, outcome.ClassPanic, "hired", "panic", "deadlettered"},
		"unknown reason":      {handlers.Hired, outcome.Deadlettered, "something new", "hired", "other", "deadlettered"},
		"user id as reason":   {handlers.Hired, outcome.Deadlettered, "u-0042", "hired", "other", "deadlettered"},
		"unlisted action":     {handlers.Action("fired"), outcome.Deadlettered, outcome.ClassPanic, "unknown", "panic", "deadlettered"},
		"unlisted result":     {handlers.Hired, outcome.Result("lost"), "", "hired", "none", "other"},
		"error text reason":   {handlers.Hired, outcome.Deadlettered, "kdapi: PUT /users/u-1: HTTP 500", "hired", "other", "deadlettered"},
		"case differs":        {handlers.Hired, outcome.Skipped, "Duplicate", "hired", "other", "skipped"},
		"class(7) from kdapi": {handlers.Hired, outcome.Deadlettered, outcome.Reason(kdapi.Class(7).String()), "hired", "other", "deadlettered"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, reg := newMetrics(t)
			m.EventFinished(tc.action, tc.result, tc.reason, time.Second, true)
			kv := []string{"action", tc.wantAction, "result", tc.wantResult, "reason", tc.wantReson}
			if got := value(t, reg, "kdsync_events_finished_total", kv...); got != 1 {
				t.Errorf("finished%v = %v, want 1", kv, got)
			}
			var total float64
			for _, s := range families(t, reg)["kdsync_events_finished_total"].GetMetric() {
				total += s.GetCounter().GetValue()
			}
			if total != 1 {
				t.Errorf("finished total over all series = %v, want 1", total)
			}
		})
	}
}

func TestEventLatency(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	m.EventFinished(handlers.Hired, outcome.Applied, "", 1500*time.Millisecond, true)
	m.EventFinished(handlers.Hired, outcome.Applied, "", 90*time.Minute, true)
	m.EventFinished(handlers.Hired, outcome.Applied, "", -time.Second, true) // clock skew
	m.EventFinished(handlers.Hired, outcome.Applied, "", time.Hour, false)   // no event time
	m.EventFinished(handlers.Hired, outcome.Skipped, outcome.SkipDuplicate, time.Hour, true)
	m.EventFinished(handlers.Hired, outcome.Deadlettered, "permanent", time.Hour, true)
	m.EventFinished(handlers.Deleted, outcome.Applied, "", 20*time.Millisecond, true)

	n, sum := histogram(t, reg, "kdsync_event_latency_seconds", "action", "hired")
	if n != 3 || math.Abs(sum-(1.5+5400)) > 1e-9 {
		t.Errorf("latency{hired}: count %d sum %v, want 3 and 5401.5", n, sum)
	}
	n, sum = histogram(t, reg, "kdsync_event_latency_seconds", "action", "deleted")
	if n != 1 || math.Abs(sum-0.02) > 1e-9 {
		t.Errorf("latency{deleted}: count %d sum %v, want 1 and 0.02", n, sum)
	}
	n, _ = histogram(t, reg, "kdsync_event_latency_seconds", "action", "changed")
	if n != 0 {
		t.Errorf("latency{changed}: count %d, want 0", n)
	}

	// The buckets span ~5 ms to ~1 h.
	h := series(t, reg, "kdsync_event_latency_seconds", labels("action", "hired")).GetHistogram()
	bs := h.GetBucket()
	if first, last := bs[0].GetUpperBound(), bs[len(bs)-1].GetUpperBound(); first != 0.005 || last != 3600 {
		t.Errorf("latency buckets span %v..%v s, want 0.005..3600", first, last)
	}
	// The skewed event is in the first bucket (as 0); the 90 min one in none.
	if got := bs[0].GetCumulativeCount(); got != 1 {
		t.Errorf("latency{hired} le=0.005: %d, want 1", got)
	}
	if got := bs[len(bs)-1].GetCumulativeCount(); got != 2 {
		t.Errorf("latency{hired} le=3600: %d, want 2", got)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	m.Retry(kdapi.ClassRetryable.String(), 3*time.Second, true)
	m.Retry(kdapi.ClassRetryable.String(), 500*time.Millisecond, false)
	m.Retry(kdapi.ClassAuth.String(), 2*time.Second, false)
	m.Retry("u-0042", time.Second, true)

	for _, c := range []struct {
		class string
		want  float64
	}{{"retryable", 2}, {"auth", 1}, {"other", 1}} {
		if got := value(t, reg, "kdsync_retries_total", "class", c.class); got != c.want {
			t.Errorf("retries{%s} = %v, want %v", c.class, got, c.want)
		}
	}
	if got := value(t, reg, "kdsync_retry_after_seconds_total"); got != 4 {
		t.Errorf("retry_after_seconds_total = %v, want 4 (3 s + 1 s honoured)", got)
	}
}

func TestBreakerState(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	for _, s := range []int{2, 1, 0, 2} {
		m.BreakerState(s)
		if got := value(t, reg, "kdsync_breaker_state"); got != float64(s) {
			t.Errorf("after BreakerState(%d): gauge %v", s, got)
		}
	}
}

func TestObserveCallClassifies(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		op        handlers.Op
		err       error
		wantOp    string
		wantClass string
	}{
		"success":            {handlers.OpCreate, nil, "create", "ok"},
		"api 5xx":            {handlers.OpUpdate, &kdapi.APIError{HTTPStatus: 503, Class: kdapi.ClassRetryable}, "update", "retryable"},
		"api 429":            {handlers.OpUpdate, &kdapi.APIError{HTTPStatus: 429, Class: kdapi.ClassRetryable, RetryAfter: time.Second}, "update", "retryable"},
		"api 401":            {handlers.OpGet, &kdapi.APIError{HTTPStatus: 401, Class: kdapi.ClassAuth}, "get", "auth"},
		"api 404":            {handlers.OpDelete, &kdapi.APIError{HTTPStatus: 404, Class: kdapi.ClassNotFound}, "delete", "not_found"},
		"api 409":            {handlers.OpCreate, &kdapi.APIError{HTTPStatus: 409, Class: kdapi.ClassAlreadyExists}, "create", "already_exists"},
		"api 400":            {handlers.OpCreate, &kdapi.APIError{HTTPStatus: 400, Class: kdapi.ClassPermanent}, "create", "permanent"},
		"api 200 with code":  {handlers.OpCreate, &kdapi.APIError{HTTPStatus: 200, Code: "31084", Class: kdapi.ClassAlreadyExists}, "create", "already_exists"},
		"wrapped api error":  {handlers.OpGet, fmt.Errorf("checking: %w", &kdapi.APIError{HTTPStatus: 502, Class: kdapi.ClassRetryable}), "get", "retryable"},
		"transport":          {handlers.OpUpdate, &kdapi.TransportError{Method: "PUT", Path: "/users/u-1", Err: io.ErrUnexpectedEOF}, "update", "retryable"},
		"wrapped transport":  {handlers.OpGet, fmt.Errorf("x: %w", &kdapi.TransportError{Err: errors.New("reset")}), "get", "retryable"},
		"other error":        {handlers.OpDelete, errors.New("boom"), "delete", "permanent"},
		"unlisted op":        {handlers.Op("patch"), nil, "other", "ok"},
		"user id as op":      {handlers.Op("u-0042"), errors.New("boom"), "other", "permanent"},
		"unknown class code": {handlers.OpCreate, &kdapi.APIError{HTTPStatus: 400, Class: kdapi.Class(9)}, "create", "permanent"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, reg := newMetrics(t)
			m.ObserveCall(tc.op, 250*time.Millisecond, tc.err)
			if got := value(t, reg, "kdsync_koodrive_requests_total", "operation", tc.wantOp, "code_class", tc.wantClass); got != 1 {
				t.Errorf("requests{%s,%s} = %v, want 1", tc.wantOp, tc.wantClass, got)
			}
			var total float64
			for _, s := range families(t, reg)["kdsync_koodrive_requests_total"].GetMetric() {
				total += s.GetCounter().GetValue()
			}
			if total != 1 {
				t.Errorf("requests over all series = %v, want 1", total)
			}
			n, sum := histogram(t, reg, "kdsync_koodrive_request_duration_seconds", "operation", tc.wantOp)
			if n != 1 || sum != 0.25 {
				t.Errorf("duration{%s}: count %d sum %v, want 1 and 0.25", tc.wantOp, n, sum)
			}
		})
	}
}

func TestObserveCallFitsHandler(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	h := handlers.Handler{Observe: m.ObserveCall}
	h.Observe(handlers.OpCreate, 0, nil)
	if got := value(t, reg, "kdsync_koodrive_requests_total", "operation", "create", "code_class", "ok"); got != 1 {
		t.Errorf("requests{create,ok} = %v, want 1", got)
	}
	// The buckets span ~1 ms to ~30 s.
	bs := series(t, reg, "kdsync_koodrive_request_duration_seconds", labels("operation", "create")).GetHistogram().GetBucket()
	if first, last := bs[0].GetUpperBound(), bs[len(bs)-1].GetUpperBound(); first != 0.001 || last != 30 {
		t.Errorf("request buckets span %v..%v s, want 0.001..30", first, last)
	}
}

func TestNATSConnected(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		changes        []bool
		wantReconnects float64
		wantConnected  float64
	}{
		"never connected":           {nil, 0, 0},
		"first connect":             {[]bool{true}, 0, 1},
		"down before first connect": {[]bool{false, true}, 0, 1},
		"one drop":                  {[]bool{true, false, true}, 1, 1},
		"drop, then closed":         {[]bool{true, false, true, false}, 1, 0},
		"repeats count once":        {[]bool{true, true, false, false, true, true}, 1, 1},
		"three drops":               {[]bool{false, true, false, true, false, true, false, true}, 3, 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, reg := newMetrics(t)
			for _, up := range tc.changes {
				m.NATSConnected(up)
			}
			if got := value(t, reg, "kdsync_nats_reconnects_total"); got != tc.wantReconnects {
				t.Errorf("reconnects = %v, want %v", got, tc.wantReconnects)
			}
			if got := value(t, reg, "kdsync_nats_connected"); got != tc.wantConnected {
				t.Errorf("connected = %v, want %v", got, tc.wantConnected)
			}
		})
	}
}

func TestNATSConnectedConcurrent(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	m.NATSConnected(true)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				m.NATSConnected(false)
				m.NATSConnected(true)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got := value(t, reg, "kdsync_nats_reconnects_total"); got < 1 || got > 400 {
		t.Errorf("reconnects = %v, want 1..400", got)
	}
}

func TestSetStatsReadsAtScrape(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	gauges := func() (float64, float64, float64) {
		return value(t, reg, "kdsync_lanes_busy"), value(t, reg, "kdsync_events_in_flight"),
			value(t, reg, "kdsync_oldest_unapplied_event_age_seconds")
	}
	if l, f, o := gauges(); l != 0 || f != 0 || o != 0 {
		t.Errorf("before SetStats: %v %v %v, want zeros", l, f, o)
	}

	var calls atomic.Int64
	var cur atomic.Pointer[Stats]
	cur.Store(&Stats{Lanes: 3, InFlight: 7, Oldest: 2500 * time.Millisecond})
	m.SetStats(func() Stats {
		calls.Add(1)
		return *cur.Load()
	})
	if calls.Load() != 0 {
		t.Fatalf("stats read %d times before any scrape", calls.Load())
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("one scrape read stats %d times, want 1", got)
	}
	if l, f, o := gauges(); l != 3 || f != 7 || o != 2.5 {
		t.Errorf("gauges %v %v %v, want 3 7 2.5", l, f, o)
	}
	cur.Store(&Stats{Lanes: 3, InFlight: 7, GuardHeld: 4, Parked: 9})
	if h, p := value(t, reg, "kdsync_guard_held_events"), value(t, reg, "kdsync_parked_events"); h != 4 || p != 9 {
		t.Errorf("held %v, parked %v; want 4 and 9", h, p)
	}
	cur.Store(&Stats{Lanes: 1, InFlight: 1, Oldest: 0})
	if l, f, o := gauges(); l != 1 || f != 1 || o != 0 {
		t.Errorf("after change: gauges %v %v %v, want 1 1 0", l, f, o)
	}
	m.SetStats(nil)
	if l, f, o := gauges(); l != 0 || f != 0 || o != 0 {
		t.Errorf("after SetStats(nil): %v %v %v, want zeros", l, f, o)
	}
}

func TestPollConsumerAgainstJetStream(t *testing.T) {
	t.Parallel()
	_, nc, js := harness.NewJetStream(t)
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "IDENTITY", Subjects: []string{"identity.employee.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "IDENTITY", jetstream.ConsumerConfig{
		Durable: "kdsync", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		// At most five held: a fetch after the Naks gets those five back.
		MaxAckPending: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 25
	for i := range n {
		if _, err := js.Publish(ctx, fmt.Sprintf("identity.employee.hired.u-%d", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}

	m, reg := newMetrics(t)
	var bound atomic.Bool
	var gets atomic.Int64
	get := func() []jetstream.Consumer {
		gets.Add(1)
		if !bound.Load() {
			return nil // the consumer is not bound yet
		}
		return []jetstream.Consumer{cons}
	}
	stop := pollInBackground(t, m, 10*time.Millisecond, get)
	defer stop()

	eventually(t, "polls of an unbound consumer", func() bool { return gets.Load() >= 3 })
	if got := value(t, reg, "kdsync_consumer_pending_events"); got != 0 {
		t.Errorf("pending before binding = %v, want 0", got)
	}
	if got := value(t, reg, "kdsync_consumer_info_errors_total"); got != 0 {
		t.Errorf("info errors for a nil consumer = %v, want 0", got)
	}

	bound.Store(true)
	eventually(t, fmt.Sprintf("pending = %d", n), func() bool {
		return value(t, reg, "kdsync_consumer_pending_events") == n
	})

	// Five delivered and not acked: ack pending.
	batch, err := cons.FetchNoWait(5)
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for msg := range batch.Messages() {
		got = append(got, msg)
	}
	if len(got) != 5 {
		t.Fatalf("fetched %d, want 5", len(got))
	}
	eventually(t, "pending 20, ack pending 5", func() bool {
		return value(t, reg, "kdsync_consumer_pending_events") == n-5 &&
			value(t, reg, "kdsync_consumer_ack_pending_events") == 5
	})

	// Nak them and take them again: redelivered.
	for _, msg := range got {
		if err := msg.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	batch, err = cons.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	again := 0
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.NumDelivered != 2 {
			t.Fatalf("refetched a message delivered %d times, want 2", md.NumDelivered)
		}
		again++
	}
	if again != 5 {
		t.Fatalf("refetched %d, want 5", again)
	}
	eventually(t, "redelivered 5, ack pending 5, pending 20", func() bool {
		return value(t, reg, "kdsync_consumer_redelivered_events") == 5 &&
			value(t, reg, "kdsync_consumer_ack_pending_events") == 5 &&
			value(t, reg, "kdsync_consumer_pending_events") == n-5
	})

	// The consumer goes away: Info fails, counted; the gauges keep their
	// last values.
	if err := js.DeleteConsumer(ctx, "IDENTITY", "kdsync"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "info errors counted", func() bool {
		return value(t, reg, "kdsync_consumer_info_errors_total") >= 2
	})
	if got := value(t, reg, "kdsync_consumer_pending_events"); got != n-5 {
		t.Errorf("pending after errors = %v, want the last value %d", got, n-5)
	}

}

// infoFake is a jetstream.Consumer whose Info is f; its other methods are
// not called.
type infoFake struct {
	jetstream.Consumer
	f func(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

func (c infoFake) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) { return c.f(ctx) }

// pollInBackground runs PollConsumer until the returned stop is called;
// stop fails the test if PollConsumer does not return promptly.
func pollInBackground(t *testing.T, m *Metrics, every time.Duration, get func() []jetstream.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.PollConsumer(ctx, every, get)
	}()
	return func() {
		t.Helper()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("PollConsumer did not return after ctx ended")
		}
	}
}

func TestPollConsumerToleratesNilAndStops(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	var calls atomic.Int64
	stopNil := pollInBackground(t, m, 5*time.Millisecond, nil) // no getter at all
	stopUnbound := pollInBackground(t, m, 5*time.Millisecond, func() []jetstream.Consumer {
		calls.Add(1)
		return nil
	})
	eventually(t, "several polls", func() bool { return calls.Load() >= 3 })
	stopNil()
	stopUnbound()
	if got := value(t, reg, "kdsync_consumer_info_errors_total"); got != 0 {
		t.Errorf("info errors = %v, want 0", got)
	}

	// A context that ended before the call: PollConsumer returns at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m.PollConsumer(ctx, 0, func() []jetstream.Consumer { t.Error("polled after ctx ended"); return nil })
}

func TestPollConsumerCountsErrorsButNotShutdown(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	var fails atomic.Int64
	failing := infoFake{f: func(context.Context) (*jetstream.ConsumerInfo, error) {
		fails.Add(1)
		return nil, errors.New("nats: timeout")
	}}
	stop := pollInBackground(t, m, 5*time.Millisecond, func() []jetstream.Consumer { return []jetstream.Consumer{failing} })
	eventually(t, "three failed polls", func() bool { return fails.Load() >= 3 })
	stop()
	if got, want := value(t, reg, "kdsync_consumer_info_errors_total"), float64(fails.Load()); got != want {
		t.Errorf("info errors = %v, want %v (one per failed Info)", got, want)
	}

	// An Info cut short by shutdown is not an error.
	m, reg = newMetrics(t)
	started := make(chan struct{})
	blocking := infoFake{f: func(ctx context.Context) (*jetstream.ConsumerInfo, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	stop = pollInBackground(t, m, time.Hour, func() []jetstream.Consumer { return []jetstream.Consumer{blocking} })
	<-started
	stop()
	if got := value(t, reg, "kdsync_consumer_info_errors_total"); got != 0 {
		t.Errorf("info errors after a shutdown mid-call = %v, want 0", got)
	}
}

// scrape fetches /metrics from Handler(reg) with the given Accept header.
func scrape(t *testing.T, reg prometheus.Gatherer, accept string) (string, string) {
	t.Helper()
	srv := httptest.NewServer(Handler(reg))
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return resp.Header.Get("Content-Type"), string(body)
}

// exercise feeds every kind of observation, with user-ish ids where a
// careless caller might put them.
func exercise(m *Metrics) {
	m.NATSConnected(true)
	m.NATSConnected(false)
	m.NATSConnected(true)
	m.SetStats(func() Stats { return Stats{Lanes: 2, InFlight: 3, Oldest: time.Second} })
	for i, a := range append(slices.Clone(handlers.Actions), handlers.Unknown, handlers.Action("u-77")) {
		m.EventReceived()
		m.EventFinished(a, outcome.Applied, "", time.Duration(i)*time.Second, true)
		m.EventFinished(a, outcome.Skipped, outcome.SkipDuplicate, 0, false)
		m.EventFinished(a, outcome.Deadlettered, "user u-77 not found", 0, true)
		m.EventFinished(a, outcome.Result("evt-0001"), "evt-0001", 0, true)
	}
	for _, op := range append(slices.Clone(handlers.Ops), handlers.Op("u-77")) {
		m.ObserveCall(op, 30*time.Millisecond, nil)
		m.ObserveCall(op, 2*time.Second, &kdapi.APIError{HTTPStatus: 500, Class: kdapi.ClassRetryable, Path: "/users/u-77"})
	}
	m.Retry("retryable", time.Second, true)
	m.Retry("u-77", time.Second, false)
	m.BreakerState(2)
}

func TestMetricsOutputPassesPromlint(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	exercise(m)
	_, body := scrape(t, reg, "")
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, name := range []string{"kdsync_events_finished_total", "kdsync_lanes_busy 2", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}

func TestHandlerServesTextFormatOnly(t *testing.T) {
	t.Parallel()
	_, reg := newMetrics(t)
	ct, body := scrape(t, reg, "application/openmetrics-text; version=1.0.0")
	if !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q for an OpenMetrics request, want text/plain", ct)
	}
	if strings.Contains(body, "# EOF") {
		t.Error("body is OpenMetrics")
	}
}

func TestHandlerContinuesOnCollectorError(t *testing.T) {
	t.Parallel()
	_, reg := newMetrics(t)
	bad := prometheus.NewDesc("kdsync_test_broken", "A collector that fails.", nil, nil)
	if err := reg.Register(failingCollector{bad}); err != nil {
		t.Fatal(err)
	}
	_, body := scrape(t, reg, "")
	if !strings.Contains(body, "kdsync_events_received_total 0") {
		t.Error("a failing collector hid the other metrics")
	}
}

type failingCollector struct{ d *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.d, errors.New("broken"))
}

// TestLabelsStayBounded feeds observations carrying ids and checks every
// kdsync label value belongs to its fixed set.
func TestLabelsStayBounded(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	exercise(m)

	actions := append(stringsOf(handlers.Actions), "unknown")
	allowed := map[string][]string{
		"action": actions,
		"result": {"applied", "skipped", "deadlettered", "other"},
		"reason": slices.Concat([]string{"none", "duplicate", "stale", "noop", "guard_rejected", "bad_input",
			"permanent", "retryable", "auth", "not_found", "already_exists",
			"retry_budget_exhausted", "panic", "other"}, stringsOf(handlers.InputReasons)),
		"operation":  append(stringsOf(handlers.Ops), "other"),
		"code_class": {"ok", "retryable", "auth", "not_found", "already_exists", "permanent"},
		"class":      {"permanent", "retryable", "auth", "not_found", "already_exists", "other"},
	}
	checked := 0
	for name, mf := range families(t, reg) {
		if !strings.HasPrefix(name, "kdsync_") || name == "kdsync_build_info" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				set, ok := allowed[l.GetName()]
				if !ok {
					t.Errorf("%s has an unexpected label %q", name, l.GetName())
					continue
				}
				if !slices.Contains(set, l.GetValue()) {
					t.Errorf("%s{%s=%q}: value outside the bounded set", name, l.GetName(), l.GetValue())
				}
				if strings.Contains(l.GetValue(), "u-77") || strings.Contains(l.GetValue(), "evt-") {
					t.Errorf("%s{%s=%q} carries an id", name, l.GetName(), l.GetValue())
				}
				checked++
			}
		}
	}
	if checked < 100 {
		t.Errorf("checked only %d label values", checked)
	}
	// The ids went somewhere bounded.
	if got := value(t, reg, "kdsync_events_finished_total", "action", "unknown", "result", "deadlettered", "reason", "other"); got != 2 {
		t.Errorf("finished{unknown,deadlettered,other} = %v, want 2 (unknown and u-77)", got)
	}
	if got := value(t, reg, "kdsync_koodrive_requests_total", "operation", "other", "code_class", "ok"); got != 1 {
		t.Errorf("requests{other,ok} = %v, want 1", got)
	}
}

// TestPollConsumerSumsPartitions: with one consumer per partition the
// gauges are the sums over them.
func TestPollConsumerSumsPartitions(t *testing.T) {
	t.Parallel()
	_, _, js := harness.NewJetStream(t)
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "IDENTITY", Subjects: []string{"identity.employee.>"}}); err != nil {
		t.Fatal(err)
	}
	var parts []jetstream.Consumer
	for i, action := range []string{"hired", "changed"} {
		c, err := js.CreateOrUpdateConsumer(ctx, "IDENTITY", jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("kdsync-p%d", i), AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: "identity.employee." + action + ".>",
		})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, c)
	}
	for i := range 7 {
		action := "hired"
		if i >= 3 {
			action = "changed"
		}
		if _, err := js.Publish(ctx, fmt.Sprintf("identity.employee.%s.u-%d", action, i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	m, reg := newMetrics(t)
	var holdNone atomic.Bool
	stop := pollInBackground(t, m, 10*time.Millisecond, func() []jetstream.Consumer {
		if holdNone.Load() {
			return []jetstream.Consumer{} // an instance that holds no partition now
		}
		return parts
	})
	defer stop()
	eventually(t, "pending = 3 + 4", func() bool {
		return value(t, reg, "kdsync_consumer_pending_events") == 7
	})
	holdNone.Store(true)
	eventually(t, "pending = 0 once no partition is held", func() bool {
		return value(t, reg, "kdsync_consumer_pending_events") == 0
	})
}

// TestReadBuildInfo: a version set at link time wins; without one a test
// binary is a development build; the toolchain is always known to it.
func TestReadBuildInfo(t *testing.T) {
	t.Parallel()
	if b := ReadBuildInfo("v1.2.3"); b.Version != "v1.2.3" || b.GoVersion == "unknown" || b.Revision == "" {
		t.Errorf("with a version: %+v", b)
	}
	if b := ReadBuildInfo(""); b.Version == "" || b.Version == "(devel)" {
		t.Errorf("without: %+v", b)
	}
}
