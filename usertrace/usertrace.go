// Package usertrace tells one user's story: every identity event of the
// user in the stream with the outcome kdsync stored for it, the user's dead
// letters and guard holds, the record (watermark) kdsync keeps, what
// KooDrive holds now and what it should hold, and a verdict: in sync, or
// which field drifts.
//
// It only reads. Events are read with a subject filter on the user
// (identity.employee.*.<userId>, through the stream's partition transform
// when it has one); outcomes and dead letters with one on their user token
// (contract v1.1). Outcomes and dead letters stored before v1.1 have no
// user token: those are scanned from the time of the user's first event
// and matched on the user in the message, and only when the stream holds
// any.
package usertrace

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/reconcile"
)

// Options say where a user's story is kept. Zero values take kdsync's
// defaults.
type Options struct {
	// JetStream is required.
	JetStream jetstream.JetStream
	// KooDrive is read for the user's current state; nil: not read.
	KooDrive reconcile.Getter

	Stream        string // default IDENTITY
	SubjectPrefix string // default identity.employee
	OutcomeStream string // default KDSYNC_OUTCOMES
	OutcomePrefix string // default kdsync.outcome
	DLQStream     string // default KDSYNC_DLQ
	DLQPrefix     string // default kdsync.dlq
	StateBucket   string // default KDSYNC_STATE
	GuardBucket   string // default KDSYNC_GUARD
	// MaxEvents bounds the events shown: the user's last MaxEvents;
	// default 200.
	MaxEvents int
	// FetchWait bounds each wait for a batch of messages; default 5s.
	FetchWait time.Duration
}

// Tracer reads users' stories.
type Tracer struct {
	opts Options
	dlq  *dlq.Store
}

// New returns a Tracer.
func New(o Options) (*Tracer, error) {
	if o.JetStream == nil {
		return nil, errors.New("usertrace: a JetStream context is required")
	}
	o.Stream = cmp.Or(o.Stream, outcome.DefaultStream)
	o.SubjectPrefix = cmp.Or(o.SubjectPrefix, reconcile.DefaultSubjectPrefix)
	o.OutcomeStream = cmp.Or(o.OutcomeStream, outcome.DefaultOutcomeStream)
	o.OutcomePrefix = cmp.Or(o.OutcomePrefix, outcome.DefaultOutcomePrefix)
	o.DLQStream = cmp.Or(o.DLQStream, outcome.DefaultDLQStream)
	o.DLQPrefix = cmp.Or(o.DLQPrefix, outcome.DefaultDLQPrefix)
	o.StateBucket = cmp.Or(o.StateBucket, outcome.DefaultStateBucket)
	o.GuardBucket = cmp.Or(o.GuardBucket, outcome.DefaultGuardBucket)
	if o.MaxEvents <= 0 {
		o.MaxEvents = 200
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 5 * time.Second
	}
	store, err := dlq.New(o.JetStream, dlq.Options{Stream: o.DLQStream, Prefix: o.DLQPrefix,
		OutcomeStream: o.OutcomeStream, OutcomePrefix: o.OutcomePrefix, FetchWait: o.FetchWait})
	if err != nil {
		return nil, err
	}
	return &Tracer{opts: o, dlq: store}, nil
}

// Options returns the tracer's options with the defaults filled in.
func (t *Tracer) Options() Options { return t.opts }

// ErrBadUser is returned for a user id that cannot name a user: empty, or
// with characters no subject token may hold.
var ErrBadUser = errors.New("usertrace: not a user id")

// CheckUser reports whether user can name a user in subjects.
func CheckUser(user string) error {
	if user == "" || len(user) > 128 || strings.ContainsAny(user, ".*> \t\r\n") {
		return fmt.Errorf("%w: %q", ErrBadUser, user)
	}
	return nil
}

