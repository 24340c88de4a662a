package kdapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	testAppID  = "test-app-0123456789abcdef"
	testSecret = Secret("s3cr3t-app-secret-DO-NOT-LEAK")
	testUserID = "1505084218764547200"
)

var xDateRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z$`)

// setup starts an httptest server whose mux is mounted under
// /koodrive/ose/v1/, so a request to any other path (an endpoint that used an
// absolute path, say) fails the test. The client signs with app
// authentication; opts are applied after the defaults.
func setup(t *testing.T, opts ...Option) (client *Client, mux *http.ServeMux, serverURL string) {
	t.Helper()
	mux = http.NewServeMux()
	apiHandler := http.NewServeMux()
	apiHandler.Handle(APIPath+"/", http.StripPrefix(APIPath, mux))
	apiHandler.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request outside %s: %s %s", APIPath, r.Method, r.RequestURI)
		http.Error(w, "outside the API", http.StatusBadRequest)
	})
	server := httptest.NewServer(apiHandler)
	t.Cleanup(server.Close)
	all := append([]Option{WithBaseURL(server.URL), WithAppAuth(testAppID, testSecret, testUserID)}, opts...)
	client, err := NewClient(all...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return client, mux, server.URL
}

func testMethod(t *testing.T, r *http.Request, want string) {
	t.Helper()
	if got := r.Method; got != want {
		t.Errorf("Request method: %v, want %v", got, want)
	}
}

func testHeader(t *testing.T, r *http.Request, header, want string) {
	t.Helper()
	if got := r.Header.Get(header); got != want {
		t.Errorf("Header.Get(%q) returned %q, want %q", header, got, want)
	}
}

// testURI checks the request target exactly as it was sent: escaped path and
// raw query.
func testURI(t *testing.T, r *http.Request, want string) {
	t.Helper()
	if got := r.RequestURI; got != want {
		t.Errorf("Request URI: %q, want %q", got, want)
	}
}

// readRequestBody reads r's body and puts it back for the next helper.
func readRequestBody(t *testing.T, r *http.Request) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("read request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// testJSONBody compares the request body with want as JSON values: key order
// does not matter, but types do ("1" is not 1) and so do absent keys.
// Numbers are compared as written, so int64 ids keep their precision.
func testJSONBody(t *testing.T, r *http.Request, want string) {
	t.Helper()
	got := readRequestBody(t, r)
	if diff := cmp.Diff(decodeJSON(t, []byte(want)), decodeJSON(t, got)); diff != "" {
		t.Errorf("Request body mismatch (-want +got):\n%s\nbody: %s", diff, got)
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode JSON %q: %v", b, err)
	}
	return v
}

// testSigned checks the app-authentication headers of a request as a
// KooDrive server would see it: X-Date form and freshness, X-User-Id, the
// Authorization shape, and a signature recomputed from the received method,
// request target, Host header and body. It also checks the language header
// and that X-Traceid is present exactly when wantTrace is non-empty.
func testSigned(t *testing.T, r *http.Request, wantTrace string) {
	t.Helper()
	xdate := r.Header.Get("X-Date")
	if !xDateRE.MatchString(xdate) {
		t.Errorf("X-Date %q does not match %s", xdate, xDateRE)
	} else if d, err := time.Parse(DateFormat, xdate); err != nil || time.Since(d).Abs() > 5*time.Minute {
		t.Errorf("X-Date %q is not now (err %v)", xdate, err)
	}
	testHeader(t, r, "X-User-Id", testUserID)
	testHeader(t, r, "language", DefaultLanguage)
	if got := r.Header.Values("X-Traceid"); wantTrace == "" && len(got) != 0 || wantTrace != "" && !cmp.Equal(got, []string{wantTrace}) {
		t.Errorf("X-Traceid = %q, want %q", got, wantTrace)
	}
	appID, signed, sig, ok := ParseAuthorization(r.Header.Get("Authorization"))
	if !ok || appID != testAppID || signed != SignedHeaders || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sig) {
		t.Fatalf("Authorization %q: want %s AppId=%s,SignedHeaders=%s,Signature=<64 hex>", r.Header.Get("Authorization"), Algorithm, testAppID, SignedHeaders)
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		t.Fatalf("parse request URI: %v", err)
	}
	want := Sign(testSecret.Reveal(), SigningInput{
		Method:  r.Method,
		Path:    u.Path,
		Query:   u.Query(),
		Headers: []Header{{"host", r.Host}, {"x-date", xdate}, {"x-user-id", r.Header.Get("X-User-Id")}},
		Body:    readRequestBody(t, r),
	})
	if sig != want {
		t.Errorf("signature %s does not verify (want %s)", sig, want)
	}
}

// sentinels lists every class sentinel.
var sentinels = []error{ErrPermanent, ErrRetryable, ErrAuth, ErrNotFound, ErrAlreadyExists}

// matchedSentinels returns the class sentinels err matches.
func matchedSentinels(err error) []error {
	var got []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			got = append(got, s)
		}
	}
	return got
}

// testClass fails unless err matches want and no other class sentinel.
func testClass(t *testing.T, err, want error) {
	t.Helper()
	got := matchedSentinels(err)
	if len(got) != 1 || got[0] != want {
		t.Errorf("error %v matches %v, want exactly [%v]", err, got, want)
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewClient_Options(t *testing.T) {
	t.Parallel()
	auth := WithAppAuth("app", "secret", "user")
	tests := map[string]struct {
		opts    []Option
		wantErr string // substring; "" means success
	}{
		"minimal":              {opts: []Option{WithBaseURL("https://intl.myhuaweicloud-koodrive.com"), auth}},
		"bearer":               {opts: []Option{WithBaseURL("https://h"), WithBearer(staticSource("t"))}},
		"missing base URL":     {opts: []Option{auth}, wantErr: "base URL is required"},
		"missing auth":         {opts: []Option{WithBaseURL("https://h")}, wantErr: "authentication is required"},
		"scheme ftp":           {opts: []Option{WithBaseURL("ftp://h"), auth}, wantErr: "want http(s)://host"},
		"no scheme":            {opts: []Option{WithBaseURL("intl.myhuaweicloud-koodrive.com"), auth}, wantErr: "want http(s)://host"},
		"no host":              {opts: []Option{WithBaseURL("https://"), auth}, wantErr: "want http(s)://host"},
		"opaque":               {opts: []Option{WithBaseURL("https:h"), auth}, wantErr: "want http(s)://host"},
		"unparsable":           {opts: []Option{WithBaseURL("https://h:99999999999/%zz"), auth}, wantErr: "base URL"},
		"query":                {opts: []Option{WithBaseURL("https://h/?token=1"), auth}, wantErr: "no query or fragment"},
		"fragment":             {opts: []Option{WithBaseURL("https://h/#x"), auth}, wantErr: "no query or fragment"},
		"user info":            {opts: []Option{WithBaseURL("https://u:p@h"), auth}, wantErr: "user info not allowed"},
		"zero timeout":         {opts: []Option{WithBaseURL("https://h"), auth, WithTimeout(0)}, wantErr: "timeout must be positive"},
		"negative timeout":     {opts: []Option{WithBaseURL("https://h"), auth, WithTimeout(-time.Second)}, wantErr: "timeout must be positive"},
		"zero max conns":       {opts: []Option{WithBaseURL("https://h"), auth, WithMaxConns(0)}, wantErr: "max conns"},
		"nil http client":      {opts: []Option{WithBaseURL("https://h"), auth, WithHTTPClient(nil)}, wantErr: "http client is nil"},
		"empty language":       {opts: []Option{WithBaseURL("https://h"), auth, WithLanguage("")}, wantErr: "invalid language"},
		"header injection":     {opts: []Option{WithBaseURL("https://h"), auth, WithLanguage("en\r\nX-Evil: 1")}, wantErr: "invalid language"},
		"app auth no app id":   {opts: []Option{WithBaseURL("https://h"), WithAppAuth("", "s", "u")}, wantErr: "app auth needs"},
		"app auth no secret":   {opts: []Option{WithBaseURL("https://h"), WithAppAuth("a", "", "u")}, wantErr: "app auth needs"},
		"app auth no user":     {opts: []Option{WithBaseURL("https://h"), WithAppAuth("a", "s", "")}, wantErr: "app auth needs"},
		"nil token source":     {opts: []Option{WithBaseURL("https://h"), WithBearer(nil)}, wantErr: "token source is nil"},
		"all the knobs":        {opts: []Option{WithBaseURL("https://h"), auth, WithTimeout(time.Second), WithMaxConns(4), WithLanguage("zh-CN"), WithAlreadyExistsCodes("1"), WithNotFoundCodes("2"), WithAuthCodes("3"), WithRetryableCodes("4")}},
		"http client accepted": {opts: []Option{WithBaseURL("https://h"), auth, WithHTTPClient(&http.Client{})}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := NewClient(tc.opts...)
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("NewClient: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "kdapi: ") {
				t.Fatalf("NewClient error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewClient_BaseURL(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want string }{
		"root":                 {"https://intl.myhuaweicloud-koodrive.com", "https://intl.myhuaweicloud-koodrive.com/koodrive/ose/v1/"},
		"root slash":           {"https://intl.myhuaweicloud-koodrive.com/", "https://intl.myhuaweicloud-koodrive.com/koodrive/ose/v1/"},
		"proxy prefix":         {"http://127.0.0.1:8080/kd/", "http://127.0.0.1:8080/kd/koodrive/ose/v1/"},
		"already has API path": {"https://h/koodrive/ose/v1", "https://h/koodrive/ose/v1/"},
		"API path and slash":   {"https://h/p/koodrive/ose/v1/", "https://h/p/koodrive/ose/v1/"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := NewClient(WithBaseURL(tc.in), WithAppAuth("a", "s", "u"))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.BaseURL(); got != tc.want {
				t.Errorf("BaseURL() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewClient_Timeouts(t *testing.T) {
	t.Parallel()
	c, err := NewClient(WithBaseURL("https://h"), WithAppAuth("a", "s", "u"))
	if err != nil {
		t.Fatal(err)
	}
	if c.timeout != DefaultTimeout {
		t.Errorf("default timeout = %v, want %v", c.timeout, DefaultTimeout)
	}
	hc := &http.Client{Timeout: 3 * time.Second}
	c, err = NewClient(WithBaseURL("https://h"), WithAppAuth("a", "s", "u"), WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	if c.timeout != 3*time.Second {
		t.Errorf("WithHTTPClient timeout = %v, want 3s", c.timeout)
	}
	if hc.Transport != nil || hc.CheckRedirect != nil {
		t.Error("NewClient modified the caller's http.Client")
	}
	if _, ok := c.rt.(*AppAuth); !ok {
		t.Errorf("transport = %T, want *AppAuth", c.rt)
	}
	c, err = NewClient(WithBaseURL("https://h"), WithAppAuth("a", "s", "u"), WithHTTPClient(hc), WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c.timeout != time.Second {
		t.Errorf("WithTimeout after WithHTTPClient = %v, want 1s", c.timeout)
	}
}

func TestNewRequest(t *testing.T) {
	t.Parallel()
	c, err := NewClient(WithBaseURL("https://kd.example/"), WithAppAuth("a", "s", "u"), WithLanguage("zh-CN"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithTraceID(t.Context(), "event-7")
	body := map[string]int{"status": 0}
	req, err := c.NewRequest(ctx, http.MethodPut, "users/"+url.PathEscape("J\u00fcrgen M/1"), url.Values{"b": {"x y"}, "a": {"2", "1"}}, body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := req.URL.String(), "https://kd.example/koodrive/ose/v1/users/J%C3%BCrgen%20M%2F1?a=1&a=2&b=x%20y"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if got, want := req.Host, "kd.example"; got != want {
		t.Errorf("Host = %q, want %q", got, want)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json;charset=UTF-8",
		"Accept":       "application/json",
		"Language":     "zh-CN",
		"X-Traceid":    TraceID("event-7"),
	} {
		if got := req.Header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if req.GetBody == nil {
		t.Fatal("GetBody is nil: signing would consume the body")
	}
	for range 2 {
		rc, err := req.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		if string(b) != `{"status":0}` {
			t.Errorf("GetBody() = %q", b)
		}
	}
	if req.ContentLength != int64(len(`{"status":0}`)) {
		t.Errorf("ContentLength = %d", req.ContentLength)
	}

	// No body and no trace: no Content-Type, no X-Traceid, no query.
	req, err = c.NewRequest(t.Context(), http.MethodGet, "userList", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.Body != nil && req.Body != http.NoBody || req.Header.Get("Content-Type") != "" || req.Header.Get("X-Traceid") != "" || req.URL.RawQuery != "" {
		t.Errorf("bodiless request: body %v, headers %v, query %q", req.Body, req.Header, req.URL.RawQuery)
	}
}

func TestNewRequest_Invalid(t *testing.T) {
	t.Parallel()
	c, err := NewClient(WithBaseURL("https://kd.example/"), WithAppAuth("a", "s", "u"))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		method, path string
		body         any
	}{
		"absolute path":       {"GET", "/users", nil},
		"dot dot":             {"GET", "users/../departments", nil},
		"escaped dot dot":     {"GET", "users/%2e%2E", nil},
		"dot":                 {"GET", "users/./1", nil},
		"empty segment":       {"GET", "users//1", nil},
		"query in path":       {"GET", "users?offset=0", nil},
		"fragment in path":    {"GET", "users#x", nil},
		"bad escape":          {"GET", "users/%zz", nil},
		"unencodable body":    {"POST", "users", map[string]any{"c": make(chan int)}},
		"invalid method":      {"BAD METHOD", "users", nil},
		"control char method": {"GET\n", "users", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			req, err := c.NewRequest(t.Context(), tc.method, tc.path, nil, tc.body)
			if err == nil {
				t.Fatalf("NewRequest(%q, %q) = %v, want an error", tc.method, tc.path, req.URL)
			}
			testClass(t, err, ErrPermanent)
		})
	}
	// Two dots inside a segment are an ordinary id; a trailing slash is kept.
	for _, p := range []string{"users/a..b", "session/", "users/%2E%2E%2Ex"} {
		if _, err := c.NewRequest(t.Context(), "GET", p, nil, nil); err != nil {
			t.Errorf("NewRequest(%q): %v", p, err)
		}
	}
}

func TestTraceID(t *testing.T) {
	t.Parallel()
	a, b := TraceID("0b8f6c1e-5b7a-4d0e-9a51-1f0c1c2d3e4f"), TraceID("another")
	if len(a) != 58 || !regexp.MustCompile(`^[0-9a-f]{58}$`).MatchString(a) {
		t.Errorf("TraceID = %q, want 58 lower-case hex digits", a)
	}
	if a == b || a != TraceID("0b8f6c1e-5b7a-4d0e-9a51-1f0c1c2d3e4f") {
		t.Error("TraceID is not a deterministic function of the id")
	}
	if got := TraceID(""); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78" {
		t.Errorf("TraceID(\"\") = %q", got)
	}
}

// TestDo_ConnectionReuse checks that Do reads and closes every body,
// successful or not, so sequential calls share one keep-alive connection.
func TestDo_ConnectionReuse(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	var calls atomic.Int32
	bigMsg := strings.Repeat("x", 200<<10)
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) % 5 {
		case 1:
			fmt.Fprint(w, `{"code":0,"msg":"success"}`)
		case 2:
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `<html>oops</html>`)
		case 3:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"code":13000309,"msg":%q}`, bigMsg)
		case 4:
			fmt.Fprint(w, `{"code":1,"msg":"refused"}`)
		default:
			fmt.Fprint(w, `{"code":"0","data":{"id":"1"}}`)
		}
	}))
	server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	server.Start()
	t.Cleanup(server.Close)
	c, err := NewClient(WithBaseURL(server.URL), WithAppAuth("a", "s", "u"))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		_, _ = c.GetUser(t.Context(), "1")
	}
	if got := calls.Load(); got != 10 {
		t.Fatalf("server saw %d calls, want 10", got)
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d connections for 10 sequential calls, want 1 (bodies not drained or closed)", got)
	}
}

