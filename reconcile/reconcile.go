package reconcile

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// KooDrive is what a pass reads KooDrive through; *kdapi.Client is one.
// Give it a client whose transport is a Transport, so that the pass keeps
// to its rate.
type KooDrive interface {
	Lister
	Getter
}

// Options describe one pass.
type Options struct {
	// Desired state: a Source to read (CSV or JSON Lines, see ReadSource),
	// or FromState to read kdsync's records from StateBucket.
	Source    io.Reader
	Format    Format
	FromState bool
	// AsOf is when the source was taken (e.g. the file's modification
	// time); zero: unknown. See PublishOptions.AsOf.
	AsOf time.Time

	// KooDrive is read with GET /userList (every page), or with PerUser
	// one GET per desired user (for a small subset of a large tenant),
	// Workers at a time (default 4).
	KooDrive KooDrive
	PerUser  bool
	Workers  int

	// Complete: the desired users are everyone who should have an
	// account (DiffOptions.Complete). Not allowed with PerUser, which
	// cannot see users nobody asked for.
	Complete bool
	// Ignore lists users left out of the comparison.
	Ignore map[string]bool
	// Protect lists users never repaired (the API user): reported when
	// the desired state lists them, left out when it does not.
	Protect map[string]bool
	// DisableAdmins: see PlanOptions.
	DisableAdmins bool

	// Apply publishes the repairs. Without it nothing changes anywhere.
	Apply bool
	// RunID names the pass in event ids; default a time stamp and a
	// random suffix.
	RunID string
	// MaxRepairs and MaxDisables refuse to apply a pass with more repair
	// events, or more disables, than this (a truncated export with
	// Complete would disable half the tenant). 0 means no repairs of that
	// sort are allowed; negative means no limit.
	MaxRepairs  int
	MaxDisables int
	// Wait is how long to wait for the consumer's outcomes of published
	// repairs; 0: do not wait.
	Wait time.Duration

	// JetStream is needed with FromState and Apply.
	JetStream     jetstream.JetStream
	StateBucket   string // default KDSYNC_STATE
	Stream        string // default IDENTITY
	SubjectPrefix string // default identity.employee
	OutcomeStream string // default KDSYNC_OUTCOMES
	OutcomePrefix string // default kdsync.outcome

	// Progress, when set, is told how the pass is getting on, at most a
	// few times a second plus once at the end of each phase.
	Progress func(Progress)
	// Requests, when set, reports the KooDrive requests made so far
	// (Transport.Requests), for Progress and the Result.
	Requests func() int64
}

// Progress is where a pass is.
type Progress struct {
	Phase    Phase
	Users    int   // users read in this phase
	Of       int   // users to read in this phase, when known (per user)
	Requests int64 // KooDrive requests so far
	Done     bool  // the phase is over
}

// Phase is a step of a pass.
type Phase string

// The phases of a pass.
const (
	PhaseState    Phase = "state"
	PhaseSource   Phase = "source"
	PhaseKooDrive Phase = "koodrive"
	PhasePublish  Phase = "publish"
)

// Result is what a pass found and did.
type Result struct {
	RunID     string    `json:"runId"`
	StartedAt time.Time `json:"startedAt"`
	// Duration of the whole pass; Read is the part spent reading KooDrive.
	Duration time.Duration `json:"duration"`
	Read     time.Duration `json:"read"`
	// Desired says where the desired state came from: "state" or
	// "source"; State counts the records when it came from the bucket.
	Desired string     `json:"desiredFrom"`
	State   *StateInfo `json:"state,omitempty"`
	// PerUser: KooDrive was read one user at a time.
	PerUser  bool `json:"perUser"`
	Complete bool `json:"complete"`
	// Requests made to KooDrive (0 when Options.Requests is not set).
	Requests int64   `json:"requests"`
	Totals   Totals  `json:"totals"`
	Drifts   []Drift `json:"drifts"`
	// Repairs counts the events the drift calls for, by action, and
	// Unrepairable the drifted users with none (Repair.Skip says why).
	Repairs      map[handlers.Action]int `json:"repairs"`
	Unrepairable int                     `json:"unrepairable"`
	// Applied is true when the repairs were published; Publish counts.
	Applied bool            `json:"applied"`
	Publish *PublishSummary `json:"publish,omitempty"`
	// Outcomes counts the consumer's outcomes of published repairs by
	// result (applied, skipped, deadlettered), "pending" for those not
	// seen within Options.Wait.
	Outcomes map[string]int `json:"outcomes,omitempty"`
}