// Timeline is one user's story.
type Timeline struct {
	UserID string    `json:"userId"`
	At     time.Time `json:"at"`
	// Events are the user's events in stream order (the last
	// Options.MaxEvents); EarlierEvents counts those left out.
	Events        []Event `json:"events"`
	EarlierEvents int     `json:"earlierEvents,omitempty"`
	// DeadLetters are the user's letters still in the DLQ.
	DeadLetters []*dlq.Letter `json:"deadLetters"`
	// Holds are the user's events held by the mass-deprovisioning guard.
	Holds []guard.Hold `json:"holds"`
	// Record is kdsync's record of the user (the watermark and the state
	// it last applied); nil when it has none.
	Record *outcome.Record `json:"record,omitempty"`
	// KooDrive is the user as KooDrive has it now; nil when absent or not
	// read (KooDriveRead false, or KooDriveError set).
	KooDrive      *reconcile.Actual `json:"koodrive,omitempty"`
	KooDriveRead  bool              `json:"koodriveRead"`
	KooDriveError string            `json:"koodriveError,omitempty"`
	// Desired is what KooDrive should hold; DesiredFrom says where that
	// came from. Nil when nothing says (no event applied yet).
	Desired     *reconcile.Desired `json:"desired,omitempty"`
	DesiredFrom string             `json:"desiredFrom,omitempty"`
	Verdict     Verdict            `json:"verdict"`
}

// Event is one identity event of the user and what became of it.
type Event struct {
	Seq     uint64    `json:"seq"`
	Stored  time.Time `json:"stored"`
	Subject string    `json:"subject"`
	Action  string    `json:"action"`
	EventID string    `json:"eventId,omitempty"`
	Source  string    `json:"source,omitempty"`
	// Time is the event's own time, when it has one.
	Time   time.Time `json:"time,omitzero"`
	DeptID *int64    `json:"deptId,omitempty,string"`
	Role   *int      `json:"role,omitempty"`
	Status *int      `json:"status,omitempty"`
	// DecodeError says why kdsync cannot read the event (bad input).
	DecodeError string `json:"decodeError,omitempty"`
	// ReplayOf names the dead letter the event replays.
	ReplayOf string `json:"replayOf,omitempty"`
	// State is what became of the event: applied, skipped, deadlettered
	// (from its outcome), held (by the guard), finished (at or below the
	// watermark, outcome expired) or pending.
	State   string           `json:"state"`
	Outcome *outcome.Outcome `json:"outcome,omitempty"`
	// DeadLetter is the DLQ sequence of its letter, while in the DLQ.
	DeadLetter uint64      `json:"deadLetter,omitempty"`
	Hold       *guard.Hold `json:"hold,omitempty"`
}

// Fields says the event's fields in words: "dept 7 role 1 status 0".
func (e *Event) Fields() string {
	var parts []string
	if e.DeptID != nil {
		parts = append(parts, "dept "+strconv.FormatInt(*e.DeptID, 10))
	}
	if e.Role != nil {
		parts = append(parts, "role "+strconv.Itoa(*e.Role))
	}
	if e.Status != nil {
		parts = append(parts, "status "+strconv.Itoa(*e.Status))
	}
	return strings.Join(parts, " ")
}

// Event states.
const (
	StateHeld     = "held"
	StateFinished = "finished"
	StatePending  = "pending"
)

// Verdict compares KooDrive with the desired state.
type Verdict struct {
	// State is in_sync, drift or unknown.
	State   string       `json:"state"`
	Drift   []FieldDrift `json:"drift,omitempty"`
	Summary string       `json:"summary"`
}

// Verdict states.
const (
	InSync  = "in_sync"
	Drifted = "drift"
	Unknown = "unknown"
)

// FieldDrift is one field that differs.
type FieldDrift struct {
	// Field is dept, role, status or exists.
	Field    string `json:"field"`
	Desired  string `json:"desired"`
	KooDrive string `json:"koodrive"`
}

