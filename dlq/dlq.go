// Package dlq inspects and replays kdsync's dead letters.
//
// The consumer writes a dead letter to the DLQ stream (KDSYNC_DLQ) on
// <prefix>.<reason>.<action>.<userId> (<prefix>.<reason>.<action> before
// contract v1.1; both are read): the original event, body and headers
// unchanged, plus Kdsync-* headers saying why, after how many attempts
// (and each failed attempt's error, Kdsync-Attempt-Log), and where it
// came from (Kdsync-Original-Subject, -Stream, -Sequence).
// Store reads them with ordered consumers and direct gets: it never
// consumes the stream destructively. Replay republishes a dead letter's
// original body and headers to its original subject, marked with
// Kdsync-Replay-Of, and removes it from the DLQ only once the identity
// stream acknowledged the copy; the copy flows through the consumer like
// any event and gets an outcome of its own. Purge removes dead letters.
package dlq

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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/outcome"
)

// HdrReplayForce on a replayed event asks the consumer to apply it even
// when the user's state has moved on since it was dead-lettered.
const HdrReplayForce = "Kdsync-Replay-Force"

// Options say where the dead letters and outcomes are. Zero values take
// the consumer's defaults.
type Options struct {
	Stream        string // default KDSYNC_DLQ
	Prefix        string // default kdsync.dlq
	OutcomeStream string // default KDSYNC_OUTCOMES
	OutcomePrefix string // default kdsync.outcome
	// FetchWait bounds each wait for a batch of messages; default 5s.
	FetchWait time.Duration
}

// Store reads and replays the dead letters of one DLQ stream.
type Store struct {
	js   jetstream.JetStream
	opts Options
}

// New returns a Store over js.
func New(js jetstream.JetStream, o Options) (*Store, error) {
	if js == nil {
		return nil, errors.New("dlq: a JetStream context is required")
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Stream, outcome.DefaultDLQStream)
	def(&o.Prefix, outcome.DefaultDLQPrefix)
	def(&o.OutcomeStream, outcome.DefaultOutcomeStream)
	def(&o.OutcomePrefix, outcome.DefaultOutcomePrefix)
	if o.FetchWait <= 0 {
		o.FetchWait = 5 * time.Second
	}
	return &Store{js: js, opts: o}, nil
}

// Letter is one dead letter.
type Letter struct {
	// Seq is its sequence in the DLQ stream.
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Stored  time.Time `json:"stored"`
	// Reason is the error class (Kdsync-Error-Class), also the subject's
	// reason token; Error says what went wrong (Kdsync-Reason).
	Reason   string `json:"reason"`
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
	// AttemptLog holds the failed attempts with their errors, oldest
	// first (Kdsync-Attempt-Log): the first and the last few of them.
	// AttemptsNotKept counts those left out; gaps in the numbers show
	// where.
	AttemptLog      []outcome.Attempt `json:"attemptLog,omitempty"`
	AttemptsNotKept int               `json:"attemptsNotKept,omitempty"`

	Action  string `json:"action"`
	EventID string `json:"eventId,omitempty"`
	// Source is the event's CloudEvents source: with EventID, its identity.
	Source string `json:"source,omitempty"`
	UserID string `json:"userId,omitempty"`
	// OriginalMsgID is the original message's Nats-Msg-Id (for events
	// from kdsync's ingress, the key of source and id).
	OriginalMsgID string `json:"originalMsgId,omitempty"`
	// Where the event was when it died.
	OriginalSubject string    `json:"originalSubject"`
	OriginalStream  string    `json:"originalStream"`
	OriginalSeq     uint64    `json:"originalSequence"`
	DeadAt          time.Time `json:"deadAt"`
	// ReplayOf is set when the letter is itself a replay that died again.
	ReplayOf string `json:"replayOf,omitempty"`

	Header nats.Header `json:"header"`
	Data   []byte      `json:"-"`
}