// TestDo_NoRedirects checks that a redirect is not followed: the auth
// transport would sign the request for the other host.
func TestDo_NoRedirects(t *testing.T) {
	t.Parallel()
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		fmt.Fprint(w, `{"code":0}`)
	}))
	t.Cleanup(other.Close)
	client, mux, _ := setup(t)
	mux.HandleFunc("/users/42", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	})
	err := client.DeleteUser(t.Context(), "42")
	testClass(t, err, ErrPermanent)
	var ae *APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusTemporaryRedirect {
		t.Errorf("error = %v, want an *APIError with HTTP 307", err)
	}
	if otherHits.Load() != 0 {
		t.Error("the redirect was followed")
	}
}

func TestDo_ContextCancel(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	arrived := make(chan struct{})
	mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := client.GetUser(ctx, "1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if got := matchedSentinels(err); len(got) != 0 {
		t.Errorf("a cancelled call matches %v; it must not look retryable or permanent", got)
	}
	var te *TransportError
	if errors.As(err, &te) {
		t.Errorf("a cancelled call is a *TransportError: %v", err)
	}
}

func TestDo_ContextDeadline(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := client.GetUser(ctx, "1")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrRetryable) {
		t.Fatalf("error = %v, want context.DeadlineExceeded and not retryable", err)
	}
}

