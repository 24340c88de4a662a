package consumer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
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
	shadowOpts.Shadow = true
	shadowOpts.Consumer = "kdsync-shadow"
	shadowOpts.OutcomeStream, shadowOpts.OutcomePrefix = "KDSYNC_SHADOW", "kdsync.shadow"
	shadowOpts.StateBucket = "KDSYNC_SHADOW_STATE"
	shadowOpts.Handler = &handlers.Handler{Users: handlers.Shadow{Users: e.kd}}
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

	byID := func(outs []consumer.Outcome) map[string]consumer.Outcome {
		m := map[string]consumer.Outcome{}
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
