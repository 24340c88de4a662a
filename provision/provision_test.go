package provision_test

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/provision"
)

// TestSyncRepairsADepartmentChangedBehindKdsync: KooDrive's console moved
// the user; a sync publishes employee.changed back to kdsync's department,
// the consumer applies it, and KooDrive matches again.
func TestSyncRepairsADepartmentChangedBehindKdsync(t *testing.T) {
	p := harness.NewPipeline(t, harness.PipelineOptions{})
	depts := p.Sim.Departments()
	const user = "1008600000000000011"
	seq := p.Publish("s-1", handlers.Hired, user, map[string]any{"deptId": strconv.FormatInt(depts[0], 10), "role": 1})
	if o := p.WaitOutcome(seq, 10*time.Second); o.Result != outcome.Applied {
		t.Fatalf("hire: %+v", o)
	}
	// Sync reads the desired state from the record, stored beside the
	// outcome: wait for it too.
	p.WaitRecord(user, seq, 10*time.Second)
	moved := strconv.FormatInt(depts[1], 10)
	if _, err := p.Sim.PutUserDirect(kdsim.User{UserID: user, DeptID: moved, Role: 1}); err != nil {
		t.Fatal(err)
	}
	o := provision.Options{JetStream: p.JS, KooDrive: p.KD, Wait: 10 * time.Second}

	// A dry run decides and publishes nothing.
	o.DryRun = true
	res, err := provision.Sync(t.Context(), o, user)
	if err != nil {
		t.Fatal(err)
	}
	if res.InSync || res.Repair == nil || res.Repair.Action != handlers.Changed || res.Repair.Published() {
		t.Fatalf("dry run: %+v", res)
	}
	if u, _ := p.Sim.User(user); u.User.DeptID != moved {
		t.Fatalf("dry run changed KooDrive: dept %s", u.User.DeptID)
	}
	if n := len(p.Outcomes.All()); n != 1 {
		t.Fatalf("dry run: %d outcomes, want only the hire's", n)
	}

	o.DryRun = false
	var steps []string
	o.Steps = func(s provision.Step) { steps = append(steps, s.Name) }
	res, err = provision.Sync(t.Context(), o, user)
	if err != nil {
		t.Fatalf("sync: %v (steps %+v)", err, res.Steps)
	}
	want := []string{provision.StepDesired, provision.StepScope, provision.StepKooDrive, provision.StepDecide,
		provision.StepApply, provision.StepOutcome, provision.StepVerify}
	if !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
	if !res.InSync || res.Repair.Outcome == nil || res.Repair.Outcome.Result != outcome.Applied {
		t.Fatalf("sync: %+v", res)
	}
	if u, _ := p.Sim.User(user); u.User.DeptID != strconv.FormatInt(depts[0], 10) {
		t.Fatalf("KooDrive dept %s after the sync, want %d", u.User.DeptID, depts[0])
	}
	// The repair went through the stream: the user's record moves to it.
	if rec := p.WaitRecord(user, res.Repair.Sequence, 10*time.Second); rec.Seq != res.Repair.Sequence {
		t.Errorf("record after the sync at #%d, want #%d", rec.Seq, res.Repair.Sequence)
	}

	// In sync now: nothing to do.
	res, err = provision.Sync(t.Context(), o, user)
	if err != nil || !res.InSync || res.Repair != nil {
		t.Fatalf("second sync: %+v %v", res, err)
	}
}

func TestSyncRefuses(t *testing.T) {
	p := harness.NewPipeline(t, harness.PipelineOptions{})
	depts := p.Sim.Departments()
	const user = "1008600000000000021"
	seq := p.Publish("r-1", handlers.Hired, user, map[string]any{"deptId": strconv.FormatInt(depts[0], 10)})
	p.WaitOutcome(seq, 10*time.Second)

	o := provision.Options{JetStream: p.JS, KooDrive: p.KD, Wait: 500 * time.Millisecond}
	if _, err := provision.Sync(t.Context(), o, "1008600000000000999"); !errors.Is(err, provision.ErrNoDesired) {
		t.Errorf("unknown user: %v", err)
	}
	o.Protect = map[string]bool{user: true}
	if _, err := provision.Sync(t.Context(), o, user); !errors.Is(err, provision.ErrOutOfScope) {
		t.Errorf("protected user: %v", err)
	}
	o.Protect = nil
	// With kdsync stopped the repair is published but has no outcome.
	p.Stop()
	if !p.Sim.DeleteUserDirect(user) {
		t.Fatal("no user to delete")
	}
	res, err := provision.Sync(t.Context(), o, user)
	if !errors.Is(err, provision.ErrNotApplied) || res.Repair == nil || !res.Repair.Published() || res.Repair.Action != handlers.Hired {
		t.Errorf("no consumer: %+v %v", res, err)
	}
	if last := res.Steps[len(res.Steps)-1]; !last.Failed || last.Name != provision.StepOutcome {
		t.Errorf("last step %+v", last)
	}
}
