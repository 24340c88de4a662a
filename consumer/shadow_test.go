package consumer_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// TestShadowMatchesActive runs shadow mode first: it writes nothing to
// KooDrive, and its outcomes (result and planned calls per event) match
// what the active mode then does.
func TestShadowMatchesActive(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	evs := e.generate(60, 5, 23)
	// Some users exist in KooDrive already (a rehire upserts) and one
	// event is for a user that does not exist (dead-lettered in both).
	for _, ev := range evs[:5] {
		if _, err := e.sim.PutUserDirect(kdsim.User{UserID: ev.UserID, DeptID: "1319678187126486147", Role: 1}); err != nil {
			t.Fatal(err)
		}
	}
	e.publish(evs)
	shadowOpts := e.options()
	shadowOpts.NoDLQ = true
	shadowOpts.Consumer = "kdsync-shadow"
	shadowOpts.OutcomeStream, shadowOpts.OutcomePrefix = "KDSYNC_SHADOW", "kdsync.shadow"
	shadowOpts.StateBucket = "KDSYNC_SHADOW_STATE"
	shadowOpts.Handler = handlers.Shadow{Handler: &handlers.Handler{Users: e.kd}}
	stop := e.run(shadowOpts)
	shadowOut, err := harness.CollectOutcomes(t.Context(), e.nc, "KDSYNC_SHADOW")
	if err != nil {
		t.Fatal(err)
	}
	defer shadowOut.Stop()
	e.wait(shadowOut, len(evs), 60*time.Second)
	stop()
	writesBefore := e.sim.Stats().Writes
	if writesBefore != 0 {
		t.Fatalf("shadow mode wrote to KooDrive: %d writes", writesBefore)
	}

	stop = e.run(e.options())
	active := e.collect()
	e.wait(active, len(evs), 60*time.Second)
	stop()

	byID := func(outs []outcome.Outcome) map[string]outcome.Outcome {
		m := map[string]outcome.Outcome{}
		for _, o := range outs {
			m[o.EventID] = o
		}
		return m
	}
	sh, ac := byID(shadowOut.All()), byID(active.All())
	planned, diffs := 0, 0
	for _, ev := range evs {
		s, a := sh[ev.ID], ac[ev.ID]
		if s.Result != a.Result || s.Reason != a.Reason {
			t.Errorf("%s (%s): shadow %s/%s, active %s/%s (%s)", ev.ID, ev.Action, s.Result, s.Reason, a.Result, a.Reason, a.Error)
			continue
		}
		var calls []string
		for _, p := range s.Plan {
			calls = append(calls, p.Method+" "+strings.Replace(p.Path, "/"+ev.UserID, "/{userId}", 1))
		}
		var writes []string
		for _, c := range a.Calls {
			if !strings.HasPrefix(c, "GET ") {
				writes = append(writes, c)
			}
		}
		if strings.Join(calls, ",") != strings.Join(writes, ",") {
			t.Errorf("%s (%s): shadow planned %v, active made %v", ev.ID, ev.Action, calls, writes)
		}
		planned += len(s.Plan)
		diffs += len(s.Diff)
	}
	if planned == 0 || diffs == 0 {
		t.Fatalf("shadow mode planned %d calls changing %d fields", planned, diffs)
	}
	e.check(evs, active, false)
}

