package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/reconcile"
	"github.com/kdsync/kdsync/workload"
)

// env is an embedded NATS, the simulator and the real consumer applying
// the stream to it (hard deletes on).
type env struct {
	t    *testing.T
	sim  *harness.Sim
	nc   *nats.Conn
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	kd   *kdapi.Client
	tr   *reconcile.Transport
	outs *harness.Outcomes
}

// testRate is the request rate the end-to-end tests allow themselves: the
// default (20/s) would make three passes over 20,000 users take 30s.
// KDSYNC_RECONCILE_TEST_RATE overrides it, e.g. to measure at 20/s.
func testRate(t *testing.T) float64 {
	if s := os.Getenv("KDSYNC_RECONCILE_TEST_RATE"); s != "" {
		r, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("KDSYNC_RECONCILE_TEST_RATE: %v", err)
		}
		return r
	}
	return 400
}

func newEnv(t *testing.T) *env {
	t.Helper()
	h := harness.NewEnv(t, kdsim.Options{})
	sim, nc, js := h.Sim, h.NC, h.JS
	kdc, err := kdapi.NewClient(kdapi.WithBaseURL(sim.URL),
		kdapi.WithAppAuth(harness.AppID, harness.AppSecret, harness.APIUserID), kdapi.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	harness.RunConsumer(t, consumer.Options{
		Conn: nc, Manage: true, Concurrency: 32, MaxAckPending: 512, PullBatch: 128,
		AckWait: 5 * time.Second, RetryInitial: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		BreakerProbe: 200 * time.Millisecond,
		Handler:      &handlers.Handler{Users: kdc, HardDelete: true},
		Logger:       harness.Logger(slog.LevelWarn),
	})
	e := &env{t: t, sim: sim, nc: nc, js: js}
	deadline := time.Now().Add(10 * time.Second)
	for {
		kv, err := js.KeyValue(t.Context(), "KDSYNC_STATE")
		if err == nil {
			e.kv = kv
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer made no state bucket: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.outs, err = harness.CollectOutcomes(t.Context(), nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.outs.Stop)
	e.tr, err = reconcile.NewTransport(nil, testRate(t))
	if err != nil {
		t.Fatal(err)
	}
	e.kd, err = kdapi.NewClient(kdapi.WithBaseURL(sim.URL),
		kdapi.WithAppAuth(harness.AppID, harness.AppSecret, harness.APIUserID),
		kdapi.WithHTTPClient(&http.Client{Transport: e.tr}), kdapi.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// seed puts n users straight into the simulator and writes the records
// kdsync would hold after hiring them, as if kdsync had.
func (e *env) seed(first uint64, n int) []kdsim.User {
	e.t.Helper()
	depts := e.sim.Departments()
	futs := make([]jetstream.PubAckFuture, 0, n)
	out := make([]kdsim.User, 0, n)
	now := time.Now().UTC()
	for i := range n {
		u := kdsim.User{
			UserID: strconv.FormatUint(first+uint64(i), 10),
			DeptID: strconv.FormatInt(depts[i%len(depts)], 10),
			Role:   []int{0, 1, 1, 1, 5}[i%5],
			Status: kdapi.StatusEnabled,
		}
		if i%17 == 0 {
			u.Status = kdapi.StatusDisabled
		}
		if _, err := e.sim.PutUserDirect(u); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, u)
		d, err := strconv.ParseInt(u.DeptID, 10, 64)
		if err != nil {
			e.t.Fatal(err)
		}
		rec, err := json.Marshal(outcome.Record{State: handlers.State{Exists: true, DeptID: &d, Role: &u.Role, Status: &u.Status}, At: now})
		if err != nil {
			e.t.Fatal(err)
		}
		f, err := e.js.PublishMsgAsync(&nats.Msg{Subject: "$KV.KDSYNC_STATE." + outcome.KVKey(u.UserID), Data: rec})
		if err != nil {
			e.t.Fatal(err)
		}
		futs = append(futs, f)
		if len(futs)%1000 == 0 {
			// Bounded batches: a loaded server otherwise stalls the
			// client's async window ("too many outstanding").
			select {
			case <-e.js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				e.t.Fatal("records not acknowledged")
			}
		}
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			e.t.Fatal(err)
		case <-time.After(30 * time.Second):
			e.t.Fatal("record not acknowledged")
		}
	}
	return out
}

// events runs events through the stream and waits for their outcomes.
func (e *env) events(evs ...checker.Event) {
	e.t.Helper()
	var ws []workload.Event
	for _, ev := range evs {
		w, err := workload.Encode(ev, "identity.employee.", "hris/test", time.Now())
		if err != nil {
			e.t.Fatal(err)
		}
		ws = append(ws, w)
	}
	before := e.outs.Distinct()
	if err := harness.Publish(e.t.Context(), e.nc, "IDENTITY", ws); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	if err := e.outs.WaitFor(ctx, before+len(ws)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) run(o reconcile.Options) *reconcile.Result {
	e.t.Helper()
	o.FromState = true
	o.KooDrive = e.kd
	o.JetStream = e.js
	o.Requests = e.tr.Requests
	o.Protect = map[string]bool{harness.APIUserID: true}
	o.MaxRepairs, o.MaxDisables = -1, -1
	before := e.sim.Stats()
	reqs := e.tr.Requests()
	start := time.Now()
	res, err := reconcile.Run(e.t.Context(), o)
	if err != nil {
		e.t.Fatal(err)
	}
	after := e.sim.Stats()
	e.t.Logf("pass %s: %s (reading KooDrive %s), %d KooDrive requests by the pass (simulator: %d listUsers, %d getUser), rate %g/s; desired %d, KooDrive %d, drifted %d %v",
		res.RunID, time.Since(start).Round(time.Millisecond), res.Read.Round(time.Millisecond), e.tr.Requests()-reqs,
		after.RequestsByOp["listUsers"]-before.RequestsByOp["listUsers"], after.RequestsByOp["getUser"]-before.RequestsByOp["getUser"],
		e.tr.Rate(), res.Totals.Desired, res.Totals.KooDrive, res.Totals.Drifted, res.Totals.ByKind)
	if res.Requests != e.tr.Requests()-reqs && reqs == 0 {
		e.t.Errorf("result says %d requests, the transport counted %d", res.Requests, e.tr.Requests()-reqs)
	}
	return res
}

// byKind lists the drifted users of each kind.
func byKind(res *reconcile.Result) map[reconcile.Kind][]string {
	out := map[reconcile.Kind][]string{}
	for _, d := range res.Drifts {
		for _, k := range d.Kinds {
			out[k] = append(out[k], d.UserID)
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

func ids(us []kdsim.User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.UserID
	}
	slices.Sort(out)
	return out
}

func TestReconcile20000Users(t *testing.T) {
	testenv.SkipShort(t, "20,000 users")
	e := newEnv(t)
	const tenant = 20000
	base := uint64(1008600000000000000)
	users := e.seed(base, tenant)

	// Through the pipeline: 50 hires of new people, 20 leavers hard-deleted.
	depts := e.sim.Departments()
	var evs []checker.Event
	for i := range 50 {
		d, r := depts[i%len(depts)], 1
		evs = append(evs, checker.Event{ID: fmt.Sprintf("hire-%d", i), Action: handlers.Hired,
			UserID: strconv.FormatUint(base+tenant+uint64(i), 10), DeptID: &d, Role: &r})
	}
	leavers := users[1000:1020]
	for i, u := range leavers {
		evs = append(evs, checker.Event{ID: fmt.Sprintf("leave-%d", i), Action: handlers.Deleted, UserID: u.UserID})
	}
	e.events(evs...)
	if n := len(e.sim.Users()); n != tenant+50-20 {
		t.Fatalf("the simulator holds %d users, want %d", n, tenant+50-20)
	}

	// A clean tenant has no drift.
	res := e.run(reconcile.Options{Complete: true})
	want := reconcile.Totals{Desired: tenant + 50, KooDrive: tenant + 30, InSync: tenant + 50, DisabledAbsent: 20,
		ByKind: map[reconcile.Kind]int{"missing": 0, "unexpected": 0, "dept": 0, "role": 0, "status": 0}}
	if diff := cmp.Diff(want, res.Totals); diff != "" || len(res.Drifts) != 0 {
		t.Fatalf("clean tenant: totals (-want +got):\n%s\ndrifts: %+v", diff, res.Drifts)
	}
	if res.State == nil || res.State.Records != tenant+50 || res.State.Deleted != 20 {
		t.Fatalf("state: %+v", res.State)
	}

	// Console edits behind kdsync's back.
	other := func(u kdsim.User) string {
		for _, d := range depts {
			if s := strconv.FormatInt(d, 10); s != u.DeptID && s != "1243693141656107521" {
				return s
			}
		}
		t.Fatal("no other department")
		return ""
	}
	edit := func(u kdsim.User) {
		if _, err := e.sim.PutUserDirect(u); err != nil {
			t.Fatal(err)
		}
	}
	moved, promoted, flipped, mixed := users[0:100], users[100:150], users[150:200], users[200:210]
	for _, u := range moved {
		u.DeptID = other(u)
		edit(u)
	}
	for _, u := range promoted {
		u.Role = map[int]int{0: 1, 1: 5, 5: 0}[u.Role]
		edit(u)
	}
	for _, u := range flipped {
		u.Status = 1 - u.Status
		edit(u)
	}
	for _, u := range mixed {
		u.DeptID, u.Role, u.Status = other(u), map[int]int{0: 1, 1: 5, 5: 0}[u.Role], 1-u.Status
		edit(u)
	}
	var removed []kdsim.User // enabled ones: a disabled user's removal is in sync
	for _, u := range users[300:] {
		if len(removed) < 40 && u.Status == kdapi.StatusEnabled {
			removed = append(removed, u)
		}
	}
	for _, u := range removed {
		if !e.sim.DeleteUserDirect(u.UserID) {
			t.Fatalf("%s was not there", u.UserID)
		}
	}
	var strangers []kdsim.User
	for i := range 30 {
		u := kdsim.User{UserID: strconv.FormatUint(2008600000000000000+uint64(i), 10), DeptID: strconv.FormatInt(depts[1], 10), Role: 1}
		if i < 2 {
			u.Status = kdapi.StatusDisabled // not listed but disabled: in sync
		}
		edit(u)
		strangers = append(strangers, u)
	}
	back := leavers[:3] // hard-deleted by kdsync, put back enabled
	for _, u := range back {
		u.Status = kdapi.StatusEnabled
		edit(u)
	}
	for _, u := range leavers[3:5] { // put back disabled: in sync
		u.Status = kdapi.StatusDisabled
		edit(u)
	}

	// Without -complete the strangers are only counted.
	res = e.run(reconcile.Options{})
	got := byKind(res)
	wantKinds := map[reconcile.Kind][]string{
		reconcile.KindDept:       ids(append(slices.Clone(moved), mixed...)),
		reconcile.KindRole:       ids(append(slices.Clone(promoted), mixed...)),
		reconcile.KindStatus:     ids(append(slices.Clone(flipped), mixed...)),
		reconcile.KindMissing:    ids(removed),
		reconcile.KindUnexpected: ids(back),
	}
	if diff := cmp.Diff(wantKinds, got); diff != "" {
		t.Fatalf("drift without -complete (-want +got):\n%s", diff)
	}
	if res.Totals.NotDesired != 30 || res.Totals.Drifted != 100+50+50+10+40+3 {
		t.Fatalf("totals without -complete: %+v", res.Totals)
	}

	// With -complete the enabled strangers are unexpected too.
	res = e.run(reconcile.Options{Complete: true})
	wantKinds[reconcile.KindUnexpected] = ids(append(slices.Clone(back), strangers[2:]...))
	if diff := cmp.Diff(wantKinds, byKind(res)); diff != "" {
		t.Fatalf("drift with -complete (-want +got):\n%s", diff)
	}
	if res.Totals.NotDesiredDisabled != 2 {
		t.Errorf("not listed but disabled: %d, want 2", res.Totals.NotDesiredDisabled)
	}
	wantRepairs := map[handlers.Action]int{handlers.Hired: 40, handlers.Changed: 210, handlers.Disabled: 31}
	if diff := cmp.Diff(wantRepairs, res.Repairs); diff != "" || res.Unrepairable != 0 {
		t.Fatalf("repairs (-want +got):\n%s\nunrepairable %d", diff, res.Unrepairable)
	}
	for _, d := range res.Drifts {
		if d.Repair.Sequence != 0 || d.Repair.NotPublished != "" {
			t.Fatalf("a dry run published %+v", d.Repair)
		}
	}
	st, err := e.js.Stream(t.Context(), "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 70 {
		t.Fatalf("a dry run changed the stream: %d messages, want 70", info.State.Msgs)
	}

	// Apply: the consumer applies every repair.
	writes := e.sim.Stats().Writes
	res = e.run(reconcile.Options{Complete: true, Apply: true, Wait: 30 * time.Second})
	p := res.Publish
	if p == nil || p.Published != 281 || p.Superseded != 0 || p.Duplicates != 0 || p.Failed != 0 {
		t.Fatalf("publish: %+v", p)
	}
	if diff := cmp.Diff(map[string]int{"applied": 281}, res.Outcomes); diff != "" {
		t.Fatalf("outcomes (-want +got):\n%s", diff)
	}
	for _, d := range res.Drifts {
		if d.Repair.Outcome == nil || d.Repair.Outcome.EventID != d.Repair.EventID {
			t.Fatalf("%s: outcome %+v", d.UserID, d.Repair.Outcome)
		}
	}
	if w := e.sim.Stats().Writes - writes; w < 281 {
		t.Errorf("the simulator applied %d writes for 281 repairs", w)
	}
	if s := e.sim.Stats(); s.Deletes != 20 {
		t.Errorf("%d deletes: reconciliation must never delete", s.Deletes)
	}

	// Repaired: no drift.
	res = e.run(reconcile.Options{Complete: true})
	if res.Totals.Drifted != 0 {
		t.Fatalf("drift after the repairs: %+v\n%+v", res.Totals, res.Drifts)
	}
	for _, u := range strangers[2:] {
		if rec, _ := e.sim.User(u.UserID); rec.User == nil || rec.User.Status != kdapi.StatusDisabled {
			t.Errorf("unexpected user %s not disabled: %+v", u.UserID, rec.User)
		}
	}

	// The same pass published twice stores its repair once: the second
	// time the user's last event is the first repair (the guard), or the
	// stream knows the event id (the duplicate window).
	e.sim.DeleteUserDirect(removed[0].UserID)
	res = e.run(reconcile.Options{Complete: true, RunID: "again"})
	if res.Totals.Drifted != 1 {
		t.Fatalf("drift: %+v", res.Totals)
	}
	st, err = e.js.Stream(t.Context(), "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	var sums []reconcile.PublishSummary
	for range 2 {
		if err := reconcile.Plan(res.Drifts, reconcile.PlanOptions{RunID: "again"}); err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		sum, err := reconcile.Publish(t.Context(), e.js, res.Drifts, reconcile.PublishOptions{Since: info.State.LastSeq})
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum)
	}
	if sums[0].Published != 1 || sums[1].Published != 0 || sums[1].Superseded+sums[1].Duplicates != 1 {
		t.Fatalf("publishing the same pass twice: %+v", sums)
	}
}