func letter(prefix string, m *jetstream.RawStreamMsg) *Letter {
	h, subject := m.Header, m.Subject
	l := &Letter{Seq: m.Sequence, Subject: subject, Stored: m.Time.UTC(), Header: h, Data: m.Data}
	l.Reason = h.Get(outcome.HdrErrorClass)
	l.Error = h.Get(outcome.HdrReason)
	l.Attempts, _ = strconv.Atoi(h.Get(outcome.HdrAttempts))
	// A log that does not parse is left out (it stays in l.Header).
	if as, err := outcome.ParseAttemptLog(h.Get(outcome.HdrAttemptLog)); err == nil && len(as) > 0 {
		l.AttemptLog = as
		l.AttemptsNotKept = max(0, max(l.Attempts, as[len(as)-1].N)-len(as))
	}
	l.EventID = h.Get(outcome.HdrEventID)
	l.Source = h.Get(outcome.HdrEventSource)
	l.UserID = h.Get(outcome.HdrUserID)
	l.OriginalMsgID = h.Get(outcome.HdrOriginalMsgID)
	l.OriginalSubject = h.Get(outcome.HdrOriginalSubject)
	l.OriginalStream = h.Get(outcome.HdrOriginalStream)
	l.OriginalSeq, _ = strconv.ParseUint(h.Get(outcome.HdrOriginalSeq), 10, 64)
	l.DeadAt, _ = time.Parse(time.RFC3339Nano, h.Get(outcome.HdrDeadAt))
	l.ReplayOf = h.Get(outcome.HdrReplayOf)
	if p, ok := outcome.ParseSubject(prefix, subject); ok {
		l.Action = p.Action
		l.Reason = cmp.Or(l.Reason, p.Kind)
		l.UserID = cmp.Or(l.UserID, p.User)
	}
	return l
}

// Ref is how the letter is named in outcomes and replays:
// <dlq stream>:<seq>.
func (s *Store) Ref(l *Letter) string { return outcome.MsgID(s.opts.Stream, l.Seq) }

// Selector chooses dead letters. Empty fields select everything; set ones
// must all match.
type Selector struct {
	Seqs []uint64 // DLQ stream sequences
	// IDs are event ids, or the originals' Nats-Msg-Id.
	IDs    []string
	User   string
	Reason string // error class, e.g. not_found
	Action string
	// Since and Until bound when the letter was stored (dead-lettered).
	Since, Until time.Time
}

// Empty reports whether s selects every letter.
func (s Selector) Empty() bool {
	return len(s.Seqs) == 0 && len(s.IDs) == 0 && s.User == "" && s.Reason == "" && s.Action == "" &&
		s.Since.IsZero() && s.Until.IsZero()
}

func (s Selector) match(l *Letter) bool {
	switch {
	case len(s.Seqs) > 0 && !slices.Contains(s.Seqs, l.Seq),
		len(s.IDs) > 0 && !(l.EventID != "" && slices.Contains(s.IDs, l.EventID) || l.OriginalMsgID != "" && slices.Contains(s.IDs, l.OriginalMsgID)),
		s.User != "" && l.UserID != s.User,
		s.Reason != "" && l.Reason != s.Reason,
		s.Action != "" && l.Action != s.Action,
		!s.Since.IsZero() && l.Stored.Before(s.Since),
		!s.Until.IsZero() && l.Stored.After(s.Until):
		return false
	}
	return true
}

// filters are the subject filters that narrow a scan on the server: the
// letters of both subject forms (with and without the user token).
func (s *Store) filters(sel Selector) []string {
	return outcome.SubjectFilters(s.opts.Prefix, sel.Reason, sel.Action, sel.User)
}

// List returns the letters sel selects, in DLQ order.
func (s *Store) List(ctx context.Context, sel Selector) ([]*Letter, error) {
	if len(sel.Seqs) > 0 {
		return s.bySeq(ctx, sel)
	}
	var out []*Letter
	err := s.scan(ctx, s.opts.Stream, s.filters(sel), sel.Since, func(m *jetstream.RawStreamMsg) bool {
		if !sel.Until.IsZero() && m.Time.After(sel.Until) {
			return false
		}
		if l := letter(s.opts.Prefix, m); sel.match(l) {
			out = append(out, l)
		}
		return true
	})
	return out, err
}

