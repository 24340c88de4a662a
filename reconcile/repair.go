package reconcile

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
)

// Repair is the event that puts one drifted user right, or why there is
// none.
type Repair struct {
	// Action is hired, changed or disabled; empty when Skip says why no
	// event is made.
	Action handlers.Action `json:"action,omitempty"`
	// The fields the event carries.
	DeptID *int64 `json:"deptId,omitempty,string"`
	Role   *int   `json:"role,omitempty"`
	Status *int   `json:"status,omitempty"`
	Skip   string `json:"skip,omitempty"`
	// EventID is the CloudEvent id: reconcile:<run id>:<userId>. The
	// Nats-Msg-Id is the event's key (handlers.EventKey of source and id).
	EventID string `json:"eventId,omitempty"`
	Subject string `json:"subject,omitempty"`

	// What publishing did: Sequence in the stream when stored, Duplicate
	// when the stream already had the event (the same run id published
	// again within the stream's duplicate window), NotPublished why not.
	Sequence     uint64 `json:"sequence,omitempty"`
	Duplicate    bool   `json:"duplicate,omitempty"`
	NotPublished string `json:"notPublished,omitempty"`
	// Outcome is the consumer's outcome, when awaited and seen in time.
	Outcome *outcome.Outcome `json:"outcome,omitempty"`

	body  []byte
	msgID string
	// guard is the last stream sequence of the user's events the pass
	// relied on (from kdsync's record); 0 when unknown.
	guard uint64
}

// Published reports whether the repair is in the stream.
func (r *Repair) Published() bool { return r.Sequence > 0 }

// PlanOptions shape repair events.
type PlanOptions struct {
	// RunID names the pass; required. Event ids are
	// reconcile:<RunID>:<userId>, so publishing the same pass twice within
	// the stream's duplicate window stores each repair once.
	RunID string
	// SubjectPrefix of events: <prefix>.<action>.<userId>; default
	// identity.employee.
	SubjectPrefix string
	// Source is the CloudEvents source; default kdsync/reconcile.
	Source string
	// Time is the events' time; default now.
	Time time.Time
	// Protect lists users never repaired, e.g. the user kdsync's KooDrive
	// app acts as (disabling it would stop kdsync).
	Protect map[string]bool
	// DisableAdmins lets an unexpected system or cloud-drive administrator
	// (role 2 or 3) be disabled; by default such a user is reported only.
	DisableAdmins bool
}

// Defaults of PlanOptions and Options.
const (
	DefaultSubjectPrefix = "identity.employee"
	DefaultEventSource   = "kdsync/reconcile"
)

