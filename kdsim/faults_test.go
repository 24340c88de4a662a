package kdsim_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

func TestFaultsValidate(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		f    kdsim.Faults
		want string // "" means valid
	}{
		"zero":                 {kdsim.Faults{}, ""},
		"everything":           {kdsim.Faults{Latency: time.Millisecond, Jitter: time.Millisecond, ErrorRate: 0.5, ErrorStatuses: []int{429, 500, 503}, RetryAfter: time.Second, OutageFrom: t0, OutageUntil: t0.Add(time.Minute), SlowRate: 1, SlowFor: time.Second, FailAfterWriteRate: 0.1}, ""},
		"negative latency":     {kdsim.Faults{Latency: -1}, "latency must not be negative"},
		"negative jitter":      {kdsim.Faults{Jitter: -1}, "jitter"},
		"rate above 1":         {kdsim.Faults{ErrorRate: 1.01}, "errorRate must be within 0..1"},
		"negative rate":        {kdsim.Faults{FailAfterWriteRate: -0.1}, "failAfterWriteRate"},
		"status 502":           {kdsim.Faults{ErrorStatuses: []int{502}}, "error status 502"},
		"slow without slowFor": {kdsim.Faults{SlowRate: 0.1}, "slowRate needs slowFor"},
		"outage backwards":     {kdsim.Faults{OutageFrom: t0, OutageUntil: t0}, "outageFrom must be before outageUntil"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.f.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFaultsJSON(t *testing.T) {
	t.Parallel()
	in := kdsim.Faults{Latency: 5 * time.Millisecond, Jitter: time.Millisecond, ErrorRate: 0.25, ErrorStatuses: []int{503},
		RetryAfter: 2 * time.Second, OutageFrom: t0, OutageUntil: t0.Add(time.Hour), SlowRate: 0.5, SlowFor: 30 * time.Second, FailAfterWriteRate: 0.125}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{`"latency":"5ms"`, `"slowFor":"30s"`, `"retryAfter":"2s"`, `"outageFrom":"2026-03-01T10:00:00Z"`} {
		if !strings.Contains(string(b), part) {
			t.Errorf("JSON %s lacks %s", b, part)
		}
	}
	var out kdsim.Faults
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
	for _, bad := range []string{`{"latencyy":"1s"}`, `{"latency":"fast"}`, `{"latency":5}`, `[]`} {
		if err := json.Unmarshal([]byte(bad), &out); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Faults: kdsim.Faults{Latency: 40 * time.Millisecond, Jitter: 10 * time.Millisecond}})
	for range 4 {
		start := time.Now()
		if _, err := f.client.CountUsers(t.Context(), ""); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 40*time.Millisecond {
			t.Errorf("answered after %s, want >= 40ms", d)
		}
	}
	if n := f.srv.Stats().Faults["latency"]; n != 4 {
		t.Errorf("latency faults = %d, want 4", n)
	}
	// Faults off: no delay counted.
	if err := f.srv.SetFaults(kdsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.CountUsers(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Stats().Faults["latency"]; n != 4 {
		t.Errorf("latency faults = %d after turning them off, want 4", n)
	}
}

func TestInjectedErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Seed: 7, Faults: kdsim.Faults{ErrorRate: 1, ErrorStatuses: []int{429, 500, 503}, RetryAfter: 2500 * time.Millisecond}})
	seen := map[int]int{}
	for i := range 60 {
		body := fmt.Appendf(nil, `{"userId":"%d","modifyUserInfoReq":{"deptId":"%s","role":"1"}}`, 100+i, deptEng)
		rp := f.signed(t, http.MethodPost, "/users", body)
		seen[rp.status]++
		ra := rp.header.Get("Retry-After")
		switch rp.status {
		case 429:
			rp.expect(t, 429, kdsim.CodeTooManyRequests, "injected")
		case 503:
			rp.expect(t, 503, kdsim.CodeUnavailable, "injected")
		case 500:
			rp.expect(t, 500, kdsim.CodeInternal, "injected")
		default:
			t.Fatalf("status %d: %s", rp.status, rp.body)
		}
		if wantRA := map[int]string{429: "3", 503: "3", 500: ""}[rp.status]; ra != wantRA {
			t.Errorf("status %d: Retry-After %q, want %q", rp.status, ra, wantRA)
		}
	}
	if len(seen) != 3 {
		t.Errorf("statuses seen: %v, want all of 429, 500, 503", seen)
	}
	if n := len(f.srv.Users()); n != 0 {
		t.Errorf("%d users created; an injected error must come before the write", n)
	}
	st := f.srv.Stats()
	if st.Faults["error429"] != int64(seen[429]) || st.Faults["error500"] != int64(seen[500]) || st.Faults["error503"] != int64(seen[503]) {
		t.Errorf("fault counters %v, seen %v", st.Faults, seen)
	}
	// The client sees them as retryable, with the server's Retry-After.
	if err := f.srv.SetFaults(kdsim.Faults{ErrorRate: 1, ErrorStatuses: []int{429}, RetryAfter: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	_, err := f.client.CountUsers(t.Context(), "")
	if !errors.Is(err, kdapi.ErrRetryable) || kdapi.RetryAfterOf(err) != 2*time.Second {
		t.Errorf("err = %v (retry after %s), want retryable after 2s", err, kdapi.RetryAfterOf(err))
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	f := newFixture(t, kdsim.Options{Token: testToken, Now: clk.Now})
	get := func() reply { return f.bearer(t, http.MethodGet, "/users/count", nil) }

	if err := f.srv.StartOutage(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	rp := get()
	rp.expect(t, 503, kdsim.CodeUnavailable, "outage")
	if ra := rp.header.Get("Retry-After"); ra != "30" {
		t.Errorf("Retry-After = %q, want 30", ra)
	}
	clk.Advance(10 * time.Second)
	if ra := get().header.Get("Retry-After"); ra != "20" {
		t.Errorf("Retry-After = %q after 10s, want 20", ra)
	}
	// Admin and unauthenticated requests are not subject to faults.
	r := newRequest(t, http.MethodGet, f.api("/users/count"), nil)
	send(t, r).expect(t, 401, kdsim.CodeAuth, "missing Authorization")
	clk.Advance(20 * time.Second)
	get().expect(t, 200, "0", "success")

	// A scheduled outage, between two times.
	if err := f.srv.SetFaults(kdsim.Faults{OutageFrom: clk.Now().Add(time.Minute), OutageUntil: clk.Now().Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	get().expect(t, 200, "0", "success")
	clk.Advance(time.Minute)
	get().expect(t, 503, kdsim.CodeUnavailable, "outage")
	clk.Advance(time.Minute)
	get().expect(t, 200, "0", "success")

	// Stopping an outage keeps the other settings.
	if err := f.srv.SetFaults(kdsim.Faults{Latency: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.StartOutage(time.Hour); err != nil {
		t.Fatal(err)
	}
	get().expect(t, 503, kdsim.CodeUnavailable, "outage")
	f.srv.StopOutage()
	get().expect(t, 200, "0", "success")
	if got := f.srv.Faults(); got.Latency != time.Millisecond || !got.OutageUntil.IsZero() {
		t.Errorf("faults after StopOutage = %+v", got)
	}
	if n := f.srv.Stats().Faults["outage"]; n != 4 {
		t.Errorf("outage faults = %d, want 4", n)
	}
	if err := f.srv.StartOutage(0); err == nil {
		t.Error("StartOutage(0) accepted")
	}
}

// TestSlow checks that a slow answer outlasts the client's timeout, that
// the write was applied nonetheless, and that the server stops waiting when
// the client gives up.
func TestSlow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Faults: kdsim.Faults{SlowRate: 1, SlowFor: time.Minute}})
	impatient := newAppClient(t, f.ts.URL, testAppID, testSecret, kdapi.WithTimeout(150*time.Millisecond))
	start := time.Now()
	err := impatient.CreateUser(t.Context(), kdapi.CreateUserRequest{UserID: "11", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: deptEng, Role: "1"}})
	if !errors.Is(err, kdapi.ErrRetryable) {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("client waited %s", d)
	}
	rec, ok := f.srv.User("11")
	if !ok || rec.User == nil || len(rec.Ops) != 1 || rec.Ops[0].FaultAfter != kdsim.FaultSlow {
		t.Fatalf("User(11) = %+v, %v; want the create applied and marked slow", rec, ok)
	}
	eventually(t, "the server to stop waiting", func() bool { return f.srv.Stats().Faults["slowAborted"] == 1 })

	// A slow answer shorter than the timeout arrives late but whole.
	if err := f.srv.SetFaults(kdsim.Faults{SlowRate: 1, SlowFor: 80 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	u, err := f.client.GetUser(t.Context(), "11")
	if err != nil || u.UserID != "11" {
		t.Fatalf("GetUser = %+v, %v", u, err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("answered after %s, want >= 80ms", d)
	}
	if st := f.srv.Stats(); st.Faults["slow"] != 2 || st.Faults["slowAborted"] != 1 {
		t.Errorf("faults = %v", st.Faults)
	}
}

// TestFailAfterWrite checks the ambiguous case: the write is applied, the
// answer is 500.
func TestFailAfterWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Faults: kdsim.Faults{FailAfterWriteRate: 1}})
	ctx, c := t.Context(), f.client
	var ae *kdapi.APIError
	err := c.CreateUser(ctx, kdapi.CreateUserRequest{UserID: "21", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: deptEng, Role: "1"}})
	if !errors.Is(err, kdapi.ErrRetryable) || !errors.As(err, &ae) || ae.HTTPStatus != 500 {
		t.Fatalf("create: err = %v, want a retryable 500", err)
	}
	// The retry finds the user: the write had been applied.
	err = c.CreateUser(ctx, kdapi.CreateUserRequest{UserID: "21", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: deptEng, Role: "1"}})
	if !errors.Is(err, kdapi.ErrAlreadyExists) {
		t.Fatalf("retried create: err = %v, want ErrAlreadyExists", err)
	}
	if err := c.UpdateUser(ctx, "21", kdapi.UpdateUserRequest{Status: kdapi.Ptr(1)}); !errors.Is(err, kdapi.ErrRetryable) {
		t.Fatalf("update: err = %v, want retryable", err)
	}
	u, err := c.GetUser(ctx, "21") // reads are not affected
	if err != nil || u.Status != 1 {
		t.Fatalf("GetUser = %+v, %v; want status 1 applied", u, err)
	}
	// A refused write is answered as such, not as 500.
	if err := c.UpdateUser(ctx, "22", kdapi.UpdateUserRequest{Status: kdapi.Ptr(1)}); !errors.Is(err, kdapi.ErrNotFound) {
		t.Fatalf("update of an unknown user: err = %v, want ErrNotFound", err)
	}
	if err := c.DeleteUser(ctx, "21"); !errors.Is(err, kdapi.ErrRetryable) {
		t.Fatalf("delete: err = %v, want retryable", err)
	}
	rec, ok := f.srv.User("21")
	if !ok || rec.User != nil || len(rec.Ops) != 3 {
		t.Fatalf("User(21) = %+v, %v; want deleted after 3 ops", rec, ok)
	}
	for i, op := range rec.Ops {
		if op.FaultAfter != kdsim.FaultFailAfterWrite {
			t.Errorf("op %d (%s): faultAfter = %q", i, op.Op, op.FaultAfter)
		}
	}
	if st := f.srv.Stats(); st.Faults["failAfterWrite"] != 3 || st.Writes != 3 || st.DuplicateCreates != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// statuses sends n requests straight to srv and returns the statuses.
func statuses(t *testing.T, srv *kdsim.Server, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		r := httptest.NewRequest(http.MethodGet, kdapi.APIPath+"/users/count", nil)
		r.Header.Set("Authorization", "Bearer+"+testToken.Reveal())
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		out[i] = w.Code
	}
	return out
}

func TestSeedReproducible(t *testing.T) {
	t.Parallel()
	faults := kdsim.Faults{ErrorRate: 0.5, ErrorStatuses: []int{500, 503}}
	newSrv := func(seed uint64) *kdsim.Server {
		srv, err := kdsim.New(kdsim.Options{Token: testToken, Seed: seed, Faults: faults})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	a, b, c := newSrv(42), newSrv(42), newSrv(43)
	if a.Seed() != 42 {
		t.Errorf("Seed() = %d", a.Seed())
	}
	sa, sb, sc := statuses(t, a, 64), statuses(t, b, 64), statuses(t, c, 64)
	if !slices.Equal(sa, sb) {
		t.Errorf("same seed, different runs:\n%v\n%v", sa, sb)
	}
	if slices.Equal(sa, sc) {
		t.Errorf("different seeds, same run: %v", sa)
	}
	kinds := map[int]bool{}
	for _, s := range sa {
		kinds[s] = true
	}
	if !kinds[200] || !kinds[500] || !kinds[503] {
		t.Errorf("statuses %v, want a mix of 200, 500, 503", kinds)
	}
	if r := newSrv(0); r.Seed() == 0 {
		t.Error("a zero seed was not replaced by a random one")
	}
}

// TestJitter checks that the extra delay is drawn in [0, Jitter), not fixed.
func TestJitter(t *testing.T) {
	t.Parallel()
	srv, err := kdsim.New(kdsim.Options{Token: testToken, Seed: 3, Faults: kdsim.Faults{Jitter: 60 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var shortest time.Duration = time.Hour
	for range 10 {
		start := time.Now()
		if got := statuses(t, srv, 1); got[0] != http.StatusOK {
			t.Fatalf("status %d", got[0])
		}
		shortest = min(shortest, time.Since(start))
	}
	// Ten uniform draws all above 45ms would take a broken draw (or a
	// machine too loaded to time anything).
	if shortest >= 45*time.Millisecond {
		t.Errorf("shortest of 10 answers took %s; jitter looks fixed at its maximum", shortest)
	}
	if n := srv.Stats().Faults["latency"]; n != 10 {
		t.Errorf("latency faults = %d, want 10", n)
	}
}