func TestDo_ConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := NewClient(WithBaseURL("http://"+addr), WithAppAuth(testAppID, testSecret, testUserID))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListUsers(t.Context(), ListUsersOptions{KeyWord: "secret-looking keyword"})
	testClass(t, err, ErrRetryable)
	var te *TransportError
	if !errors.As(err, &te) || te.Method != "GET" || te.Path != APIPath+"/userList" {
		t.Fatalf("error = %#v, want a *TransportError for GET %s/userList", err, APIPath)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("the cause %v is not reachable with errors.As", err)
	}
	if strings.Contains(err.Error(), "keyword") || strings.Contains(err.Error(), testSecret.Reveal()) {
		t.Errorf("error leaks the query or the secret: %v", err)
	}
	if c, ok := ClassOf(err); !ok || c != ClassRetryable {
		t.Errorf("ClassOf = %v, %v", c, ok)
	}
}

func TestDo_Timeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	client, mux, _ := setup(t, WithTimeout(100*time.Millisecond))
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	start := time.Now()
	_, err := client.GetUser(t.Context(), "1")
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("call took %v with a 100ms timeout", elapsed)
	}
	testClass(t, err, ErrRetryable)
	var te *TransportError
	if !errors.As(err, &te) {
		t.Errorf("error = %v, want a *TransportError", err)
	}
	// The call's own timeout is not the caller's deadline, which callers
	// test for first and do not retry.
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v matches context.DeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error = %v, want a net.Error whose Timeout is true", err)
	}
	// The caller's deadline, shorter than the timeout, is reported as it is.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = client.GetUser(ctx, "1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with the caller's deadline first: error = %v, want context.DeadlineExceeded", err)
	}
}

