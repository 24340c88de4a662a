package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// TestGuardHoldsSurvivesRestartAndReleases sends a mass offboarding past
// the limit: the disables beyond it are held (not applied, not
// acknowledged) while hires flow, the holds survive a restart, a held
// user's later event waits behind its hold, and once released everything
// is applied in order; a rejected one gets its own outcome.
func TestGuardHoldsSurvivesRestartAndReleases(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	const users = 12
	hires, err := workload.Generate(workload.Options{Users: users, EventsPerUser: 1, Departments: e.sim.Departments(), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var disables, enables []workload.Event
	for i, h := range hires {
		d, err := workload.Encode(eventOf(h, "d", handlers.Disabled), "identity.employee.", "t", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		disables = append(disables, d)
		if i == users-1 {
			en, err := workload.Encode(eventOf(h, "e", handlers.Enabled), "identity.employee.", "t", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			enables = append(enables, en)
		}
	}
	opts := e.options()
	opts.DeprovisionLimit = guard.Limit{N: 5, Window: time.Hour}
	stop := e.run(opts)
	o := e.collect()
	e.publish(hires)
	e.publish(disables[:5])
	e.wait(o, users+5, 30*time.Second)
	e.publish(disables[5:])
	e.publish(enables) // the last user is re-enabled: it must wait behind its held disable
	time.Sleep(500 * time.Millisecond)
	if n := o.Distinct(); n != users+5 {
		t.Fatalf("%d outcomes; want the %d hires and the first 5 disables only", n, users)
	}
	js := e.js()
	st, err := guard.Open(context.Background(), js, "KDSYNC_GUARD", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	held, err := st.Held(context.Background())
	if err != nil || len(held) != users-5 {
		t.Fatalf("held %d (%v), want %d", len(held), err, users-5)
	}
	// The holds survive a restart.
	stop()
	stop = e.run(opts)
	time.Sleep(time.Second)
	if n := o.Distinct(); n != users+5 {
		t.Fatalf("after a restart %d outcomes; held events were applied", n)
	}
	// Reject the first held one, release the rest.
	if _, err := st.Decide(context.Background(), []uint64{held[0].Seq}, guard.Reject, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Decide(context.Background(), nil, guard.Release, "test"); err != nil {
		t.Fatal(err)
	}
	e.wait(o, users*2+1, 30*time.Second)
	stop()
	var rejected int
	for _, out := range o.All() {
		if out.Result == outcome.Skipped && out.Reason == outcome.SkipGuardRejected {
			rejected++
		}
	}
	if rejected != 1 {
		t.Fatalf("%d rejected outcomes, want 1", rejected)
	}
	final := e.sim.Final()
	last := hires[users-1].UserID
	if final[last].Status != 0 {
		t.Fatalf("the re-enabled user ends disabled: its enable overtook its held disable")
	}
	disabled := 0
	for _, h := range hires[:users-1] {
		if final[h.UserID].Status == 1 {
			disabled++
		}
	}
	if disabled != users-2 { // all but the rejected one and the re-enabled one
		t.Fatalf("%d users disabled, want %d", disabled, users-2)
	}
	if left, err := st.Held(context.Background()); err != nil || len(left) != 0 {
		t.Fatalf("%d holds left after their outcomes (%v)", len(left), err)
	}
}

func eventOf(h workload.Event, suffix string, a handlers.Action) checker.Event {
	ev := h.Intent
	ev.ID = h.ID + "-" + suffix
	ev.Action = a
	ev.DeptID, ev.Role = nil, nil
	return ev
}
