package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// reconcileEnv is NATS with kdsync's streams and a simulator holding
// users 1001..1010 (department Sales, role 1, enabled).
func reconcileEnv(t *testing.T) (natsURL string, js jetstream.JetStream, sim *harness.Sim, conn []string) {
	t.Helper()
	natsURL, js = natsWithStreams(t)
	sim, err := harness.StartSim(kdsim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	for i := range 10 {
		if _, err := sim.PutUserDirect(kdsim.User{UserID: strconv.Itoa(1001 + i), DeptID: sales, Role: 1}); err != nil {
			t.Fatal(err)
		}
	}
	conn = []string{"-nats-url", natsURL, "-api-base-url", sim.URL, "-app-id", harness.AppID,
		"-app-secret", harness.AppSecret.Reveal(), "-api-user-id", harness.APIUserID, "-rate", "1000"}
	return natsURL, js, sim, conn
}

const (
	sales   = "1319678187126486147"
	finance = "1319678187126486148"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func streamMsgs(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	st, err := js.Stream(t.Context(), "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestReconcileCommand(t *testing.T) {
	_, js, sim, conn := reconcileEnv(t)
	// KooDrive: 1001..1010 in Sales. The export: 1001 moves to Finance,
	// 1002 becomes a member with management rights, 1003 is disabled,
	// 1004 is absent, 1005..1009 as they are; 1010 is not listed; 1011 is
	// new; 1012 is disabled and absent (in sync).
	csv := "userId,deptId,role,status,name\n" +
		"1001," + finance + ",1,0,Ann\n" +
		"1002," + sales + ",5,0,Bob\n" +
		"1003," + sales + ",1,1,Cid\n" +
		"1005," + sales + ",1,0,\n1006," + sales + ",1,0,\n1007," + sales + ",1,0,\n1008," + sales + ",1,0,\n1009," + sales + ",1,0,\n" +
		"1011," + finance + ",0,0,New\n" +
		"1012," + sales + ",1,1,Gone\n"
	src := writeFile(t, "export.csv", csv)
	args := func(extra ...string) []string { return append(append([]string{"reconcile"}, conn...), extra...) }

	t.Run("dry run table", func(t *testing.T) {
		t.Setenv("KDSYNC_APPLY", "true") // never read from the environment
		code, out, errOut := kdsync(t, args("-source", src)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{
			"USER", "1001  dept", finance + "/1/0", sales + "/1/0", "changed deptId " + finance,
			"1002  role", "changed role 5", "1003  status", "changed status 1",
			"1011  missing", "(absent)", "hired deptId " + finance + ", role 0, status 0",
			"desired:   10 users from " + src,
			"KooDrive:  10 users", "GET /userList", "in sync:   6 (1 of them absent",
			"drifted:   4 users: missing 1 unexpected 0 dept 1 role 1 status 1",
			"not judged: 2 KooDrive users", "repairs:   1 hired, 3 changed", "dry run:",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "1004") || strings.Contains(out, "1010") {
			t.Errorf("users not listed appear without -complete:\n%s", out)
		}
		if n := len(streamMsgs(t, js)); n != 0 {
			t.Fatalf("a dry run published %d events", n)
		}
		if s := sim.Stats(); s.Writes != 0 || s.RequestsByOp["listUsers"] != 1 {
			t.Fatalf("simulator: %d writes, %d list requests", s.Writes, s.RequestsByOp["listUsers"])
		}
	})

	t.Run("complete as JSON", func(t *testing.T) {
		code, out, errOut := kdsync(t, args("-source", src, "-complete", "-json")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var res struct {
			RunID  string `json:"runId"`
			Totals struct {
				Drifted int            `json:"drifted"`
				ByKind  map[string]int `json:"byKind"`
			} `json:"totals"`
			Drifts []struct {
				UserID string   `json:"userId"`
				Kinds  []string `json:"kinds"`
				Repair struct {
					Action  string `json:"action"`
					EventID string `json:"eventId"`
				} `json:"repair"`
			} `json:"drifts"`
			Requests   int     `json:"requests"`
			DurationMs float64 `json:"durationMs"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		got := map[string]string{}
		for _, d := range res.Drifts {
			got[d.UserID] = strings.Join(d.Kinds, ",") + " " + d.Repair.Action
			if d.Repair.EventID != "reconcile:"+res.RunID+":"+d.UserID {
				t.Errorf("%s: event id %q", d.UserID, d.Repair.EventID)
			}
		}
		want := map[string]string{"1001": "dept changed", "1002": "role changed", "1003": "status changed",
			"1004": "unexpected disabled", "1010": "unexpected disabled", "1011": "missing hired"}
		if len(got) != len(want) {
			t.Errorf("drifts %v, want %v", got, want)
		}
		for u, w := range want {
			if got[u] != w {
				t.Errorf("%s: %q, want %q", u, got[u], w)
			}
		}
		if !strings.Contains(out, `"deptId": "`+finance+`"`) {
			t.Errorf("department ids are not JSON strings (they exceed 2^53):\n%s", out)
		}
		if res.Requests != 1 || res.Totals.Drifted != 6 || res.Totals.ByKind["unexpected"] != 2 {
			t.Errorf("requests %d totals %+v", res.Requests, res.Totals)
		}
	})

	t.Run("per user from stdin", func(t *testing.T) {
		before := sim.Stats().RequestsByOp["getUser"]
		stdin := writeFile(t, "in.jsonl", `{"userId":"1001","deptId":"`+finance+`"}`+"\n"+`{"userId":"1009","role":1}`+"\n")
		f, err := os.Open(stdin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		old := os.Stdin
		os.Stdin = f
		defer func() { os.Stdin = old }()
		code, out, errOut := kdsync(t, args("-source", "-", "-per-user")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "drifted:   1 users") || !strings.Contains(out, "GET /users/{userId}") || !strings.Contains(out, "with 2 requests") {
			t.Errorf("output:\n%s", out)
		}
		if n := sim.Stats().RequestsByOp["getUser"] - before; n != 2 {
			t.Errorf("%d GETs for 2 users", n)
		}
	})

	t.Run("fail on drift", func(t *testing.T) {
		code, _, errOut := kdsync(t, args("-source", src, "-fail-on-drift")...)
		if code != 1 || !strings.Contains(errOut, "drift found: 4 users") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})

	t.Run("too many disables: nothing published", func(t *testing.T) {
		code, out, errOut := kdsync(t, args("-source", src, "-complete", "-apply", "-max-disables", "1")...)
		if code != 1 || !strings.Contains(errOut, "too many repairs") || !strings.Contains(out, "nothing was published") {
			t.Fatalf("exit %d:\n%s\n%s", code, out, errOut)
		}
		if n := len(streamMsgs(t, js)); n != 0 {
			t.Fatalf("%d events published past the limit", n)
		}
	})

	t.Run("apply", func(t *testing.T) {
		code, out, errOut := kdsync(t, args("-source", src, "-complete", "-apply", "-run-id", "night1", "-wait", "0")...)
		if code != 0 {
			t.Fatalf("exit %d: %s\n%s", code, errOut, out)
		}
		if !strings.Contains(out, "published: 6 repair events (run night1): 1 hired, 3 changed, 2 disabled; 0 superseded") ||
			!strings.Contains(out, "RESULT") || !strings.Contains(out, "published #") {
			t.Errorf("output:\n%s", out)
		}
		msgs := streamMsgs(t, js)
		if len(msgs) != 6 {
			t.Fatalf("%d events in the stream, want 6", len(msgs))
		}
		subjects := map[string]bool{}
		for _, m := range msgs {
			subjects[m.Subject] = true
			ev, err := (handlers.Decoder{}).Decode(m.Subject, m.Header, m.Data)
			if err != nil {
				t.Fatalf("%s: %v", m.Subject, err)
			}
			if id := m.Header.Get(jetstream.MsgIDHeader); id != ev.Key() || ev.ID != "reconcile:night1:"+ev.UserID {
				t.Errorf("%s: Nats-Msg-Id %q, event id %q", m.Subject, id, ev.ID)
			}
			if ev.Action == handlers.Deleted {
				t.Errorf("a delete was published: %s", m.Subject)
			}
		}
		for _, s := range []string{"identity.employee.changed.1001", "identity.employee.changed.1002", "identity.employee.changed.1003",
			"identity.employee.disabled.1004", "identity.employee.disabled.1010", "identity.employee.hired.1011"} {
			if !subjects[s] {
				t.Errorf("no event on %s (have %v)", s, subjects)
			}
		}
		if s := sim.Stats(); s.Writes != 0 {
			t.Errorf("reconcile wrote to KooDrive itself: %d writes", s.Writes)
		}
	})
}

func TestReconcileCommandFromState(t *testing.T) {
	_, js, _, conn := reconcileEnv(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "KDSYNC_STATE"})
	if err != nil {
		t.Fatal(err)
	}
	fin, _ := strconv.ParseInt(finance, 10, 64)
	one := 1
	for user, rec := range map[string]outcome.Record{
		"1001": {Seq: 4, AppliedSeq: 4, State: handlers.State{Exists: true, DeptID: &fin, Role: &one}},
		"1002": {Seq: 5, AppliedSeq: 5, State: handlers.State{}}, // hard-deleted by kdsync, back in KooDrive
		"1003": {Seq: 6},                                         // nothing applied yet
		"1099": {Seq: 7, AppliedSeq: 7, State: handlers.State{}}, // hard-deleted and gone: in sync
	} {
		b, _ := json.Marshal(rec)
		if _, err := kv.Put(t.Context(), outcome.KVKey(user), b); err != nil {
			t.Fatal(err)
		}
	}
	c, err := parseReconcileFlags(append(conn, "-from-state"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	c.report.Progress = &errOut // as on a terminal
	if err := runReconcile(t.Context(), c, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"1001  dept", "changed deptId " + finance,
		"1002  unexpected", "(deleted: disabled or absent)", "disabled",
		"desired:   3 users from kdsync's records (4 records: 2 hard-deleted, 1 with nothing applied yet, 0 unreadable)",
		"in sync:   1 (1 of them absent", "not judged: 8 KooDrive users",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if p := errOut.String(); !strings.Contains(p, "\r\033[Kreading kdsync's records: 4") || !strings.Contains(p, "reading KooDrive: 10 users, 1 requests (at most 1000/s)") ||
		!strings.HasSuffix(p, "\r\033[K") {
		t.Errorf("progress line: %q", p)
	}
}

func TestReconcileCommandErrors(t *testing.T) {
	_, _, _, conn := reconcileEnv(t)
	args := func(extra ...string) []string { return append(append([]string{"reconcile"}, conn...), extra...) }
	bad := writeFile(t, "bad.csv", "userId,deptId,role\n1001,42,1\nx,42,1\n1003,42,9\n")
	for name, tc := range map[string]struct {
		args []string
		code int
		want []string
	}{
		"bad rows named by line": {args: args("-source", bad), code: 1,
			want: []string{"nothing was compared", "line 3: userId", "line 4: role: \"9\" is not a role"}},
		"no desired state":    {args: args(), code: 1, want: []string{"-source FILE or -from-state"}},
		"both desired states": {args: args("-source", bad, "-from-state"), code: 1, want: []string{"not both"}},
		"complete per user":   {args: args("-source", bad, "-complete", "-per-user"), code: 1, want: []string{"drop -complete or -per-user"}},
		"bad rate":            {args: args("-source", bad, "-rate", "0"), code: 1, want: []string{"-rate 0"}},
		"missing file":        {args: args("-source", "/nonexistent.csv"), code: 1, want: []string{"no such file"}},
		"unknown flag":        {args: args("-sauce", "x"), code: 2, want: []string{"flag provided but not defined"}},
		"stray argument":      {args: args("-source", bad, "extra"), code: 2, want: []string{"unexpected argument"}},
		"no KooDrive auth": {args: []string{"reconcile", "-api-base-url", "http://127.0.0.1:1", "-source", bad}, code: 1,
			want: []string{"authentication is required"}},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := kdsync(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
	code, out, _ := kdsync(t, "reconcile", "-h")
	if code != 0 || !strings.Contains(out, "-from-state") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}
