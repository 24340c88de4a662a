package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// natsWithStreams runs an embedded JetStream server with kdsync's streams
// and returns its URL and a JetStream context.
func natsWithStreams(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	ns, _, js := harness.NewJetStream(t)
	for name, subj := range map[string]string{"IDENTITY": "identity.>", "KDSYNC_DLQ": "kdsync.dlq.>", "KDSYNC_OUTCOMES": "kdsync.outcome.>"} {
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Duplicates: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	return ns.URL(), js
}

// deadLetter stores an event in IDENTITY, then its dead letter and outcome
// as the consumer writes them; it returns the DLQ sequence.
func deadLetter(t *testing.T, js jetstream.JetStream, id, user, action, class string) uint64 {
	t.Helper()
	body := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"hris/test","type":"employee.%s","data":{"userId":%q,"deptId":"42"}}`, id, action, user)
	subject := "identity.employee." + action + "." + user
	ack, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: subject, Data: []byte(body), Header: nats.Header{jetstream.MsgIDHeader: {id}}})
	if err != nil {
		t.Fatal(err)
	}
	ref := outcome.MsgID("IDENTITY", ack.Sequence)
	h := nats.Header{}
	h.Set(outcome.HdrReason, class+": refused by KooDrive")
	h.Set(outcome.HdrErrorClass, class)
	h.Set(outcome.HdrAttempts, "1")
	h.Set(outcome.HdrOriginalSubject, subject)
	h.Set(outcome.HdrOriginalStream, "IDENTITY")
	h.Set(outcome.HdrOriginalSeq, strconv.FormatUint(ack.Sequence, 10))
	h.Set(outcome.HdrEventID, id)
	h.Set(outcome.HdrUserID, user)
	h.Set(outcome.HdrDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(jetstream.MsgIDHeader, ref)
	dack, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: "kdsync.dlq." + class + "." + action, Header: h, Data: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf(`{"eventId":%q,"userId":%q,"action":%q,"result":"deadlettered","reason":%q,"attempts":1,"subject":%q,"stream":"IDENTITY","sequence":%d}`,
		id, user, action, class, subject, ack.Sequence)
	if _, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: "kdsync.outcome.deadlettered." + action, Data: []byte(out),
		Header: nats.Header{jetstream.MsgIDHeader: {ref}}}); err != nil {
		t.Fatal(err)
	}
	return dack.Sequence
}

// kdsync runs the command line and returns its exit code and output.
func kdsync(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func dlqCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), "KDSYNC_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestDLQCommand(t *testing.T) {
	url, js := natsWithStreams(t)
	s1 := deadLetter(t, js, "ev-1", "1001", "changed", "not_found")
	s2 := deadLetter(t, js, "ev-2", "1002", "hired", "permanent")
	s3 := deadLetter(t, js, "ev-3", "1001", "disabled", "not_found")
	nu := []string{"-nats-url", url}
	with := func(args ...string) []string { return append(append([]string{"dlq"}, args...), nu...) }

	t.Run("list", func(t *testing.T) {
		code, out, errOut := kdsync(t, with("list")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"SEQ", "ev-1", "ev-2", "ev-3", "not_found", "permanent", "3 dead letters"} {
			if !strings.Contains(out, want) {
				t.Errorf("list lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("list filtered as JSON", func(t *testing.T) {
		code, out, errOut := kdsync(t, with("list", "-user", "1001", "-reason", "not_found", "-json")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var got []struct {
			Seq     uint64          `json:"seq"`
			EventID string          `json:"eventId"`
			Body    json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if len(got) != 2 || got[0].Seq != s1 || got[1].Seq != s3 {
			t.Fatalf("got %s", out)
		}
		var ev struct {
			Data struct {
				UserID string `json:"userId"`
			} `json:"data"`
		}
		if err := json.Unmarshal(got[1].Body, &ev); err != nil || ev.Data.UserID != "1001" {
			t.Fatalf("body %s: %v", got[1].Body, err)
		}
	})
	t.Run("show by sequence", func(t *testing.T) {
		code, out, errOut := kdsync(t, with("show", strconv.FormatUint(s2, 10))...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"KDSYNC_DLQ:" + strconv.FormatUint(s2, 10), "permanent", "identity.employee.hired.1002, IDENTITY #2", `"deptId": "42"`, "Outcome (IDENTITY #2)"} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("show by event id as JSON", func(t *testing.T) {
		code, out, errOut := kdsync(t, append([]string{"dlq", "show", "ev-3", "-json"}, nu...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var got struct {
			Seq     uint64           `json:"seq"`
			Outcome *outcome.Outcome `json:"outcome"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Seq != s3 || got.Outcome == nil || got.Outcome.EventID != "ev-3" {
			t.Fatalf("%+v %v: %s", got, err, out)
		}
	})
	t.Run("show unknown", func(t *testing.T) {
		if code, _, errOut := kdsync(t, with("show", "nope")...); code != 1 || !strings.Contains(errOut, "no dead letter") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
	t.Run("replay and purge need a selector", func(t *testing.T) {
		for _, sub := range []string{"replay", "purge"} {
			if code, _, errOut := kdsync(t, with(sub)...); code != 2 || !strings.Contains(errOut, "-all") {
				t.Errorf("%s: exit %d: %s", sub, code, errOut)
			}
		}
	})
	t.Run("replay dry run", func(t *testing.T) {
		code, out, errOut := kdsync(t, with("replay", "-reason", "not_found", "-dry-run")...)
		if code != 0 || !strings.Contains(out, "Would replay") || !strings.Contains(out, "2 dead letters") {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if n := dlqCount(t, js); n != 3 {
			t.Fatalf("dry run changed the DLQ: %d left", n)
		}
	})
	t.Run("replay", func(t *testing.T) {
		code, out, errOut := kdsync(t, with("replay", "-seq", strconv.FormatUint(s1, 10), "-force", "-wait", "0")...)
		if code != 0 || !strings.Contains(out, "-> IDENTITY #4: no outcome yet") || !strings.Contains(out, "1 replayed, 0 failed, 0 skipped by the consumer; 1 removed") {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if n := dlqCount(t, js); n != 2 {
			t.Fatalf("%d letters left, want 2", n)
		}
		s, err := js.Stream(t.Context(), "IDENTITY")
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetLastMsgForSubject(t.Context(), "identity.employee.changed.1001")
		if err != nil {
			t.Fatal(err)
		}
		if m.Sequence != 4 || m.Header.Get(outcome.HdrReplayOf) != "KDSYNC_DLQ:"+strconv.FormatUint(s1, 10) || m.Header.Get("Kdsync-Replay-Force") != "true" {
			t.Fatalf("replayed message #%d %v", m.Sequence, m.Header)
		}
	})
	t.Run("purge asks for -yes", func(t *testing.T) {
		t.Setenv("KDSYNC_YES", "true")
		t.Setenv("KDSYNC_ALL", "true")
		code, out, errOut := kdsync(t, with("purge", "-user", "1002")...)
		if code != 1 || !strings.Contains(errOut, "add -yes") || !strings.Contains(out, "ev-2") {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if n := dlqCount(t, js); n != 2 {
			t.Fatalf("purged without -yes: %d left", n)
		}
		code, out, errOut = kdsync(t, with("purge", "-user", "1002", "-yes")...)
		if code != 0 || !strings.Contains(out, "purged 1 dead letter") {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if n := dlqCount(t, js); n != 1 {
			t.Fatalf("%d left, want 1", n)
		}
	})
	t.Run("bad selectors", func(t *testing.T) {
		for _, args := range [][]string{{"list", "-seq", "5-2"}, {"list", "-since", "last week"}, {"list", "extra"}, {"show"}, {"frobnicate"}} {
			if code, _, _ := kdsync(t, with(args...)...); code == 0 {
				t.Errorf("%v: exit 0", args)
			}
		}
	})
}

// TestDLQReplayWithConsumer: an event dead-lettered while KooDrive was
// down (retry budget spent) shows its attempts; once KooDrive is back,
// kdsync dlq replay with the default -wait sees the running consumer apply
// it, and removes the letter.
func TestDLQReplayWithConsumer(t *testing.T) {
	h := harness.NewEnv(t, kdsim.Options{})
	if err := h.Sim.StartOutage(time.Hour); err != nil {
		t.Fatal(err)
	}
	harness.RunConsumer(t, consumer.Options{
		Conn: h.NC, Manage: true, Concurrency: 4, AckWait: 3 * time.Second,
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, RetryBudget: 300 * time.Millisecond,
		Handler: &handlers.Handler{Users: h.KD},
		Logger:  harness.Logger(slog.LevelError),
	})
	octx, ocancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer ocancel()
	outs, err := harness.CollectOutcomes(octx, h.NC, "KDSYNC_OUTCOMES") // once the consumer made its streams
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(outs.Stop)

	const user = "1008600000000201"
	dept := strconv.FormatInt(h.Sim.Departments()[0], 10)
	body := fmt.Sprintf(`{"specversion":"1.0","id":"cli-hire","source":"hris/test","type":"employee.hired","data":{"userId":%q,"deptId":%q,"role":1}}`, user, dept)
	if _, err := h.JS.PublishMsg(t.Context(), &nats.Msg{Subject: "identity.employee.hired." + user, Data: []byte(body),
		Header: nats.Header{jetstream.MsgIDHeader: {"cli-hire"}}}); err != nil {
		t.Fatal(err)
	}
	if err := outs.WaitFor(octx, 1); err != nil {
		t.Fatal(err)
	}
	if o := outs.All()[0]; o.Result != outcome.Deadlettered || o.Reason != outcome.ClassBudgetExhausted || o.Attempts < 2 {
		t.Fatalf("outcome %s/%s after %d attempts (%s), want deadlettered/%s", o.Result, o.Reason, o.Attempts, o.Error, outcome.ClassBudgetExhausted)
	}
	// The outcome and the dead letter are published together: the
	// outcome may be seen first.
	for deadline := time.Now().Add(10 * time.Second); dlqCount(t, h.JS) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
	}
	nu := []string{"-nats-url", h.NATS.URL()}

	code, out, errOut := kdsync(t, append([]string{"dlq", "show", "cli-hire"}, nu...)...)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	t.Logf("kdsync dlq show:\n%s", out)
	for _, want := range []string{"retry_budget_exhausted", "Attempts (", "N  TIME", "CLASS", "  1  ", "retryable", "HTTP 503"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = kdsync(t, append([]string{"dlq", "show", "cli-hire", "-json"}, nu...)...)
	var shown struct {
		Attempts   int               `json:"attempts"`
		AttemptLog []outcome.Attempt `json:"attemptLog"`
	}
	if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil || len(shown.AttemptLog) != shown.Attempts ||
		shown.AttemptLog[0].Class != "retryable" || !strings.Contains(shown.AttemptLog[0].Error, "HTTP 503") {
		t.Fatalf("show -json: exit %d, %v: %s%s", code, err, out, errOut)
	}

	// The cause, fixed: KooDrive answers again.
	h.Sim.StopOutage()
	code, out, errOut = kdsync(t, append([]string{"dlq", "replay", "-id", "cli-hire"}, nu...)...)
	wantLine := "KDSYNC_DLQ:1 (event cli-hire, user " + user + ") -> IDENTITY #2: applied; removed from the DLQ\n"
	if code != 0 || !strings.Contains(out, wantLine) ||
		!strings.Contains(out, "1 dead letter: 1 replayed, 0 failed, 0 skipped by the consumer; 1 removed from the DLQ") {
		t.Fatalf("replay: exit %d, want the line %q:\n%s%s", code, wantLine, out, errOut)
	}
	if u, ok := h.Sim.User(user); !ok || u.User.DeptID != dept {
		t.Fatalf("user after the replay: %+v %v", u.User, ok)
	}
	if n := dlqCount(t, h.JS); n != 0 {
		t.Fatalf("%d dead letters left", n)
	}
}
