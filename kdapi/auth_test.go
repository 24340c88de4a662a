package kdapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func staticSource(tok string) TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok})
}

// seqSource hands out its tokens in order (the last one forever) and counts
// the calls.
type seqSource struct {
	mu     sync.Mutex
	tokens []*oauth2.Token
	err    error
	calls  int
}

func (s *seqSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	t := s.tokens[0]
	if len(s.tokens) > 1 {
		s.tokens = s.tokens[1:]
	}
	return t, nil
}

func (s *seqSource) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func tokens(ts ...string) []*oauth2.Token {
	out := make([]*oauth2.Token, len(ts))
	for i, t := range ts {
		out[i] = &oauth2.Token{AccessToken: t}
	}
	return out
}

// recorded is what a recording transport saw of one attempt.
type recorded struct {
	req     *http.Request
	body    []byte
	getBody []byte // what the request's GetBody replays, nil without one
}

// recorder is a terminal RoundTripper that keeps every request and answers
// {"code":0}.
type recorder struct {
	mu   sync.Mutex
	seen []recorded
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var got recorded
	got.req = r
	if r.Body != nil {
		got.body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	if r.GetBody != nil {
		rc, err := r.GetBody()
		if err != nil {
			return nil, err
		}
		got.getBody, _ = io.ReadAll(rc)
	}
	rec.mu.Lock()
	rec.seen = append(rec.seen, got)
	rec.mu.Unlock()
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{"code":0}`)), Header: http.Header{}, Request: r}, nil
}

// closeTracker is a request body that records whether it was closed.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestAppAuth_SignsEachAttemptFreshly(t *testing.T) {
	t.Parallel()
	const body = `{"userId":"1008600000029937613","modifyUserInfoReq":{"deptId":"1","role":"1"}}`
	clock := time.Date(2026, 11, 23, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	var mu sync.Mutex
	rec := &recorder{}
	a := &AppAuth{AppID: testAppID, Secret: testSecret, UserID: testUserID, Next: rec, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(90 * time.Second)
		return clock
	}}
	req, err := http.NewRequest(http.MethodPost, "https://kd.example/koodrive/ose/v1/users?b=2&a=1", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for range 2 {
		resp, err := a.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(rec.seen) != 2 {
		t.Fatalf("next transport saw %d requests, want 2", len(rec.seen))
	}
	wantDates := []string{"20261123T090130Z", "20261123T090300Z"} // UTC, one per attempt
	for i, got := range rec.seen {
		r := got.req
		if r == req {
			t.Fatal("the next transport got the caller's request, not a clone")
		}
		if d := r.Header.Get("X-Date"); d != wantDates[i] {
			t.Errorf("attempt %d: X-Date = %q, want %q", i, d, wantDates[i])
		}
		if string(got.body) != body || string(got.getBody) != body {
			t.Errorf("attempt %d: next transport read body %q, GetBody %q; want the whole body for both", i, got.body, got.getBody)
		}
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("attempt %d: caller's headers not kept", i)
		}
		want := AuthorizationHeader(testAppID, Sign(testSecret.Reveal(), SigningInput{
			Method:  "POST",
			Path:    "/koodrive/ose/v1/users",
			Query:   r.URL.Query(),
			Headers: []Header{{"host", "kd.example"}, {"x-date", wantDates[i]}, {"x-user-id", testUserID}},
			Body:    []byte(body),
		}))
		if got := r.Header.Get("Authorization"); got != want {
			t.Errorf("attempt %d: Authorization = %q, want %q", i, got, want)
		}
	}
	// The caller's request is untouched: no auth headers, body still whole.
	for _, h := range []string{"Authorization", "X-Date", "X-User-Id"} {
		if v := req.Header.Get(h); v != "" {
			t.Errorf("caller's request was given %s: %q", h, v)
		}
	}
	if b, _ := io.ReadAll(req.Body); string(b) != body {
		t.Errorf("caller's body after RoundTrip = %q, want it unread", b)
	}
}

// TestAppAuth_PooledSigner: the transport NewClient makes reuses keyed
// HMACs across requests and goroutines; every signature is still the one
// Sign gives, and the caller's headers are left as they were.
func TestAppAuth_PooledSigner(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	a := &AppAuth{AppID: testAppID, Secret: testSecret, UserID: testUserID, Next: rec,
		Now: func() time.Time { return time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) }, sig: newSigner(testSecret.Reveal())}
	const workers, each = 4, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				body := fmt.Sprintf(`{"deptId":%d}`, w*each+i)
				url := fmt.Sprintf("https://kd.example/koodrive/ose/v1/users/%d", w*each+i)
				if i%2 == 1 {
					url += "?limit=10&offset=" + strconv.Itoa(i)
				}
				req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header["Accept"] = make([]string, 1, 4) // room to append into: must not be shared
				req.Header["Accept"][0] = "application/json"
				resp, err := a.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if len(req.Header) != 1 || req.Header["Accept"][:2][1] != "" {
					t.Errorf("caller's headers changed: %v", req.Header)
				}
			}
		})
	}
	wg.Wait()
	if len(rec.seen) != workers*each {
		t.Fatalf("%d requests sent, want %d", len(rec.seen), workers*each)
	}
	for _, got := range rec.seen {
		r := got.req
		want := AuthorizationHeader(testAppID, Sign(testSecret.Reveal(), SigningInput{
			Method:  "PUT",
			Path:    r.URL.Path,
			Query:   r.URL.Query(),
			Headers: []Header{{"host", "kd.example"}, {"x-date", "20261123T100000Z"}, {"x-user-id", testUserID}},
			Body:    got.body,
		}))
		if h := r.Header.Get("Authorization"); h != want {
			t.Fatalf("%s: Authorization = %q, want %q", r.URL, h, want)
		}
		if r.Header.Get("Accept") != "application/json" || r.Header.Get("X-User-Id") != testUserID {
			t.Fatalf("%s: headers %v", r.URL, r.Header)
		}
	}
}

// TestAppAuth_BodyWithoutGetBody: a request with a plain body and no
// GetBody is read once, signed, and replayed whole to the next transport,
// which also gets a GetBody; the caller's body is closed.
func TestAppAuth_BodyWithoutGetBody(t *testing.T) {
	t.Parallel()
	const body = `{"status":0}`
	rec := &recorder{}
	a := &AppAuth{AppID: testAppID, Secret: testSecret, UserID: testUserID, Next: rec, Now: func() time.Time { return time.Unix(1700000000, 0) }}
	tracker := &closeTracker{Reader: strings.NewReader(body)}
	req, err := http.NewRequest(http.MethodPut, "https://kd.example/koodrive/ose/v1/users/1", tracker)
	if err != nil {
		t.Fatal(err)
	}
	if req.GetBody != nil {
		t.Fatal("test needs a request without GetBody")
	}
	resp, err := a.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := rec.seen[0]
	if string(got.body) != body || string(got.getBody) != body {
		t.Errorf("next transport read %q, GetBody %q; want %q", got.body, got.getBody, body)
	}
	if !tracker.closed.Load() {
		t.Error("the caller's request body was not closed")
	}
	_, _, sig, _ := ParseAuthorization(got.req.Header.Get("Authorization"))
	want := Sign(testSecret.Reveal(), SigningInput{Method: "PUT", Path: "/koodrive/ose/v1/users/1",
		Headers: []Header{{"host", "kd.example"}, {"x-date", FormatDate(time.Unix(1700000000, 0))}, {"x-user-id", testUserID}},
		Body:    []byte(body)})
	if sig != want {
		t.Errorf("signature over %q does not match", body)
	}
}

// TestAppAuth_HostHeader: the signed host is the Host header that is sent
// (req.Host), not the URL's host, when the two differ.
func TestAppAuth_HostHeader(t *testing.T) {
	t.Parallel()
	var gotHost, gotAuth, gotDate string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotAuth, gotDate = r.Host, r.Header.Get("Authorization"), r.Header.Get("X-Date")
		fmt.Fprint(w, `{"code":0}`)
	}))
	t.Cleanup(server.Close)
	a := &AppAuth{AppID: testAppID, Secret: testSecret, UserID: testUserID}
	req, err := http.NewRequest(http.MethodGet, server.URL+"/koodrive/ose/v1/users/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "kd.virtual.example"
	resp, err := (&http.Client{Transport: a}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotHost != "kd.virtual.example" {
		t.Fatalf("server saw Host %q", gotHost)
	}
	sig := func(host string) string {
		return Sign(testSecret.Reveal(), SigningInput{Method: "GET", Path: "/koodrive/ose/v1/users/1",
			Headers: []Header{{"host", host}, {"x-date", gotDate}, {"x-user-id", testUserID}}})
	}
	if _, _, s, _ := ParseAuthorization(gotAuth); s != sig("kd.virtual.example") || s == sig(req.URL.Host) {
		t.Errorf("signature does not cover the Host header that was sent")
	}
}

func TestBearerAuth(t *testing.T) {
	t.Parallel()
	const body = `{"status":1}`
	tests := map[string]struct {
		tokens     []string
		accept     string // the Authorization value the server accepts; others get 401
		wantHeader []string
		wantCalls  int // token source calls
		wantErr    error
	}{
		"bearer plus form": {
			tokens: []string{"abc123"}, accept: "Bearer+abc123",
			wantHeader: []string{"Bearer+abc123"}, wantCalls: 1,
		},
		"prefixed token verbatim": {
			tokens: []string{"Bearer 6ebb0000"}, accept: "Bearer 6ebb0000",
			wantHeader: []string{"Bearer 6ebb0000"}, wantCalls: 1,
		},
		"one retry with a refreshed token": {
			tokens: []string{"old", "new"}, accept: "Bearer+new",
			wantHeader: []string{"Bearer+old", "Bearer+new"}, wantCalls: 2,
		},
		"same token after 401: no retry": {
			tokens: []string{"dead"}, accept: "Bearer+other",
			wantHeader: []string{"Bearer+dead"}, wantCalls: 2, wantErr: ErrAuth,
		},
		"refreshed token refused too: one retry only": {
			tokens: []string{"t1", "t2", "t3"}, accept: "Bearer+t3",
			wantHeader: []string{"Bearer+t1", "Bearer+t2"}, wantCalls: 2, wantErr: ErrAuth,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := &seqSource{tokens: tokens(tc.tokens...)}
			client, mux, _ := setup(t, WithBearer(src))
			var mu sync.Mutex
			var seen []string
			mux.HandleFunc("/users/42", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "PUT")
				testJSONBody(t, r, body) // the body is replayed whole on the retry
				mu.Lock()
				seen = append(seen, r.Header.Get("Authorization"))
				mu.Unlock()
				if r.Header.Get("X-Date") != "" || r.Header.Get("X-User-Id") != "" {
					t.Error("bearer request carries app-auth headers")
				}
				if r.Header.Get("Authorization") != tc.accept {
					w.WriteHeader(http.StatusUnauthorized)
					fmt.Fprint(w, `{"code":"401","msg":"token expired"}`)
					return
				}
				fmt.Fprint(w, `{"code":0}`)
			})
			err := client.UpdateUser(t.Context(), "42", UpdateUserRequest{Status: Ptr(StatusDisabled)})
			if tc.wantErr == nil && err != nil {
				t.Fatalf("UpdateUser: %v", err)
			}
			if tc.wantErr != nil {
				testClass(t, err, tc.wantErr)
			}
			if !cmp.Equal(seen, tc.wantHeader) {
				t.Errorf("server saw Authorization %q, want %q", seen, tc.wantHeader)
			}
			if got := src.Calls(); got != tc.wantCalls {
				t.Errorf("token source called %d times, want %d", got, tc.wantCalls)
			}
			if err != nil {
				for _, tok := range tc.tokens {
					if strings.Contains(err.Error(), tok) {
						t.Errorf("error %q contains token %q", err, tok)
					}
				}
			}
		})
	}
}

func TestBearerAuth_CachesToken(t *testing.T) {
	t.Parallel()
	src := &seqSource{tokens: []*oauth2.Token{{AccessToken: "t1", Expiry: time.Now().Add(time.Hour)}}}
	client, mux, _ := setup(t, WithBearer(src))
	mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
		testHeader(t, r, "Authorization", "Bearer+t1")
		fmt.Fprint(w, `{"code":0}`)
	})
	for range 3 {
		if err := client.DeleteUser(t.Context(), "1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := src.Calls(); got != 1 {
		t.Errorf("token source called %d times for 3 requests with a valid token, want 1", got)
	}

	// An expired token is fetched again.
	expired := &seqSource{tokens: []*oauth2.Token{
		{AccessToken: "t1", Expiry: time.Now().Add(-time.Minute)},
		{AccessToken: "t1", Expiry: time.Now().Add(time.Hour)},
	}}
	client2, mux2, _ := setup(t, WithBearer(expired))
	mux2.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"code":0}`) })
	for range 2 {
		if err := client2.DeleteUser(t.Context(), "1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := expired.Calls(); got != 2 {
		t.Errorf("token source called %d times with an expired token, want 2", got)
	}
}

