package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/outcome"
)

// fixture is an embedded JetStream server with kdsync's streams.
type fixture struct {
	t     *testing.T
	nc    *nats.Conn
	js    jetstream.JetStream
	store *dlq.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, nc, js := harness.NewJetStream(t)
	for name, subj := range map[string]string{"IDENTITY": "identity.>", "KDSYNC_DLQ": "kdsync.dlq.>", "KDSYNC_OUTCOMES": "kdsync.outcome.>"} {
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name: name, Subjects: []string{subj}, Storage: jetstream.FileStorage, Duplicates: time.Minute,
		}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := dlq.New(js, dlq.Options{FetchWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, nc: nc, js: js, store: s}
}

// death describes one dead letter.
type death struct {
	id, user string
	action   handlers.Action
	class    string // Kdsync-Error-Class
	attempts int
	binary   bool
	// resent: the publisher sent the same event again past the
	// duplicate window, so it has a Nats-Msg-Id of its own.
	resent bool
	// attemptLog is the Kdsync-Attempt-Log header, if any.
	attemptLog string
	// old: stored on the subjects of contract v1.0, without the user
	// token (kdsync.dlq.<reason>.<action>, kdsync.outcome.<result>.<action>).
	old bool
}

// subjects are d's dead-letter and outcome subjects.
func (d death) subjects() (dead, out string) {
	if d.old {
		return "kdsync.dlq." + d.class + "." + string(d.action), "kdsync.outcome.deadlettered." + string(d.action)
	}
	return outcome.DeadLetterSubject("kdsync.dlq", outcome.Reason(d.class), d.action, d.user),
		outcome.Subject("kdsync.outcome", outcome.Deadlettered, d.action, d.user)
}

// original builds the identity event as a publisher sends it.
func (d death) original() *nats.Msg {
	data := map[string]any{"userId": d.user, "deptId": "1243693141656107521", "role": 1}
	h := nats.Header{jetstream.MsgIDHeader: {d.id}}
	if d.resent {
		h.Set(jetstream.MsgIDHeader, d.id+"-resent")
	}
	var body []byte
	if d.binary {
		h.Set("ce-specversion", "1.0")
		h.Set("ce-id", d.id)
		h.Set("ce-source", "hris/test")
		h.Set("ce-type", handlers.TypePrefix+string(d.action))
		h.Set("content-type", "application/json")
		body, _ = json.Marshal(data)
	} else {
		body, _ = json.Marshal(map[string]any{"specversion": "1.0", "id": d.id, "source": "hris/test",
			"type": handlers.TypePrefix + string(d.action), "data": data})
	}
	return &nats.Msg{Subject: "identity.employee." + string(d.action) + "." + d.user, Header: h, Data: body}
}

// kill publishes d's original event to IDENTITY, then its dead letter and
// dead-letter outcome as the consumer writes them (consumer/process.go:
// deadLetterMsg and finish). It returns the DLQ sequence.
func (f *fixture) kill(d death) uint64 {
	f.t.Helper()
	ctx := f.t.Context()
	orig := d.original()
	ack, err := f.js.PublishMsg(ctx, orig)
	if err != nil {
		f.t.Fatal(err)
	}
	h := nats.Header{}
	for k, v := range orig.Header {
		if k != jetstream.MsgIDHeader {
			h[k] = v
		}
	}
	errText := fmt.Sprintf("%s: user %s: KooDrive refused", d.class, d.user)
	h.Set(outcome.HdrReason, errText)
	h.Set(outcome.HdrErrorClass, d.class)
	h.Set(outcome.HdrAttempts, strconv.Itoa(d.attempts))
	if d.attemptLog != "" {
		h.Set(outcome.HdrAttemptLog, d.attemptLog)
	}
	h.Set(outcome.HdrOriginalSubject, orig.Subject)
	h.Set(outcome.HdrOriginalStream, "IDENTITY")
	h.Set(outcome.HdrOriginalSeq, strconv.FormatUint(ack.Sequence, 10))
	h.Set(outcome.HdrEventID, d.id)
	h.Set(outcome.HdrUserID, d.user)
	h.Set(outcome.HdrDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(jetstream.MsgIDHeader, outcome.MsgID("IDENTITY", ack.Sequence))
	deadSubj, outSubj := d.subjects()
	dack, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: deadSubj, Header: h, Data: orig.Data})
	if err != nil {
		f.t.Fatal(err)
	}
	out, _ := json.Marshal(outcome.Outcome{EventID: d.id, UserID: d.user, Action: d.action, Result: outcome.Deadlettered,
		Reason: outcome.Reason(d.class), Error: errText, Attempts: d.attempts, Subject: orig.Subject, Stream: "IDENTITY", Sequence: ack.Sequence, Time: time.Now().UTC()})
	if _, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: outSubj, Data: out,
		Header: nats.Header{jetstream.MsgIDHeader: {outcome.MsgID("IDENTITY", ack.Sequence)}}}); err != nil {
		f.t.Fatal(err)
	}
	return dack.Sequence
}

