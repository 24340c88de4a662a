package kdsim_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func TestAppAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{AppID: testAppID, AppSecret: testSecret, Now: newClock(t0).Now})
	createBody := []byte(`{"userId":"1","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"1"}}`)

	// Each case builds a request, signs it with sg, then tampers with it.
	tests := map[string]struct {
		method, path string
		body         []byte
		sg           func(*signer)
		tamper       func(*http.Request)
		want         string // "" means accepted
	}{
		"valid GET":                 {method: "GET", path: "/users/count"},
		"valid POST":                {method: "POST", path: "/users", body: createBody},
		"valid query":               {method: "GET", path: "/userList?offset=0&limit=5&keyWord=a%20b+c&keyWord=%E4%B8%AD"},
		"unsorted SignedHeaders":    {method: "GET", path: "/users/count", sg: func(s *signer) { s.headers = []string{"x-user-id", "host", "x-date"} }},
		"upper-case SignedHeaders":  {method: "GET", path: "/users/count", sg: func(s *signer) { s.headers = []string{"Host", "X-Date", "X-User-Id"} }},
		"extra signed header":       {method: "POST", path: "/users", body: createBody, sg: func(s *signer) { s.headers = []string{"content-type", "host", "x-date", "x-user-id"} }},
		"missing Authorization":     {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Del("Authorization") }, want: "missing Authorization header"},
		"unsupported scheme":        {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("Authorization", "Basic YTpi") }, want: "unsupported Authorization scheme"},
		"malformed Authorization":   {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("Authorization", "HMAC-SHA256 AppId") }, want: "malformed Authorization header"},
		"unknown AppId":             {method: "GET", path: "/users/count", sg: func(s *signer) { s.appID = "someone-else" }, want: "unknown AppId"},
		"wrong secret":              {method: "GET", path: "/users/count", sg: func(s *signer) { s.secret = "not-the-secret" }, want: "signature mismatch"},
		"without x-user-id":         {method: "GET", path: "/users/count", sg: func(s *signer) { s.headers = []string{"host", "x-date"} }, want: "must include host, x-date and x-user-id (missing x-user-id)"},
		"without host and x-date":   {method: "GET", path: "/users/count", sg: func(s *signer) { s.headers = []string{"x-user-id"} }, want: "(missing host, x-date)"},
		"signed header not sent":    {method: "GET", path: "/users/count", sg: func(s *signer) { s.headers = []string{"host", "x-date", "x-extra", "x-user-id"} }, want: "signed header x-extra is not in the request"},
		"empty X-User-Id":           {method: "GET", path: "/users/count", sg: func(s *signer) { s.userID = "" }, want: "X-User-Id is empty"},
		"tampered body":             {method: "POST", path: "/users", body: createBody, tamper: setBody(strings.Replace(string(createBody), `"1"`, `"2"`, 1)), want: "signature mismatch"},
		"body dropped":              {method: "POST", path: "/users", body: createBody, tamper: setBody(""), want: "signature mismatch"},
		"tampered path":             {method: "GET", path: "/users/1", tamper: func(r *http.Request) { r.URL.Path = strings.Replace(r.URL.Path, "/users/1", "/users/2", 1) }, want: "signature mismatch"},
		"tampered query":            {method: "GET", path: "/userList?offset=0&limit=5", tamper: func(r *http.Request) { r.URL.RawQuery = "offset=0&limit=6" }, want: "signature mismatch"},
		"query added":               {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.URL.RawQuery = "deptId=" + deptEng }, want: "signature mismatch"},
		"tampered method":           {method: "GET", path: "/users/1", tamper: func(r *http.Request) { r.Method = http.MethodDelete }, want: "signature mismatch"},
		"tampered X-User-Id":        {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("X-User-Id", "1505084218764547201") }, want: "signature mismatch"},
		"tampered X-Date":           {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("X-Date", kdapi.FormatDate(t0.Add(-time.Second))) }, want: "signature mismatch"},
		"tampered Host":             {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Host = "intl.myhuaweicloud-koodrive.com" }, want: "signature mismatch"},
		"tampered signed extra":     {method: "POST", path: "/users", body: createBody, sg: func(s *signer) { s.headers = []string{"content-type", "host", "x-date", "x-user-id"} }, tamper: func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, want: "signature mismatch"},
		"unsigned header tampered":  {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("language", "zh-CN") }},
		"malformed X-Date":          {method: "GET", path: "/users/count", tamper: resign(func(r *http.Request) { r.Header.Set("X-Date", "2026-03-01T10:00:00Z") }), want: `X-Date "2026-03-01T10:00:00Z" is malformed`},
		"signature in upper case":   {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("Authorization", upperSig(r.Header.Get("Authorization"))) }, want: "signature mismatch"},
		"empty name in SignedHdrs":  {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("Authorization", replaceSigned(r, "host;;x-date;x-user-id")) }, want: "empty header name"},
		"duplicate name in SignHdr": {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("Authorization", replaceSigned(r, "host;x-date;x-date;x-user-id")) }, want: "names x-date twice"},
		"bearer not enabled":        {method: "GET", path: "/users/count", tamper: func(r *http.Request) { r.Header.Set("Authorization", "Bearer+"+testToken.Reveal()) }, want: "bearer authentication is not enabled"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRequest(t, tc.method, f.api(tc.path), tc.body)
			sg := defaultSigner(t0)
			if tc.sg != nil {
				tc.sg(&sg)
			}
			sg.sign(r, tc.body)
			if tc.tamper != nil {
				tc.tamper(r)
			}
			rp := send(t, r)
			if tc.want == "" {
				if rp.status == http.StatusUnauthorized {
					t.Fatalf("refused: %s", rp.msg)
				}
				return
			}
			rp.expect(t, http.StatusUnauthorized, kdsim.CodeAuth, tc.want)
			if !strings.HasPrefix(rp.msg, "authentication failed: ") {
				t.Errorf("msg = %q", rp.msg)
			}
			if strings.Contains(rp.msg, testSecret.Reveal()) {
				t.Errorf("msg leaks the secret: %q", rp.msg)
			}
		})
	}
	// Only the two valid creates could have been applied, and they share a userId.
	if st := f.srv.Stats(); st.Creates != 1 || st.DuplicateCreates != 1 {
		t.Errorf("creates = %d, duplicates = %d; refused writes must not be applied", st.Creates, st.DuplicateCreates)
	}
	refused := 0
	for _, tc := range tests {
		if tc.want != "" {
			refused++
		}
	}
	if st := f.srv.Stats(); st.AuthFailures != int64(refused) {
		t.Errorf("auth failures = %d, want %d", st.AuthFailures, refused)
	}
}