func TestBearerAuth_SourceFailures(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		src  TokenSource
		want error
	}{
		"unreachable token endpoint": {src: &seqSource{err: errors.New("dial tcp: connection refused")}, want: ErrRetryable},
		"token endpoint 5xx": {src: &seqSource{err: &oauth2.RetrieveError{
			Response: &http.Response{StatusCode: 502, Status: "502 Bad Gateway"}}}, want: ErrRetryable},
		"credentials refused": {src: &seqSource{err: &oauth2.RetrieveError{
			Response: &http.Response{StatusCode: 401, Status: "401 Unauthorized"}, ErrorCode: "invalid_client"}}, want: ErrAuth},
		"empty token": {src: staticSource(""), want: ErrAuth},
		"nil token":   {src: &seqSource{tokens: []*oauth2.Token{nil}}, want: ErrAuth},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t, WithBearer(tc.src))
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				t.Errorf("request sent without a token: %s", r.RequestURI)
			})
			_, err := client.GetUser(t.Context(), "1")
			testClass(t, err, tc.want)
			if !strings.Contains(err.Error(), "GET "+APIPath+"/users/1") {
				t.Errorf("error %q does not name the call", err)
			}
		})
	}

	// A BearerAuth built by hand without a source fails instead of panicking.
	req := httptest.NewRequest("GET", "http://kd.example/x", nil)
	if _, err := (&BearerAuth{}).RoundTrip(req); !errors.Is(err, ErrAuth) {
		t.Errorf("BearerAuth without a source: %v, want ErrAuth", err)
	}
}

func TestBearerValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"abc":         "Bearer+abc",
		"Bearer abc":  "Bearer abc",
		"Bearer+abc":  "Bearer+abc",
		"BearerToken": "Bearer+BearerToken",
	} {
		if got := bearerValue(in); got != want {
			t.Errorf("bearerValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const value = "top-secret-value-42"
	s := Secret(value)
	type config struct {
		AppID  string
		Secret Secret
	}
	cfg := config{AppID: "app", Secret: s}
	app := &AppAuth{AppID: "app", Secret: s, UserID: "user"}
	bearer := &BearerAuth{Source: staticSource(value)}
	// Give the bearer transport a cached token to (not) print.
	if _, err := bearer.token(nil); err != nil {
		t.Fatal(err)
	}

	var outputs []string
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outputs = append(outputs,
			fmt.Sprintf(format, s), fmt.Sprintf(format, &s), fmt.Sprintf(format, cfg), fmt.Sprintf(format, &cfg),
			fmt.Sprintf(format, app), fmt.Sprintf(format, *app), fmt.Sprintf(format, bearer))
	}
	outputs = append(outputs, fmt.Sprint(s), fmt.Sprintln(cfg), app.String(), bearer.String())
	for _, v := range []any{s, cfg, &cfg} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		outputs = append(outputs, string(j))
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		slog.New(h).Info("config", "secret", s, "cfg", cfg, "app", app, "bearer", bearer)
	}
	outputs = append(outputs, logs.String())

	for _, out := range outputs {
		if strings.Contains(out, value) {
			t.Errorf("secret printed: %s", out)
		}
	}
	if !strings.Contains(fmt.Sprint(s), "[redacted]") || !strings.Contains(fmt.Sprintf("%#v", s), "[redacted]") {
		t.Error("Secret does not say it is redacted")
	}
	if !strings.Contains(logs.String(), "[redacted]") {
		t.Error("slog output does not show the redaction")
	}
	if s.Reveal() != value {
		t.Error("Reveal does not return the value")
	}
	if got := app.String(); got != "AppAuth{AppID:app, UserID:user, Secret:[redacted]}" {
		t.Errorf("AppAuth.String() = %q", got)
	}
}
