package kdsim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

const (
	testAppID  = "6f1d5e0c9b8a7f6e5d4c3b2a19081726354453627180f9e8d7c6b5a493827161"
	testSecret = kdapi.Secret("app-secret-for-tests")
	testUserID = "1505084218764547200" // X-User-Id
	testToken  = kdapi.Secret("tok-0123456789")

	deptRoot     = "1243693141656107521"
	deptEng      = "1319678187126486144"
	deptPlatform = "1319678187126486145"
	deptMobile   = "1319678187126486146"
	deptSales    = "1319678187126486147"
	deptFinance  = "1319678187126486148"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a simulator behind a real HTTP server, with a kdapi client that
// uses app authentication.
type fixture struct {
	srv    *kdsim.Server
	ts     *httptest.Server
	client *kdapi.Client
}

// newFixture starts a simulator. Unless opts says otherwise it has both
// authentication modes on.
func newFixture(t *testing.T, opts kdsim.Options) *fixture {
	t.Helper()
	if opts.AppID == "" && opts.Token == "" {
		opts.AppID, opts.AppSecret, opts.Token = testAppID, testSecret, testToken
	}
	srv, err := kdsim.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	f := &fixture{srv: srv, ts: ts}
	if opts.AppID != "" {
		f.client = newAppClient(t, ts.URL, opts.AppID, opts.AppSecret)
	}
	return f
}

func newAppClient(t *testing.T, url, appID string, secret kdapi.Secret, extra ...kdapi.Option) *kdapi.Client {
	t.Helper()
	c, err := kdapi.NewClient(append([]kdapi.Option{
		kdapi.WithBaseURL(url), kdapi.WithAppAuth(appID, secret, testUserID), kdapi.WithTimeout(5 * time.Second),
	}, extra...)...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// signer signs raw requests the way kdapi.AppAuth does, with a chosen date,
// secret and list of signed headers.
type signer struct {
	appID   string
	secret  kdapi.Secret
	userID  string
	at      time.Time
	headers []string // signed header names; nil means host, x-date, x-user-id
}

func defaultSigner(at time.Time) signer {
	return signer{appID: testAppID, secret: testSecret, userID: testUserID, at: at}
}

// sign sets X-Date, X-User-Id and Authorization on r, whose body is body.
func (sg signer) sign(r *http.Request, body []byte) {
	r.Header.Set("X-Date", kdapi.FormatDate(sg.at))
	r.Header.Set("X-User-Id", sg.userID)
	names := sg.headers
	if names == nil {
		names = []string{"host", "x-date", "x-user-id"}
	}
	hs := make([]kdapi.Header, 0, len(names))
	for _, n := range names {
		v := r.Header.Get(n)
		if strings.EqualFold(n, "host") {
			v = r.Host
		}
		hs = append(hs, kdapi.Header{Name: n, Value: v})
	}
	kdapi.SortHeaders(hs)
	sig := kdapi.Sign(sg.secret.Reveal(), kdapi.SigningInput{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Headers: hs, Body: body,
	})
	r.Header.Set("Authorization", "HMAC-SHA256 AppId="+sg.appID+",SignedHeaders="+strings.Join(names, ";")+",Signature="+sig)
}

// newRequest builds a request for base+path (path may carry a query).
func newRequest(t *testing.T, method, url string, body []byte) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

// api returns the URL of an API path below /koodrive/ose/v1.
func (f *fixture) api(path string) string { return f.ts.URL + kdapi.APIPath + path }

// signed sends a request signed now by the default signer.
func (f *fixture) signed(t *testing.T, method, path string, body []byte) reply {
	t.Helper()
	r := newRequest(t, method, f.api(path), body)
	defaultSigner(time.Now()).sign(r, body)
	return send(t, r)
}

// bearer sends a request with the test bearer token.
func (f *fixture) bearer(t *testing.T, method, path string, body []byte) reply {
	t.Helper()
	r := newRequest(t, method, f.api(path), body)
	r.Header.Set("Authorization", "Bearer+"+testToken.Reveal())
	return send(t, r)
}

// reply is an answer with its envelope decoded.
type reply struct {
	status     int
	header     http.Header
	body       []byte
	code       string // the envelope code's text
	codeString bool   // the code was a JSON string
	msg        string
}

func send(t *testing.T, r *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	rp := reply{status: resp.StatusCode, header: resp.Header, body: b}
	var env struct {
		Code json.RawMessage `json:"code"`
		Msg  string          `json:"msg"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s %s: answer is not a JSON envelope: %v: %s", r.Method, r.URL.Path, err, b)
	}
	if len(env.Code) > 0 && env.Code[0] == '"' {
		rp.codeString = true
		_ = json.Unmarshal(env.Code, &rp.code)
	} else {
		rp.code = string(env.Code)
	}
	rp.msg = env.Msg
	return rp
}

// expect checks status, code and that msg contains msgPart.
func (rp reply) expect(t *testing.T, status int, code, msgPart string) {
	t.Helper()
	if rp.status != status || rp.code != code || !strings.Contains(rp.msg, msgPart) {
		t.Errorf("got %d code %q msg %q; want %d code %q msg containing %q", rp.status, rp.code, rp.msg, status, code, msgPart)
	}
}

// createUser creates a user through the client or fails the test.
func createUser(t *testing.T, c *kdapi.Client, userID, dept, role string) {
	t.Helper()
	err := c.CreateUser(t.Context(), kdapi.CreateUserRequest{
		UserID: userID, ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: dept, Role: role},
	})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", userID, err)
	}
}

// eventually polls cond for up to 3s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