func ids(ls []*dlq.Letter) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.EventID
	}
	return out
}

func TestList(t *testing.T) {
	f := newFixture(t)
	f.kill(death{id: "e1", user: "1001", action: handlers.Changed, class: "not_found", attempts: 1})
	f.kill(death{id: "e2", user: "1002", action: handlers.Hired, class: "permanent", attempts: 1})
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	// e3 and e4 are stored as kdsync before contract v1.1 stored them.
	s3 := f.kill(death{id: "e3", user: "1001", action: handlers.Disabled, class: "retry_budget_exhausted", attempts: 37, binary: true, old: true})
	f.kill(death{id: "e4", user: "1003", action: handlers.Changed, class: "not_found", attempts: 1, old: true})
	time.Sleep(20 * time.Millisecond)
	late := time.Now()

	cases := map[string]struct {
		sel  dlq.Selector
		want []string
	}{
		"all":             {dlq.Selector{}, []string{"e1", "e2", "e3", "e4"}},
		"user":            {dlq.Selector{User: "1001"}, []string{"e1", "e3"}},
		"reason":          {dlq.Selector{Reason: "not_found"}, []string{"e1", "e4"}},
		"action":          {dlq.Selector{Action: "changed"}, []string{"e1", "e4"}},
		"reason+action":   {dlq.Selector{Reason: "permanent", Action: "hired"}, []string{"e2"}},
		"since":           {dlq.Selector{Since: mid}, []string{"e3", "e4"}},
		"until":           {dlq.Selector{Until: mid}, []string{"e1", "e2"}},
		"since+until":     {dlq.Selector{Since: mid, Until: late, User: "1003"}, []string{"e4"}},
		"after the last":  {dlq.Selector{Since: late}, []string{}},
		"seq":             {dlq.Selector{Seqs: []uint64{s3, 999}}, []string{"e3"}},
		"seq+user":        {dlq.Selector{Seqs: []uint64{s3}, User: "1002"}, []string{}},
		"ids":             {dlq.Selector{IDs: []string{"e4", "e2"}}, []string{"e2", "e4"}},
		"no match":        {dlq.Selector{User: "9999"}, []string{}},
		"wildcard reason": {dlq.Selector{Reason: "*"}, []string{}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ls, err := f.store.List(t.Context(), tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ls); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	ls, err := f.store.List(t.Context(), dlq.Selector{Seqs: []uint64{s3}})
	if err != nil || len(ls) != 1 {
		t.Fatal(ls, err)
	}
	l := ls[0]
	if l.Reason != "retry_budget_exhausted" || l.Attempts != 37 || l.Action != "disabled" || l.UserID != "1001" ||
		l.OriginalSubject != "identity.employee.disabled.1001" || l.OriginalStream != "IDENTITY" || l.OriginalSeq != 3 ||
		l.DeadAt.IsZero() || l.Stored.IsZero() || l.Error == "" || l.Subject != "kdsync.dlq.retry_budget_exhausted.disabled" {
		t.Errorf("letter %+v", l)
	}
	if l.Header.Get("ce-id") != "e3" {
		t.Errorf("original headers not kept: %v", l.Header)
	}
}

func TestFindAndOutcome(t *testing.T) {
	f := newFixture(t)
	f.kill(death{id: "x1", user: "2001", action: handlers.Changed, class: "not_found", attempts: 1})
	s2 := f.kill(death{id: "2", user: "2002", action: handlers.Enabled, class: "permanent", attempts: 2, old: true})
	f.kill(death{id: "x1", user: "2001", action: handlers.Changed, class: "not_found", attempts: 1, resent: true})

	ls, err := f.store.Find(t.Context(), strconv.FormatUint(s2, 10))
	if err != nil || len(ls) != 1 || ls[0].EventID != "2" {
		t.Fatalf("by seq: %v %v", ids(ls), err)
	}
	ls, err = f.store.Find(t.Context(), "x1")
	if err != nil || len(ls) != 2 {
		t.Fatalf("by id: %v %v", ids(ls), err)
	}
	// A number that is no DLQ sequence is taken as an event id.
	ls, err = f.store.Find(t.Context(), "777")
	if err != nil || len(ls) != 0 {
		t.Fatalf("unknown: %v %v", ids(ls), err)
	}

	out, err := f.store.Outcome(t.Context(), ls2(t, f, s2))
	if err != nil || out == nil {
		t.Fatalf("outcome: %+v %v", out, err)
	}
	if out.EventID != "2" || out.Sequence != 2 || out.Result != outcome.Deadlettered || out.Attempts != 2 {
		t.Errorf("outcome %+v", out)
	}
	// A letter of the v1.1 form finds its outcome of the v1.1 form.
	s4 := f.kill(death{id: "x4", user: "2004", action: handlers.Changed, class: "not_found", attempts: 3})
	l4 := ls2(t, f, s4)
	if l4.Subject != "kdsync.dlq.not_found.changed.2004" || l4.Action != "changed" || l4.Reason != "not_found" || l4.UserID != "2004" {
		t.Errorf("letter %+v", l4)
	}
	out, err = f.store.Outcome(t.Context(), l4)
	if err != nil || out == nil || out.EventID != "x4" || out.Attempts != 3 {
		t.Fatalf("outcome of a v1.1 letter: %+v %v", out, err)
	}
}

func ls2(t *testing.T, f *fixture, seq uint64) *dlq.Letter {
	t.Helper()
	ls, err := f.store.List(t.Context(), dlq.Selector{Seqs: []uint64{seq}})
	if err != nil || len(ls) != 1 {
		t.Fatalf("letter %d: %v %v", seq, ls, err)
	}
	return ls[0]
}

func TestReplay(t *testing.T) {
	f := newFixture(t)
	structured := f.kill(death{id: "r1", user: "3001", action: handlers.Changed, class: "not_found", attempts: 1})
	binary := f.kill(death{id: "r2", user: "3002", action: handlers.Hired, class: "permanent", attempts: 1, binary: true})
	stream, err := f.js.Stream(t.Context(), "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		seq   uint64
		force bool
	}{"structured": {structured, false}, "binary, forced": {binary, true}} {
		t.Run(name, func(t *testing.T) {
			l := ls2(t, f, tc.seq)
			r, err := replay1(t, f.store, l, dlq.ReplayOptions{Force: tc.force})
			if err != nil {
				t.Fatal(err)
			}
			if r.Subject != l.OriginalSubject || r.Stream != "IDENTITY" || !r.Removed || r.Duplicate {
				t.Errorf("replayed %+v", r)
			}
			m, err := stream.GetMsg(t.Context(), r.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Data) != string(l.Data) || m.Subject != l.OriginalSubject {
				t.Errorf("replayed body or subject differ: %s %s", m.Subject, m.Data)
			}
			wantHdr := map[string]string{
				outcome.HdrReplayOf:       "KDSYNC_DLQ:" + strconv.FormatUint(tc.seq, 10),
				outcome.HdrOriginalStream: "IDENTITY",
				outcome.HdrOriginalSeq:    strconv.FormatUint(l.OriginalSeq, 10),
				jetstream.MsgIDHeader:     l.EventID + ":replay:" + strconv.FormatUint(tc.seq, 10) + map[bool]string{true: ":force"}[tc.force],
				outcome.HdrReason:         "",
				outcome.HdrErrorClass:     "",
				outcome.HdrDeadAt:         "",
				dlq.HdrReplayForce:        map[bool]string{true: "true"}[tc.force],
			}
			for k, v := range wantHdr {
				if got := m.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			// The consumer accepts it as the original event.
			ev, err := handlers.Decoder{}.Decode(m.Subject, m.Header, m.Data)
			if err != nil || ev.ID != l.EventID || ev.Binary != (name != "structured") {
				t.Errorf("decode: %+v %v", ev, err)
			}
			if left, err := f.store.List(t.Context(), dlq.Selector{Seqs: []uint64{tc.seq}}); err != nil || len(left) != 0 {
				t.Errorf("the letter is still in the DLQ (%d letters, %v)", len(left), err)
			}
			// Replaying the same letter again (e.g. after a crash before
			// the removal) stores nothing new.
			again, err := replay1(t, f.store, l, dlq.ReplayOptions{Force: tc.force})
			if err != nil || !again.Duplicate || again.Seq != r.Seq {
				t.Errorf("second replay %+v %v", again, err)
			}
		})
	}
}

func TestReplayKeepAndFailure(t *testing.T) {
	f := newFixture(t)
	seq := f.kill(death{id: "k1", user: "4001", action: handlers.Changed, class: "not_found", attempts: 1})
	l := ls2(t, f, seq)
	r, err := replay1(t, f.store, l, dlq.ReplayOptions{Keep: true})
	if err != nil || r.Removed {
		t.Fatalf("%+v %v", r, err)
	}
	if left := ls2(t, f, seq); left == nil {
		t.Fatal("kept letter removed")
	}

	// Nowhere to publish: the letter stays.
	l.OriginalSubject = "nowhere.employee.changed.4001"
	if _, err := replay1(t, f.store, l, dlq.ReplayOptions{}); err == nil {
		t.Fatal("replay to a subject no stream stores succeeded")
	}
	if left := ls2(t, f, seq); left == nil {
		t.Fatal("letter removed although its replay failed")
	}
	// No original subject: refused before publishing.
	l.OriginalSubject = ""
	if _, err := f.store.ReplayMsg(l, false); err == nil {
		t.Fatal("replay without an original subject")
	}
}

// replay1 replays one letter.
func replay1(t *testing.T, s *dlq.Store, l *dlq.Letter, o dlq.ReplayOptions) (*dlq.Replayed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rs := s.Replay(ctx, []*dlq.Letter{l}, o)
	if len(rs) != 1 || rs[0].Letter != l {
		t.Fatalf("Replay returned %d results", len(rs))
	}
	return rs[0], rs[0].Err
}

func TestPurge(t *testing.T) {
	f := newFixture(t)
	a := f.kill(death{id: "p1", user: "5001", action: handlers.Changed, class: "not_found", attempts: 1})
	b := f.kill(death{id: "p2", user: "5002", action: handlers.Changed, class: "not_found", attempts: 1})
	la := ls2(t, f, a)
	if err := f.store.Purge(t.Context(), la); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Purge(t.Context(), la); err != nil {
		t.Fatalf("purging a letter already gone: %v", err)
	}
	ls, err := f.store.List(t.Context(), dlq.Selector{})
	if err != nil || len(ls) != 1 || ls[0].Seq != b {
		t.Fatalf("left %v %v", ids(ls), err)
	}
}

func TestMissingStream(t *testing.T) {
	f := newFixture(t)
	s, err := dlq.New(f.js, dlq.Options{Stream: "NO_SUCH"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(t.Context(), dlq.Selector{}); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("err %v", err)
	}
}

// answerReplays plays the consumer: it answers every replayed event that
// reaches IDENTITY with an outcome of result and reason.
func (f *fixture) answerReplays(result outcome.Result, reason outcome.Reason) {
	f.t.Helper()
	oc, err := f.js.OrderedConsumer(f.t.Context(), "IDENTITY", jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		f.t.Fatal(err)
	}
	cc, err := oc.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil || m.Headers().Get(outcome.HdrReplayOf) == "" {
			return
		}
		action, user, _ := handlers.ParseSubject(m.Subject())
		out, _ := json.Marshal(outcome.Outcome{EventID: m.Headers().Get(outcome.HdrEventID), UserID: user, Action: handlers.Action(action),
			Result: result, Reason: reason, Subject: m.Subject(), Stream: "IDENTITY", Sequence: md.Sequence.Stream})
		_, _ = f.js.PublishMsg(context.Background(), &nats.Msg{Subject: "kdsync.outcome." + string(result) + "." + action, Data: out,
			Header: nats.Header{jetstream.MsgIDHeader: {outcome.MsgID("IDENTITY", md.Sequence.Stream)}}})
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(cc.Stop)
}

// TestReplayWaitsForOutcomes: with a wait, a letter whose replay the
// consumer skipped stays in the DLQ; others are removed.
func TestReplayWaitsForOutcomes(t *testing.T) {
	cases := map[string]struct {
		result  outcome.Result
		reason  outcome.Reason
		answer  bool
		removed bool
	}{
		"applied":           {outcome.Applied, "", true, true},
		"skipped as stale":  {outcome.Skipped, outcome.SkipStale, true, false},
		"skipped duplicate": {outcome.Skipped, outcome.SkipDuplicate, true, false},
		"dead again":        {outcome.Deadlettered, "not_found", true, true},
		"no outcome":        {answer: false, removed: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			seq := f.kill(death{id: "w1", user: "6001", action: handlers.Changed, class: "not_found", attempts: 1})
			if tc.answer {
				f.answerReplays(tc.result, tc.reason)
			}
			wait := 10 * time.Second
			if !tc.answer {
				wait = 300 * time.Millisecond
			}
			start := time.Now()
			r, err := replay1(t, f.store, ls2(t, f, seq), dlq.ReplayOptions{Wait: wait})
			if err != nil {
				t.Fatal(err)
			}
			if tc.answer && (r.Outcome == nil || r.Outcome.Result != tc.result || r.Outcome.Sequence != r.Seq) {
				t.Fatalf("outcome %+v", r.Outcome)
			}
			if tc.answer && time.Since(start) > 5*time.Second {
				t.Errorf("waited %s for an outcome that was there", time.Since(start))
			}
			if !tc.answer && r.Outcome != nil {
				t.Fatalf("outcome %+v from nowhere", r.Outcome)
			}
			left, err := f.store.List(t.Context(), dlq.Selector{Seqs: []uint64{seq}})
			if err != nil {
				t.Fatal(err)
			}
			if r.Removed != tc.removed || (len(left) == 0) != tc.removed {
				t.Fatalf("removed %v, %d left; want removed %v", r.Removed, len(left), tc.removed)
			}
		})
	}
}

// TestLetterAttemptLog: a letter carries its attempt log and how many
// attempts the log left out.
func TestLetterAttemptLog(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC)
	log := func(ns ...int) (string, []outcome.Attempt) {
		as := make([]outcome.Attempt, len(ns))
		for i, n := range ns {
			as[i] = outcome.Attempt{N: n, At: at.Add(time.Duration(n) * time.Minute), Class: "retryable", Error: "HTTP 503 #" + strconv.Itoa(n)}
		}
		b, _ := json.Marshal(as)
		return string(b), as
	}
	var trimmed []int
	for n := 1; n <= 100; n++ {
		if n <= 5 || n > 80 {
			trimmed = append(trimmed, n)
		}
	}
	allV, allAs := log(1, 2, 3, 4)
	trimV, trimAs := log(trimmed...)
	cases := map[string]struct {
		attempts    int
		header      string
		want        []outcome.Attempt
		wantNotKept int
	}{
		"bad input, no attempt": {0, "", nil, 0},
		"all kept":              {4, allV, allAs, 0},
		"first and last kept":   {100, trimV, trimAs, 75},
		"unreadable":            {3, "[{", nil, 0},
	}
	i := 0
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			i++
			seq := f.kill(death{id: "al" + strconv.Itoa(i), user: "5001", action: handlers.Hired, class: "retry_budget_exhausted",
				attempts: tc.attempts, attemptLog: tc.header})
			l := ls2(t, f, seq)
			same := slices.EqualFunc(l.AttemptLog, tc.want, func(a, b outcome.Attempt) bool {
				return a.N == b.N && a.Class == b.Class && a.Error == b.Error && a.At.Equal(b.At)
			})
			if !same || l.AttemptsNotKept != tc.wantNotKept {
				t.Errorf("log %+v, %d not kept; want %+v, %d", l.AttemptLog, l.AttemptsNotKept, tc.want, tc.wantNotKept)
			}
		})
	}
}