// Trace reads user's story.
func (t *Tracer) Trace(ctx context.Context, user string) (*Timeline, error) {
	if err := CheckUser(user); err != nil {
		return nil, err
	}
	tl := &Timeline{UserID: user, At: time.Now().UTC(), DeadLetters: []*dlq.Letter{}, Holds: []guard.Hold{}, Events: []Event{}}
	var err error
	if tl.Events, tl.EarlierEvents, err = t.events(ctx, user); err != nil {
		return nil, err
	}
	var since time.Time
	if len(tl.Events) > 0 {
		since = tl.Events[0].Stored.Add(-time.Second)
	}
	outcomes, err := t.outcomes(ctx, user, since)
	if err != nil {
		return nil, err
	}
	letters, err := t.dlq.List(ctx, dlq.Selector{User: user})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("usertrace: dead letters: %w", err)
	}
	if letters != nil {
		tl.DeadLetters = letters
	}
	if tl.Holds, err = t.holds(ctx, user); err != nil {
		return nil, err
	}
	kv, err := t.opts.JetStream.KeyValue(ctx, t.opts.StateBucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		return nil, fmt.Errorf("usertrace: state bucket %s: %w", t.opts.StateBucket, err)
	default:
		if tl.Record, err = readRecord(ctx, kv, user); err != nil {
			return nil, err
		}
		d, ok, err := reconcile.ReadUser(ctx, kv, user)
		if err != nil {
			return nil, err
		}
		if ok {
			tl.Desired = &d
			tl.DesiredFrom = "kdsync's record of the events it applied"
		}
	}
	t.join(tl, outcomes)
	t.readKooDrive(ctx, tl)
	tl.Verdict = verdict(tl)
	return tl, nil
}

// events reads the user's events from the identity stream.
func (t *Tracer) events(ctx context.Context, user string) ([]Event, int, error) {
	st, err := t.opts.JetStream.Stream(ctx, t.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return []Event{}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("usertrace: stream %s: %w", t.opts.Stream, err)
	}
	filter := reconcile.GuardSubject(t.opts.SubjectPrefix, user, st.CachedInfo().Config.SubjectTransform)
	var evs []Event
	total := 0
	err = t.scan(ctx, t.opts.Stream, []string{filter}, time.Time{}, func(m *jetstream.RawStreamMsg) bool {
		total++
		evs = append(evs, eventOf(m))
		if len(evs) > 2*t.opts.MaxEvents {
			evs = slices.Delete(evs, 0, len(evs)-t.opts.MaxEvents)
		}
		return true
	})
	if err != nil {
		return nil, 0, err
	}
	if len(evs) > t.opts.MaxEvents {
		evs = evs[len(evs)-t.opts.MaxEvents:]
	}
	if evs == nil {
		evs = []Event{}
	}
	return evs, total - len(evs), nil
}

func eventOf(m *jetstream.RawStreamMsg) Event {
	e := Event{Seq: m.Sequence, Stored: m.Time.UTC(), Subject: m.Subject, ReplayOf: m.Header.Get(outcome.HdrReplayOf)}
	if a, _, ok := handlers.ParseSubject(m.Subject); ok {
		e.Action = a
	}
	ev, err := (handlers.Decoder{}).Decode(m.Subject, m.Header, m.Data)
	if ev != nil {
		e.Action, e.EventID, e.Source, e.Time = string(ev.Action), ev.ID, ev.Source, ev.Time.UTC()
		e.DeptID, e.Role, e.Status = ev.DeptID, ev.Role, ev.Status
		if ev.Time.IsZero() {
			e.Time = time.Time{}
		}
	}
	if err != nil {
		e.DecodeError = err.Error()
	}
	return e
}