// TestShadowBesideActive runs a shadow instance beside an active one, both
// partitioned and guarded, with the names kdsync run -shadow gives the
// shadow by default (cmd/kdsync TestShadowOptionsApart). The shadow takes
// no partition from the active instance (which alone works them all), its
// guard counts and holds apart, and an operator's rejection of the
// shadow's holds leaves the active instance's holds pending: a held
// disable is applied only when released in the active bucket. The shadow
// writes nothing to KooDrive.
func TestShadowBesideActive(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	const users, limit = 8, 3
	l := guard.Limit{N: limit, Window: time.Hour}
	active := e.options()
	active.Partitions, active.InstanceID, active.DeprovisionLimit = 2, "active", l
	active.Heartbeat, active.PinnedTTL = 300*time.Millisecond, 2*time.Second
	stopActive := e.run(active)
	defer func() { stopActive() }()

	shadow := active
	shadow.InstanceID = "shadow"
	shadow.NoDLQ = true
	// The shadow's own client, counting every request that is not a read.
	var shadowWrites atomic.Int64
	skd, err := kdapi.NewClient(kdapi.WithBaseURL(e.sim.URL),
		kdapi.WithAppAuth(harness.AppID, harness.AppSecret, harness.APIUserID),
		kdapi.WithHTTPClient(&http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodGet {
				shadowWrites.Add(1)
			}
			return http.DefaultTransport.RoundTrip(r)
		})}))
	if err != nil {
		t.Fatal(err)
	}
	shadow.Handler = handlers.Shadow{Handler: &handlers.Handler{Users: skd}}
	shadow.Consumer, shadow.OutcomeStream, shadow.OutcomePrefix = "kdsync-shadow", "KDSYNC_SHADOW", "kdsync.shadow"
	shadow.StateBucket, shadow.GuardBucket, shadow.MembersBucket = "KDSYNC_SHADOW_STATE", "KDSYNC_SHADOW_GUARD", "KDSYNC_SHADOW_MEMBERS"
	shadow.ParkStream, shadow.ParkPrefix = "KDSYNC_SHADOW_PARKED", "kdsync.shadow-parked"
	time.Sleep(500 * time.Millisecond) // the active instance partitions the stream first
	stopShadow := e.run(shadow)
	defer func() { stopShadow() }()

	ao := e.collect()
	so, err := harness.CollectOutcomes(t.Context(), e.nc, "KDSYNC_SHADOW")
	if err != nil {
		t.Fatal(err)
	}
	defer so.Stop()
	hires := e.generate(users, 1, 41)
	var disables []workload.Event
	for _, h := range hires {
		d, err := workload.Encode(eventOf(h, "d", handlers.Disabled), "identity.employee.", "t", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		disables = append(disables, d)
	}
	e.publish(hires)
	e.wait(ao, users, 30*time.Second) // every partition is worked by the active instance
	e.wait(so, users, 30*time.Second)
	e.publish(disables)
	e.wait(ao, users+limit, 30*time.Second)
	e.wait(so, users+limit, 30*time.Second)

	ctx := context.Background()
	js := e.js()
	activeGuard, err := guard.Open(ctx, js, "KDSYNC_GUARD", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	shadowGuard, err := guard.Open(ctx, js, "KDSYNC_SHADOW_GUARD", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	pending := func(st *guard.Store) int {
		t.Helper()
		held, err := st.Held(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, h := range held {
			if h.Decision == guard.Pending {
				n++
			}
		}
		return n
	}
	// Each counted its own window: the active instance's 3 admitted
	// disables were not spent by the shadow's.
	// (The outcomes above are the admitted events: the others are held as
	// each reaches the guard, a moment later.)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		a, s := pending(activeGuard), pending(shadowGuard)
		if a == users-limit && s == users-limit {
			break
		}
		if a > users-limit || s > users-limit || time.Now().After(deadline) {
			t.Fatalf("pending holds: active %d, shadow %d; want %d each", a, s, users-limit)
		}
	}

	// Rejecting the shadow's holds finishes them there only.
	if _, err := shadowGuard.Decide(ctx, nil, guard.Reject, "test"); err != nil {
		t.Fatal(err)
	}
	e.wait(so, 2*users, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := pending(activeGuard); n != users-limit {
		t.Fatalf("after the shadow's holds were rejected, the active instance has %d pending, want %d", n, users-limit)
	}
	if n := ao.Distinct(); n != users+limit {
		t.Fatalf("the active instance finished %d events while its holds were pending, want %d", n, users+limit)
	}

	if _, err := activeGuard.Decide(ctx, nil, guard.Release, "test"); err != nil {
		t.Fatal(err)
	}
	e.wait(ao, 2*users, 30*time.Second)
	stopShadow()
	stopShadow = func() {}
	stopActive()
	stopActive = func() {}
	for _, out := range ao.All() {
		if out.Result != outcome.Applied {
			t.Errorf("active: %s %s %s/%s; want applied", out.UserID, out.Action, out.Result, out.Reason)
		}
	}
	rejected := 0
	for _, out := range so.All() {
		if out.Result == outcome.Skipped && out.Reason == outcome.SkipGuardRejected {
			rejected++
		}
	}
	if rejected != users-limit {
		t.Errorf("shadow: %d guard_rejected outcomes, want %d", rejected, users-limit)
	}
	if n := shadowWrites.Load(); n != 0 {
		t.Errorf("the shadow instance sent %d requests other than reads to KooDrive", n)
	}
	// At least the active instance's (a call abandoned on a lapsed lease
	// fence under load may have been applied and is made again).
	if w := e.sim.Stats().Writes; w < 2*users {
		t.Errorf("KooDrive saw %d writes; want the active instance's %d", w, 2*users)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
