package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kdsync/kdsync/reconcile"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := reconcile.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.NewMetrics(reg); err == nil {
		t.Error("registering twice on one registry succeeded")
	}
	// Every series exists at zero before the first pass.
	if n := testutil.CollectAndCount(reg, "kdsync_drift_users"); n != len(reconcile.Kinds) {
		t.Errorf("%d drift series, want %d", n, len(reconcile.Kinds))
	}
	kd := fakeList{"1": {UserID: "1", DeptID: "43", Role: 1}, "2": {UserID: "2", DeptID: "42", Role: 1}}
	res, err := reconcile.Run(t.Context(), reconcile.Options{
		Source: strings.NewReader("userId,deptId\n1,42\n3,42\n"), Complete: true, KooDrive: kd,
		Requests: func() int64 { return 7 },
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(res, nil)
	m.Observe(nil, errors.New("KooDrive down"))
	want := `
# HELP kdsync_drift_users Users whose KooDrive state differed from the desired state at the last reconciliation pass that read both sides, by kind (missing, unexpected, dept, role, status).
# TYPE kdsync_drift_users gauge
kdsync_drift_users{kind="dept"} 1
kdsync_drift_users{kind="missing"} 1
kdsync_drift_users{kind="role"} 0
kdsync_drift_users{kind="status"} 0
kdsync_drift_users{kind="unexpected"} 1
# HELP kdsync_reconcile_runs_total Reconciliation passes, by result (ok, error).
# TYPE kdsync_reconcile_runs_total counter
kdsync_reconcile_runs_total{result="error"} 1
kdsync_reconcile_runs_total{result="ok"} 1
# HELP kdsync_reconcile_koodrive_requests_total KooDrive requests made by reconciliation passes.
# TYPE kdsync_reconcile_koodrive_requests_total counter
kdsync_reconcile_koodrive_requests_total 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kdsync_drift_users", "kdsync_reconcile_runs_total",
		"kdsync_reconcile_koodrive_requests_total"); err != nil {
		t.Error(err)
	}
	if v := gauge(t, reg, "kdsync_reconcile_last_success_timestamp_seconds", ""); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success %v", v)
	}
}

// gauge reads the gauge name (with label value lv, when not empty).
func gauge(t *testing.T, g prometheus.Gatherer, name, lv string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if lv == "" || len(mt.GetLabel()) > 0 && mt.GetLabel()[0].GetValue() == lv {
				return mt.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, lv)
	return 0
}

func TestEvery(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := reconcile.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	kd := fakeList{"1": {UserID: "1", DeptID: "42", Role: 1}}
	ctx, cancel := context.WithCancel(t.Context())
	passes, closed := 0, 0
	err = reconcile.Every(ctx, 10*time.Millisecond, func() (reconcile.Options, func(), error) {
		passes++
		if passes == 4 {
			cancel()
		}
		if passes == 2 {
			return reconcile.Options{}, nil, errors.New("source not readable")
		}
		if passes == 3 {
			// Skipped: not counted as a failure, nothing opened.
			return reconcile.Options{}, nil, fmt.Errorf("not the leader: %w", reconcile.ErrSkip)
		}
		return reconcile.Options{Source: strings.NewReader("userId,role\n1,5\n"), KooDrive: kd}, func() { closed++ }, nil
	}, m, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Every returned %v", err)
	}
	if passes != 4 || closed != 2 {
		t.Errorf("%d passes, %d sources closed", passes, closed)
	}
	if v := gauge(t, reg, "kdsync_drift_users", "role"); v != 1 {
		t.Errorf("role drift %v, want 1", v)
	}
	// One pass ran, one failed to open its source, one was skipped (not
	// counted), the last was cut short by the cancel (not counted).
	want := `
# HELP kdsync_reconcile_runs_total Reconciliation passes, by result (ok, error).
# TYPE kdsync_reconcile_runs_total counter
kdsync_reconcile_runs_total{result="error"} 1
kdsync_reconcile_runs_total{result="ok"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kdsync_reconcile_runs_total"); err != nil {
		t.Error(err)
	}
}
