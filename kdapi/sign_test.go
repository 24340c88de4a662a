package kdapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/internal/testenv"
)

// signVector is one entry of testdata/sign_vectors.json. Inputs are a raw
// request as it is sent; expected was produced by testdata/sign.py.
type signVector struct {
	Name    string `json:"name"`
	Note    string `json:"note"`
	AppID   string `json:"app_id"`
	Secret  string `json:"secret"`
	Request struct {
		Method  string      `json:"method"`
		URL     string      `json:"url"`
		Headers [][2]string `json:"headers"`
		Body    string      `json:"body"`
	} `json:"request"`
	Expected signResult `json:"expected"`
}

type signResult struct {
	Name             string `json:"name,omitempty"`
	CanonicalRequest string `json:"canonical_request"`
	StringToSign     string `json:"string_to_sign"`
	Signature        string `json:"signature"`
	Authorization    string `json:"authorization"`
}

const vectorsFile = "testdata/sign_vectors.json"

func loadVectors(t testing.TB) []signVector {
	t.Helper()
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vectors []signVector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) < 8 {
		t.Fatalf("%s holds %d vectors", vectorsFile, len(doc.Vectors))
	}
	return doc.Vectors
}

// goSign computes a vector with the Go signer, going from the raw URL to a
// SigningInput the way AppAuth does (url.URL.Path and Query()).
func goSign(t *testing.T, v signVector) signResult {
	t.Helper()
	u, err := url.Parse(v.Request.URL)
	if err != nil {
		t.Fatalf("%s: %v", v.Name, err)
	}
	var hs []Header
	for _, h := range v.Request.Headers {
		hs = append(hs, Header{h[0], h[1]})
	}
	SortHeaders(hs)
	in := SigningInput{Method: v.Request.Method, Path: u.Path, Query: u.Query(), Headers: hs, Body: []byte(v.Request.Body)}
	sig := Sign(v.Secret, in)
	return signResult{
		CanonicalRequest: CanonicalRequest(in),
		StringToSign:     StringToSign(CanonicalRequest(in)),
		Signature:        sig,
		Authorization:    Algorithm + " AppId=" + v.AppID + ",SignedHeaders=" + SignedHeaderNames(hs) + ",Signature=" + sig,
	}
}

func TestSignVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			got := goSign(t, v)
			if diff := cmp.Diff(v.Expected, got); diff != "" {
				t.Errorf("%s (%s): Go signer disagrees with the pinned vector (-want +got):\n%s", v.Name, v.Note, diff)
			}
			if strings.HasSuffix(got.Authorization, ",SignedHeaders="+SignedHeaders+",Signature="+got.Signature) {
				if a := AuthorizationHeader(v.AppID, got.Signature); a != v.Expected.Authorization {
					t.Errorf("AuthorizationHeader = %q, want %q", a, v.Expected.Authorization)
				}
			}
			appID, signed, sig, ok := ParseAuthorization(v.Expected.Authorization)
			if !ok || appID != v.AppID || sig != v.Expected.Signature || !strings.Contains(v.Expected.CanonicalRequest, "\n"+signed+"\n") {
				t.Errorf("ParseAuthorization(%q) = %q, %q, %q, %v", v.Expected.Authorization, appID, signed, sig, ok)
			}
		})
	}
}

