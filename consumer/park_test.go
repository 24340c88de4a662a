package consumer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// offboarding builds a history for users: each is hired and moved; the
// first disabled of them (a share) are then disabled, and every fourth of
// those gets a role change after the disable. The users' events are
// interleaved at random, each user's in order.
func offboarding(t *testing.T, e *env, users int, disabled float64, seed uint64) []workload.Event {
	t.Helper()
	depts := e.sim.Departments()
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	per := make([][]checker.Event, users)
	nDis := int(float64(users) * disabled)
	for u := range users {
		id := strconv.Itoa(2000000 + u)
		dept, dept2 := depts[rng.IntN(len(depts))], depts[rng.IntN(len(depts))]
		role, role2 := 1, 5
		evs := []checker.Event{
			{ID: fmt.Sprintf("h-%d", u), UserID: id, Action: handlers.Hired, DeptID: &dept, Role: &role},
			{ID: fmt.Sprintf("m-%d", u), UserID: id, Action: handlers.Changed, DeptID: &dept2},
		}
		if u < nDis {
			evs = append(evs, checker.Event{ID: fmt.Sprintf("d-%d", u), UserID: id, Action: handlers.Disabled})
			if u%4 == 0 {
				evs = append(evs, checker.Event{ID: fmt.Sprintf("r-%d", u), UserID: id, Action: handlers.Changed, DeptID: &dept2, Role: &role2})
			}
		}
		per[u] = evs
	}
	var out []workload.Event
	live := make([]int, users)
	for i := range live {
		live[i] = i
	}
	next := make([]int, users)
	now := time.Now().UTC()
	for len(live) > 0 {
		k := rng.IntN(len(live))
		u := live[k]
		ev, err := workload.Encode(per[u][next[u]], "identity.employee.", "hris/test", now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
		if next[u]++; next[u] == len(per[u]) {
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
	}
	return out
}

// heldUsers returns the users with a hold pending and the first held
// event's id of each.
func heldUsers(t *testing.T, st *guard.Store) map[string]string {
	t.Helper()
	held, err := st.Held(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, h := range held {
		if _, ok := out[h.UserID]; !ok && h.Decision == guard.Pending {
			out[h.UserID] = h.EventID
		}
	}
	return out
}

// wrongUsers compares KooDrive with what the events imply: for a user
// with a held event, the events before it only (nothing after it may have
// been applied). It returns the users that differ.
func wrongUsers(evs []workload.Event, final map[string]checker.UserState, held map[string]string) []string {
	byUser := map[string][]checker.Event{}
	for _, ev := range evs {
		byUser[ev.UserID] = append(byUser[ev.UserID], ev.Intent)
	}
	var wrong []string
	for user, list := range byUser {
		if id, ok := held[user]; ok {
			i := slices.IndexFunc(list, func(ev checker.Event) bool { return ev.ID == id })
			list = list[:i]
		}
		want := checker.Implied(list, false)[user]
		got, ok := final[user]
		if want == nil {
			if ok {
				wrong = append(wrong, user)
			}
			continue
		}
		if !ok || got != *want {
			wrong = append(wrong, user)
		}
	}
	slices.Sort(wrong)
	return wrong
}

// TestParkedLeaveAckWindow: far more deprovisions are held than the ack
// window holds. The held events and their users' later events are parked
// and acknowledged, so every other user keeps flowing; the parked events
// survive a restart; a rejected disable is skipped and its user's later
// event applied after it; released ones are applied in order, each with
// one outcome carrying its original stream and sequence.
func TestParkedLeaveAckWindow(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	evs := offboarding(t, e, 120, 0.5, 11) // 60 disables against a window of 16
	opts := e.options()
	opts.Concurrency, opts.MaxAckPending, opts.PullBatch = 4, 16, 16
	opts.DeprovisionLimit = guard.Limit{N: 5, Window: time.Hour}
	stop := e.run(opts)
	o := e.collect()
	e.publish(evs)
	st, err := guard.Open(context.Background(), e.js(), "KDSYNC_GUARD", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	var held map[string]string
	var wrong []string
	waitFor(t, 60*time.Second, "every user without a hold right, 55 held", func() bool {
		held = heldUsers(t, st)
		wrong = wrongUsers(evs, e.sim.Final(), held)
		return len(held) == 55 && len(wrong) == 0
	})
	cons, err := e.js().Consumer(context.Background(), "IDENTITY", "kdsync")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "nothing left unacknowledged", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	parked := 0
	for _, ev := range evs {
		if _, ok := held[ev.UserID]; ok && ev.Action != handlers.Hired && ev.ID[0] != 'm' {
			parked++
		}
	}
	if n := o.Distinct(); n != len(evs)-parked {
		t.Fatalf("%d outcomes, want %d: all but the %d parked", n, len(evs)-parked, parked)
	}

	// Parked events survive a restart, and stay parked.
	stop()
	stop = e.run(opts)
	defer stop()
	if got := heldUsers(t, st); len(got) != 55 {
		t.Fatalf("%d held after a restart, want 55", len(got))
	}

	// Reject a held user who has a role change parked behind the disable.
	var rejected string
	holds, err := st.Held(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range holds {
		if n, _ := strconv.Atoi(h.UserID); (n-2000000)%4 == 0 {
			rejected = h.EventID
			if _, err := st.Decide(context.Background(), []uint64{h.Seq}, guard.Reject, "test"); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if rejected == "" {
		t.Fatal("no held user with a parked role change")
	}
	if _, err := st.Decide(context.Background(), nil, guard.Release, "test"); err != nil {
		t.Fatal(err)
	}
	e.wait(o, len(evs), 60*time.Second)
	time.Sleep(200 * time.Millisecond) // late duplicates would show
	var kept []workload.Event
	for _, ev := range evs {
		if ev.ID != rejected {
			kept = append(kept, ev)
		}
	}
	var outs []outcome.Outcome
	js := e.js()
	idStream, err := js.Stream(context.Background(), "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range o.All() {
		if out.EventID == rejected {
			if out.Result != outcome.Skipped || out.Reason != outcome.SkipGuardRejected {
				t.Fatalf("rejected event: %s/%s", out.Result, out.Reason)
			}
			continue
		}
		outs = append(outs, out)
		// Each outcome names its original message.
		m, err := idStream.GetMsg(context.Background(), out.Sequence)
		if err != nil || out.Stream != "IDENTITY" || m.Subject != out.Subject {
			t.Fatalf("outcome of %s names %s:%d (%v), whose subject is not %s", out.EventID, out.Stream, out.Sequence, err, out.Subject)
		}
	}
	r := checker.Check(checker.Input{
		Events:   harness.CheckerEvents(kept),
		Effects:  e.sim.Effects(harness.UserIDs(evs)),
		Outcomes: outs,
		Final:    e.sim.Final(),
	})
	t.Log(r)
	if !r.OK() {
		t.Fatalf("checker: %s", r)
	}
	waitFor(t, 10*time.Second, "the parking stream emptied", func() bool {
		s, err := js.Stream(context.Background(), "KDSYNC_PARKED")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
	if left, _ := st.Held(context.Background()); len(left) != 0 {
		t.Fatalf("%d holds left", len(left))
	}
}

// TestMassOffboardingKeepsFlowing is the acceptance run: the guard
// at 50/10m, users of whom 40% end disabled, published as a backlog. Every
// user without a held event is right while the rest are held, and
// releasing them all brings every user right with no stale write. CI runs
// 600 users against an ack window of 64; KDSYNC_PARK_FULL=1 runs 3,000
// against 256.
func TestMassOffboardingKeepsFlowing(t *testing.T) {
	users, window := 600, 64
	if os.Getenv("KDSYNC_PARK_FULL") != "" {
		users, window = 3000, 256
	}
	e := newEnv(t, kdsim.Faults{})
	evs := offboarding(t, e, users, 0.4, 16)
	opts := e.options()
	opts.MaxAckPending = window
	opts.Concurrency = min(64, window)
	opts.PullBatch = min(128, window)
	opts.DeprovisionLimit = guard.Limit{N: 50, Window: 10 * time.Minute}
	e.publish(evs)
	start := time.Now()
	stop := e.run(opts)
	defer stop()
	o := e.collect()
	var st *guard.Store
	waitFor(t, 30*time.Second, "the guard's bucket", func() bool {
		var err error
		st, err = guard.Open(context.Background(), e.js(), "KDSYNC_GUARD", 1, false)
		return err == nil
	})
	wantHeld := int(float64(users)*0.4) - 50
	var held map[string]string
	var wrong []string
	waitFor(t, 5*time.Minute, "every user without a held event right", func() bool {
		held = heldUsers(t, st)
		wrong = wrongUsers(evs, e.sim.Final(), held)
		return len(held) == wantHeld && len(wrong) == 0
	})
	t.Logf("%d users, %d events, ack window %d: every user without a held event right after %s, %d held",
		users, len(evs), window, time.Since(start).Round(100*time.Millisecond), len(held))
	released := time.Now()
	if _, err := st.Decide(context.Background(), nil, guard.Release, "test"); err != nil {
		t.Fatal(err)
	}
	e.wait(o, len(evs), 5*time.Minute)
	t.Logf("released: every event finished after %s", time.Since(released).Round(100*time.Millisecond))
	e.check(evs, o, false)
}
