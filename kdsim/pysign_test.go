package kdsim_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

// signPy is the independent Python signer, written from the documentation
// rather than from kdapi's Go code.
const signPy = "../kdapi/testdata/sign.py"

// python returns the path of python3, or skips (fails in CI: testenv).
func python(t *testing.T) string {
	t.Helper()
	return testenv.Tool(t, "python3", "the check against the independent signer "+signPy)
}

// pyRequest is the input of "sign.py sign": the request to sign over
// host;x-date;x-user-id.
type pyRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	AppID  string `json:"app_id"`
	UserID string `json:"user_id"`
	Date   string `json:"date"`
	Secret string `json:"secret"`
	Body   string `json:"body"`
}

// signWithPython signs reqs with sign.py in one run and returns their
// Authorization headers.
func signWithPython(t *testing.T, reqs []pyRequest) []string {
	t.Helper()
	in, err := json.Marshal(reqs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), python(t), signPy, "sign")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sign.py sign: %v\n%s", err, stderr.Bytes())
	}
	var res []struct {
		Authorization string `json:"authorization"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(reqs) {
		t.Fatalf("sign.py sign: %d results for %d requests (%v): %s", len(res), len(reqs), err, out)
	}
	auths := make([]string, len(res))
	for i, r := range res {
		auths[i] = r.Authorization
	}
	return auths
}

// TestPythonSignedRequests sends requests signed live by the independent
// Python signer to a running simulator: untouched ones are accepted, and
// ones changed after signing (body, path, query, method, X-Date, a signed
// header, AppId) or signed with the wrong secret are refused with 401 and a
// message saying why. Refused writes change nothing.
func TestPythonSignedRequests(t *testing.T) {
	t.Parallel()
	python(t)
	clk := newClock(t0)
	f := newFixture(t, kdsim.Options{AppID: testAppID, AppSecret: testSecret, Now: clk.Now})
	const (
		existing = "1008600000029930001" // seeded; updated by the untouched PUT
		other    = "1008600000029930002" // seeded; must never change
	)
	for _, id := range []string{existing, other} {
		if _, err := f.srv.PutUserDirect(kdsim.User{UserID: id, DeptID: deptEng, Role: 1}); err != nil {
			t.Fatal(err)
		}
	}
	date := kdapi.FormatDate(t0)
	create := func(id, role string) string {
		return `{"userId":"` + id + `","modifyUserInfoReq":{"deptId":"` + deptSales + `","role":"` + role + `"}}`
	}
	const mismatch = "authentication failed: signature mismatch: the signature does not match this request's method, path, query, signed headers (host;x-date;x-user-id) and body under the AppId's secret"

	tests := map[string]struct {
		method, path, body string
		date               string                // signed X-Date; "" means t0
		secret             kdapi.Secret          // "" means the simulator's
		tamper             func(r *http.Request) // applied after signing
		status             int
		code               string
		msg                string             // the whole message
		check              func(t *testing.T) // the store afterwards
	}{
		"untouched create": {
			method: "POST", path: "/users", body: create("1008600000029930010", "1"),
			status: 200, code: "0", msg: "success",
			check: func(t *testing.T) { wantUser(t, f.srv, "1008600000029930010", deptSales, 1) },
		},
		"untouched update": {
			method: "PUT", path: "/users/" + existing, body: `{"deptId":` + deptPlatform + `,"role":5,"status":0}`,
			status: 200, code: "0", msg: "success",
			check: func(t *testing.T) { wantUser(t, f.srv, existing, deptPlatform, 5) },
		},
		"untouched list with a query": {
			method: "GET", path: "/userList?offset=0&limit=10&keyWord=User%20" + other,
			status: 200, code: "0", msg: "success",
		},
		"body changed after signing": {
			method: "POST", path: "/users", body: create("1008600000029930011", "1"),
			tamper: setBody(create("1008600000029930011", "2")),
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
			check: func(t *testing.T) { wantNoUser(t, f.srv, "1008600000029930011") },
		},
		"path changed": {
			method: "PUT", path: "/users/" + existing, body: `{"status":1}`,
			tamper: func(r *http.Request) { r.URL.Path = kdapi.APIPath + "/users/" + other },
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
			check: func(t *testing.T) { wantUser(t, f.srv, other, deptEng, 1) },
		},
		"query changed": {
			method: "GET", path: "/userList?offset=0&limit=10",
			tamper: func(r *http.Request) { r.URL.RawQuery = "offset=0&limit=100" },
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
		},
		"method changed": {
			method: "GET", path: "/users/" + other,
			tamper: func(r *http.Request) { r.Method = http.MethodDelete },
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
			check: func(t *testing.T) { wantUser(t, f.srv, other, deptEng, 1) },
		},
		"X-Date changed": {
			method: "GET", path: "/users/count",
			tamper: func(r *http.Request) { r.Header.Set("X-Date", kdapi.FormatDate(t0.Add(-time.Second))) },
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
		},
		"X-User-Id changed": {
			method: "GET", path: "/users/count",
			tamper: func(r *http.Request) { r.Header.Set("X-User-Id", "1505084218764547201") },
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
		},
		"Host changed": {
			method: "GET", path: "/users/count",
			tamper: func(r *http.Request) { r.Host = "intl.myhuaweicloud-koodrive.com" },
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
		},
		"wrong secret": {
			method: "POST", path: "/users", body: create("1008600000029930012", "1"), secret: "not-the-app-secret",
			status: 401, code: kdsim.CodeAuth, msg: mismatch,
			check: func(t *testing.T) { wantNoUser(t, f.srv, "1008600000029930012") },
		},
		"AppId changed": {
			method: "GET", path: "/users/count",
			tamper: func(r *http.Request) {
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "AppId="+testAppID[:8], "AppId=00000000", 1))
			},
			status: 401, code: kdsim.CodeAuth, msg: "authentication failed: unknown AppId",
		},
		"X-Date too old, signed as such": {
			method: "GET", path: "/users/count", date: kdapi.FormatDate(t0.Add(-16 * time.Minute)),
			status: 401, code: kdsim.CodeAuth, msg: "authentication failed: X-Date 20260301T094400Z is outside the window: 16m0s old, more than 15m0s",
		},
	}

	// Sign every case in one run of sign.py.
	names := make([]string, 0, len(tests))
	reqs := make([]pyRequest, 0, len(tests))
	for name, tc := range tests {
		secret, d := tc.secret, tc.date
		if secret == "" {
			secret = testSecret
		}
		if d == "" {
			d = date
		}
		names = append(names, name)
		reqs = append(reqs, pyRequest{Method: tc.method, URL: f.api(tc.path), AppID: testAppID, UserID: testUserID,
			Date: d, Secret: secret.Reveal(), Body: tc.body})
	}
	auths := signWithPython(t, reqs)

	for i, name := range names {
		tc, pr, auth := tests[name], reqs[i], auths[i]
		t.Run(name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := newRequest(t, tc.method, pr.URL, body)
			r.Header.Set("X-Date", pr.Date)
			r.Header.Set("X-User-Id", pr.UserID)
			r.Header.Set("Authorization", auth)
			if tc.tamper != nil {
				tc.tamper(r)
			}
			rp := send(t, r)
			if rp.status != tc.status || rp.code != tc.code || rp.msg != tc.msg {
				t.Errorf("got %d code %s msg %q\nwant %d code %s msg %q", rp.status, rp.code, rp.msg, tc.status, tc.code, tc.msg)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
}

func wantUser(t *testing.T, srv *kdsim.Server, id, dept string, role int) {
	t.Helper()
	rec, ok := srv.User(id)
	if !ok || rec.User == nil || rec.User.DeptID != dept || rec.User.Role != role {
		t.Errorf("User(%s) = %+v, %v; want dept %s role %d", id, rec.User, ok, dept, role)
	}
}

func wantNoUser(t *testing.T, srv *kdsim.Server, id string) {
	t.Helper()
	if rec, ok := srv.User(id); ok {
		t.Errorf("User(%s) = %+v; a refused create must not create it", id, rec.User)
	}
}