// TestSignVectors_AppAuth sends each vector that uses the client's own header
// set through the AppAuth transport, with the vector's date on the clock,
// and expects the pinned Authorization header.
func TestSignVectors_AppAuth(t *testing.T) {
	t.Parallel()
	n := 0
	for _, v := range loadVectors(t) {
		hs := v.Request.Headers
		if len(hs) != 3 || hs[0][0] != "Host" || hs[1][0] != "X-Date" || hs[2][0] != "X-User-Id" || strings.TrimSpace(hs[2][1]) != hs[2][1] {
			continue
		}
		n++
		date, err := time.Parse(DateFormat, hs[1][1])
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		a := &AppAuth{AppID: v.AppID, Secret: Secret(v.Secret), UserID: hs[2][1], Next: rec, Now: func() time.Time { return date }}
		var body io.Reader
		if v.Request.Body != "" {
			body = strings.NewReader(v.Request.Body)
		}
		req, err := http.NewRequest(v.Request.Method, v.Request.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = hs[0][1]
		if _, err := a.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got := rec.seen[0].req.Header.Get("Authorization"); got != v.Expected.Authorization {
			t.Errorf("%s: AppAuth sent %q, want %q", v.Name, got, v.Expected.Authorization)
		}
	}
	if n < 6 {
		t.Fatalf("only %d vectors exercised AppAuth", n)
	}
}

// python returns the path of python3, or skips (fails in CI: testenv).
func python(t *testing.T) string {
	t.Helper()
	return testenv.Tool(t, "python3", "the live cross-check with testdata/sign.py")
}

func runSignPy(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), python(t), append([]string{filepath.Join("testdata", "sign.py")}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sign.py %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// TestSignVectors_Python re-runs the independent Python signer on the vector
// inputs: it must still produce the pinned values, which the Go signer is
// held to by TestSignVectors.
func TestSignVectors_Python(t *testing.T) {
	t.Parallel()
	python(t)
	vectors := loadVectors(t)
	var got []signResult
	if err := json.Unmarshal(runSignPy(t, nil, "vectors", vectorsFile), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(vectors) {
		t.Fatalf("sign.py returned %d results for %d vectors", len(got), len(vectors))
	}
	for i, v := range vectors {
		want := v.Expected
		want.Name = v.Name
		if diff := cmp.Diff(want, got[i]); diff != "" {
			t.Errorf("%s: sign.py disagrees with the pinned vector (-want +got):\n%s", v.Name, diff)
		}
		gs := goSign(t, v)
		gs.Name = v.Name
		if diff := cmp.Diff(got[i], gs); diff != "" {
			t.Errorf("%s: Go and Python signers disagree (-python +go):\n%s", v.Name, diff)
		}
	}
}

// TestSignPy_VerifiesClientRequests sends real calls through the client to
// an httptest server and asks sign.py to sign what arrived on the wire
// (method, request target, Host, X-Date, X-User-Id, body). The Python
// Authorization header must equal the one the Go client sent.
func TestSignPy_VerifiesClientRequests(t *testing.T) {
	t.Parallel()
	python(t)
	type wire struct {
		Method string `json:"method"`
		URL    string `json:"url"`
		AppID  string `json:"app_id"`
		UserID string `json:"user_id"`
		Date   string `json:"date"`
		Secret string `json:"secret"`
		Body   string `json:"body"`
		Host   string `json:"host"`
		auth   string
	}
	var mu sync.Mutex
	var seen []wire
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, wire{
			Method: r.Method, URL: "http://" + r.Host + r.RequestURI, AppID: testAppID,
			UserID: r.Header.Get("X-User-Id"), Date: r.Header.Get("X-Date"), Secret: testSecret.Reveal(),
			Body: string(body), Host: r.Host, auth: r.Header.Get("Authorization"),
		})
		mu.Unlock()
		fmt.Fprint(w, `{"code":0,"msg":"success","data":{"id":"1"},"list":[],"total":0}`)
	}))
	t.Cleanup(server.Close)
	c, err := NewClient(WithBaseURL(server.URL), WithAppAuth(testAppID, testSecret, testUserID))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	calls := []error{
		c.CreateUser(ctx, CreateUserRequest{UserID: "1008600000029937613", ModifyUserInfoReq: &CreateUserInfo{DeptID: "1243693141656107521", Role: "1"}}),
		c.UpdateUser(ctx, "1289290865663084545", UpdateUserRequest{Status: Ptr(StatusEnabled), DeptID: Ptr(int64(1243693141656107521))}),
		c.UpdateUser(ctx, "a+b@c:d=e&f$g", UpdateUserRequest{Role: Ptr(RoleMemberManager)}),
		c.DeleteUser(ctx, "J\u00fcrgen M\u00fcller/1"),
	}
	_, err = c.ListUsers(ctx, ListUsersOptions{DeptID: "1243693141656107521", IsDirect: true, KeyWord: "J\u00fcrgen M\u00fcller *+~", Offset: 100, Limit: 50})
	calls = append(calls, err)
	_, err = c.GetDepartment(ctx, "Vertrieb \u00dcbersee \u9500\u552e")
	calls = append(calls, err)
	_, err = c.CountUsers(ctx, "")
	calls = append(calls, err)
	for i, err := range calls {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	in, err := json.Marshal(seen)
	if err != nil {
		t.Fatal(err)
	}
	var got []signResult
	if err := json.Unmarshal(runSignPy(t, in, "sign"), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(seen) || len(seen) != 7 {
		t.Fatalf("%d requests, %d Python results", len(seen), len(got))
	}
	for i, w := range seen {
		if got[i].Authorization != w.auth {
			t.Errorf("%s %s: client sent\n  %s\nsign.py computes\n  %s\ncanonical request (Python):\n%s", w.Method, w.URL, w.auth, got[i].Authorization, got[i].CanonicalRequest)
		}
	}
}

func TestCanonicalURI(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want string }{
		"empty":              {"", "/"},
		"root":               {"/", "/"},
		"no trailing slash":  {"/koodrive/ose/v1/users/42", "/koodrive/ose/v1/users/42/"},
		"trailing slash":     {"/koodrive/ose/v1/session/", "/koodrive/ose/v1/session/"},
		"relative":           {"users", "/users/"},
		"space and umlaut":   {"/d/Vertrieb \u00dcbersee", "/d/Vertrieb%20%C3%9Cbersee/"},
		"cjk":                {"/d/\u9500\u552e", "/d/%E9%94%80%E5%94%AE/"},
		"unreserved kept":    {"/a-b_c.d~e", "/a-b_c.d~e/"},
		"sub-delims encoded": {"/a+b@c:d!$&'()*,;=", "/a%2Bb%40c%3Ad%21%24%26%27%28%29%2A%2C%3B%3D/"},
		"literal percent":    {"/a%2Fb", "/a%252Fb/"},
		"redundant slashes":  {"//a///b//", "/a/b/"},
		"dot segments":       {"/a/./b/../c", "/a/c/"},
		"dot dot above root": {"/../../a", "/a/"},
		"all removed":        {"/a/b/../..", "/"},
		"dots inside names":  {"/a..b/.c/d.", "/a..b/.c/d./"},
		"invalid utf-8":      {"/\xff\xfe", "/%FF%FE/"},
		"lower-case hex out": {"/\x0a\x1f", "/%0A%1F/"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := canonicalURI(tc.in); got != tc.want {
				t.Errorf("canonicalURI(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCanonicalQuery(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in   url.Values
		want string
	}{
		"nil":                      {nil, ""},
		"empty":                    {url.Values{}, ""},
		"name without values":      {url.Values{"a": {}}, ""},
		"empty value keeps =":      {url.Values{"deptId": {""}}, "deptId="},
		"sorted by name":           {url.Values{"offset": {"0"}, "limit": {"100"}, "keyWord": {"x"}}, "keyWord=x&limit=100&offset=0"},
		"upper before lower":       {url.Values{"b": {"1"}, "F": {"2"}}, "F=2&b=1"},
		"repeated sorted by value": {url.Values{"tag": {"b", "a", "a+b", ""}}, "tag=&tag=a&tag=a%2Bb&tag=b"},
		"space is %20":             {url.Values{"keyWord": {"J\u00fcrgen M"}}, "keyWord=J%C3%BCrgen%20M"},
		"reserved encoded":         {url.Values{"x": {"*'()!;:@/?#[]&="}}, "x=%2A%27%28%29%21%3B%3A%40%2F%3F%23%5B%5D%26%3D"},
		"unreserved kept":          {url.Values{"t": {"~-_.AZaz09"}}, "t=~-_.AZaz09"},
		"encoded names":            {url.Values{"a b": {"1"}}, "a%20b=1"},
		// Names are sorted after encoding: "a%2F" < "a." because '%' < '.'.
		"sort on encoded names": {url.Values{"a.": {"2"}, "a/": {"1"}}, "a%2F=1&a.=2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := canonicalQuery(tc.in); got != tc.want {
				t.Errorf("canonicalQuery(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCanonicalRequest_Layout(t *testing.T) {
	t.Parallel()
	const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	in := SigningInput{
		Method:  "get",
		Path:    "/koodrive/ose/v1/users/1",
		Query:   url.Values{"b": {"2"}, "a": {"1"}},
		Headers: []Header{{"host", "kd.example"}, {"x-date", " 20240909T033325Z "}, {"x-user-id", "7"}},
	}
	want := "GET\n/koodrive/ose/v1/users/1/\na=1&b=2\nhost:kd.example\nx-date:20240909T033325Z\nx-user-id:7\n\nhost;x-date;x-user-id\n" + emptyHash
	if got := CanonicalRequest(in); got != want {
		t.Errorf("CanonicalRequest =\n%q\nwant\n%q", got, want)
	}
	in.Body = []byte{}
	if got := CanonicalRequest(in); got != want {
		t.Error("an empty body does not hash like no body")
	}
	in.Body = []byte("{}")
	if got := CanonicalRequest(in); !strings.HasSuffix(got, "\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a") {
		t.Errorf("body hash wrong: %q", got)
	}
	sts := StringToSign(want)
	if !strings.HasPrefix(sts, "HMAC-SHA256\n") || len(sts) != len("HMAC-SHA256\n")+64 || strings.ToLower(sts) != "hmac-sha256\n"+sts[len("HMAC-SHA256\n"):] {
		t.Errorf("StringToSign = %q", sts)
	}
}

// TestSignTampering: every signed part of a request changes the signature;
// things that are not part of the canonical form do not.
func TestSignTampering(t *testing.T) {
	t.Parallel()
	base := func() SigningInput {
		return SigningInput{
			Method:  "PUT",
			Path:    "/koodrive/ose/v1/users/1289290865663084545",
			Query:   url.Values{"a": {"1", "2"}, "b": {""}},
			Headers: []Header{{"host", "intl.myhuaweicloud-koodrive.com"}, {"x-date", "20261123T100000Z"}, {"x-user-id", "1505084218764547200"}},
			Body:    []byte(`{"status":1}`),
		}
	}
	const secret = "app-secret"
	ref := Sign(secret, base())
	changed := map[string]func(*SigningInput) string{
		"body":            func(in *SigningInput) string { in.Body = []byte(`{"status":0}`); return secret },
		"body removed":    func(in *SigningInput) string { in.Body = nil; return secret },
		"path":            func(in *SigningInput) string { in.Path = "/koodrive/ose/v1/users/1289290865663084546"; return secret },
		"path case":       func(in *SigningInput) string { in.Path = "/koodrive/ose/v1/Users/1289290865663084545"; return secret },
		"query value":     func(in *SigningInput) string { in.Query["a"] = []string{"1", "3"}; return secret },
		"query name":      func(in *SigningInput) string { in.Query["c"] = in.Query["b"]; delete(in.Query, "b"); return secret },
		"query added":     func(in *SigningInput) string { in.Query.Set("limit", "1"); return secret },
		"query dropped":   func(in *SigningInput) string { in.Query = nil; return secret },
		"query empty ≠ 0": func(in *SigningInput) string { in.Query.Set("b", "0"); return secret },
		"date":            func(in *SigningInput) string { in.Headers[1].Value = "20261123T100001Z"; return secret },
		"user id":         func(in *SigningInput) string { in.Headers[2].Value = "1505084218764547201"; return secret },
		"host":            func(in *SigningInput) string { in.Headers[0].Value = "cn.myhuaweicloud-koodrive.com"; return secret },
		"method":          func(in *SigningInput) string { in.Method = "POST"; return secret },
		"secret":          func(in *SigningInput) string { return secret + "x" },
		"header dropped":  func(in *SigningInput) string { in.Headers = in.Headers[1:]; return secret },
	}
	seen := map[string]string{ref: "original"}
	for name, mutate := range changed {
		in := base()
		key := mutate(&in)
		sig := Sign(key, in)
		if prev, dup := seen[sig]; dup {
			t.Errorf("changing %s gives the same signature as %s", name, prev)
		}
		seen[sig] = name
	}
	same := map[string]func(*SigningInput){
		"repeated values reordered": func(in *SigningInput) { in.Query["a"] = []string{"2", "1"} },
		"header value padded":       func(in *SigningInput) { in.Headers[2].Value = "  1505084218764547200\t" },
		"method case":               func(in *SigningInput) { in.Method = "put" },
		"trailing slash":            func(in *SigningInput) { in.Path += "/" },
	}
	for name, mutate := range same {
		in := base()
		mutate(&in)
		if got := Sign(secret, in); got != ref {
			t.Errorf("%s changed the signature; it is not part of the canonical form", name)
		}
	}
}

func TestSortHeaders(t *testing.T) {
	t.Parallel()
	hs := []Header{{"X-User-Id", "1"}, {"Host", "h"}, {"x-date", "d"}, {"Content-Type", "c"}}
	SortHeaders(hs)
	want := []Header{{"content-type", "c"}, {"host", "h"}, {"x-date", "d"}, {"x-user-id", "1"}}
	if !cmp.Equal(hs, want) {
		t.Errorf("SortHeaders = %v, want %v", hs, want)
	}
	if got := SignedHeaderNames(hs); got != "content-type;host;x-date;x-user-id" {
		t.Errorf("SignedHeaderNames = %q", got)
	}
	client := []Header{{"x-user-id", ""}, {"x-date", ""}, {"host", ""}}
	SortHeaders(client)
	if got := SignedHeaderNames(client); got != SignedHeaders {
		t.Errorf("the client's headers sort to %q, but SignedHeaders is %q", got, SignedHeaders)
	}
	if SignedHeaderNames(nil) != "" {
		t.Error("SignedHeaderNames(nil) is not empty")
	}
}

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	sig := strings.Repeat("ab", 32)
	tests := map[string]struct {
		in                  string
		appID, signed, want string
		ok                  bool
	}{
		"client form":    {in: AuthorizationHeader("app", sig), appID: "app", signed: SignedHeaders, want: sig, ok: true},
		"doc example":    {in: "HMAC-SHA256 AppId=a378,SignedHeaders=host;x-date;x-user-id,Signature=bd35", appID: "a378", signed: "host;x-date;x-user-id", want: "bd35", ok: true},
		"spaces":         {in: "HMAC-SHA256 AppId=a, SignedHeaders=host, Signature=s", appID: "a", signed: "host", want: "s", ok: true},
		"reordered":      {in: "HMAC-SHA256 Signature=s,AppId=a,SignedHeaders=host", appID: "a", signed: "host", want: "s", ok: true},
		"unknown part":   {in: "HMAC-SHA256 AppId=a,SignedHeaders=host,Signature=s,Extra=1", appID: "a", signed: "host", want: "s", ok: true},
		"bearer":         {in: "Bearer+abc"},
		"other algo":     {in: "SDK-HMAC-SHA256 AppId=a,SignedHeaders=host,Signature=s"},
		"no space":       {in: "HMAC-SHA256AppId=a,SignedHeaders=host,Signature=s"},
		"missing sig":    {in: "HMAC-SHA256 AppId=a,SignedHeaders=host"},
		"empty app id":   {in: "HMAC-SHA256 AppId=,SignedHeaders=host,Signature=s"},
		"part without =": {in: "HMAC-SHA256 AppId=a,SignedHeaders,Signature=s"},
		"empty":          {in: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			appID, signed, s, ok := ParseAuthorization(tc.in)
			if ok != tc.ok || ok && (appID != tc.appID || signed != tc.signed || s != tc.want) {
				t.Errorf("ParseAuthorization(%q) = %q, %q, %q, %v", tc.in, appID, signed, s, ok)
			}
		})
	}
}

func TestFormatDate(t *testing.T) {
	t.Parallel()
	cst := time.FixedZone("CST", 8*3600)
	if got := FormatDate(time.Date(2024, 9, 9, 11, 33, 25, 999e6, cst)); got != "20240909T033325Z" {
		t.Errorf("FormatDate = %q, want 20240909T033325Z (UTC, seconds truncated)", got)
	}
	if d, err := time.Parse(DateFormat, "20240831T143829Z"); err != nil || FormatDate(d) != "20240831T143829Z" {
		t.Errorf("DateFormat does not round-trip the documented example: %v", err)
	}
}

// FuzzCanonicalRequest: no panics; the canonical request is deterministic;
// the canonical URI and query are fixed points of decode-then-canonicalise;
// header values are compared trimmed.
func FuzzCanonicalRequest(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.Request.Method, v.Request.URL, []byte(v.Request.Body), "x-user-id", "42")
	}
	f.Add("get", "http://h/a/../%2e%2E/b//c?x=%zz&y=1;2&&=&z", []byte(nil), "", " \t")
	f.Fuzz(func(t *testing.T, method, rawURL string, body []byte, hname, hvalue string) {
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		hs := []Header{{"host", u.Host}, {hname, hvalue}, {"x-date", "20240909T033325Z"}}
		SortHeaders(hs)
		in := SigningInput{Method: method, Path: u.Path, Query: u.Query(), Headers: hs, Body: body}
		cr := CanonicalRequest(in)
		if cr2 := CanonicalRequest(in); cr != cr2 {
			t.Fatalf("CanonicalRequest not deterministic:\n%q\n%q", cr, cr2)
		}
		if s1, s2 := Sign("k", in), Sign("k", in); s1 != s2 || len(s1) != 64 {
			t.Fatalf("Sign not deterministic: %q %q", s1, s2)
		}
		if !strings.HasPrefix(cr, strings.ToUpper(method)+"\n") {
			t.Fatalf("canonical request does not start with the method: %q", cr)
		}

		cu := canonicalURI(u.Path)
		if !strings.HasPrefix(cu, "/") || !strings.HasSuffix(cu, "/") || strings.Contains(cu, "//") && cu != "/" {
			t.Fatalf("canonicalURI(%q) = %q", u.Path, cu)
		}
		dec, err := url.PathUnescape(cu)
		if err != nil {
			t.Fatalf("canonicalURI(%q) = %q does not decode: %v", u.Path, cu, err)
		}
		if again := canonicalURI(dec); again != cu {
			t.Fatalf("canonicalURI not a fixed point: %q -> %q -> %q", u.Path, cu, again)
		}

		cq := canonicalQuery(in.Query)
		q2, err := url.ParseQuery(cq)
		if err != nil {
			t.Fatalf("canonicalQuery = %q does not parse: %v", cq, err)
		}
		if again := canonicalQuery(q2); again != cq {
			t.Fatalf("canonicalQuery not a fixed point: %q -> %q", cq, again)
		}

		padded := in
		padded.Headers = append([]Header(nil), hs...)
		for i := range padded.Headers {
			padded.Headers[i].Value = " " + padded.Headers[i].Value + "\t"
		}
		if Sign("k", padded) != Sign("k", in) {
			t.Fatal("surrounding white space in a header value changed the signature")
		}
	})
}

func benchInput() SigningInput {
	return SigningInput{
		Method:  http.MethodPut,
		Path:    "/koodrive/ose/v1/users/1289290865663084545",
		Headers: []Header{{"host", "intl.myhuaweicloud-koodrive.com"}, {"x-date", "20261123T100000Z"}, {"x-user-id", "1505084218764547200"}},
		Body:    []byte(`{"deptId":1243693141656107521,"role":1,"status":0}`),
	}
}

func BenchmarkSign(b *testing.B) {
	for name, q := range map[string]url.Values{
		"no query":   nil,
		"with query": {"offset": {"0"}, "limit": {"100"}, "keyWord": {"J\u00fcrgen M"}, "deptId": {"1243693141656107521"}},
	} {
		b.Run(name, func(b *testing.B) {
			in := benchInput()
			in.Query = q
			b.ReportAllocs()
			for b.Loop() {
				Sign("kdsync-test-app-secret-0123456789abcdef", in)
			}
		})
	}
}

// BenchmarkAppAuthRoundTrip measures the signing transport alone: clone,
// body replay, signature, with a next transport that does nothing.
func BenchmarkAppAuthRoundTrip(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	a := &AppAuth{AppID: testAppID, Secret: testSecret, UserID: testUserID, sig: newSigner(testSecret.Reveal()), // as NewClient makes it
		Next: roundTripperFunc(func(*http.Request) (*http.Response, error) { return resp, nil })}
	req, err := http.NewRequest(http.MethodPut, "https://intl.myhuaweicloud-koodrive.com/koodrive/ose/v1/users/1289290865663084545", bytes.NewReader(benchInput().Body))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}
