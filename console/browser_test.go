package console_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kdsync/kdsync/console"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// chromium finds a Chromium to drive: Debian's chromium (installed by
// .ci/run), or another Chrome on PATH. Without one the browser tests skip
// on a laptop and fail in CI.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return testenv.Tool(t, "chromium", "the console's browser tests")
}

// shots is where screenshots are kept: $KDSYNC_SCREENSHOTS, or
// console/testdata/out (ignored by git).
func shots(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KDSYNC_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("testdata", "out")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browse starts headless Chromium for t.
func browse(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 860),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelCtx)
	// The first call starts the browser, which lives as long as its
	// context: no timeout on that one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// stepTimeout bounds each step of a browser test (generous: a replay or a
// sync waits for kdsync's outcome, slow on a loaded machine).
const stepTimeout = 90 * time.Second

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that returns a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(90))
	p := filepath.Join(shots(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// allLabelled is a script: true when every visible form control on the
// page has a label (or an aria-label).
const allLabelled = `[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
	.every(e => (e.labels && e.labels.length > 0) || e.getAttribute('aria-label'))`

// TestBrowser drives the console in headless Chromium as an operator
// would, with the keyboard: sign in, search a user, read the timeline,
// release a held disable after confirming, replay a dead letter; and
// checks each effect in the simulator.
func TestBrowser(t *testing.T) {
	ctx := browse(t)
	w := newWorld(t, nil)
	// A change for a user KooDrive does not know yet: dead-lettered
	// (not_found). Once the user is created in KooDrive, its replay
	// applies.
	const late = "1008600000000000043"
	lateSeq := w.Publish("w-6", handlers.Changed, late, map[string]any{"role": 5})
	if o := w.WaitOutcome(lateSeq, 10*time.Second); o.Result != outcome.Deadlettered {
		t.Fatalf("the late change: %+v", o)
	}
	// Plain HTTP on localhost: a Secure cookie is kept there, as on the
	// compose file's http://localhost:8091.
	srv := httptest.NewServer(w.handler)
	t.Cleanup(srv.Close)
	base := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)

	// Sign in, with the keyboard: the name field has the focus, Tab
	// moves to the token, Enter submits.
	type css = chromedp.CSS
	run(t, ctx, "open the login page",
		chromedp.Navigate(base+"/users"),
		chromedp.WaitVisible(css(`#token`)),
	)
	if !get(t, ctx, "labels", chromedp.Evaluate[bool](allLabelled)) {
		t.Error("the login form has a control without a label")
	}
	run(t, ctx, "sign in",
		chromedp.KeyEvent("alice"),
		chromedp.KeyEvent(kb.Tab),
		chromedp.KeyEvent(token.Reveal()),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(css(`#q`)),
	)
	if url := get(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(url, "/users") {
		t.Errorf("after signing in at %s, want back at /users", url)
	}
	if !get(t, ctx, "labels", chromedp.Evaluate[bool](allLabelled)) {
		t.Error("the search form has a control without a label")
	}

	// Search the user (the search field has the focus), read the timeline.
	run(t, ctx, "search",
		chromedp.KeyEvent(w.user+kb.Enter),
		chromedp.WaitVisible(css(`#events`)),
	)
	verdict := get(t, ctx, "verdict", chromedp.Text(css(`#verdict`)))
	events := get(t, ctx, "events", chromedp.Text(css(`#events tbody`)))
	koodrive := get(t, ctx, "koodrive", chromedp.Text(css(`#koodrive`)))
	for _, want := range []string{"hired", "applied", "changed", "deadlettered", "department 999999 does not exist", "disabled", "held", "w-1", "POST /users"} {
		if !strings.Contains(events, want) {
			t.Errorf("timeline lacks %q:\n%s", want, events)
		}
	}
	if !strings.Contains(koodrive, "dept "+w.dept+", role 1, status 0") || !strings.Contains(verdict, "in sync") {
		t.Errorf("KooDrive %q, verdict %q", koodrive, verdict)
	}
	screenshot(t, ctx, "console-user.png")

	// Release the held disable: the button, then the confirmation, both
	// by keyboard.
	seq := strconv.FormatUint(w.heldSeq, 10)
	run(t, ctx, "release",
		chromedp.Navigate(base+"/guard"),
		chromedp.WaitVisible(css(`#holds`)),
		chromedp.Focus(css(`button[aria-label="Release #`+seq+`"]`)),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(css(`.question`)),
	)
	if q, want := get(t, ctx, "question", chromedp.Text(css(`.question`))), "Release held event #"+seq+"?"; q != want {
		t.Errorf("confirmation asks %q, want %q", q, want)
	}
	if u, _ := w.Sim.User(w.user); u.User.Status != 0 {
		t.Fatal("the user was disabled before the release was confirmed")
	}
	screenshot(t, ctx, "console-guard-confirm.png")
	run(t, ctx, "confirm release",
		// The confirm button has the focus.
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(css(`#result`)),
	)
	if r := get(t, ctx, "result", chromedp.Text(css(`#result`))); r != "Released #"+seq {
		t.Errorf("release result %q", r)
	}
	w.WaitFunc("the released disable applied in KooDrive", 15*time.Second, func() bool {
		u, _ := w.Sim.User(w.user)
		return u.User.Status == 1
	})

	// Replay the dead letter once KooDrive has the user.
	if _, err := w.Sim.PutUserDirect(kdsim.User{UserID: late, DeptID: w.dept, Role: 1}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "dead letters",
		chromedp.Navigate(base+"/dlq"),
		chromedp.WaitVisible(css(`#letters`)),
	)
	if letters := get(t, ctx, "letters", chromedp.Text(css(`#letters tbody`))); !strings.Contains(letters, late) || !strings.Contains(letters, "not_found") {
		t.Fatalf("dead letters:\n%s", letters)
	}
	run(t, ctx, "replay",
		chromedp.Click(fmt.Sprintf(`//tr[td/a[text()=%q]]/td[1]/a`, late)),
		chromedp.WaitVisible(css(`#force`)),
		chromedp.Click(`//button[text()="Replay"]`),
		chromedp.WaitVisible(css(`.question`)),
	)
	question := get(t, ctx, "question", chromedp.Text(css(`.question`)))
	run(t, ctx, "confirm replay",
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(css(`#result`)),
	)
	result := get(t, ctx, "result", chromedp.Text(css(`#result`)))
	if !strings.HasPrefix(question, "Replay dead letter #") || !strings.HasPrefix(result, "Replayed as IDENTITY #") {
		t.Errorf("replay: asked %q, result %q", question, result)
	}
	w.WaitFunc("the replayed change applied in KooDrive", 15*time.Second, func() bool {
		u, _ := w.Sim.User(late)
		return u.User.Role == 5
	})

	// The audit log shows both actions, by alice.
	run(t, ctx, "audit", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(css(`#audit`)))
	audit := get(t, ctx, "audit", chromedp.Text(css(`#audit tbody`)))
	for _, want := range []string{"alice", "release", "replay", "login"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
	screenshot(t, ctx, "console-audit.png")
	run(t, ctx, "overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(css(`#h-attention`)))
	if o := get(t, ctx, "overview", chromedp.Text(css(`main`))); !strings.Contains(o, "applied") || !strings.Contains(o, "Circuit breaker\tclosed") && !strings.Contains(o, "Circuit breaker\nclosed") {
		t.Errorf("overview:\n%q", o)
	}
	screenshot(t, ctx, "console-overview.png")

	// Signing out by keyboard ends the session: the timeline sends the
	// browser to the login page again.
	run(t, ctx, "sign out",
		chromedp.Focus(css(`form.signout button`)),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(css(`#token`)),
		chromedp.Navigate(base+"/users/"+w.user),
		chromedp.WaitVisible(css(`#token`)),
	)
	if url := get(t, ctx, "location", chromedp.Location()); !strings.Contains(url, "/login?next=") {
		t.Errorf("after signing out the timeline is at %s", url)
	}
}

// TestBrowserOIDC signs in through the provider in Chromium: the provider
// (127.0.0.1) is another site than the console (localhost), so the
// browser comes back with a cross-site navigation, and the console's
// SameSite=Strict session cookie must still be there on the next page.
func TestBrowserOIDC(t *testing.T) {
	ctx := browse(t)
	p := newIDP(t)
	w := newWorld(t, nil)
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	base := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	c, err := console.New(t.Context(), console.Options{Token: token, JetStream: w.JS, KooDrive: w.KD,
		OIDC: &console.OIDC{Issuer: p.srv.URL, ClientID: clientID, ClientSecret: "client-secret-0123456789",
			RedirectURL: base + "/login/callback", Allowed: []string{"ops@example.com"}, Name: "Example IdP", HTTPClient: p.srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = c.Handler()
	p.as("ops@example.com", true)
	p.mu.Lock()
	p.consent = true
	p.mu.Unlock()

	type css = chromedp.CSS
	run(t, ctx, "sign in through the provider",
		chromedp.Navigate(base+"/guard"),
		chromedp.WaitVisible(css(`a.button`)),
		chromedp.Focus(css(`a.button`)),
		chromedp.KeyEvent(kb.Enter),
		// At the provider's site: the way back is a navigation it starts.
		chromedp.WaitVisible(css(`#consent`)),
		chromedp.Click(css(`#consent`)),
		chromedp.WaitVisible(css(`#holds`)),
	)
	if who := get(t, ctx, "who", chromedp.Text(css(`.who`))); who != "Signed in as ops@example.com" {
		t.Errorf("signed in as %q", who)
	}
	if url := get(t, ctx, "location", chromedp.Location()); url != base+"/guard" {
		t.Errorf("at %s, want %s/guard", url, base)
	}
}