// setBody replaces the request body after signing.
func setBody(s string) func(*http.Request) {
	return func(r *http.Request) {
		r.Body = http.NoBody
		r.ContentLength = 0
		if s != "" {
			r.Body = readCloser(s)
			r.ContentLength = int64(len(s))
		}
		r.GetBody = nil
	}
}

func readCloser(s string) *strReadCloser { return &strReadCloser{strings.NewReader(s)} }

type strReadCloser struct{ *strings.Reader }

func (strReadCloser) Close() error { return nil }

// resign applies change and signs the request again, so that only what
// change did is wrong.
func resign(change func(*http.Request)) func(*http.Request) {
	return func(r *http.Request) {
		change(r)
		hs := []kdapi.Header{{Name: "host", Value: r.Host}, {Name: "x-date", Value: r.Header.Get("X-Date")}, {Name: "x-user-id", Value: r.Header.Get("X-User-Id")}}
		sig := kdapi.Sign(testSecret.Reveal(), kdapi.SigningInput{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Headers: hs})
		r.Header.Set("Authorization", kdapi.AuthorizationHeader(testAppID, sig))
	}
}

func upperSig(h string) string {
	i := strings.Index(h, "Signature=") + len("Signature=")
	return h[:i] + strings.ToUpper(h[i:])
}

func replaceSigned(r *http.Request, signed string) string {
	appID, _, sig, _ := kdapi.ParseAuthorization(r.Header.Get("Authorization"))
	return "HMAC-SHA256 AppId=" + appID + ",SignedHeaders=" + signed + ",Signature=" + sig
}