// TestDo_TimeoutWhileReadingBody: the server answers headers, then stalls
// in the body. The timeout still fires and the failure is retryable.
func TestDo_TimeoutWhileReadingBody(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	client, mux, _ := setup(t, WithTimeout(150*time.Millisecond))
	t.Cleanup(func() { close(release) })
	mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"code":0,`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	_, err := client.GetUser(t.Context(), "1")
	testClass(t, err, ErrRetryable)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v matches context.DeadlineExceeded", err)
	}
}

// TestDo_LargeBody checks that a body over 1 MiB is refused without being
// read to the end: the server is still writing when the client gives up.
func TestDo_LargeBody(t *testing.T) {
	t.Parallel()
	for name, status := range map[string]int{"200": 200, "500": 500} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			written := make(chan int64, 1)
			mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				chunk := bytes.Repeat([]byte("a"), 32<<10)
				var n int64
				for n < 1<<30 { // stops when the client hangs up
					m, err := w.Write(chunk)
					n += int64(m)
					if err != nil {
						break
					}
				}
				written <- n
			})
			err := client.DeleteUser(t.Context(), "1")
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error = %v, want an *APIError", err)
			}
			if status == 200 {
				testClass(t, err, ErrPermanent)
				if !strings.Contains(ae.Msg, "exceeds") {
					t.Errorf("Msg = %q, want it to say the body is too large", ae.Msg)
				}
			} else {
				testClass(t, err, ErrRetryable)
			}
			if n := <-written; n >= 1<<30 {
				t.Errorf("client read the whole %d-byte body", n)
			}
		})
	}
}

func TestDo_NoSecretInErrors(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"code":401,"msg":"signature mismatch"}`)
	})
	mux.HandleFunc("/users/2", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `not json`)
	})
	for _, id := range []string{"1", "2"} {
		_, err := client.GetUser(t.Context(), id)
		if err == nil {
			t.Fatalf("GetUser(%s) succeeded", id)
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(s, testSecret.Reveal()) {
				t.Errorf("error text contains the app secret: %s", s)
			}
		}
	}
}

