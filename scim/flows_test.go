package scim

import (
	stdcmp "cmp"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/mapping"
	"github.com/kdsync/kdsync/outcome"
)

// flow is an IdP's request sequence (testdata/*-flow.json) and what
// KooDrive must hold after it.
type flow struct {
	IdP      string     `json:"idp"`
	Steps    []flowStep `json:"steps"`
	KooDrive map[string]struct {
		Dept   string   `json:"dept"`
		Role   int      `json:"role"`
		Status int      `json:"status"`
		Writes []string `json:"writes"`
	} `json:"koodrive"`
	Absent []string `json:"absent"`
}

// flowStep is one request and the answer it must get.
type flowStep struct {
	Name   string          `json:"name"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body"`
	Status int             `json:"status"`
	Total  *int            `json:"total"`
	Save   string          `json:"save"`
}

// TestFlows plays each IdP's request sequence against the SCIM server,
// with the real consumer applying the events to the KooDrive simulator,
// and checks each user's department, role and status and the exact writes
// KooDrive received; out-of-scope users never reach it.
func TestFlows(t *testing.T) {
	for _, name := range []string{"entra", "okta"} {
		t.Run(name, func(t *testing.T) { runFlow(t, "testdata/"+name+"-flow.json") })
	}
}

func runFlow(t *testing.T, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var fl flow
	if err := json.Unmarshal(b, &fl); err != nil {
		t.Fatal(err)
	}
	env := harness.NewEnv(t, kdsim.Options{})
	depts := env.Sim.Departments()
	deptName := map[string]string{strconv.FormatInt(depts[0], 10): "Engineering", strconv.FormatInt(depts[1], 10): "Sales"}
	// The issue's mapping, its departments the simulator's.
	src := strings.NewReplacer(engineering, strconv.FormatInt(depts[0], 10), sales, strconv.FormatInt(depts[1], 10)).Replace(issueMapping)
	m, err := mapping.Parse("issue.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	harness.RunConsumer(t, consumer.Options{
		Conn: env.NC, Manage: true, Concurrency: 8, AckWait: 3 * time.Second,
		RetryInitial: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Handler: &handlers.Handler{Users: env.KD}, Logger: harness.Logger(slog.LevelWarn),
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	outs, err := harness.CollectOutcomes(ctx, env.NC, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outs.Stop()
	s, err := New(ctx, Options{Conn: env.NC, Tokens: []kdapi.Secret{testToken}, Mapping: m, Logger: harness.Logger(slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	f := &fixture{t: t, nc: env.NC, js: env.JS, srv: s, url: hs.URL + Prefix}

	vars := map[string]string{}
	subst := func(s string) string {
		return regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(s, func(v string) string { return vars[v[2:len(v)-1]] })
	}
	for _, st := range fl.Steps {
		var body any
		if len(st.Body) > 0 {
			body = subst(string(st.Body))
		}
		code, out, _ := f.do(st.Method, subst(st.Path), body)
		if code != st.Status {
			t.Fatalf("%s: %s %s: %d, want %d: %v", st.Name, st.Method, st.Path, code, st.Status, out)
		}
		if st.Total != nil && out["totalResults"] != float64(*st.Total) {
			t.Errorf("%s: totalResults %v, want %d", st.Name, out["totalResults"], *st.Total)
		}
		if st.Save != "" {
			vars[st.Save], _ = out["id"].(string)
		}
	}
	// Every event published ends in an outcome, all applied.
	evs := f.published("IDENTITY")
	if err := outs.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err)
	}
	for _, o := range outs.All() {
		if o.Result != outcome.Applied {
			t.Errorf("outcome %s %s %s: %s %s", o.Action, o.UserID, o.Result, o.Reason, o.Error)
		}
	}
	for userID, want := range fl.KooDrive {
		rec, ok := env.Sim.User(userID)
		if !ok || rec.User == nil {
			t.Errorf("user %s is not in KooDrive", userID)
			continue
		}
		u := rec.User
		if deptName[u.DeptID] != want.Dept || u.Role != want.Role || u.Status != want.Status {
			t.Errorf("user %s: dept %s role %d status %d, want %s %d %d", userID, deptName[u.DeptID], u.Role, u.Status, want.Dept, want.Role, want.Status)
		}
		var writes []string
		for _, op := range rec.Ops {
			w := op.Op
			if d := op.Fields.DeptID; d != nil {
				w += " dept=" + stdcmp.Or(deptName[*d], *d)
			}
			if r := op.Fields.Role; r != nil {
				w += " role=" + strconv.Itoa(*r)
			}
			if s := op.Fields.Status; s != nil && (op.Op != kdsim.OpCreate || *s != 0) {
				w += " status=" + strconv.Itoa(*s)
			}
			writes = append(writes, w)
		}
		if d := cmp.Diff(want.Writes, writes); d != "" {
			t.Errorf("user %s: writes (-want +got)\n%s", userID, d)
		}
	}
	for _, userID := range fl.Absent {
		if _, ok := env.Sim.User(userID); ok {
			t.Errorf("out-of-scope user %s reached KooDrive", userID)
		}
		for _, e := range evs {
			if e.UserID == userID {
				t.Errorf("an event for out-of-scope user %s: %s", userID, e.Type)
			}
		}
	}
	if len(fl.KooDrive) == 0 || slices.ContainsFunc(fl.Steps, func(s flowStep) bool { return s.Method == "" || s.Status == 0 }) {
		t.Error("the flow file checks nothing, or has a step without a method or status")
	}
}
