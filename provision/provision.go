// Package provision puts one user right now ("provision on demand"): it
// reads what KooDrive should hold for the user (kdsync's record of the
// events it applied), reads what KooDrive holds, and when they differ
// publishes the repair as an identity event into the stream, as
// reconciliation does (reconcile.Plan and reconcile.Publish: a
// deterministic event id, guarded against overtaking a newer event). The
// consumer applies it in the user's order with every other event, so the
// order and the watermark hold. Sync then waits for that event's outcome
// and reads KooDrive again to check the result.
//
// Every step is reported as it happens (Options.Steps), for a terminal or
// the console.
package provision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/reconcile"
)

// Options say where the user's state is and how to act.
type Options struct {
	// JetStream and KooDrive are required.
	JetStream jetstream.JetStream
	KooDrive  reconcile.Getter

	Stream        string // default IDENTITY
	SubjectPrefix string // default identity.employee
	OutcomeStream string // default KDSYNC_OUTCOMES
	OutcomePrefix string // default kdsync.outcome
	StateBucket   string // default KDSYNC_STATE
	// Protect lists users never changed (the user kdsync's KooDrive app
	// acts as).
	Protect map[string]bool
	// DisableAdmins lets an administrator be disabled (see
	// reconcile.PlanOptions).
	DisableAdmins bool
	// Wait bounds the wait for the repair's outcome; default 30s.
	Wait time.Duration
	// DryRun stops before publishing.
	DryRun bool
	// Source is the repair event's CloudEvents source; default
	// kdsync/sync.
	Source string
	// Steps, when set, is told each step as it happens.
	Steps func(Step)
}

// Step is one step of a sync.
type Step struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Failed: the step ended the sync with an error.
	Failed bool `json:"failed,omitempty"`
}

// The steps, in order.
const (
	StepDesired  = "desired state"
	StepScope    = "scope and mapping"
	StepKooDrive = "read KooDrive"
	StepDecide   = "decide"
	StepApply    = "apply"
	StepOutcome  = "outcome"
	StepVerify   = "verify"
)

// Result is what a sync found and did.
type Result struct {
	UserID  string             `json:"userId"`
	Desired *reconcile.Desired `json:"desired,omitempty"`
	// Before and After are KooDrive's user before and after (nil: absent).
	Before *reconcile.Actual `json:"before,omitempty"`
	After  *reconcile.Actual `json:"after,omitempty"`
	// Drift is nil when the user was in sync.
	Drift  *reconcile.Drift  `json:"drift,omitempty"`
	Repair *reconcile.Repair `json:"repair,omitempty"`
	// InSync: KooDrive matches the desired state at the end.
	InSync bool   `json:"inSync"`
	DryRun bool   `json:"dryRun,omitempty"`
	Steps  []Step `json:"steps"`
}

// Errors a sync ends with; the message says more.
var (
	// ErrNoDesired: nothing says what the user should look like.
	ErrNoDesired = errors.New("provision: no desired state")
	// ErrOutOfScope: the user is never changed by kdsync.
	ErrOutOfScope = errors.New("provision: out of scope")
	// ErrNotApplied: the repair was not published, not applied, or its
	// outcome did not come in time.
	ErrNotApplied = errors.New("provision: repair not applied")
	// ErrStillDrifts: the repair was applied but KooDrive still differs.
	ErrStillDrifts = errors.New("provision: KooDrive still differs")
)