// Plan makes each drift's repair (drifts[i].Repair): missing → hired with
// the desired department, role and status; differing fields → changed with
// those fields; unexpected → disabled. Never deleted. Every event is checked
// with the consumer's decoder; an event it would refuse is an error (a bug
// here, not drift).
func Plan(drifts []Drift, o PlanOptions) error {
	if o.RunID == "" {
		return errors.New("reconcile: plan: a run id is required")
	}
	if strings.ContainsAny(o.RunID, " \t\r\n*>.") {
		return fmt.Errorf("reconcile: plan: run id %q: no spaces, dots or wildcards", o.RunID)
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Source == "" {
		o.Source = DefaultEventSource
	}
	if o.Time.IsZero() {
		o.Time = time.Now()
	}
	for i := range drifts {
		d := &drifts[i]
		r := repairOf(d, &o)
		if d.Desired != nil {
			r.guard = d.Desired.Seq
		}
		if r.Action != "" {
			if err := r.encode(d.UserID, &o); err != nil {
				return err
			}
		}
		d.Repair = r
	}
	return nil
}

func repairOf(d *Drift, o *PlanOptions) *Repair {
	r := &Repair{}
	switch {
	case o.Protect[d.UserID]:
		r.Skip = "protected: the user kdsync's KooDrive app acts as is never changed by reconciliation"
	case d.Has(KindMissing):
		if d.Desired.DeptID == nil {
			r.Skip = "no department known: a hire needs one; publish it by hand with kdsync publish -type hired -dept …"
			return r
		}
		r.Action, r.DeptID, r.Role, r.Status = handlers.Hired, d.Desired.DeptID, d.Desired.Role, d.Desired.Status
	case d.Has(KindUnexpected):
		if role := d.Actual.Role; (role == kdapi.RoleSystemAdmin || role == kdapi.RoleCloudAdmin) && !o.DisableAdmins {
			r.Skip = fmt.Sprintf("an administrator (role %d) is not disabled without -disable-admins; disable by hand if intended", role)
			return r
		}
		r.Action, r.Status = handlers.Disabled, kdapi.Ptr(kdapi.StatusDisabled)
	default:
		r.Action = handlers.Changed
		if d.Has(KindDept) {
			r.DeptID = d.Desired.DeptID
		}
		if d.Has(KindRole) {
			r.Role = d.Desired.Role
		}
		if d.Has(KindStatus) {
			r.Status = d.Desired.Status
		}
	}
	return r
}

// eventData is the data of a repair event.
type eventData struct {
	UserID string `json:"userId"`
	DeptID string `json:"deptId,omitempty"`
	Role   *int   `json:"role,omitempty"`
	Status *int   `json:"status,omitempty"`
}

type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            string    `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            eventData `json:"data"`
}

// encode builds the repair's CloudEvent and checks it with the consumer's
// decoder.
func (r *Repair) encode(user string, o *PlanOptions) error {
	r.EventID = "reconcile:" + o.RunID + ":" + user
	r.Subject = o.SubjectPrefix + "." + string(r.Action) + "." + user
	data := eventData{UserID: user, Role: r.Role, Status: r.Status}
	if r.DeptID != nil {
		data.DeptID = deptText(*r.DeptID)
	}
	if r.Action == handlers.Disabled {
		data.Status = nil // the action says it
	}
	body, err := json.Marshal(cloudEvent{
		SpecVersion: "1.0", ID: r.EventID, Source: o.Source, Type: handlers.TypePrefix + string(r.Action),
		Subject: user, Time: o.Time.UTC().Format(time.RFC3339Nano), DataContentType: "application/json", Data: data,
	})
	if err != nil {
		return fmt.Errorf("reconcile: encode repair of %s: %w", user, err)
	}
	ev, err := (handlers.Decoder{}).Decode(r.Subject, nil, body)
	if err != nil {
		return fmt.Errorf("reconcile: the repair of %s would be dead-lettered: %w", user, err)
	}
	if ev.Action != r.Action || ev.UserID != user {
		return fmt.Errorf("reconcile: the repair of %s decodes as %s of %s", user, ev.Action, ev.UserID)
	}
	r.body, r.msgID = body, ev.Key()
	return nil
}

// Body returns the encoded CloudEvent (nil when skipped).
func (r *Repair) Body() []byte { return r.body }

// PublishOptions say where repairs go and what guards them.
type PublishOptions struct {
	// Stream is the identity stream; default IDENTITY.
	Stream string
	// SubjectPrefix of the repairs (as in PlanOptions); default
	// identity.employee.
	SubjectPrefix string
	// Since is the stream's last sequence when the pass began. A repair
	// not guarded by a record of kdsync's (a source file) is not published
	// when an event of its user was stored after Since: that event is
	// newer than what the pass compared.
	Since uint64
	// AsOf is when the source was taken; zero: unknown. A repair not
	// guarded by a record is not published when the user's last event was
	// stored after AsOf, or (with State) kdsync finished an event of the
	// user after AsOf: the source is older than what the stream says.
	AsOf  time.Time
	State jetstream.KeyValue
	// Guard maps a user id to the subject filter matching every stored
	// event of that user; default: GuardSubject with the stream's subject
	// transform.
	Guard func(userID string) string
}

// PublishSummary counts what Publish did.
type PublishSummary struct {
	Published  int `json:"published"`
	Duplicates int `json:"duplicates"`
	// Superseded counts repairs left out because the user's events moved
	// on since the pass read its state (see PublishOptions).
	Superseded int `json:"superseded"`
	// Failed counts repairs whose publish failed.
	Failed int `json:"failed"`
	// ByAction counts published repairs per action.
	ByAction map[handlers.Action]int `json:"byAction"`
}

// Publish stores the planned repairs in the identity stream, each with
// Nats-Msg-Id = its event id, and waits for every acknowledgement.
//
// Each repair is guarded so that it never reverts an event newer than what
// the pass compared: Publish reads the stream sequence of the user's last
// stored event (any action; the filter comes from Guard) and leaves the
// repair out (NotPublished, counted as Superseded) when that event is newer
// than the record the desired state came from, or, for a source file, was
// stored after PublishOptions.Since. The publish itself then expects that
// very sequence for the user's subjects
// (Nats-Expected-Last-Subject-Sequence with a subject filter), so an event
// arriving in between makes the stream refuse the repair, which is then
// also superseded. The consumer, behind the stream, applies each repair in
// the user's order with every other event.
func Publish(ctx context.Context, js jetstream.JetStream, drifts []Drift, o PublishOptions) (PublishSummary, error) {
	sum := PublishSummary{ByAction: map[handlers.Action]int{}}
	if o.Stream == "" {
		o.Stream = outcome.DefaultStream
	}
	st, err := js.Stream(ctx, o.Stream)
	if err != nil {
		return sum, fmt.Errorf("reconcile: stream %s: %w", o.Stream, err)
	}
	if o.Guard == nil {
		tr := st.CachedInfo().Config.SubjectTransform
		prefix := cmp.Or(o.SubjectPrefix, DefaultSubjectPrefix)
		o.Guard = func(user string) string { return GuardSubject(prefix, user, tr) }
	}
	type pending struct {
		r   *Repair
		fut jetstream.PubAckFuture
	}
	var futs []pending
	for i := range drifts {
		r := drifts[i].Repair
		if r == nil || r.Action == "" || r.Published() {
			continue
		}
		user := drifts[i].UserID
		filter := o.Guard(user)
		last, stored, err := lastEvent(ctx, st, filter)
		if err != nil {
			return sum, fmt.Errorf("reconcile: last event of %s: %w", user, err)
		}
		if why := superseded(ctx, r, user, last, stored, &o); why != "" {
			r.NotPublished = why
			sum.Superseded++
			continue
		}
		m := &nats.Msg{Subject: r.Subject, Data: r.body, Header: nats.Header{}}
		f, err := js.PublishMsgAsync(m, jetstream.WithMsgID(r.msgID), jetstream.WithExpectLastSequenceForSubject(last, filter))
		if err != nil {
			return sum, fmt.Errorf("reconcile: publish %s: %w", r.Subject, err)
		}
		futs = append(futs, pending{r, f})
	}
	for _, p := range futs {
		select {
		case ack := <-p.fut.Ok():
			p.r.Sequence, p.r.Duplicate = ack.Sequence, ack.Duplicate
			if ack.Duplicate {
				sum.Duplicates++
			} else {
				sum.Published++
				sum.ByAction[p.r.Action]++
			}
		case err := <-p.fut.Err():
			if isWrongSequence(err) {
				p.r.NotPublished = "superseded: an event of the user was stored while publishing"
				sum.Superseded++
				continue
			}
			p.r.NotPublished = "publish failed: " + err.Error()
			sum.Failed++
		case <-ctx.Done():
			return sum, fmt.Errorf("reconcile: waiting for acknowledgements: %w", ctx.Err())
		}
	}
	if sum.Failed > 0 {
		return sum, fmt.Errorf("reconcile: %d repairs could not be published", sum.Failed)
	}
	return sum, nil
}

// superseded says why r must not be published, "" when it may. last is
// the sequence of the user's last event in the stream, stored when it was
// stored.
func superseded(ctx context.Context, r *Repair, user string, last uint64, stored time.Time, o *PublishOptions) string {
	switch {
	case r.guard > 0 && last > r.guard:
		return fmt.Sprintf("superseded: the user has events newer than kdsync's record (#%d after #%d); run again once kdsync has applied them", last, r.guard)
	case r.guard == 0 && last > o.Since:
		return fmt.Sprintf("superseded: an event of the user (#%d) was stored during the pass", last)
	case r.guard == 0 && last > 0 && !o.AsOf.IsZero() && stored.After(o.AsOf):
		return fmt.Sprintf("superseded: an event of the user (#%d) was stored at %s, after the source was taken (%s)",
			last, stored.UTC().Format(time.RFC3339), o.AsOf.UTC().Format(time.RFC3339))
	}
	if o.AsOf.IsZero() || o.State == nil {
		return ""
	}
	e, err := o.State.Get(ctx, outcome.KVKey(user))
	if err != nil {
		return "" // no record: kdsync never finished an event of the user
	}
	if rec, err := outcome.DecodeRecord(e.Value()); err == nil && rec.At.After(o.AsOf) {
		return fmt.Sprintf("superseded: kdsync finished an event of the user at %s, after the source was taken (%s)",
			rec.At.UTC().Format(time.RFC3339), o.AsOf.UTC().Format(time.RFC3339))
	}
	return ""
}

// lastEvent is the sequence and time of the last message matching filter,
// 0 when none.
func lastEvent(ctx context.Context, st jetstream.Stream, filter string) (uint64, time.Time, error) {
	m, err := st.GetLastMsgForSubject(ctx, filter)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, time.Time{}, nil
	case err != nil:
		return 0, time.Time{}, err
	}
	return m.Sequence, m.Time, nil
}

func isWrongSequence(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && (ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// GuardSubject is the subject filter matching every event of user as the
// stream stores it: <prefix>.*.<user>, mapped through the stream's subject
// transform when it has one (a partitioned stream stores
// identity.employee.<action>.<user> as
// identity.part.<p>.employee.<action>.<user>; the partition becomes *).
func GuardSubject(prefix, user string, tr *jetstream.SubjectTransformConfig) string {
	subject := prefix + ".*." + user
	if tr == nil || tr.Source == "" || tr.Destination == "" {
		return subject
	}
	src := strings.Split(tr.Source, ".")
	tok := strings.Split(subject, ".")
	if len(src) != len(tok) {
		return subject
	}
	var wild []string
	for i, s := range src {
		switch {
		case s == "*":
			wild = append(wild, tok[i])
		case s != tok[i]:
			return subject // the transform does not apply to these events
		}
	}
	dst := strings.Split(tr.Destination, ".")
	for i, d := range dst {
		if !strings.HasPrefix(d, "{{") {
			continue
		}
		fn := strings.ToLower(strings.Join(strings.Fields(d), ""))
		if n, ok := wildcardIndex(fn); ok && n >= 1 && n <= len(wild) {
			dst[i] = wild[n-1]
			continue
		}
		dst[i] = "*" // partition(), or any other mapping: match all
	}
	return strings.Join(dst, ".")
}

// wildcardIndex reads {{wildcard(n)}} (spaces removed, lower case).
func wildcardIndex(fn string) (int, bool) {
	inner, ok := strings.CutPrefix(fn, "{{wildcard(")
	if !ok {
		return 0, false
	}
	inner, ok = strings.CutSuffix(inner, ")}}")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(inner)
	return n, err == nil
}

// AwaitOutcomes follows the outcome stream from since until every
// published repair has its outcome (matched by the outcome's Nats-Msg-Id,
// <stream>:<sequence>) or wait passes, and stores each in Repair.Outcome.
// Not seeing some in time is no error: the consumer may be busy.
func AwaitOutcomes(ctx context.Context, js jetstream.JetStream, drifts []Drift, stream, outcomeStream, outcomePrefix string, since time.Time, wait time.Duration) error {
	want := map[string]*Repair{}
	for i := range drifts {
		if r := drifts[i].Repair; r != nil && r.Published() && r.Outcome == nil {
			want[outcome.MsgID(stream, r.Sequence)] = r
		}
	}
	if len(want) == 0 || wait <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	oc, err := js.OrderedConsumer(ctx, outcomeStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{outcomePrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil // no consumer has run yet
	case err != nil && ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("reconcile: read %s: %w", outcomeStream, err)
	}
	for len(want) > 0 {
		left := time.Until(deadline(ctx))
		if left < 50*time.Millisecond {
			return nil
		}
		batch, err := oc.Fetch(512, jetstream.FetchMaxWait(min(left, 250*time.Millisecond)))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reconcile: read %s: %w", outcomeStream, err)
		}
		for m := range batch.Messages() {
			id := m.Headers().Get(jetstream.MsgIDHeader)
			r, ok := want[id]
			if !ok {
				continue
			}
			var out outcome.Outcome
			if json.Unmarshal(m.Data(), &out) == nil {
				r.Outcome = &out
				delete(want, id)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			return fmt.Errorf("reconcile: read %s: %w", outcomeStream, err)
		}
	}
	return nil
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Hour)
	}
	return d
}
