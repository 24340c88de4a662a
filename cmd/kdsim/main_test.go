package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kdsync/kdsync/kdapi"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// started is a kdsim process run in-process.
type started struct {
	addr   string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

// start runs serve with args until the test ends (or stop is called).
func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{logs: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	addrc := make(chan string, 1)
	go func() {
		s.done <- serve(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), s.logs, func(a string) { addrc <- a })
	}()
	select {
	case s.addr = <-addrc:
	case code := <-s.done:
		cancel()
		t.Fatalf("serve exited with %d: %s", code, s.logs)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("server did not start")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels the server's context and returns its exit status.
func (s *started) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code // stop may be called again
		return code
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("server did not stop")
		return -1
	}
}

func (s *started) get(t *testing.T, path, auth string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+s.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestServeBothAuthModes(t *testing.T) {
	s := start(t, "-app-id", "app-1", "-app-secret", "very-secret-value", "-token", "token-value-xyz", "-seed", "9")

	resp, body := s.get(t, kdapi.APIPath+"/users/count", "Bearer+token-value-xyz")
	if resp.StatusCode != 200 || string(body) != `{"total":0,"code":0,"msg":"success"}` {
		t.Errorf("bearer count: %d %s", resp.StatusCode, body)
	}
	if resp, _ := s.get(t, kdapi.APIPath+"/users/count", "Bearer+wrong"); resp.StatusCode != 401 {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	c, err := kdapi.NewClient(kdapi.WithBaseURL("http://"+s.addr), kdapi.WithAppAuth("app-1", "very-secret-value", "1505084218764547200"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateUser(t.Context(), kdapi.CreateUserRequest{UserID: "1", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: "1319678187126486144", Role: "1"}}); err != nil {
		t.Fatalf("signed create: %v", err)
	}
	resp, body = s.get(t, "/_admin/faults", "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"retryAfter":"1s"`) || !strings.Contains(string(body), `"errorStatuses":[500,503,429]`) {
		t.Errorf("admin faults: %d %s", resp.StatusCode, body)
	}

	if code := s.stop(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
	logs := s.logs.String()
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(logs, "\n", 2)[0]), &first); err != nil {
		t.Fatalf("first log line is not JSON: %v\n%s", err, logs)
	}
	if first["msg"] != "kdsim listening" || first["addr"] != s.addr || first["app_auth"] != true || first["bearer_auth"] != true || first["seed"] != float64(9) {
		t.Errorf("startup line = %v", first)
	}
	for _, secret := range []string{"very-secret-value", "token-value-xyz"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret:\n%s", logs)
		}
	}
	if !strings.Contains(logs, `"msg":"kdsim stopped","requests":3,"writes":1`) {
		t.Errorf("no final stats line:\n%s", logs)
	}
}

func TestServeFromEnvironment(t *testing.T) { // t.Setenv: not parallel
	t.Setenv("KDSIM_TOKEN", "env-token")
	t.Setenv("KDSIM_FAIL_RATE", "1")
	t.Setenv("KDSIM_FAIL_STATUSES", "503")
	t.Setenv("KDSIM_RETRY_AFTER", "7s")
	t.Setenv("KDSIM_ADMIN_TOKEN", "env-admin")
	s := start(t)
	resp, body := s.get(t, kdapi.APIPath+"/users/count", "Bearer env-token")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("got %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, _ := s.get(t, "/_admin/stats", ""); resp.StatusCode != 401 {
		t.Errorf("admin without its token: %d", resp.StatusCode)
	}
	if resp, _ := s.get(t, "/_admin/stats", "Bearer env-admin"); resp.StatusCode != 200 {
		t.Errorf("admin with its token: %d", resp.StatusCode)
	}
	if logs := s.logs.String(); !strings.Contains(logs, `"app_auth":false,"app_id":"","bearer_auth":true`) {
		t.Errorf("startup line:\n%s", logs)
	}
}

// TestServeFaultFlags checks -fail-rates and the outage flags, given as
// flags or as environment variables.
func TestServeFaultFlags(t *testing.T) { // t.Setenv: not parallel
	tests := map[string]struct {
		args       []string
		env        map[string]string
		status     int
		retryAfter string
		msg        string
		faults     []string // parts of GET /_admin/faults
	}{
		"fail-rates flag": {
			args:   []string{"-fail-rates", "503=1", "-retry-after", "3s"},
			status: 503, retryAfter: "3", msg: "(injected)",
			faults: []string{`"errorRate":0,`, `"errorRates":{"503":1}`},
		},
		"fail-rates from the environment": {
			env:    map[string]string{"KDSIM_FAIL_RATES": " 429 = 0.75 , 500=0.25"},
			status: 0, msg: "(injected)", // 429 or 500
			faults: []string{`"errorRates":{"429":0.75,"500":0.25}`},
		},
		"fail-rate alone still works": {
			args:   []string{"-fail-rate", "1", "-fail-statuses", "500"},
			status: 500, msg: "(injected)",
			faults: []string{`"errorRate":1,`, `"errorStatuses":[500]`, `"errorRates":{}`},
		},
		"zero rates inject nothing": {
			args:   []string{"-fail-rates", "503=0,429=0"},
			status: 200, msg: "success",
		},
		"outage from start": {
			args:   []string{"-outage-for", "1h"},
			status: 503, retryAfter: "3600", msg: "outage",
			faults: []string{`"outageFrom":`, `"outageUntil":`},
		},
		"outage from the environment": {
			env:    map[string]string{"KDSIM_OUTAGE_AFTER": "0s", "KDSIM_OUTAGE_FOR": "90s"},
			status: 503, retryAfter: "90", msg: "outage",
		},
		"outage later": {
			args:   []string{"-outage-after", "1h", "-outage-for", "1m"},
			status: 200, msg: "success",
			faults: []string{`"outageFrom":`, `"outageUntil":`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			s := start(t, append([]string{"-token", "t"}, tc.args...)...)
			resp, body := s.get(t, kdapi.APIPath+"/users/count", "Bearer+t")
			if tc.status != 0 && resp.StatusCode != tc.status || tc.status == 0 && resp.StatusCode != 429 && resp.StatusCode != 500 {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Retry-After"); tc.status != 0 && got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if !strings.Contains(string(body), tc.msg) {
				t.Errorf("body %s lacks %q", body, tc.msg)
			}
			_, fb := s.get(t, "/_admin/faults", "")
			for _, part := range tc.faults {
				if !strings.Contains(string(fb), part) {
					t.Errorf("faults %s lack %s", fb, part)
				}
			}
		})
	}
}

// TestServeOutageWindow checks that -outage-after and -outage-for start an
// outage at that time after start and end it after that long, as POST
// /_admin/outage does.
func TestServeOutageWindow(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	s := start(t, "-token", "t", "-outage-after", "1500ms", "-outage-for", "2s")
	count := func() (int, string, string) {
		resp, body := s.get(t, kdapi.APIPath+"/users/count", "Bearer+t")
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
	}
	var fl struct {
		OutageFrom, OutageUntil time.Time
	}
	_, fb := s.get(t, "/_admin/faults", "")
	if err := json.Unmarshal(fb, &fl); err != nil {
		t.Fatalf("faults %s: %v", fb, err)
	}
	if d := fl.OutageUntil.Sub(fl.OutageFrom); d != 2*time.Second {
		t.Errorf("outage lasts %s, want 2s: %s", d, fb)
	}
	if after := fl.OutageFrom.Sub(begin); after < 1500*time.Millisecond || after > 1500*time.Millisecond+time.Since(begin) {
		t.Errorf("outage starts %s after start, want 1.5s: %s", after, fb)
	}
	if time.Now().Before(fl.OutageFrom) {
		// A 503 counts only if it was answered before the outage began
		// (a slow machine may send this request late).
		if st, _, body := count(); st != 200 && time.Now().Before(fl.OutageFrom) {
			t.Errorf("before the outage: %d %s", st, body)
		}
	}
	// During the outage: 503 with the time left.
	var st int
	var ra, body string
	for st != 503 {
		if time.Now().After(fl.OutageUntil) {
			t.Fatalf("no 503 during the outage; last answer %d %s", st, body)
		}
		st, ra, body = count()
		time.Sleep(20 * time.Millisecond)
	}
	if ra != "1" && ra != "2" || !strings.Contains(body, "outage") {
		t.Errorf("during the outage: Retry-After %q, body %s", ra, body)
	}
	// After it: served again.
	time.Sleep(time.Until(fl.OutageUntil))
	if st, _, body := count(); st != 200 {
		t.Errorf("after the outage: %d %s", st, body)
	}
}

// TestShutdownCutsSlowAnswers checks that a slow answer does not hold the
// shutdown up.
func TestShutdownCutsSlowAnswers(t *testing.T) {
	t.Parallel()
	s := start(t, "-token", "t", "-slow-rate", "1", "-slow-for", "1m")
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+kdapi.APIPath+"/users/count", nil)
		req.Header.Set("Authorization", "Bearer+t")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode != 503 {
				err = errors.New(resp.Status)
			}
		}
		errc <- err
	}()
	// Wait until the request is being held.
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(statsOf(t, s), `"slow":1`) {
		if time.Now().After(deadline) {
			t.Fatal("the slow request never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	begin := time.Now()
	if code := s.stop(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if err := <-errc; err != nil {
		t.Errorf("slow request: %v (want a 503 answer)", err)
	}
}

func statsOf(t *testing.T, s *started) string {
	_, b := s.get(t, "/_admin/stats", "")
	return string(b)
}

func TestServeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badDepts := filepath.Join(dir, "depts.json")
	if err := os.WriteFile(badDepts, []byte(`[{"id":"1","parentId":"7","name":"x"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	tests := map[string]struct {
		args []string
		want int
		log  string
	}{
		"no auth":              {nil, 2, "no authentication configured"},
		"app id alone":         {[]string{"-app-id", "a"}, 2, "needs both AppID and AppSecret"},
		"bad status":           {[]string{"-token", "t", "-fail-statuses", "502"}, 2, "error status 502"},
		"status not a number":  {[]string{"-token", "t", "-fail-statuses", "5xx"}, 2, "is not a status"},
		"rate above 1":         {[]string{"-token", "t", "-fail-rate", "1.5"}, 2, "errorRate"},
		"fail-rates status":    {[]string{"-token", "t", "-fail-rates", "502=0.1"}, 2, "errorRates: status 502"},
		"fail-rates no rate":   {[]string{"-token", "t", "-fail-rates", "503"}, 2, "want status=rate"},
		"fail-rates bad rate":  {[]string{"-token", "t", "-fail-rates", "503=5%"}, 2, "is not a rate"},
		"fail-rates bad code":  {[]string{"-token", "t", "-fail-rates", "5xx=0.1"}, 2, "is not a status"},
		"fail-rates twice":     {[]string{"-token", "t", "-fail-rates", "503=0.1,503=0.2"}, 2, "status 503 given twice"},
		"fail-rates above 1":   {[]string{"-token", "t", "-fail-rates", "503=0.6,429=0.6"}, 2, "more than 1"},
		"rates with fail-rate": {[]string{"-token", "t", "-fail-rate", "0.5", "-fail-rates", "503=0.6"}, 2, "more than 1"},
		"outage-after alone":   {[]string{"-token", "t", "-outage-after", "1s"}, 2, "-outage-after needs -outage-for"},
		"negative outage":      {[]string{"-token", "t", "-outage-for", "-1s"}, 2, "must not be negative"},
		"bad log level":        {[]string{"-token", "t", "-log-level", "loud"}, 2, "-log-level"},
		"unknown flag":         {[]string{"-token", "t", "-nope"}, 2, "flag provided but not defined"},
		"stray argument":       {[]string{"-token", "t", "extra"}, 2, "unexpected arguments"},
		"missing departments":  {[]string{"-token", "t", "-departments", filepath.Join(dir, "none.json")}, 2, "-departments"},
		"bad departments":      {[]string{"-token", "t", "-departments", badDepts}, 2, "no root"},
		"address in use":       {[]string{"-token", "t", "-addr", busy.Addr().String()}, 1, "listen"},
		"help is not an error": {[]string{"-h"}, 0, "Usage of kdsim"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			args := append([]string{"-addr", "127.0.0.1:0"}, tc.args...)
			// A bad setting must stop serve before it serves; the timeout
			// turns a regression into a failure instead of a hang.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if code := serve(ctx, args, &logs, nil); code != tc.want {
				t.Errorf("exit status %d, want %d", code, tc.want)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("output lacks %q:\n%s", tc.log, logs.String())
			}
		})
	}
}