// Sync puts user right, step by step. It returns the result so far with
// any error.
func Sync(ctx context.Context, o Options, user string) (*Result, error) {
	if o.JetStream == nil || o.KooDrive == nil {
		return nil, errors.New("provision: JetStream and KooDrive are required")
	}
	o.Stream = cmp.Or(o.Stream, outcome.DefaultStream)
	o.SubjectPrefix = cmp.Or(o.SubjectPrefix, reconcile.DefaultSubjectPrefix)
	o.OutcomeStream = cmp.Or(o.OutcomeStream, outcome.DefaultOutcomeStream)
	o.OutcomePrefix = cmp.Or(o.OutcomePrefix, outcome.DefaultOutcomePrefix)
	o.StateBucket = cmp.Or(o.StateBucket, outcome.DefaultStateBucket)
	o.Source = cmp.Or(o.Source, "kdsync/sync")
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	res := &Result{UserID: user, DryRun: o.DryRun, Steps: []Step{}}
	step := func(name, format string, args ...any) {
		s := Step{Name: name, Detail: fmt.Sprintf(format, args...)}
		res.Steps = append(res.Steps, s)
		if o.Steps != nil {
			o.Steps(s)
		}
	}
	fail := func(name string, err error) (*Result, error) {
		s := Step{Name: name, Detail: err.Error(), Failed: true}
		res.Steps = append(res.Steps, s)
		if o.Steps != nil {
			o.Steps(s)
		}
		return res, err
	}

	kv, err := o.JetStream.KeyValue(ctx, o.StateBucket)
	if err != nil {
		return fail(StepDesired, fmt.Errorf("state bucket %s: %w", o.StateBucket, err))
	}
	d, ok, err := reconcile.ReadUser(ctx, kv, user)
	if err != nil {
		return fail(StepDesired, err)
	}
	if !ok {
		return fail(StepDesired, fmt.Errorf("%w: kdsync has applied no event of %s (publish a hire with kdsync publish)", ErrNoDesired, user))
	}
	res.Desired = &d
	step(StepDesired, "the events kdsync applied (record up to stream #%d): %s", d.Seq, describeDesired(&d))

	if o.Protect[user] {
		return fail(StepScope, fmt.Errorf("%w: %s is the user kdsync's KooDrive app acts as, never changed", ErrOutOfScope, user))
	}
	step(StepScope, "in scope; KooDrive fields: %s", mapping(&d))

	actual, err := reconcile.GetUsers(ctx, o.KooDrive, []string{user}, 1, nil)
	if err != nil {
		return fail(StepKooDrive, err)
	}
	if a, ok := actual[user]; ok {
		res.Before = &a
		step(StepKooDrive, "GET /users/%s: dept %s, role %d, status %d", user, a.DeptID, a.Role, a.Status)
	} else {
		step(StepKooDrive, "GET /users/%s: not found", user)
	}

	drifts, _ := reconcile.Diff([]reconcile.Desired{d}, actual, reconcile.DiffOptions{})
	if len(drifts) == 0 {
		res.InSync, res.After = true, res.Before
		step(StepDecide, "in sync: nothing to do")
		return res, nil
	}
	if err := reconcile.Plan(drifts, reconcile.PlanOptions{
		RunID: "sync-" + reconcile.NewRunID(time.Now()), SubjectPrefix: o.SubjectPrefix, Source: o.Source,
		Protect: o.Protect, DisableAdmins: o.DisableAdmins,
	}); err != nil {
		return fail(StepDecide, err)
	}
	res.Drift = &drifts[0]
	r := drifts[0].Repair
	res.Repair = r
	if r.Action == "" {
		return fail(StepDecide, fmt.Errorf("%w: drift (%s) but no repair: %s", ErrNotApplied, kinds(res.Drift), r.Skip))
	}
	step(StepDecide, "drift (%s): repair with employee.%s %s (event %s)", kinds(res.Drift), r.Action, repairFields(r), r.EventID)
	if o.DryRun {
		step(StepApply, "dry run: not published")
		return res, nil
	}

	pubStart := time.Now()
	sum, err := reconcile.Publish(ctx, o.JetStream, drifts, reconcile.PublishOptions{
		Stream: o.Stream, SubjectPrefix: o.SubjectPrefix, State: kv,
	})
	if err != nil {
		return fail(StepApply, err)
	}
	if !r.Published() {
		return fail(StepApply, fmt.Errorf("%w: %s", ErrNotApplied, cmp.Or(r.NotPublished, fmt.Sprintf("%+v", sum))))
	}
	step(StepApply, "published %s to %s #%d; waiting up to %s for its outcome", r.Subject, o.Stream, r.Sequence, o.Wait)

	if err := reconcile.AwaitOutcomes(ctx, o.JetStream, drifts, o.Stream, o.OutcomeStream, o.OutcomePrefix, pubStart.Add(-time.Second), o.Wait); err != nil {
		return fail(StepOutcome, err)
	}
	out := r.Outcome
	switch {
	case out == nil:
		return fail(StepOutcome, fmt.Errorf("%w: no outcome of #%d within %s (is kdsync running? is the event held by the guard? see kdsync user %s)", ErrNotApplied, r.Sequence, o.Wait, user))
	case out.Result != outcome.Applied:
		why := strings.TrimSpace(string(out.Reason) + " " + cmp.Or(out.Error, out.Note))
		return fail(StepOutcome, fmt.Errorf("%w: %s (%s)", ErrNotApplied, out.Result, why))
	}
	step(StepOutcome, "applied after %d attempt(s): %s", out.Attempts, strings.Join(out.Calls, ", "))

	actual, err = reconcile.GetUsers(ctx, o.KooDrive, []string{user}, 1, nil)
	if err != nil {
		return fail(StepVerify, err)
	}
	if a, ok := actual[user]; ok {
		res.After = &a
	}
	if after, _ := reconcile.Diff([]reconcile.Desired{d}, actual, reconcile.DiffOptions{}); len(after) > 0 {
		return fail(StepVerify, fmt.Errorf("%w: %s", ErrStillDrifts, kinds(&after[0])))
	}
	res.InSync = true
	step(StepVerify, "KooDrive matches: %s", mapping(&d))
	return res, nil
}

func describeDesired(d *reconcile.Desired) string {
	if d.Absent {
		return "absent (hard-deleted by kdsync) or disabled"
	}
	return mapping(d)
}

// mapping says the KooDrive fields the desired state manages.
func mapping(d *reconcile.Desired) string {
	if d.Absent {
		return "status 1 (disabled) or absent"
	}
	var p []string
	if d.DeptID != nil {
		p = append(p, "deptId "+strconv.FormatInt(*d.DeptID, 10))
	}
	if d.Role != nil {
		p = append(p, "role "+strconv.Itoa(*d.Role))
	}
	if d.Status != nil {
		p = append(p, "status "+strconv.Itoa(*d.Status))
	}
	if len(p) == 0 {
		return "exists (no field managed)"
	}
	return strings.Join(p, ", ")
}

func kinds(d *reconcile.Drift) string {
	s := make([]string, len(d.Kinds))
	for i, k := range d.Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func repairFields(r *reconcile.Repair) string {
	var p []string
	if r.DeptID != nil {
		p = append(p, "deptId "+strconv.FormatInt(*r.DeptID, 10))
	}
	if r.Role != nil {
		p = append(p, "role "+strconv.Itoa(*r.Role))
	}
	if r.Status != nil {
		p = append(p, "status "+strconv.Itoa(*r.Status))
	}
	return strings.Join(p, ", ")
}
