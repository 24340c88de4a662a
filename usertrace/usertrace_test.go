package usertrace_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/usertrace"
)

// TestTrace: a user hired (applied), moved to a department KooDrive does
// not have (dead-lettered), moved behind kdsync's back in KooDrive, then
// disabled past the guard's limit (held). The timeline shows each event
// with what became of it, the letter, the hold, the record, KooDrive's
// state and the drift.
func TestTrace(t *testing.T) {
	p := harness.NewPipeline(t, harness.PipelineOptions{Limit: guard.Limit{N: 1, Window: time.Hour}})
	depts := p.Sim.Departments()
	const user, other = "1008600000000000001", "1008600000000000002"

	hired := p.Publish("t-1", handlers.Hired, user, map[string]any{"deptId": itoa(depts[0]), "role": 1})
	if o := p.WaitOutcome(hired, 10*time.Second); o.Result != outcome.Applied {
		t.Fatalf("hire: %+v", o)
	}
	bad := p.Publish("t-2", handlers.Changed, user, map[string]any{"deptId": "999999"})
	if o := p.WaitOutcome(bad, 10*time.Second); o.Result != outcome.Deadlettered {
		t.Fatalf("bad change: %+v", o)
	}
	// Someone moves the user in KooDrive's console.
	if _, err := p.Sim.PutUserDirect(kdsim.User{UserID: user, DeptID: itoa(depts[1]), Role: 1}); err != nil {
		t.Fatal(err)
	}
	// The other user's disable uses up the guard's window; the user's own
	// disable is held.
	p.Publish("t-3", handlers.Hired, other, map[string]any{"deptId": itoa(depts[0])})
	p.WaitOutcome(p.Publish("t-4", handlers.Disabled, other, nil), 10*time.Second)
	held := p.Publish("t-5", handlers.Disabled, user, nil)

	tr, err := usertrace.New(usertrace.Options{JetStream: p.JS, KooDrive: p.KD, FetchWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var tl *usertrace.Timeline
	p.WaitFunc("the disable held", 10*time.Second, func() bool {
		tl, err = tr.Trace(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		return len(tl.Holds) == 1
	})

	want := []struct {
		seq    uint64
		action string
		state  string
	}{{hired, "hired", "applied"}, {bad, "changed", "deadlettered"}, {held, "disabled", usertrace.StateHeld}}
	if len(tl.Events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(tl.Events), len(want), tl.Events)
	}
	for i, w := range want {
		e := tl.Events[i]
		if e.Seq != w.seq || e.Action != w.action || e.State != w.state {
			t.Errorf("event %d: #%d %s %s, want #%d %s %s", i, e.Seq, e.Action, e.State, w.seq, w.action, w.state)
		}
	}
	if e := tl.Events[0]; e.Outcome == nil || len(e.Outcome.Calls) == 0 || e.Outcome.Attempts != 1 || e.DeptID == nil || *e.DeptID != depts[0] {
		t.Errorf("hire: outcome %+v, fields %s", e.Outcome, e.Fields())
	}
	if e := tl.Events[1]; e.DeadLetter == 0 || e.Outcome == nil || e.Outcome.Reason == "" {
		t.Errorf("bad change: letter %d, outcome %+v", e.DeadLetter, e.Outcome)
	}
	if len(tl.DeadLetters) != 1 || tl.DeadLetters[0].EventID != "t-2" {
		t.Errorf("dead letters: %+v", tl.DeadLetters)
	}
	if e := tl.Events[2]; e.Hold == nil || e.Hold.Decision != guard.Pending {
		t.Errorf("held disable: %+v", e.Hold)
	}
	if tl.Record == nil || tl.Record.Seq != bad || tl.Record.AppliedSeq != hired {
		t.Errorf("record %+v, want watermark #%d, applied #%d", tl.Record, bad, hired)
	}
	if tl.KooDrive == nil || tl.KooDrive.DeptID != itoa(depts[1]) {
		t.Errorf("KooDrive: %+v (%s)", tl.KooDrive, tl.KooDriveError)
	}
	if tl.Desired == nil || tl.Desired.DeptID == nil || *tl.Desired.DeptID != depts[0] {
		t.Errorf("desired: %+v", tl.Desired)
	}
	v := tl.Verdict
	if v.State != usertrace.Drifted || len(v.Drift) != 1 || v.Drift[0] != (usertrace.FieldDrift{Field: "dept", Desired: itoa(depts[0]), KooDrive: itoa(depts[1])}) {
		t.Errorf("verdict %+v", v)
	}

	// Another user's story is theirs alone.
	tl2, err := tr.Trace(t.Context(), other)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl2.Events) != 2 || len(tl2.DeadLetters) != 0 || len(tl2.Holds) != 0 || tl2.Verdict.State != usertrace.InSync {
		t.Errorf("other user: %d events, %d letters, %d holds, verdict %+v", len(tl2.Events), len(tl2.DeadLetters), len(tl2.Holds), tl2.Verdict)
	}
	// Report: the same story for people and for scripts.
	o := usertrace.Options{JetStream: p.JS, KooDrive: p.KD, FetchWait: 2 * time.Second}
	var text, js bytes.Buffer
	if err := usertrace.Report(t.Context(), &text, o, other, false); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text.String(), "User "+other+": in sync") || !strings.Contains(text.String(), "disabled") {
		t.Errorf("report:\n%s", text.String())
	}
	if err := usertrace.Report(t.Context(), &js, o, other, true); err != nil {
		t.Fatal(err)
	}
	var rtl usertrace.Timeline
	if err := json.Unmarshal(js.Bytes(), &rtl); err != nil || rtl.UserID != other || len(rtl.Events) != 2 || rtl.Verdict.State != usertrace.InSync {
		t.Errorf("JSON report (%v): %s", err, js.String())
	}
	if err := usertrace.Report(t.Context(), &text, usertrace.Options{}, other, false); err == nil {
		t.Error("a report without JetStream: no error")
	}

	// A user nobody has heard of.
	tl3, err := tr.Trace(t.Context(), "1008600000000000999")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl3.Events) != 0 || tl3.Record != nil || tl3.KooDrive != nil || tl3.Verdict.State != usertrace.Unknown {
		t.Errorf("unknown user: %+v", tl3)
	}
}