func TestBaseURLUserInfoNotEchoed(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"https://admin:hunter2-pw@kd.example",
		"https://admin:hunter2-pw@kd.example:badport",
		"https://admin:hunter2-pw@kd example",
		"ftp://admin:hunter2-pw@kd.example",
		"http://admin:hunter2-pw@",
		"http:admin:hunter2-pw@kd.example",
		"https://kd.example/?pw=hunter2-pw",
	} {
		_, err := NewClient(WithBaseURL(u), WithAppAuth("a", "s", "u"))
		if err == nil {
			t.Errorf("NewClient(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewClient(%q) error echoes the password: %v", u, err)
		}
	}
}

// fuzzSecret is the app secret of the fuzz client; no output may contain it.
const fuzzSecret = Secret("fuzz-secret-never-printed")

// FuzzEnvelope feeds arbitrary status codes, bodies and Retry-After values
// through checkResponse and through every endpoint's payload decoding. It
// must never panic, and must return either a response or an error that
// matches exactly one class sentinel.
func FuzzEnvelope(f *testing.F) {
	f.Add(200, []byte(`{"code":0,"msg":"success"}`), "")
	f.Add(400, []byte(`{"code":"13000501","msg":"exists"}`), "")
	f.Add(503, []byte(`<html>busy</html>`), "120")

	var body atomic.Pointer[[]byte]
	var status atomic.Int64
	var retryAfter atomic.Pointer[string]
	c, err := NewClient(
		WithBaseURL("http://kd.invalid"),
		WithAppAuth("app", fuzzSecret, "user"),
		WithHTTPClient(&http.Client{Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{
				StatusCode: int(status.Load()),
				Header:     http.Header{"Retry-After": {*retryAfter.Load()}},
				Body:       io.NopCloser(bytes.NewReader(*body.Load())),
				Request:    r,
			}, nil
		})}),
	)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code int, b []byte, ra string) {
		if code < 100 || code > 999 {
			code = 100 + (code%900+900)%900
		}
		body.Store(&b)
		status.Store(int64(code))
		retryAfter.Store(&ra)

		req, err := http.NewRequest(http.MethodGet, "http://kd.invalid"+APIPath+"/users/1", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: code, Header: http.Header{"Retry-After": {ra}}, Body: io.NopCloser(bytes.NewReader(b))}
		out, err := c.checkResponse(req, resp)
		checkOutcome(t, code, out != nil, err)
		if err == nil && (out.HTTPStatus != code || !bytes.Equal(out.Body, b)) {
			t.Errorf("Response = {%d, %q}, want {%d, %q}", out.HTTPStatus, out.Body, code, b)
		}
		if err != nil {
			var ae *APIError
			if !errors.As(err, &ae) || ae.HTTPStatus != code || ae.RetryAfter < 0 || len(ae.Msg) > maxMsgLen+len("…") {
				t.Errorf("error %#v: want an *APIError with status %d, RetryAfter >= 0 and a bounded Msg", err, code)
			}
		}

		ctx := t.Context()
		u, err := c.GetUser(ctx, "1")
		checkOutcome(t, code, u != nil, err)
		p, err := c.ListUsers(ctx, ListUsersOptions{})
		checkOutcome(t, code, p != nil, err)
		_, err = c.CountUsers(ctx, "")
		checkOutcome(t, code, err == nil, err)
		_, err = c.ListDepartments(ctx, ListDepartmentsOptions{})
		checkOutcome(t, code, err == nil, err)
		d, err := c.GetDepartment(ctx, "1")
		checkOutcome(t, code, d != nil, err)
		err = c.UpdateUser(ctx, "1", UpdateUserRequest{Status: Ptr(StatusDisabled)})
		checkOutcome(t, code, err == nil, err)
	})
}

func checkOutcome(t *testing.T, code int, ok bool, err error) {
	t.Helper()
	if ok == (err != nil) {
		t.Fatalf("status %d: result present %v with error %v: want exactly one", code, ok, err)
	}
	if err == nil {
		if code < 200 || code > 299 {
			t.Errorf("status %d accepted as success", code)
		}
		return
	}
	got := matchedSentinels(err)
	if len(got) != 1 {
		t.Fatalf("status %d: error %v matches %d class sentinels %v, want exactly 1", code, err, len(got), got)
	}
	if cls, ok := ClassOf(err); !ok || cls.sentinel() != got[0] {
		t.Errorf("ClassOf(%v) = %v, disagrees with errors.Is", err, got[0])
	}
	if s := err.Error(); s == "" || strings.Contains(s, fuzzSecret.Reveal()) {
		t.Errorf("bad error text %q", s)
	}
}