// bySeq reads the letters at sel.Seqs with direct gets.
func (s *Store) bySeq(ctx context.Context, sel Selector) ([]*Letter, error) {
	st, err := s.js.Stream(ctx, s.opts.Stream)
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", s.opts.Stream, err)
	}
	seqs := slices.Clone(sel.Seqs)
	slices.Sort(seqs)
	var out []*Letter
	for _, seq := range slices.Compact(seqs) {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dlq: get %s #%d: %w", s.opts.Stream, seq, err)
		}
		if l := letter(s.opts.Prefix, m); sel.match(l) {
			out = append(out, l)
		}
	}
	return out, nil
}

// Find returns the letters named by ref: the one at that DLQ sequence when
// ref is a number naming one, else those with that event id.
func (s *Store) Find(ctx context.Context, ref string) ([]*Letter, error) {
	if seq, err := strconv.ParseUint(ref, 10, 64); err == nil {
		ls, err := s.List(ctx, Selector{Seqs: []uint64{seq}})
		if err != nil || len(ls) > 0 {
			return ls, err
		}
	}
	return s.List(ctx, Selector{IDs: []string{ref}})
}

// scan reads stream from since (the start when zero) through the messages
// on filters present when it began, with an ordered consumer, handing each
// to f until f returns false.
func (s *Store) scan(ctx context.Context, stream string, filters []string, since time.Time, f func(*jetstream.RawStreamMsg) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	oc, err := s.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("dlq: read %s: %w", stream, err)
	}
	info, err := oc.Info(ctx)
	if err != nil {
		return fmt.Errorf("dlq: read %s: %w", stream, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	for {
		done, got, err := s.fetch(ctx, oc, f)
		if err != nil {
			return fmt.Errorf("dlq: read %s: %w", stream, err)
		}
		if done || got == 0 {
			// got == 0: messages counted as pending were removed meanwhile.
			return nil
		}
	}
}

// fetch reads one batch for scan.
func (s *Store) fetch(ctx context.Context, oc jetstream.Consumer, f func(*jetstream.RawStreamMsg) bool) (done bool, got int, err error) {
	fctx, cancel := context.WithTimeout(ctx, s.opts.FetchWait)
	defer cancel()
	batch, err := oc.Fetch(256, jetstream.FetchContext(fctx))
	if err != nil {
		return false, 0, err
	}
	for m := range batch.Messages() {
		got++
		md, err := m.Metadata()
		if err != nil {
			return false, got, err
		}
		raw := &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp}
		if !f(raw) || md.NumPending == 0 {
			return true, got, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		return false, got, err
	}
	return false, got, nil
}

// Outcome finds the outcome the consumer stored when l was dead-lettered
// (same stream and sequence), looking around l's time. It returns nil
// when there is none (outcomes expire).
func (s *Store) Outcome(ctx context.Context, l *Letter) (*outcome.Outcome, error) {
	if l.OriginalStream == "" || l.OriginalSeq == 0 {
		return nil, nil
	}
	at := l.DeadAt
	if at.IsZero() {
		at = l.Stored
	}
	want := outcome.MsgID(l.OriginalStream, l.OriginalSeq)
	filters := outcome.SubjectFilters(s.opts.OutcomePrefix, string(outcome.Deadlettered), l.Action, l.UserID)
	var found *outcome.Outcome
	var decodeErr error
	err := s.scan(ctx, s.opts.OutcomeStream, filters, at.Add(-time.Minute), func(m *jetstream.RawStreamMsg) bool {
		if m.Time.After(at.Add(time.Minute)) {
			return false
		}
		if m.Header.Get(jetstream.MsgIDHeader) != want {
			return true
		}
		var o outcome.Outcome
		if decodeErr = json.Unmarshal(m.Data, &o); decodeErr == nil {
			found = &o
		}
		return false
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("dlq: outcome %s: %w", want, decodeErr)
	}
	return found, nil
}

// ReplayOptions change how Replay works.
type ReplayOptions struct {
	// Keep leaves the letters in the DLQ after the replay.
	Keep bool
	// Force asks the consumer to apply the events even if the user's
	// state moved on since (header Kdsync-Replay-Force: true).
	Force bool
	// Wait, when positive, is how long to wait for the replays' outcomes.
	// A letter whose replay the consumer skipped (as a duplicate or stale)
	// then stays in the DLQ, so that it can be replayed with Force.
	Wait time.Duration
}

// Replayed says what became of one letter's replay.
type Replayed struct {
	Letter *Letter `json:"letter"`
	// Where the copy was stored; Duplicate when the stream had it already
	// (the letter was replayed before), and Seq is then the earlier copy.
	Subject   string `json:"subject,omitempty"`
	Stream    string `json:"stream,omitempty"`
	Seq       uint64 `json:"sequence,omitempty"`
	MsgID     string `json:"msgId,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// Outcome is the consumer's verdict on the copy, when it came within
	// ReplayOptions.Wait.
	Outcome *outcome.Outcome `json:"outcome,omitempty"`
	// Removed is true when the letter was removed from the DLQ.
	Removed bool `json:"removed"`
	// Err is why the replay (or the removal) failed.
	Err error `json:"-"`
}

// Skipped reports whether the consumer skipped the replay: it did not act
// on it, and the letter is kept.
func (r *Replayed) Skipped() bool { return r.Outcome != nil && r.Outcome.Result == outcome.Skipped }

// ReplayMsg builds the message that replays l: its original body and
// headers (less the Kdsync-* and Nats-* ones) to its original subject,
// with Kdsync-Replay-Of = <dlq stream>:<seq>, the original stream and
// sequence (for the consumer's staleness check) and a Nats-Msg-Id of its
// own, <event id>:replay:<dlq seq>, so that replaying the same letter twice
// stores it once. A forced replay's id ends in :force: the letter is kept
// when the consumer skips an unforced replay as stale, and its forced
// replay must not be dropped as that one's duplicate.
func (s *Store) ReplayMsg(l *Letter, force bool) (*nats.Msg, error) {
	if l.OriginalSubject == "" {
		return nil, fmt.Errorf("dlq: letter #%d has no %s header; nowhere to replay it", l.Seq, outcome.HdrOriginalSubject)
	}
	h := nats.Header{}
	for k, v := range l.Header {
		if hasPrefixFold(k, "Kdsync-") || hasPrefixFold(k, "Nats-") {
			continue
		}
		h[k] = slices.Clone(v)
	}
	ref := s.Ref(l)
	h.Set(outcome.HdrReplayOf, ref)
	if l.OriginalStream != "" {
		h.Set(outcome.HdrOriginalStream, l.OriginalStream)
	}
	if l.OriginalSeq != 0 {
		h.Set(outcome.HdrOriginalSeq, strconv.FormatUint(l.OriginalSeq, 10))
	}
	if force {
		h.Set(HdrReplayForce, "true")
	}
	id := ref + ":replay"
	if l.EventID != "" {
		id = l.EventID + ":replay:" + strconv.FormatUint(l.Seq, 10)
	}
	if force {
		id += ":force"
	}
	h.Set(jetstream.MsgIDHeader, id)
	return &nats.Msg{Subject: l.OriginalSubject, Header: h, Data: l.Data}, nil
}

// Replay replays ls in order: it republishes each letter (see ReplayMsg)
// and waits for the stream's acknowledgement; with o.Wait it then waits
// for the copies' outcomes. A letter is removed from the DLQ once its copy
// is stored, unless o.Keep, or the consumer skipped the copy, or the
// replay failed. The results are in the order of ls; a failure is in its
// result's Err.
func (s *Store) Replay(ctx context.Context, ls []*Letter, o ReplayOptions) []*Replayed {
	out := make([]*Replayed, len(ls))
	since := time.Now().Add(-time.Second)
	awaited := map[string]*Replayed{}
	for i, l := range ls {
		r := &Replayed{Letter: l}
		out[i] = r
		msg, err := s.ReplayMsg(l, o.Force)
		if err != nil {
			r.Err = err
			continue
		}
		ack, err := s.js.PublishMsg(ctx, msg)
		if err != nil {
			r.Err = fmt.Errorf("dlq: replay #%d to %s: %w", l.Seq, msg.Subject, err)
			continue
		}
		r.Subject, r.Stream, r.Seq, r.MsgID, r.Duplicate = msg.Subject, ack.Stream, ack.Sequence, msg.Header.Get(jetstream.MsgIDHeader), ack.Duplicate
		if r.Duplicate {
			// The copy was stored by an earlier replay: its outcome may be
			// older than this one.
			since = s.storedBefore(ctx, ack.Stream, ack.Sequence, since)
		}
		awaited[outcome.MsgID(ack.Stream, ack.Sequence)] = r
	}
	if o.Wait > 0 && len(awaited) > 0 {
		if err := s.awaitOutcomes(ctx, awaited, since, o.Wait); err != nil {
			for _, r := range awaited {
				r.Err = fmt.Errorf("replayed as %s #%d; waiting for its outcome: %w", r.Stream, r.Seq, err)
			}
		}
	}
	for _, r := range out {
		if r.Err != nil || r.Seq == 0 || o.Keep || r.Skipped() {
			continue
		}
		if err := s.Purge(ctx, r.Letter); err != nil {
			r.Err = fmt.Errorf("replayed as %s #%d, but: %w", r.Stream, r.Seq, err)
			continue
		}
		r.Removed = true
	}
	return out
}

// storedBefore returns the earlier of t and the time stream's message seq
// was stored.
func (s *Store) storedBefore(ctx context.Context, stream string, seq uint64, t time.Time) time.Time {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return t
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil || !m.Time.Before(t) {
		return t
	}
	return m.Time.Add(-time.Second)
}

// awaitOutcomes follows the outcome stream from since until every replay
// in want (by outcome Nats-Msg-Id) has its outcome, or wait passes. Not
// finding some within wait is no error.
func (s *Store) awaitOutcomes(ctx context.Context, want map[string]*Replayed, since time.Time, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	oc, err := s.js.OrderedConsumer(ctx, s.opts.OutcomeStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.opts.OutcomePrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil // no consumer has run yet: nothing to wait for
	case err != nil && ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("dlq: read %s: %w", s.opts.OutcomeStream, err)
	}
	missing := len(want)
	deadline, _ := ctx.Deadline()
	for missing > 0 {
		left := min(s.opts.FetchWait, time.Until(deadline))
		if left < 100*time.Millisecond {
			return nil
		}
		fctx, fcancel := context.WithTimeout(ctx, left)
		batch, err := oc.Fetch(256, jetstream.FetchContext(fctx))
		if err != nil {
			fcancel()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dlq: read %s: %w", s.opts.OutcomeStream, err)
		}
		for m := range batch.Messages() {
			r, ok := want[m.Headers().Get(jetstream.MsgIDHeader)]
			if !ok || r.Outcome != nil {
				continue
			}
			var o outcome.Outcome
			if json.Unmarshal(m.Data(), &o) == nil {
				r.Outcome = &o
				missing--
			}
			if missing == 0 {
				break
			}
		}
		fcancel()
	}
	return nil
}

// Purge removes l from the DLQ stream. A letter already gone is not an
// error.
func (s *Store) Purge(ctx context.Context, l *Letter) error {
	st, err := s.js.Stream(ctx, s.opts.Stream)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", s.opts.Stream, err)
	}
	err = st.DeleteMsg(ctx, l.Seq)
	if err == nil {
		return nil
	}
	// The server reports a message already gone as a failed deletion;
	// look again before calling it one.
	if _, gerr := st.GetMsg(ctx, l.Seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return fmt.Errorf("dlq: remove #%d from %s: %w", l.Seq, s.opts.Stream, err)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