// TestTraceOldSubjects: outcomes and dead letters stored before contract
// v1.1 (no user token in the subject) are found too.
func TestTraceOldSubjects(t *testing.T) {
	_, _, js := harness.NewJetStream(t)
	ctx := t.Context()
	for name, subj := range map[string]string{"IDENTITY": "identity.>", "KDSYNC_DLQ": "kdsync.dlq.>", "KDSYNC_OUTCOMES": "kdsync.outcome.>"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatal(err)
		}
	}
	const user = "42"
	body := `{"specversion":"1.0","id":"o-1","source":"t","type":"employee.changed","data":{"userId":"42","role":1}}`
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "identity.employee.changed." + user, Data: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	// Another user's event and outcome, both forms, must not show.
	for _, subj := range []string{"kdsync.outcome.applied.changed", "kdsync.outcome.applied.changed.43"} {
		b, _ := json.Marshal(outcome.Outcome{EventID: "x", UserID: "43", Action: handlers.Changed, Result: outcome.Applied, Stream: "IDENTITY", Sequence: 99})
		if _, err := js.Publish(ctx, subj, b); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(outcome.Outcome{EventID: "o-1", UserID: user, Action: handlers.Changed, Result: outcome.Deadlettered,
		Reason: "not_found", Attempts: 1, Stream: "IDENTITY", Sequence: ack.Sequence})
	if _, err := js.Publish(ctx, "kdsync.outcome.deadlettered.changed", b); err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	h.Set(outcome.HdrUserID, user)
	h.Set(outcome.HdrEventID, "o-1")
	h.Set(outcome.HdrErrorClass, "not_found")
	h.Set(outcome.HdrOriginalStream, "IDENTITY")
	h.Set(outcome.HdrOriginalSeq, itoa(int64(ack.Sequence)))
	h.Set(outcome.HdrOriginalSubject, "identity.employee.changed."+user)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "kdsync.dlq.not_found.changed", Header: h, Data: []byte(body)}); err != nil {
		t.Fatal(err)
	}

	tr, err := usertrace.New(usertrace.Options{JetStream: js, FetchWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tr.Trace(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Events) != 1 || tl.Events[0].Outcome == nil || tl.Events[0].Outcome.EventID != "o-1" || tl.Events[0].State != "deadlettered" {
		t.Fatalf("events %+v", tl.Events)
	}
	if len(tl.DeadLetters) != 1 || tl.Events[0].DeadLetter != tl.DeadLetters[0].Seq {
		t.Errorf("letters %+v, event's %d", tl.DeadLetters, tl.Events[0].DeadLetter)
	}
	if tl.Verdict.State != usertrace.Unknown || tl.KooDriveRead {
		t.Errorf("verdict without KooDrive: %+v", tl.Verdict)
	}
}

func TestCheckUser(t *testing.T) {
	for user, ok := range map[string]bool{"1008600000000000001": true, "abc_1": true, "": false, "a.b": false, "a*": false, "a b": false, ">": false} {
		if err := usertrace.CheckUser(user); (err == nil) != ok || err != nil && !errors.Is(err, usertrace.ErrBadUser) {
			t.Errorf("%q: %v", user, err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