func TestDateWindow(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		window time.Duration
		date   time.Time
		want   string
	}{
		"now":                   {0, t0, ""},
		"15m old":               {0, t0.Add(-15 * time.Minute), ""},
		"15m01s old":            {0, t0.Add(-15*time.Minute - time.Second), "outside the window: 15m1s old, more than 15m0s"},
		"a day old":             {0, t0.Add(-24 * time.Hour), "outside the window"},
		"1m ahead":              {0, t0.Add(time.Minute), ""},
		"1m01s ahead":           {0, t0.Add(time.Minute + time.Second), "outside the window: 1m1s in the future"},
		"custom window, inside": {time.Minute, t0.Add(-time.Minute), ""},
		"custom window, beyond": {time.Minute, t0.Add(-61 * time.Second), "more than 1m0s"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kdsim.Options{AppID: testAppID, AppSecret: testSecret, DateWindow: tc.window, Now: newClock(t0).Now})
			r := newRequest(t, http.MethodGet, f.api("/users/count"), nil)
			defaultSigner(tc.date).sign(r, nil)
			rp := send(t, r)
			if tc.want == "" {
				rp.expect(t, http.StatusOK, "0", "success")
				return
			}
			rp.expect(t, http.StatusUnauthorized, kdsim.CodeAuth, tc.want)
		})
	}
}

func TestBearerAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Token: testToken})
	tests := map[string]struct {
		header string
		want   string
	}{
		"Bearer+":           {"Bearer+" + testToken.Reveal(), ""},
		"Bearer space":      {"Bearer " + testToken.Reveal(), ""},
		"lower-case scheme": {"bearer " + testToken.Reveal(), ""},
		"wrong token":       {"Bearer+tok-0123456788", "bad bearer token"},
		"token prefix":      {"Bearer+tok-", "bad bearer token"},
		"empty token":       {"Bearer+", "bad bearer token"},
		"no scheme":         {testToken.Reveal(), "unsupported Authorization scheme"},
		"app auth disabled": {"HMAC-SHA256 AppId=a,SignedHeaders=host;x-date;x-user-id,Signature=00", "app authentication (HMAC-SHA256) is not enabled"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRequest(t, http.MethodGet, f.api("/users/count"), nil)
			r.Header.Set("Authorization", tc.header)
			rp := send(t, r)
			if tc.want == "" {
				rp.expect(t, http.StatusOK, "0", "success")
				return
			}
			rp.expect(t, http.StatusUnauthorized, kdsim.CodeAuth, tc.want)
			if strings.Contains(rp.msg, testToken.Reveal()) {
				t.Errorf("msg leaks the token: %q", rp.msg)
			}
		})
	}
}

// TestClientsAuthenticate runs kdapi's two authentication transports against
// the simulator, and checks that a refusal is classified as ErrAuth.
func TestClientsAuthenticate(t *testing.T) {
	t.Parallel()
	// The configured token carries the prefix, as createSession returns it.
	f := newFixture(t, kdsim.Options{AppID: testAppID, AppSecret: testSecret, Token: "Bearer " + testToken})
	bearer, err := kdapi.NewClient(kdapi.WithBaseURL(f.ts.URL), kdapi.WithBearer(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: testToken.Reveal()})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bearer.CountUsers(t.Context(), ""); err != nil {
		t.Errorf("bearer client: %v", err)
	}
	if _, err := f.client.CountUsers(t.Context(), ""); err != nil {
		t.Errorf("app-auth client: %v", err)
	}
	wrong := newAppClient(t, f.ts.URL, testAppID, "wrong-secret")
	_, err = wrong.CountUsers(t.Context(), "")
	var ae *kdapi.APIError
	if !errors.Is(err, kdapi.ErrAuth) || !errors.As(err, &ae) || ae.HTTPStatus != 401 || ae.Code != kdsim.CodeAuth || !strings.Contains(ae.Msg, "signature mismatch") {
		t.Errorf("wrong secret: err = %v, want ErrAuth 401 %s signature mismatch", err, kdsim.CodeAuth)
	}
	// Escaped path segments and repeated query values sign and verify alike.
	if _, err := f.client.ListUsers(t.Context(), kdapi.ListUsersOptions{KeyWord: "Zoë & co/=+", Limit: 3}); err != nil {
		t.Errorf("list with an awkward keyword: %v", err)
	}
	if _, err := f.client.ListDepartments(t.Context(), kdapi.ListDepartmentsOptions{KeyWord: "a b;c"}); err != nil {
		t.Errorf("departments with an awkward keyword: %v", err)
	}
}
