package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/service"
)

// TestGuardCommandWithoutNATS: help, unknown commands and flag mistakes
// are answered without connecting (the URL points at nothing, so a
// connection attempt would show as "no servers available").
func TestGuardCommandWithoutNATS(t *testing.T) {
	// A stray environment must not select or release anything.
	t.Setenv("KDSYNC_ALL", "true")
	t.Setenv("KDSYNC_SEQ", "1")
	t.Setenv("KDSYNC_NATS_URL", "nats://127.0.0.1:1")
	for name, tc := range map[string]struct {
		args       []string
		code       int
		wantOut    []string // on stdout
		wantErr    []string // on stderr
		wantOutNot []string
	}{
		"no command": {args: nil, code: 2, wantErr: []string{"Usage: kdsync guard"}},
		"-h":         {args: []string{"-h"}, code: 0, wantOut: []string{"Usage: kdsync guard", "-shadow", "-nats-token", "-nats-ca", "-nats-user", "-guard-bucket", "(default \"KDSYNC_GUARD\")"}},
		"--help":     {args: []string{"--help"}, code: 0, wantOut: []string{"Usage: kdsync guard", "-nats-nkey"}},
		"help":       {args: []string{"help"}, code: 0, wantOut: []string{"Usage: kdsync guard", "-seq"}},
		"status -h":  {args: []string{"status", "-h"}, code: 0, wantErr: []string{"Usage: kdsync guard", "-deprovision-limit"}},
		"unknown command": {args: []string{"frob"}, code: 2,
			wantErr: []string{`unknown command "frob"`, "Usage: kdsync guard"}},
		"unknown flag":              {args: []string{"status", "-sauce"}, code: 2, wantErr: []string{"flag provided but not defined: -sauce"}},
		"stray argument":            {args: []string{"release", "-seq", "1", "7"}, code: 2, wantErr: []string{`unexpected argument "7"`}},
		"release names nothing":     {args: []string{"release"}, code: 1, wantErr: []string{"-seq, or give -all"}},
		"reject with -seq and -all": {args: []string{"reject", "-seq", "3", "-all"}, code: 1, wantErr: []string{"-seq, or give -all"}},
		"bad sequence":              {args: []string{"release", "-seq", "3,x"}, code: 1, wantErr: []string{`-seq "x"`}},
		"zero sequence":             {args: []string{"release", "-seq", "0"}, code: 1, wantErr: []string{`-seq "0"`}},
		"status with -all":          {args: []string{"status", "-all"}, code: 1, wantErr: []string{"not status"}},
		"bad limit":                 {args: []string{"status", "-deprovision-limit", "50"}, code: 1, wantErr: []string{"want N/duration"}},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := kdsync(t, append([]string{"guard"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if strings.Contains(out+errOut, "no servers") {
				t.Errorf("it connected to NATS:\n%s", errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// guardNATS runs an embedded JetStream server that wants a user and a
// password, and holds events in a guard bucket as kdsync run does: with a
// limit of 1, the first deprovision passes and the next are held.
func guardNATS(t *testing.T, buckets map[string]int) (url string, js jetstream.JetStream) {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir(), User: "ops", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	nc, err := nats.Connect(ns.URL(), nats.UserInfo("ops", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	l := guard.Limit{N: 1, Window: time.Hour}
	for bucket, held := range buckets {
		st, err := guard.Open(t.Context(), js, bucket, 1, true)
		if err != nil {
			t.Fatal(err)
		}
		for seq := uint64(1); seq <= uint64(held+1); seq++ {
			u := "u" + string(rune('0'+seq))
			if _, _, err := st.Check(t.Context(), l, guard.Hold{Seq: seq, EventID: "ev-" + u, UserID: u, Action: "disabled"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ns.URL(), js
}

// TestGuardCommand shows, rejects and releases held events against a
// NATS server that wants a password (given by flag and by environment),
// and reaches a shadow instance's bucket with -shadow.
func TestGuardCommand(t *testing.T) {
	url, js := guardNATS(t, map[string]int{"KDSYNC_GUARD": 3, "KDSYNC_SHADOW_GUARD": 1})
	conn := []string{"-nats-url", url, "-nats-user", "ops", "-nats-password", "s3cret"}
	guardCmd := func(args ...string) (int, string, string) {
		t.Helper()
		return kdsync(t, append(append([]string{"guard"}, args[0]), append(conn, args[1:]...)...)...)
	}

	code, out, errOut := guardCmd("status", "-deprovision-limit", "1/1h")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, w := range []string{"bucket: KDSYNC_GUARD", "window: 1 of 1/1h0m0s", "SEQ", "disabled  u2", "3 held, 3 pending a decision",
		"parked: none (no parking stream KDSYNC_PARKED yet"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}

	// Held events and their users' later events parked: status counts
	// them, per held event and in all.
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KDSYNC_PARKED", Subjects: []string{"kdsync.parked.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"kdsync.parked.u.u2", "kdsync.parked.u.u2", "kdsync.parked.u.u3"} {
		if _, err := js.Publish(ctx, subj, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut = guardCmd("status")
	if code != 0 || !strings.Contains(out, "parked: 3 events of 2 users in KDSYNC_PARKED") ||
		!regexp.MustCompile(`disabled\s+u2\s+ev-u2\s+pending\s+2\n`).MatchString(out) {
		t.Fatalf("status with parked events: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = guardCmd("status", "-json")
	var status struct {
		Held []struct {
			UserID string `json:"userId"`
			Parked int    `json:"parked"`
		} `json:"held"`
		Parked struct{ Events, Users int } `json:"parked"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil || code != 0 {
		t.Fatalf("status -json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	if status.Parked.Events != 3 || status.Parked.Users != 2 || len(status.Held) != 3 || status.Held[0].UserID != "u2" || status.Held[0].Parked != 2 {
		t.Fatalf("status -json: %+v", status)
	}

	code, out, errOut = guardCmd("reject", "-seq", "2", "-by", "alice")
	if code != 0 || !strings.Contains(out, "rejected 2 (disabled u2)") || !strings.Contains(out, "1 held events rejected") {
		t.Fatalf("reject 2: exit %d\n%s%s", code, out, errOut)
	}
	// A decided or unknown event is said to be so, the others decided.
	code, out, errOut = guardCmd("release", "-seq", "2,3,99")
	if code != 1 || !strings.Contains(out, "released 3 (disabled u3)") || !strings.Contains(errOut, "not pending a decision (not held, or decided already): [2 99]") {
		t.Fatalf("release 2,3,99: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = guardCmd("release", "-all")
	if code != 0 || !strings.Contains(out, "released 4 (disabled u4)") || !strings.Contains(out, "1 held events released") {
		t.Fatalf("release -all: exit %d\n%s%s", code, out, errOut)
	}

	// The password from the environment, JSON out.
	t.Setenv("KDSYNC_NATS_PASSWORD", "s3cret")
	code, out, errOut = kdsync(t, "guard", "status", "-nats-url", url, "-nats-user", "ops", "-json", "-deprovision-limit", "5/1h")
	if code != 0 {
		t.Fatalf("status -json: exit %d: %s", code, errOut)
	}
	var st struct {
		Bucket  string       `json:"bucket"`
		Held    []guard.Hold `json:"held"`
		Counted int          `json:"counted"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	want := map[uint64]guard.Decision{2: guard.Reject, 3: guard.Release, 4: guard.Release}
	if st.Bucket != "KDSYNC_GUARD" || len(st.Held) != 3 || st.Counted != 0 {
		t.Fatalf("status -json = %+v; want 3 decided holds, the window cleared by the release", st)
	}
	for _, h := range st.Held {
		if h.Decision != want[h.Seq] {
			t.Errorf("hold %d: decision %q, want %q", h.Seq, h.Decision, want[h.Seq])
		}
	}
	if st.Held[0].By != "alice" {
		t.Errorf("hold 2 decided by %q, want alice", st.Held[0].By)
	}

	// The shadow instance's holds are apart, and reached with -shadow.
	code, out, errOut = guardCmd("status", "-shadow")
	if code != 0 || !strings.Contains(out, "bucket: KDSYNC_SHADOW_GUARD") || !strings.Contains(out, "1 held, 1 pending") {
		t.Fatalf("status -shadow: exit %d\n%s%s", code, out, errOut)
	}
	// Both buckets hold a sequence 2: deciding the shadow's leaves the
	// active one's as it was.
	active, err := js.KeyValue(t.Context(), "KDSYNC_GUARD")
	if err != nil {
		t.Fatal(err)
	}
	before, err := active.Get(t.Context(), "held.2")
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = guardCmd("release", "-shadow", "-all"); code != 0 || !strings.Contains(out, "released 2") {
		t.Fatalf("release -shadow -all: exit %d\n%s%s", code, out, errOut)
	}
	if after, err := active.Get(t.Context(), "held.2"); err != nil || after.Revision() != before.Revision() {
		t.Errorf("the shadow's release changed the active bucket's hold 2 (%v)", err)
	}

	// A bucket that does not exist, and a wrong password.
	if code, _, errOut = guardCmd("status", "-guard-bucket", "NOPE"); code != 1 || !strings.Contains(errOut, "is kdsync running with KDSYNC_DEPROVISION_LIMIT") {
		t.Errorf("status of a missing bucket: exit %d: %s", code, errOut)
	}
	if code, _, errOut = kdsync(t, "guard", "status", "-nats-url", url, "-nats-user", "ops", "-nats-password", "wrong"); code != 1 || !strings.Contains(strings.ToLower(errOut), "authorization") {
		t.Errorf("status with a wrong password: exit %d: %s", code, errOut)
	}
}

// serviceOptions parses args (and the KDSYNC_ environment) as kdsync run
// does and returns the options and what was logged meanwhile.
func serviceOptions(t *testing.T, args ...string) (service.Options, string) {
	t.Helper()
	o, logged, err := parseServiceOptions(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return o, logged
}

func parseServiceOptions(t *testing.T, args ...string) (service.Options, string, error) {
	t.Helper()
	var logged bytes.Buffer
	f := newFlags("kdsync run")
	f.SetOutput(&logged)
	options := serviceFlags(f.FlagSet)
	f.String("log-level", "info", "")
	f.String("log-format", "json", "")
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	o, err := options(slog.New(slog.NewJSONHandler(&logged, nil)))
	return o, logged.String(), err
}

// names are the JetStream names an instance writes to or leases in, as the
// consumer resolves them (an empty members bucket is its default).
func names(o service.Options) map[string]string {
	c := o.Consumer
	return map[string]string{
		"consumer": c.Consumer, "outcome stream": c.OutcomeStream, "outcome prefix": c.OutcomePrefix,
		"state bucket": c.StateBucket, "guard bucket": c.GuardBucket, "members bucket": cmp.Or(c.MembersBucket, "KDSYNC_MEMBERS"),
		"park stream": c.ParkStream, "park prefix": c.ParkPrefix,
	}
}

// TestShadowOptionsApart: however shadow mode is asked for, and whatever
// else is set, a shadow instance never shares the active instance's
// consumer, outcome stream or prefix, state, guard or members bucket,
// and never publishes repairs; a name set explicitly still wins.
// (It tests run.go's shadow defaults; it lives here with the guard's.)
func TestShadowOptionsApart(t *testing.T) {
	common := []string{"-partitions", "4", "-deprovision-limit", "50/10m", "-reconcile-interval", "1m", "-reconcile-apply"}
	active, logged := serviceOptions(t, common...)
	if active.Shadow || !active.Reconcile.Apply || logged != "" {
		t.Fatalf("active: shadow %v, reconcile apply %v, logged %q", active.Shadow, active.Reconcile.Apply, logged)
	}
	activeNames := names(active)
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"-shadow":                {args: []string{"-shadow"}},
		"-mode shadow":           {args: []string{"-mode", "shadow"}},
		"KDSYNC_MODE=shadow":     {env: map[string]string{"KDSYNC_MODE": "shadow"}},
		"apply from environment": {args: []string{"-shadow"}, env: map[string]string{"KDSYNC_RECONCILE_APPLY": "true"}},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o, logged := serviceOptions(t, append(append([]string{}, common...), tc.args...)...)
			if !o.Shadow {
				t.Fatal("not in shadow mode")
			}
			for k, v := range names(o) {
				if v == "" || v == activeNames[k] {
					t.Errorf("%s: %q, the active instance's is %q", k, v, activeNames[k])
				}
			}
			if o.Reconcile.Apply {
				t.Error("shadow mode publishes reconciliation repairs")
			}
			if !strings.Contains(logged, `"level":"WARN"`) || !strings.Contains(logged, "reconcile-apply is ignored") {
				t.Errorf("no warning that reconcile-apply is ignored: %q", logged)
			}
			if o.Consumer.GuardBucket != outcome.ShadowGuardBucket {
				t.Errorf("guard bucket %q; kdsync guard -shadow reaches %q", o.Consumer.GuardBucket, outcome.ShadowGuardBucket)
			}
		})
	}

	// Names set explicitly, by flag or environment, win.
	t.Setenv("KDSYNC_GUARD_BUCKET", "G_ENV")
	o, logged := serviceOptions(t, "-shadow", "-consumer", "canary", "-state-bucket", "S", "-outcome-stream", "O", "-outcome-prefix", "o.p",
		"-park-stream", "P")
	got, want := names(o), map[string]string{"consumer": "canary", "state bucket": "S", "outcome stream": "O", "outcome prefix": "o.p",
		"guard bucket": "G_ENV", "members bucket": "KDSYNC_SHADOW_MEMBERS", "park stream": "P", "park prefix": "kdsync.shadow-parked"}
	if !maps.Equal(got, want) || logged != "" {
		t.Errorf("explicit names: %v (logged %q), want %v", got, logged, want)
	}

	// Except the active instance's own names, e.g. its environment copied.
	t.Setenv("KDSYNC_STATE_BUCKET", "KDSYNC_STATE")
	_, _, err := parseServiceOptions(t, "-shadow", "-consumer", "kdsync", "-outcome-prefix", "kdsync.outcome")
	for _, w := range []string{`consumer "kdsync" would share`, "KDSYNC_CONSUMER", `state-bucket "KDSYNC_STATE"`, "KDSYNC_STATE_BUCKET", `outcome-prefix "kdsync.outcome"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("shadow with the active names: %v; want %q", err, w)
		}
	}
}

// TestReconcileHelpFlags: kdsync reconcile -h prints the flags and their
// defaults after the usage, on stdout. (Here beside the guard's help
// tests; reconcile_test.go belongs to reconciliation.)
func TestReconcileHelpFlags(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "help"} {
		code, out, errOut := kdsync(t, "reconcile", arg)
		if code != 0 {
			t.Fatalf("reconcile %s: exit %d: %s", arg, code, errOut)
		}
		for _, w := range []string{"kdsync reconcile: compare", "Flags:", "-max-disables int", "(default 50)", "-nats-token", "-rate float"} {
			if !strings.Contains(out, w) {
				t.Errorf("reconcile %s: stdout lacks %q:\n%s", arg, w, out)
			}
		}
	}
}
