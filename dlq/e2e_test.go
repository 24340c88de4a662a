package dlq_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// pipeline is the real consumer in front of the KooDrive simulator.
type pipeline struct {
	t     *testing.T
	sim   *harness.Sim
	nc    *nats.Conn
	js    jetstream.JetStream
	kd    *kdapi.Client
	store *dlq.Store
	outs  *harness.Outcomes
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	h := harness.NewEnv(t, kdsim.Options{})
	sim, nc, js, kd := h.Sim, h.NC, h.JS, h.KD
	store, err := dlq.New(js, dlq.Options{FetchWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline{t: t, sim: sim, nc: nc, js: js, kd: kd, store: store}
}

// run starts a consumer with decoder and returns a function that stops it.
func (p *pipeline) run(decoder handlers.Decoder) (stop func()) {
	p.t.Helper()
	stop = harness.RunConsumer(p.t, consumer.Options{
		Conn: p.nc, Manage: true, Concurrency: 4, AckWait: 3 * time.Second,
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Handler: &handlers.Handler{Users: p.kd}, Decoder: decoder,
		Logger: harness.Logger(slog.LevelError),
	})
	if p.outs == nil {
		ctx, cancel := context.WithTimeout(p.t.Context(), 10*time.Second)
		defer cancel()
		o, err := harness.CollectOutcomes(ctx, p.nc, "KDSYNC_OUTCOMES")
		if err != nil {
			p.t.Fatal(err)
		}
		p.t.Cleanup(o.Stop)
		p.outs = o
	}
	return stop
}

// publish sends a structured event and returns its stream sequence.
func (p *pipeline) publish(id string, action handlers.Action, user string, data map[string]any) uint64 {
	p.t.Helper()
	data["userId"] = user
	body, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "hris/test",
		"type": handlers.TypePrefix + string(action), "subject": user, "time": time.Now().UTC().Format(time.RFC3339Nano), "data": data})
	ack, err := p.js.PublishMsg(p.t.Context(), &nats.Msg{Subject: "identity.employee." + string(action) + "." + user,
		Header: nats.Header{jetstream.MsgIDHeader: {id + "-msg"}}, Data: body})
	if err != nil {
		p.t.Fatal(err)
	}
	return ack.Sequence
}

