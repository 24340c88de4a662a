package kdsim_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
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
		"rates per status":     {kdsim.Faults{ErrorRates: map[int]float64{503: 0.05, 429: 0.01, 500: 0.02}}, ""},
		"rates add up to 1":    {kdsim.Faults{ErrorRate: 0.5, ErrorRates: map[int]float64{503: 0.25, 429: 0.25}}, ""},
		"rate of 502":          {kdsim.Faults{ErrorRates: map[int]float64{502: 0.1}}, "errorRates: status 502"},
		"rate of 503 above 1":  {kdsim.Faults{ErrorRates: map[int]float64{503: 1.5}}, "rate of 503 must be within 0..1"},
		"negative rate of 429": {kdsim.Faults{ErrorRates: map[int]float64{429: -0.1}}, "rate of 429"},
		"NaN rate of 500":      {kdsim.Faults{ErrorRates: map[int]float64{500: math.NaN()}}, "rate of 500"},
		"rates above 1":        {kdsim.Faults{ErrorRate: 0.5, ErrorRates: map[int]float64{503: 0.3, 429: 0.3}}, "add up to 1.1, more than 1"},
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
		ErrorRates: map[int]float64{503: 0.05, 429: 0.01}, RetryAfter: 2 * time.Second, OutageFrom: t0, OutageUntil: t0.Add(time.Hour), SlowRate: 0.5, SlowFor: 30 * time.Second, FailAfterWriteRate: 0.125}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{`"latency":"5ms"`, `"slowFor":"30s"`, `"retryAfter":"2s"`, `"outageFrom":"2026-03-01T10:00:00Z"`, `"errorRates":{"429":0.01,"503":0.05}`} {
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
	// No rates per status: written as {}, read back as nil.
	b, err = json.Marshal(kdsim.Faults{})
	if err != nil || !strings.Contains(string(b), `"errorRates":{}`) {
		t.Errorf("Marshal(Faults{}) = %s, %v; want errorRates {}", b, err)
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ErrorRates != nil {
		t.Errorf("Unmarshal(%s): ErrorRates %v, %v; want nil", b, out.ErrorRates, err)
	}
	for _, bad := range []string{`{"latencyy":"1s"}`, `{"latency":"fast"}`, `{"latency":5}`, `[]`, `{"errorRates":{"5xx":0.1}}`, `{"errorRates":{"503":"5%"}}`} {
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

// TestErrorRates checks that each status is injected at its own rate, alone
// and together with the older ErrorRate, and that 429 and 503 carry
// Retry-After.
func TestErrorRates(t *testing.T) {
	t.Parallel()
	const n = 4000
	tests := map[string]struct {
		faults kdsim.Faults
		want   map[int]float64 // expected share of each status; 200 is the rest
	}{
		"one status": {
			kdsim.Faults{ErrorRates: map[int]float64{503: 0.1}},
			map[int]float64{503: 0.1},
		},
		"three statuses": {
			kdsim.Faults{ErrorRates: map[int]float64{503: 0.05, 429: 0.01, 500: 0.02}},
			map[int]float64{503: 0.05, 429: 0.01, 500: 0.02},
		},
		"uneven and large": {
			kdsim.Faults{ErrorRates: map[int]float64{429: 0.5, 500: 0.25}},
			map[int]float64{429: 0.5, 500: 0.25},
		},
		"every request fails": {
			kdsim.Faults{ErrorRates: map[int]float64{503: 0.75, 500: 0.25}},
			map[int]float64{503: 0.75, 500: 0.25},
		},
		"zero rate is no rate": {
			kdsim.Faults{ErrorRates: map[int]float64{503: 0, 429: 0.2}},
			map[int]float64{429: 0.2},
		},
		"errorRate alone, as before": {
			kdsim.Faults{ErrorRate: 0.3, ErrorStatuses: []int{500, 503, 429}},
			map[int]float64{500: 0.1, 503: 0.1, 429: 0.1},
		},
		"errorRate without statuses means 500": {
			kdsim.Faults{ErrorRate: 0.2},
			map[int]float64{500: 0.2},
		},
		"errorRate plus rates per status": {
			kdsim.Faults{ErrorRate: 0.1, ErrorStatuses: []int{503}, ErrorRates: map[int]float64{503: 0.05, 429: 0.1}},
			map[int]float64{503: 0.15, 429: 0.1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, err := kdsim.New(kdsim.Options{Token: testToken, Seed: 11, Faults: tc.faults})
			if err != nil {
				t.Fatal(err)
			}
			got := countStatuses(t, srv, n)
			want := maps.Clone(tc.want)
			want[200] = 1
			for _, p := range tc.want {
				want[200] -= p
			}
			for st, p := range want {
				// Binomial: allow 4.5 standard deviations (the seed is
				// fixed, so this is deterministic; the margin only keeps
				// a change of the random source from failing it).
				mean, sd := n*p, math.Sqrt(n*p*(1-p))
				if d := math.Abs(float64(got[st]) - mean); d > 4.5*sd+0.5 {
					t.Errorf("status %d: %d of %d, want about %.0f (±%.0f)", st, got[st], n, mean, 4.5*sd)
				}
			}
			for st := range got {
				if _, ok := want[st]; !ok {
					t.Errorf("status %d answered %d times, want none", st, got[st])
				}
			}
			faults := srv.Stats().Faults
			for _, st := range []int{429, 500, 503} {
				if c := faults[fmt.Sprintf("error%d", st)]; c != int64(got[st]) {
					t.Errorf("counter error%d = %d, answered %d", st, c, got[st])
				}
			}
		})
	}
}

// countStatuses sends n bearer requests straight to srv and counts the
// statuses. It checks each injected answer's envelope and Retry-After.
func countStatuses(t *testing.T, srv *kdsim.Server, n int) map[int]int {
	t.Helper()
	got := map[int]int{}
	for range n {
		r := httptest.NewRequest(http.MethodGet, kdapi.APIPath+"/users/count", nil)
		r.Header.Set("Authorization", "Bearer+"+testToken.Reveal())
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		got[w.Code]++
		ra := w.Header().Get("Retry-After")
		switch w.Code {
		case 429, 503:
			if ra != "1" {
				t.Fatalf("status %d: Retry-After %q, want 1", w.Code, ra)
			}
		case 200, 500:
			if ra != "" {
				t.Fatalf("status %d: Retry-After %q, want none", w.Code, ra)
			}
		}
		if w.Code != 200 && !strings.Contains(w.Body.String(), "(injected)") {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	return got
}

// TestAdminErrorRates sets rates per status through PUT /_admin/faults.
func TestAdminErrorRates(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Token: testToken, Seed: 5})
	var fl kdsim.Faults
	if code := f.admin(t, "PUT", "faults", `{"errorRates":{"503":0.5,"429":0.25},"retryAfter":"4s"}`, &fl); code != 200 {
		t.Fatalf("PUT faults: %d %+v", code, fl)
	}
	want := map[int]float64{503: 0.5, 429: 0.25}
	if !maps.Equal(fl.ErrorRates, want) || !maps.Equal(f.srv.Faults().ErrorRates, want) {
		t.Errorf("PUT answered %v, Faults() = %v; want %v", fl.ErrorRates, f.srv.Faults().ErrorRates, want)
	}
	var raw map[string]json.RawMessage
	f.admin(t, "GET", "faults", "", &raw)
	if got := string(raw["errorRates"]); got != `{"429":0.25,"503":0.5}` {
		t.Errorf("GET faults: errorRates %s", got)
	}
	seen := map[int]int{}
	for range 200 {
		rp := f.bearer(t, http.MethodGet, "/users/count", nil)
		seen[rp.status]++
		if (rp.status == 429 || rp.status == 503) && rp.header.Get("Retry-After") != "4" {
			t.Errorf("status %d: Retry-After %q, want 4", rp.status, rp.header.Get("Retry-After"))
		}
	}
	// 200 draws at 0.5/0.25/0.25: each within about four standard
	// deviations.
	for st, r := range map[int][2]int{503: {70, 130}, 429: {25, 75}, 200: {25, 75}} {
		if seen[st] < r[0] || seen[st] > r[1] {
			t.Errorf("statuses %v: %d answered %d times, want %d..%d", seen, st, seen[st], r[0], r[1])
		}
	}
	if seen[500] != 0 {
		t.Errorf("statuses %v: 500 was not configured", seen)
	}

	// Refused settings leave the rates as they were.
	for _, bad := range []string{`{"errorRates":{"502":0.1}}`, `{"errorRates":{"503":0.7,"500":0.7}}`, `{"errorRates":{"x":1}}`} {
		var env struct {
			Code string `json:"code"`
			Msg  string `json:"msg"`
		}
		if code := f.admin(t, "PUT", "faults", bad, &env); code != 400 || env.Code != kdsim.CodeInvalid {
			t.Errorf("PUT faults %s: %d %+v", bad, code, env)
		}
	}
	if got := f.srv.Faults().ErrorRates; !maps.Equal(got, want) {
		t.Errorf("a refused PUT changed the rates: %v", got)
	}
	// PUT replaces everything: no rates any more.
	if code := f.admin(t, "PUT", "faults", `{}`, &fl); code != 200 || fl.ErrorRates != nil {
		t.Errorf("PUT {}: %d %v", code, fl.ErrorRates)
	}
	f.bearer(t, http.MethodGet, "/users/count", nil).expect(t, 200, "0", "success")
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