// ErrTooManyRepairs is returned (with the Result) when Apply would publish
// more repairs or disables than allowed; nothing was published.
var ErrTooManyRepairs = errors.New("reconcile: too many repairs")

// NewRunID returns a run id: UTC time stamp and a random suffix.
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Run does one pass: read the desired state, read KooDrive, compare, plan
// the repairs and, with Apply, publish them (and wait for their outcomes).
// A failure to read either side ends the pass with an error and nothing
// published: a partial read would show drift that is not there.
func Run(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	res := &Result{StartedAt: start.UTC(), PerUser: o.PerUser, Complete: o.Complete, RunID: o.RunID}
	if res.RunID == "" {
		res.RunID = NewRunID(start)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.StateBucket = cmp.Or(o.StateBucket, outcome.DefaultStateBucket)
	o.Stream = cmp.Or(o.Stream, outcome.DefaultStream)
	o.SubjectPrefix = cmp.Or(o.SubjectPrefix, DefaultSubjectPrefix)
	o.OutcomeStream = cmp.Or(o.OutcomeStream, outcome.DefaultOutcomeStream)
	o.OutcomePrefix = cmp.Or(o.OutcomePrefix, outcome.DefaultOutcomePrefix)
	requests := o.Requests
	if requests == nil {
		requests = func() int64 { return 0 }
	}
	report := throttle(o.Progress)

	// The stream's last sequence before anything is read: an event stored
	// after it is newer than what this pass compares.
	var since uint64
	var state jetstream.KeyValue
	if o.JetStream != nil && (o.Apply || o.FromState) {
		if o.Apply {
			st, err := o.JetStream.Stream(ctx, o.Stream)
			if err != nil {
				return nil, fmt.Errorf("reconcile: stream %s: %w", o.Stream, err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				return nil, fmt.Errorf("reconcile: stream %s: %w", o.Stream, err)
			}
			since = info.State.LastSeq
		}
		kv, err := o.JetStream.KeyValue(ctx, o.StateBucket)
		switch {
		case err == nil:
			state = kv
		case o.FromState || !errors.Is(err, jetstream.ErrBucketNotFound):
			return nil, fmt.Errorf("reconcile: state bucket %s: %w", o.StateBucket, err)
		}
	}

	var desired []Desired
	if o.FromState {
		res.Desired = "state"
		report(Progress{Phase: PhaseState})
		d, info, err := ReadState(ctx, state)
		if err != nil {
			return nil, err
		}
		desired, res.State = d, &info
		report(Progress{Phase: PhaseState, Users: info.Records, Done: true})
	} else {
		res.Desired = "source"
		d, err := ReadSource(o.Source, o.Format)
		if err != nil {
			return nil, err
		}
		desired = d
		report(Progress{Phase: PhaseSource, Users: len(d), Done: true})
	}

	readStart := time.Now()
	var actual map[string]Actual
	var err error
	if o.PerUser {
		var ids []string
		for _, d := range desired {
			if !o.Ignore[d.UserID] {
				ids = append(ids, d.UserID)
			}
		}
		actual, err = GetUsers(ctx, o.KooDrive, ids, cmp.Or(o.Workers, 4), func(n int) {
			report(Progress{Phase: PhaseKooDrive, Users: n, Of: len(ids), Requests: requests()})
		})
	} else {
		actual, err = ListUsers(ctx, o.KooDrive, func(n int) {
			report(Progress{Phase: PhaseKooDrive, Users: n, Requests: requests()})
		})
	}
	res.Read = time.Since(readStart)
	res.Requests = requests()
	if err != nil {
		return nil, err
	}
	report(Progress{Phase: PhaseKooDrive, Users: len(actual), Requests: res.Requests, Done: true})

	// A protected user the desired state does not list (kdsync's own API
	// user, as a rule) is no stray: leave it out rather than report drift
	// that is never repaired.
	ignore := o.Ignore
	if len(o.Protect) > 0 {
		ignore = make(map[string]bool, len(o.Ignore)+len(o.Protect))
		for id := range o.Ignore {
			ignore[id] = true
		}
		listed := make(map[string]bool, len(desired))
		for i := range desired {
			listed[desired[i].UserID] = true
		}
		for id := range o.Protect {
			if !listed[id] {
				ignore[id] = true
			}
		}
	}
	res.Drifts, res.Totals = Diff(desired, actual, DiffOptions{Complete: o.Complete, Ignore: ignore})
	if err := Plan(res.Drifts, PlanOptions{
		RunID: res.RunID, SubjectPrefix: o.SubjectPrefix, Protect: o.Protect, DisableAdmins: o.DisableAdmins,
	}); err != nil {
		return nil, err
	}
	res.Repairs = map[handlers.Action]int{}
	for _, d := range res.Drifts {
		if d.Repair.Action == "" {
			res.Unrepairable++
			continue
		}
		res.Repairs[d.Repair.Action]++
	}
	defer func() { res.Duration = time.Since(start) }()
	if !o.Apply {
		return res, nil
	}

	total := 0
	for _, n := range res.Repairs {
		total += n
	}
	if o.MaxRepairs >= 0 && total > o.MaxRepairs || o.MaxDisables >= 0 && res.Repairs[handlers.Disabled] > o.MaxDisables {
		return res, fmt.Errorf("%w: %d repair events of which %d disables; the limits are %s repairs and %s disables (raise them once the report looks right)",
			ErrTooManyRepairs, total, res.Repairs[handlers.Disabled], limit(o.MaxRepairs), limit(o.MaxDisables))
	}
	pubStart := time.Now()
	report(Progress{Phase: PhasePublish})
	sum, err := Publish(ctx, o.JetStream, res.Drifts, PublishOptions{
		Stream: o.Stream, SubjectPrefix: o.SubjectPrefix, Since: since, AsOf: o.AsOf, State: state,
	})
	res.Applied, res.Publish = true, &sum
	report(Progress{Phase: PhasePublish, Users: sum.Published, Done: true})
	if err != nil {
		return res, err
	}
	if o.Wait > 0 && sum.Published > 0 {
		if err := AwaitOutcomes(ctx, o.JetStream, res.Drifts, o.Stream, o.OutcomeStream, o.OutcomePrefix, pubStart.Add(-time.Second), o.Wait); err != nil {
			return res, err
		}
		res.Outcomes = map[string]int{}
		for _, d := range res.Drifts {
			switch r := d.Repair; {
			case !r.Published() || r.Duplicate:
			case r.Outcome == nil:
				res.Outcomes["pending"]++
			default:
				res.Outcomes[string(r.Outcome.Result)]++
			}
		}
	}
	return res, nil
}

func limit(n int) string {
	if n < 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

// Validate reports settings of a pass that contradict each other (the
// message names kdsync reconcile's flags). Run checks them, and what it
// needs besides (a KooDrive client, JetStream).
func (o *Options) Validate() error {
	if o.PerUser && o.Complete {
		return errors.New("-per-user sees only the users asked for, so it cannot find unexpected users: drop -complete or -per-user")
	}
	return nil
}

// validate reports what Run cannot run without, and Validate's problems.
func (o *Options) validate() error {
	var errs []error
	if o.FromState == (o.Source != nil) {
		errs = append(errs, errors.New("give the desired state: a source or the state bucket, one of them"))
	}
	if o.FromState && o.JetStream == nil {
		errs = append(errs, errors.New("reading the state bucket needs JetStream"))
	}
	if o.Apply && o.JetStream == nil {
		errs = append(errs, errors.New("applying needs JetStream"))
	}
	if o.KooDrive == nil {
		errs = append(errs, errors.New("a KooDrive client is required"))
	}
	if err := errors.Join(append(errs, o.Validate())...); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	return nil
}

// throttle calls f at most every 100ms, and always for a phase's first and
// last report.
func throttle(f func(Progress)) func(Progress) {
	if f == nil {
		return func(Progress) {}
	}
	var mu sync.Mutex
	var last time.Time
	var phase Phase
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if p.Done || p.Phase != phase || now.Sub(last) >= 100*time.Millisecond {
			last, phase = now, p.Phase
			f(p)
		}
	}
}