// outcome waits for the outcome of the IDENTITY message at seq.
func (p *pipeline) outcome(seq uint64) outcome.Outcome {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, o := range p.outs.All() {
			if o.Stream == "IDENTITY" && o.Sequence == seq {
				return o
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("no outcome for IDENTITY #%d", seq)
	return outcome.Outcome{}
}

// letters waits for user's single dead letter: the consumer publishes the
// outcome and the dead letter together, and the outcome may be seen first.
func (p *pipeline) letters(user string) []*dlq.Letter {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ls, err := p.store.List(p.t.Context(), dlq.Selector{User: user})
		if err == nil && len(ls) == 1 {
			return ls
		}
		if err != nil || len(ls) > 1 || time.Now().After(deadline) {
			p.t.Fatalf("dead letters of %s: %d, %v", user, len(ls), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replayOne finds the single dead letter of user and replays it, waiting
// for the consumer's outcome.
func (p *pipeline) replayOne(user string) *dlq.Replayed {
	p.t.Helper()
	ls := p.letters(user)
	rs := p.store.Replay(p.t.Context(), ls, dlq.ReplayOptions{Wait: 20 * time.Second})
	r := rs[0]
	if r.Err != nil || r.Duplicate || r.Outcome == nil {
		p.t.Fatalf("replay: %+v", r)
	}
	if o := p.outcome(r.Seq); o.Result != r.Outcome.Result || o.Sequence != r.Seq {
		p.t.Errorf("the replay's outcome in the stream %+v differs from what Replay saw %+v", o, r.Outcome)
	}
	return r
}

// TestReplayAfterRaisingTheSizeLimit: an event over the consumer's size
// limit is dead-lettered; once the operator raises the limit, its replay
// goes through the same pipeline and is applied.
func TestReplayAfterRaisingTheSizeLimit(t *testing.T) {
	p := newPipeline(t)
	dept := p.sim.Departments()[0]
	user := "1008600000000101"
	stop := p.run(handlers.Decoder{MaxSize: 512})
	seq := p.publish("big-hire", handlers.Hired, user, map[string]any{"deptId": strconv.FormatInt(dept, 10), "role": 1, "name": strings.Repeat("n", 600)})
	if o := p.outcome(seq); o.Result != outcome.Deadlettered || o.Reason != outcome.Reason(handlers.ReasonTooLarge) || o.EventID != "big-hire" {
		t.Fatalf("first outcome %+v", o)
	}
	stop()

	stop = p.run(handlers.Decoder{})
	defer stop()
	r := p.replayOne(user)
	if l := r.Letter; l.OriginalSeq != seq || l.Reason != string(handlers.ReasonTooLarge) {
		t.Errorf("letter %+v", l)
	}
	if o := r.Outcome; o.Result != outcome.Applied || o.EventID != "big-hire" || !r.Removed {
		t.Fatalf("replay outcome %+v, removed %v", o, r.Removed)
	}
	u, ok := p.sim.User(user)
	if !ok || u.User.DeptID != strconv.FormatInt(dept, 10) {
		t.Fatalf("user after the replay: %+v %v", u, ok)
	}
	if left, err := p.store.List(t.Context(), dlq.Selector{}); err != nil || len(left) != 0 {
		t.Errorf("%d dead letters left (%v)", len(left), err)
	}
}

// TestReplayAfterFixingTheCause: a change to a user KooDrive does not know
// is dead-lettered (not_found); once the user exists, the replay applies
// the change.
func TestReplayAfterFixingTheCause(t *testing.T) {
	p := newPipeline(t)
	depts := p.sim.Departments()
	user := "1008600000000102"
	stop := p.run(handlers.Decoder{})
	defer stop()
	seq := p.publish("move-1", handlers.Changed, user, map[string]any{"deptId": strconv.FormatInt(depts[1], 10)})
	if o := p.outcome(seq); o.Result != outcome.Deadlettered || o.Reason != outcome.Reason(kdapi.ClassNotFound.String()) {
		t.Fatalf("first outcome %+v", o)
	}
	// The cause, fixed: the user is created in KooDrive's console.
	if _, err := p.sim.PutUserDirect(kdsim.User{UserID: user, DeptID: strconv.FormatInt(depts[0], 10), Role: 1}); err != nil {
		t.Fatal(err)
	}
	ls := p.letters(user)
	if out, err := p.store.Outcome(t.Context(), ls[0]); err != nil || out == nil || out.Sequence != seq || out.Result != outcome.Deadlettered {
		t.Errorf("dead letter's outcome: %+v %v", out, err)
	}
	r := p.replayOne(user)
	if o := r.Outcome; o.Result != outcome.Applied || !r.Removed {
		t.Fatalf("replay outcome %+v, removed %v", o, r.Removed)
	}
	u, ok := p.sim.User(user)
	if !ok || u.User.DeptID != strconv.FormatInt(depts[1], 10) {
		t.Fatalf("user after the replay: %+v", u)
	}
}

// TestReplayStaleThroughTheConsumer: a change dead-lettered (not_found:
// the user was not hired yet) and replayed after a newer event was
// applied for the user is skipped by the real consumer as stale, with an
// outcome saying so, and the letter stays; replayed with Force it is
// applied and removed.
func TestReplayStaleThroughTheConsumer(t *testing.T) {
	p := newPipeline(t)
	depts := p.sim.Departments()
	user := "1008600000000103"
	stop := p.run(handlers.Decoder{})
	defer stop()
	early := strconv.FormatInt(depts[1], 10)
	seq := p.publish("move-early", handlers.Changed, user, map[string]any{"deptId": early})
	if o := p.outcome(seq); o.Result != outcome.Deadlettered || o.Reason != outcome.Reason(kdapi.ClassNotFound.String()) {
		t.Fatalf("first outcome %+v", o)
	}
	// Newer state: the hire comes in and is applied.
	hired := strconv.FormatInt(depts[0], 10)
	hseq := p.publish("hire-later", handlers.Hired, user, map[string]any{"deptId": hired, "role": 1})
	if o := p.outcome(hseq); o.Result != outcome.Applied {
		t.Fatalf("hire outcome %+v", o)
	}

	r := p.replayOne(user)
	// The letter says what its one attempt met.
	if l := r.Letter; len(l.AttemptLog) != 1 || l.AttemptLog[0].N != 1 || l.AttemptLog[0].Class != kdapi.ClassNotFound.String() ||
		l.AttemptLog[0].Error != l.Error || l.AttemptsNotKept != 0 {
		t.Errorf("attempt log %+v (error %q)", l.AttemptLog, l.Error)
	}
	if o := r.Outcome; o.Result != outcome.Skipped || o.Reason != outcome.SkipStale || !r.Skipped() || r.Removed {
		t.Fatalf("stale replay: outcome %+v, removed %v", o, r.Removed)
	}
	if note := r.Outcome.Note; !strings.Contains(note, strconv.FormatUint(seq, 10)) || !strings.Contains(note, strconv.FormatUint(hseq, 10)) || !strings.Contains(note, "-force") {
		t.Errorf("stale outcome's note %q does not say why", note)
	}
	if u, _ := p.sim.User(user); u.User.DeptID != hired {
		t.Fatalf("a stale replay changed the user: %+v", u.User)
	}
	ls, err := p.store.List(t.Context(), dlq.Selector{User: user})
	if err != nil || len(ls) != 1 || ls[0].Seq != r.Letter.Seq {
		t.Fatalf("the letter was not kept: %v %v", ls, err)
	}

	rs := p.store.Replay(t.Context(), ls, dlq.ReplayOptions{Force: true, Wait: 20 * time.Second})
	f := rs[0]
	if f.Err != nil || f.Duplicate || f.Outcome == nil || f.Outcome.Result != outcome.Applied || !f.Removed {
		t.Fatalf("forced replay: %+v, outcome %+v", f, f.Outcome)
	}
	if f.Seq == r.Seq {
		t.Fatalf("the forced replay was stored as the unforced one, #%d", f.Seq)
	}
	if u, _ := p.sim.User(user); u.User.DeptID != early {
		t.Fatalf("the forced replay was not applied: %+v", u.User)
	}
	if left, err := p.store.List(t.Context(), dlq.Selector{User: user}); err != nil || len(left) != 0 {
		t.Errorf("%d dead letters left (%v)", len(left), err)
	}
}

// TestBadInputKeepsEventID: an event refused for its data (or anything
// after the envelope) is dead-lettered under its event id and source, and
// is found by that id and by the original's Nats-Msg-Id.
func TestBadInputKeepsEventID(t *testing.T) {
	p := newPipeline(t)
	stop := p.run(handlers.Decoder{})
	defer stop()
	tests := []struct {
		id, user string
		action   handlers.Action
		data     map[string]any
		reason   handlers.Reason
	}{
		{"bad-role", "1008600000000201", handlers.Hired, map[string]any{"deptId": "42", "role": 7}, handlers.ReasonInvalidField},
		{"bad-dept", "1008600000000202", handlers.Changed, map[string]any{"deptId": "sales"}, handlers.ReasonInvalidField},
		{"bad-status", "1008600000000203", handlers.Changed, map[string]any{"status": "off"}, handlers.ReasonInvalidField},
	}
	for _, tc := range tests {
		seq := p.publish(tc.id, tc.action, tc.user, tc.data)
		o := p.outcome(seq)
		if o.Result != outcome.Deadlettered || o.Reason != outcome.Reason(tc.reason) || o.EventID != tc.id || o.Source != "hris/test" {
			t.Errorf("%s: outcome %+v; want dead-lettered %s naming event %s from hris/test", tc.id, o, tc.reason, tc.id)
		}
		l := p.letters(tc.user)[0]
		if l.EventID != tc.id || l.Source != "hris/test" || l.OriginalMsgID != tc.id+"-msg" {
			t.Errorf("%s: letter names event %q from %q, msg id %q", tc.id, l.EventID, l.Source, l.OriginalMsgID)
		}
		for _, ref := range []string{tc.id, tc.id + "-msg"} {
			ls, err := p.store.Find(t.Context(), ref)
			if err != nil || len(ls) != 1 || ls[0].Seq != l.Seq {
				t.Errorf("Find(%q) = %d letters, %v; want the letter #%d", ref, len(ls), err, l.Seq)
			}
		}
	}
}
