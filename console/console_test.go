package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/console"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/metrics"
	"github.com/kdsync/kdsync/outcome"
)

const token = kdapi.Secret("console-test-token-0123456789")

// clock is a settable clock for session expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// world is a live kdsync (consumer, simulator, guard at 1 per hour) with a
// user hired, a dead letter and a held disable, and the console over
// HTTPS in front of it.
type world struct {
	*harness.Pipeline
	srv      *httptest.Server
	handler  http.Handler
	clock    *clock
	user     string // hired, then a change dead-lettered, then a disable held
	heldSeq  uint64
	badSeq   uint64
	dept     string
	readOnly bool
}

func newWorld(t *testing.T, mutate func(*console.Options)) *world {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	p := harness.NewPipeline(t, harness.PipelineOptions{Limit: guard.Limit{N: 1, Window: time.Hour}, Observer: m})
	w := &world{Pipeline: p, clock: &clock{t: time.Now()}, user: "1008600000000000041"}
	depts := p.Sim.Departments()
	w.dept = strconv.FormatInt(depts[0], 10)
	p.WaitOutcome(p.Publish("w-1", handlers.Hired, w.user, map[string]any{"deptId": w.dept, "role": 1}), 10*time.Second)
	w.badSeq = p.Publish("w-2", handlers.Changed, w.user, map[string]any{"deptId": "999999"})
	p.WaitOutcome(w.badSeq, 10*time.Second)
	const other = "1008600000000000042"
	p.WaitOutcome(p.Publish("w-3", handlers.Hired, other, map[string]any{"deptId": w.dept}), 10*time.Second)
	p.WaitOutcome(p.Publish("w-4", handlers.Disabled, other, nil), 10*time.Second)
	w.heldSeq = p.Publish("w-5", handlers.Disabled, w.user, nil)
	g, err := guard.Open(t.Context(), p.JS, "KDSYNC_GUARD", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	p.WaitFunc("the disable held", 10*time.Second, func() bool {
		held, err := g.Held(t.Context())
		return err == nil && len(held) == 1
	})

	o := console.Options{Token: token, JetStream: p.JS, KooDrive: p.KD, Now: w.clock.now, Gatherer: reg,
		SessionTTL: time.Hour, IdleTimeout: 10 * time.Minute, SyncWait: 10 * time.Second, ReplayWait: 10 * time.Second,
		Logger: harness.Logger(0)}
	if mutate != nil {
		mutate(&o)
	}
	w.readOnly = o.ReadOnly
	c, err := console.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	w.handler = c.Handler()
	w.srv = httptest.NewTLSServer(w.handler)
	t.Cleanup(w.srv.Close)
	return w
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects.
func (w *world) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := w.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func do(t *testing.T, c *http.Client, method, url string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in:\n%s", page)
	}
	return m[1]
}

// login signs c in as name and returns the session's CSRF token.
func (w *world) login(t *testing.T, c *http.Client, name string) string {
	t.Helper()
	_, page := do(t, c, "GET", w.srv.URL+"/login", nil, nil)
	resp, _ := do(t, c, "POST", w.srv.URL+"/login", url.Values{"csrf": {csrfOf(t, page)}, "name": {name}, "token": {token.Reveal()}, "next": {"/"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	_, page = do(t, c, "GET", w.srv.URL+"/", nil, nil)
	return csrfOf(t, page)
}

func (w *world) audit(t *testing.T) []console.Entry {
	t.Helper()
	st, err := w.JS.Stream(t.Context(), "KDSYNC_AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []console.Entry
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			continue
		}
		var e console.Entry
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func (w *world) pending(t *testing.T) []uint64 {
	t.Helper()
	g, err := guard.Open(t.Context(), w.JS, "KDSYNC_GUARD", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	held, err := g.Held(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, h := range held {
		if h.Decision == guard.Pending {
			out = append(out, h.Seq)
		}
	}
	return out
}

// pages are every page a signed-in operator can GET.
func (w *world) pages() []string {
	return []string{"/", "/users", "/users/" + w.user, "/dlq", "/dlq/1", "/guard", "/audit",
		"/api/session", "/api/users/" + w.user}
}

// TestStrangersGetNothing: no page and no data without signing in: a
// redirect to the login page for pages, 401 for the API, for actions and
// for a wrong bearer token.
func TestStrangersGetNothing(t *testing.T) {
	w := newWorld(t, nil)
	c := w.browser(t)
	for _, path := range append(w.pages(), "/users?q="+w.user) {
		resp, body := do(t, c, "GET", w.srv.URL+path, nil, nil)
		api := strings.HasPrefix(path, "/api/")
		switch {
		case api && resp.StatusCode != http.StatusUnauthorized:
			t.Errorf("GET %s: %s, want 401", path, resp.Status)
		case !api && (resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=")):
			t.Errorf("GET %s: %s to %q, want a redirect to /login", path, resp.Status, resp.Header.Get("Location"))
		}
		if strings.Contains(body, w.user) && !strings.Contains(body, "next=") || strings.Contains(body, "w-1") {
			t.Errorf("GET %s shows data to a stranger:\n%s", path, body)
		}
		// A wrong bearer token is a stranger too.
		resp, _ = do(t, c, "GET", w.srv.URL+path, nil, map[string]string{"Authorization": "Bearer not-the-token-at-all"})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong bearer: %s, want 401", path, resp.Status)
		}
	}
	for _, path := range []string{"/guard/release", "/guard/reject", "/users/" + w.user + "/sync", "/dlq/1/replay", "/logout"} {
		resp, _ := do(t, c, "POST", w.srv.URL+path, url.Values{"seq": {strconv.FormatUint(w.heldSeq, 10)}, "confirm": {"yes"}}, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s: %s, want 401", path, resp.Status)
		}
	}
	if got := w.pending(t); len(got) != 1 {
		t.Errorf("held events after strangers' posts: %v", got)
	}
	// The right bearer token is let in (once the wrong ones above no
	// longer count as guessing).
	w.clock.add(30 * time.Second)
	resp, body := do(t, c, "GET", w.srv.URL+"/api/users/"+w.user, nil, map[string]string{"Authorization": "Bearer " + token.Reveal()})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"eventId": "w-1"`) {
		t.Errorf("bearer: %s\n%s", resp.Status, body)
	}
}

// TestLogin: the cookie is Secure, HttpOnly and SameSite=Strict; a wrong
// token is refused and audited; the form needs its CSRF cookie.
func TestLogin(t *testing.T) {
	w := newWorld(t, nil)
	c := w.browser(t)
	_, page := do(t, c, "GET", w.srv.URL+"/login", nil, nil)
	for _, want := range []string{`<label for="token">`, `id="token"`, `type="password"`, `<label for="name">`} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	resp, body := do(t, c, "POST", w.srv.URL+"/login", url.Values{"csrf": {csrfOf(t, page)}, "name": {"mallory"}, "token": {"console-test-token-WRONG"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not right") {
		t.Errorf("wrong token: %s", resp.Status)
	}
	// Without the form's cookie (another site's form).
	other := w.browser(t)
	resp, _ = do(t, other, "POST", w.srv.URL+"/login", url.Values{"csrf": {"made-up"}, "token": {token.Reveal()}}, nil)
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) > 0 {
		t.Errorf("login without the form's cookie: %s, cookies %v", resp.Status, resp.Cookies())
	}

	_, page = do(t, c, "GET", w.srv.URL+"/login", nil, nil)
	resp, _ = do(t, c, "POST", w.srv.URL+"/login", url.Values{"csrf": {csrfOf(t, page)}, "name": {"alice"}, "token": {token.Reveal()}, "next": {"https://evil.example/"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("login: %s to %q (an outside next must not be followed)", resp.Status, resp.Header.Get("Location"))
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "kdsync_console" {
			sess = ck
		}
	}
	if sess == nil || !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || sess.Value == token.Reveal() {
		t.Fatalf("session cookie %+v", sess)
	}
	var got []string
	for _, e := range w.audit(t) {
		got = append(got, e.Action+":"+e.Who)
	}
	if strings.Join(got, ",") != "login_failed:mallory,refused:,login:alice" {
		t.Errorf("audit %v", got)
	}
}

// TestGuessingIsSlowed: past 10 wrong tokens in a burst, no token is
// checked (sign-in 429, bearer 401) until the pace falls to one per 2s.
func TestGuessingIsSlowed(t *testing.T) {
	w := newWorld(t, nil)
	c := w.browser(t)
	try := func(tok string) int {
		t.Helper()
		_, page := do(t, c, "GET", w.srv.URL+"/login", nil, nil)
		resp, _ := do(t, c, "POST", w.srv.URL+"/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {tok}}, nil)
		return resp.StatusCode
	}
	for i := range 10 {
		if got := try("wrong-token-guess-" + strconv.Itoa(i)); got != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, got)
		}
	}
	if got := try(token.Reveal()); got != http.StatusTooManyRequests {
		t.Errorf("the right token right after 10 wrong ones: %d, want 429", got)
	}
	resp, _ := do(t, c, "GET", w.srv.URL+"/api/session", nil, map[string]string{"Authorization": "Bearer " + token.Reveal()})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bearer while guessing is limited: %s, want 401", resp.Status)
	}
	w.clock.add(3 * time.Second)
	if got := try(token.Reveal()); got != http.StatusSeeOther {
		t.Errorf("the right token 3s later: %d, want 303", got)
	}
}

// TestCSRF: a state-changing request without the CSRF token is refused
// (403), changes nothing and is audited; with it, the first POST asks for
// confirmation and changes nothing either.
func TestCSRF(t *testing.T) {
	w := newWorld(t, nil)
	c := w.browser(t)
	csrf := w.login(t, c, "alice")
	seq := strconv.FormatUint(w.heldSeq, 10)
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":     {url.Values{"seq": {seq}, "confirm": {"yes"}}, nil},
		"wrong token":  {url.Values{"seq": {seq}, "confirm": {"yes"}, "csrf": {csrf + "x"}}, nil},
		"bearer, none": {url.Values{"seq": {seq}, "confirm": {"yes"}}, map[string]string{"Authorization": "Bearer " + token.Reveal()}},
	} {
		resp, _ := do(t, c, "POST", w.srv.URL+"/guard/release", tc.form, tc.hdr)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403", name, resp.Status)
		}
	}
	if got := w.pending(t); len(got) != 1 {
		t.Fatalf("held after refused posts: %v", got)
	}
	refused := 0
	for _, e := range w.audit(t) {
		if e.Action == console.AuditRefused && strings.Contains(e.Target, "/guard/release") {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d refusals audited, want 3", refused)
	}
	// With the token but not confirmed: a confirmation page.
	resp, body := do(t, c, "POST", w.srv.URL+"/guard/release", url.Values{"seq": {seq}, "csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Release held event #"+seq+"?") || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("confirmation: %s\n%s", resp.Status, body)
	}
	if got := w.pending(t); len(got) != 1 {
		t.Fatalf("the confirmation step released: %v", got)
	}
	// A script: the CSRF token from /api/session in a header.
	bearer := map[string]string{"Authorization": "Bearer " + token.Reveal(), "X-Kdsync-Operator": "ci-bot"}
	_, sess := do(t, c, "GET", w.srv.URL+"/api/session", nil, bearer)
	var s struct{ CSRF string }
	if err := json.Unmarshal([]byte(sess), &s); err != nil || s.CSRF == "" {
		t.Fatalf("session %s: %v", sess, err)
	}
	bearer["X-CSRF-Token"] = s.CSRF
	resp, body = do(t, c, "POST", w.srv.URL+"/guard/reject", url.Values{"seq": {seq}, "confirm": {"yes"}}, bearer)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Rejected #"+seq) {
		t.Fatalf("bearer reject: %s\n%s", resp.Status, body)
	}
	if o := w.WaitOutcome(w.heldSeq, 15*time.Second); o.Result != outcome.Skipped || o.Reason != outcome.SkipGuardRejected {
		t.Errorf("outcome of the rejected disable: %+v", o)
	}
	if es := w.audit(t); es[len(es)-1].Action != console.AuditReject || es[len(es)-1].Who != "ci-bot (bearer)" {
		t.Errorf("last audit entry %+v", es[len(es)-1])
	}
}

// TestSessionsExpire: idle past IdleTimeout, or past SessionTTL since
// sign-in, the session is gone; signing out ends it at once.
func TestSessionsExpire(t *testing.T) {
	w := newWorld(t, nil)
	c := w.browser(t)
	w.login(t, c, "alice")
	get := func() int {
		resp, _ := do(t, c, "GET", w.srv.URL+"/dlq", nil, nil)
		return resp.StatusCode
	}
	if got := get(); got != http.StatusOK {
		t.Fatalf("signed in: %d", got)
	}
	w.clock.add(11 * time.Minute)
	if got := get(); got != http.StatusSeeOther {
		t.Errorf("idle 11m (timeout 10m): %d, want 303", got)
	}
	// Active all along, but past the TTL.
	w.login(t, c, "alice")
	for range 6 {
		w.clock.add(9 * time.Minute)
		if got := get(); got != http.StatusOK {
			t.Fatalf("active session: %d", got)
		}
	}
	w.clock.add(9 * time.Minute)
	if got := get(); got != http.StatusSeeOther {
		t.Errorf("63m after sign-in (TTL 1h): %d, want 303", got)
	}
	csrf := w.login(t, c, "alice")
	resp, _ := do(t, c, "POST", w.srv.URL+"/logout", url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	if got := get(); got != http.StatusSeeOther {
		t.Errorf("after signing out: %d, want 303", got)
	}
}

// TestActionsAuditedAndSecretsNeverShown: each action (sync, replay,
// release, sign-in, sign-out) does what it says and leaves an audit entry
// naming who; no page ever holds the console token or KooDrive's secret.
func TestActionsAuditedAndSecretsNeverShown(t *testing.T) {
	w := newWorld(t, nil)
	c := w.browser(t)
	csrf := w.login(t, c, "alice")
	var seen []string
	get := func(path string) string {
		t.Helper()
		resp, body := do(t, c, "GET", w.srv.URL+path, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
		}
		seen = append(seen, body)
		return body
	}
	post := func(path string, form url.Values) string {
		t.Helper()
		form.Set("csrf", csrf)
		resp, body := do(t, c, "POST", w.srv.URL+path, form, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %s\n%s", path, resp.Status, body)
		}
		seen = append(seen, body)
		return body
	}
	for _, p := range w.pages() {
		get(p)
	}
	if body := get("/users/" + w.user); !strings.Contains(body, "w-1") || !strings.Contains(body, "deadlettered") || !strings.Contains(body, "Sync now") {
		t.Errorf("user page:\n%s", body)
	}

	// Release the held disable.
	seq := strconv.FormatUint(w.heldSeq, 10)
	post("/guard/release", url.Values{"seq": {seq}})
	if body := post("/guard/release", url.Values{"seq": {seq}, "confirm": {"yes"}}); !strings.Contains(body, "Released #"+seq) {
		t.Fatalf("release:\n%s", body)
	}
	if o := w.WaitOutcome(w.heldSeq, 15*time.Second); o.Result != outcome.Applied {
		t.Fatalf("released disable: %+v", o)
	}
	if u, _ := w.Sim.User(w.user); u.User.Status != 1 {
		t.Fatalf("the released disable did not disable: status %d", u.User.Status)
	}

	// Replay the dead letter (a department KooDrive lacks: it dies again).
	post("/dlq/1/replay", url.Values{})
	if body := post("/dlq/1/replay", url.Values{"confirm": {"yes"}, "force": {"on"}}); !strings.Contains(body, "Replayed as IDENTITY #") {
		t.Fatalf("replay:\n%s", body)
	}

	// Sync: KooDrive was changed behind kdsync's back.
	if _, err := w.Sim.PutUserDirect(harnessUser(w.user, w.Sim.Departments()[1])); err != nil {
		t.Fatal(err)
	}
	if body := post("/users/"+w.user+"/sync", url.Values{}); !strings.Contains(body, "Sync user "+w.user+" now?") || !strings.Contains(body, "decide: drift") {
		t.Fatalf("sync confirmation:\n%s", body)
	}
	if body := post("/users/"+w.user+"/sync", url.Values{"confirm": {"yes"}}); !strings.Contains(body, "Synced: KooDrive matches") {
		t.Fatalf("sync:\n%s", body)
	}
	if u, _ := w.Sim.User(w.user); u.User.DeptID != w.dept || u.User.Status != 1 {
		t.Fatalf("after the sync KooDrive has %+v", u.User)
	}
	body := get("/audit")
	for _, p := range w.pages() {
		if p != "/dlq/1" { // replayed, died again: it is #2 now
			get(p)
		}
	}
	get("/dlq/2")
	resp, _ := do(t, c, "POST", w.srv.URL+"/logout", url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}

	want := map[string]bool{console.AuditLogin: false, console.AuditRelease: false, console.AuditReplay: false, console.AuditSync: false, console.AuditLogout: false}
	for _, e := range w.audit(t) {
		if _, ok := want[e.Action]; ok && e.Who == "alice" && e.Result == "ok" && !e.Time.IsZero() && e.Remote != "" {
			want[e.Action] = true
		}
	}
	for a, ok := range want {
		if !ok {
			t.Errorf("no audit entry by alice for %s", a)
		}
	}
	for _, a := range []string{"release", "replay", "sync"} {
		if !strings.Contains(body, "<td>"+a+"</td>") {
			t.Errorf("the audit page lacks %s", a)
		}
	}
	for i, page := range seen {
		for _, secret := range []string{token.Reveal(), harness.AppSecret.Reveal()} {
			if strings.Contains(page, secret) {
				t.Errorf("page %d holds a secret:\n%s", i, page)
			}
		}
	}
}

// TestReadOnly hides every action and refuses them.
func TestReadOnly(t *testing.T) {
	w := newWorld(t, func(o *console.Options) { o.ReadOnly = true })
	c := w.browser(t)
	csrf := w.login(t, c, "alice")
	for _, path := range []string{"/users/" + w.user, "/guard", "/dlq/1"} {
		_, body := do(t, c, "GET", w.srv.URL+path, nil, nil)
		for _, button := range []string{"Sync now", ">Release<", ">Reject<", ">Replay<"} {
			if strings.Contains(body, button) {
				t.Errorf("%s shows %s in read-only mode", path, button)
			}
		}
	}
	resp, _ := do(t, c, "POST", w.srv.URL+"/guard/release", url.Values{"csrf": {csrf}, "seq": {strconv.FormatUint(w.heldSeq, 10)}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("release in read-only mode: %s", resp.Status)
	}
	if got := w.pending(t); len(got) != 1 {
		t.Errorf("held: %v", got)
	}
}

func TestValidate(t *testing.T) {
	_, err := console.New(context.Background(), console.Options{Token: "short"})
	if err == nil || !strings.Contains(err.Error(), "at least 16") || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("validate: %v", err)
	}
}

// harnessUser is user in department dept, as edited in KooDrive's console.
func harnessUser(user string, dept int64) kdsim.User {
	return kdsim.User{UserID: user, DeptID: strconv.FormatInt(dept, 10), Role: 1, Status: 1}
}