// outcomes reads the user's outcomes: those on the user's subjects, and
// those of the old form (no user token) stored since, if the stream has
// any.
func (t *Tracer) outcomes(ctx context.Context, user string, since time.Time) ([]outcome.Outcome, error) {
	st, err := t.opts.JetStream.Stream(ctx, t.opts.OutcomeStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("usertrace: stream %s: %w", t.opts.OutcomeStream, err)
	}
	filters := outcome.SubjectFilters(t.opts.OutcomePrefix, "", "", user)
	oldForm, newForm := filters[0], filters[1]
	want := []string{newForm}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(oldForm))
	if err != nil {
		return nil, fmt.Errorf("usertrace: stream %s: %w", t.opts.OutcomeStream, err)
	}
	if len(info.State.Subjects) > 0 {
		want = append(want, oldForm)
	}
	var out []outcome.Outcome
	err = t.scan(ctx, t.opts.OutcomeStream, want, since, func(m *jetstream.RawStreamMsg) bool {
		var o outcome.Outcome
		if json.Unmarshal(m.Data, &o) == nil && o.UserID == user {
			out = append(out, o)
		}
		return true
	})
	return out, err
}

func (t *Tracer) holds(ctx context.Context, user string) ([]guard.Hold, error) {
	g, err := guard.Open(ctx, t.opts.JetStream, t.opts.GuardBucket, 1, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return []guard.Hold{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("usertrace: %w", err)
	}
	all, err := g.Held(ctx)
	if err != nil {
		return nil, fmt.Errorf("usertrace: %w", err)
	}
	out := []guard.Hold{}
	for _, h := range all {
		if h.UserID == user {
			out = append(out, h)
		}
	}
	return out, nil
}

func readRecord(ctx context.Context, kv jetstream.KeyValue, user string) (*outcome.Record, error) {
	e, err := kv.Get(ctx, outcome.KVKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("usertrace: record of %s: %w", user, err)
	}
	r, err := outcome.DecodeRecord(e.Value())
	if err != nil {
		return nil, fmt.Errorf("usertrace: record of %s: %w", user, err)
	}
	return &r, nil
}

// join puts each outcome, letter and hold with its event and says what
// became of each event.
func (t *Tracer) join(tl *Timeline, outcomes []outcome.Outcome) {
	bySeq := make(map[uint64]*Event, len(tl.Events))
	for i := range tl.Events {
		bySeq[tl.Events[i].Seq] = &tl.Events[i]
	}
	for i := range outcomes {
		o := &outcomes[i]
		if e := bySeq[o.Sequence]; e != nil && o.Stream == t.opts.Stream && e.Outcome == nil {
			e.Outcome = o
		}
	}
	for _, l := range tl.DeadLetters {
		if e := bySeq[l.OriginalSeq]; e != nil && l.OriginalStream == t.opts.Stream {
			e.DeadLetter = l.Seq
		}
	}
	for i := range tl.Holds {
		if e := bySeq[tl.Holds[i].Seq]; e != nil {
			e.Hold = &tl.Holds[i]
		}
	}
	var wm uint64
	if tl.Record != nil {
		wm = tl.Record.Seq
	}
	for i := range tl.Events {
		e := &tl.Events[i]
		switch {
		case e.Outcome != nil:
			e.State = string(e.Outcome.Result)
		case e.Hold != nil:
			e.State = StateHeld
		case e.Seq <= wm:
			e.State = StateFinished
		default:
			e.State = StatePending
		}
	}
}

func (t *Tracer) readKooDrive(ctx context.Context, tl *Timeline) {
	if t.opts.KooDrive == nil {
		return
	}
	tl.KooDriveRead = true
	got, err := reconcile.GetUsers(ctx, t.opts.KooDrive, []string{tl.UserID}, 1, nil)
	if err != nil {
		tl.KooDriveError = err.Error()
		return
	}
	if a, ok := got[tl.UserID]; ok {
		tl.KooDrive = &a
	}
}

// verdict compares KooDrive with the desired state, as reconciliation
// does.
func verdict(tl *Timeline) Verdict {
	pending := 0
	for _, e := range tl.Events {
		if e.State == StatePending || e.State == StateHeld {
			pending++
		}
	}
	note := ""
	if pending > 0 {
		note = fmt.Sprintf("; %d event(s) not finished yet (pending or held)", pending)
	}
	switch {
	case !tl.KooDriveRead:
		return Verdict{State: Unknown, Summary: "KooDrive not read" + note}
	case tl.KooDriveError != "":
		return Verdict{State: Unknown, Summary: "KooDrive could not be read: " + tl.KooDriveError + note}
	case tl.Desired == nil:
		s := "no desired state: kdsync has applied no event of this user"
		if tl.KooDrive == nil {
			s += "; KooDrive does not have the user"
		} else {
			s += "; KooDrive has the user"
		}
		return Verdict{State: Unknown, Summary: s + note}
	}
	actual := map[string]reconcile.Actual{}
	if tl.KooDrive != nil {
		actual[tl.UserID] = *tl.KooDrive
	}
	drifts, _ := reconcile.Diff([]reconcile.Desired{*tl.Desired}, actual, reconcile.DiffOptions{})
	if len(drifts) == 0 {
		return Verdict{State: InSync, Summary: "in sync: KooDrive holds what kdsync applied" + note}
	}
	v := Verdict{State: Drifted}
	d, a := tl.Desired, tl.KooDrive
	for _, k := range drifts[0].Kinds {
		switch k {
		case reconcile.KindMissing:
			v.Drift = append(v.Drift, FieldDrift{Field: "exists", Desired: "yes", KooDrive: "absent"})
		case reconcile.KindUnexpected:
			v.Drift = append(v.Drift, FieldDrift{Field: "status", Desired: "absent or disabled", KooDrive: strconv.Itoa(a.Status)})
		case reconcile.KindDept:
			v.Drift = append(v.Drift, FieldDrift{Field: "dept", Desired: strconv.FormatInt(*d.DeptID, 10), KooDrive: a.DeptID})
		case reconcile.KindRole:
			v.Drift = append(v.Drift, FieldDrift{Field: "role", Desired: strconv.Itoa(*d.Role), KooDrive: strconv.Itoa(a.Role)})
		case reconcile.KindStatus:
			v.Drift = append(v.Drift, FieldDrift{Field: "status", Desired: strconv.Itoa(*d.Status), KooDrive: strconv.Itoa(a.Status)})
		}
	}
	parts := make([]string, len(v.Drift))
	for i, f := range v.Drift {
		parts[i] = fmt.Sprintf("%s is %s in KooDrive, should be %s", f.Field, f.KooDrive, f.Desired)
	}
	v.Summary = "drift: " + strings.Join(parts, "; ") + note
	return v
}

// scan reads stream from since (the start when zero) through the messages
// on filters present when it began, handing each to f until f returns
// false.
func (t *Tracer) scan(ctx context.Context, stream string, filters []string, since time.Time, f func(*jetstream.RawStreamMsg) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	oc, err := t.opts.JetStream.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("usertrace: read %s: %w", stream, err)
	}
	info, err := oc.Info(ctx)
	if err != nil {
		return fmt.Errorf("usertrace: read %s: %w", stream, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	for {
		fctx, cancel := context.WithTimeout(ctx, t.opts.FetchWait)
		batch, err := oc.Fetch(256, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return fmt.Errorf("usertrace: read %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				cancel()
				return fmt.Errorf("usertrace: read %s: %w", stream, err)
			}
			raw := &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp}
			if !f(raw) || md.NumPending == 0 {
				cancel()
				return nil
			}
		}
		berr := batch.Error()
		cancel()
		if berr != nil && !errors.Is(berr, jetstream.ErrNoMessages) && !errors.Is(berr, context.DeadlineExceeded) {
			return fmt.Errorf("usertrace: read %s: %w", stream, berr)
		}
		if got == 0 {
			return nil // counted messages were removed meanwhile
		}
	}
}
