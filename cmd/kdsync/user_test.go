package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/provision"
	"github.com/kdsync/kdsync/usertrace"
)

// TestUserAndSync: kdsync user shows a user's events with outcomes and
// KooDrive's state; after a department change behind kdsync's back it
// shows the drift, kdsync sync -dry-run changes nothing, kdsync sync
// repairs it through the stream and exits 0, and kdsync user says in sync.
func TestUserAndSync(t *testing.T) {
	p := harness.NewPipeline(t, harness.PipelineOptions{})
	depts := p.Sim.Departments()
	const user = "1008600000000000031"
	dept := strconv.FormatInt(depts[0], 10)
	hired := p.Publish("u-1", handlers.Hired, user, map[string]any{"deptId": dept, "role": 1})
	p.WaitOutcome(hired, 10*time.Second)
	conn := []string{"-nats-url", p.NATS.URL(), "-api-base-url", p.Sim.URL, "-app-id", harness.AppID,
		"-app-secret", harness.AppSecret.Reveal(), "-api-user-id", harness.APIUserID, "-rate", "1000"}
	kdsync := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		return out.String(), errb.String(), code
	}

	out, errs, code := kdsync(append([]string{"user", user}, conn...)...)
	if code != 0 {
		t.Fatalf("kdsync user: %d %s", code, errs)
	}
	for _, w := range []string{"User " + user + ": in sync", "#" + strconv.FormatUint(hired, 10), "hired", "dept " + dept + " role 1", "applied", "calls ",
		"GET /users/" + user + ": dept " + dept + ", role 1, status 0"} {
		if !strings.Contains(out, w) {
			t.Errorf("kdsync user lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, harness.AppSecret.Reveal()) {
		t.Error("the app secret is printed")
	}

	moved := strconv.FormatInt(depts[1], 10)
	if _, err := p.Sim.PutUserDirect(kdsim.User{UserID: user, DeptID: moved, Role: 1}); err != nil {
		t.Fatal(err)
	}
	out, errs, code = kdsync(append([]string{"user", "-json", user}, conn...)...)
	if code != 0 {
		t.Fatalf("kdsync user -json: %d %s", code, errs)
	}
	var tl usertrace.Timeline
	if err := json.Unmarshal([]byte(out), &tl); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if tl.Verdict.State != usertrace.Drifted || len(tl.Verdict.Drift) != 1 || tl.Verdict.Drift[0].Field != "dept" || tl.Verdict.Drift[0].KooDrive != moved ||
		len(tl.Events) != 1 || tl.Events[0].Outcome == nil || tl.Events[0].Outcome.Result != outcome.Applied {
		t.Fatalf("timeline: %+v", tl)
	}

	out, errs, code = kdsync(append([]string{"sync", user, "-dry-run"}, conn...)...)
	if code != 0 || !strings.Contains(out, "decide: drift (dept): repair with employee.changed deptId "+dept) || !strings.Contains(out, "dry run") {
		t.Fatalf("kdsync sync -dry-run: %d\n%s%s", code, out, errs)
	}
	if u, _ := p.Sim.User(user); u.User.DeptID != moved {
		t.Fatal("the dry run changed KooDrive")
	}

	out, errs, code = kdsync(append([]string{"sync", user, "-wait", "15s"}, conn...)...)
	if code != 0 {
		t.Fatalf("kdsync sync: %d\n%s%s", code, out, errs)
	}
	steps := []string{"connect:", provision.StepDesired + ":", provision.StepScope + ":", provision.StepKooDrive + ":", provision.StepDecide + ":",
		provision.StepApply + ": published identity.employee.changed." + user, provision.StepOutcome + ": applied", provision.StepVerify + ": KooDrive matches", user + " is in sync"}
	at := 0
	for _, s := range steps {
		i := strings.Index(out[at:], s)
		if i < 0 {
			t.Fatalf("kdsync sync: %q missing or out of order:\n%s", s, out)
		}
		at += i
	}
	if u, _ := p.Sim.User(user); u.User.DeptID != dept {
		t.Fatalf("KooDrive dept %s after kdsync sync, want %s", u.User.DeptID, dept)
	}
	out, _, _ = kdsync(append([]string{"user", user}, conn...)...)
	if !strings.Contains(out, "in sync") || !strings.Contains(out, "changed") {
		t.Errorf("after the sync:\n%s", out)
	}

	// A user kdsync knows nothing of: exit 1 with the reason.
	out, errs, code = kdsync(append([]string{"sync", "1008600000000000999", "-wait", "1s"}, conn...)...)
	if code != 1 || !strings.Contains(errs, "no desired state") {
		t.Errorf("unknown user: %d\n%s%s", code, out, errs)
	}
}

func TestUserUsage(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"no user":    {[]string{"user"}, 2, "which user?"},
		"bad user":   {[]string{"user", "a.b"}, 1, "not a user id"},
		"help":       {[]string{"user", "-h"}, 0, "One user's story"},
		"sync help":  {[]string{"sync", "-h"}, 0, "Provision on demand"},
		"sync no kd": {[]string{"sync", "42"}, 1, "KooDrive endpoint is required"},
		"extra":      {[]string{"user", "1", "2"}, 2, "unexpected argument"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("KDSYNC_API_BASE_URL", "")
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Errorf("%v: %d, want %d with %q:\n%s%s", tc.args, code, tc.code, tc.want, out.String(), errb.String())
			}
		})
	}
}
