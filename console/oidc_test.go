package console_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kdsync/kdsync/console"
)

// idp is a minimal OpenID Connect provider: discovery, JWKS, an
// authorization endpoint that signs in whoever it is told to at once, and
// a token endpoint that checks the code and the PKCE verifier.
type idp struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey

	mu       sync.Mutex
	email    string
	verified bool
	codes    map[string]grant
	// tamperNonce makes the ID token carry another nonce.
	tamperNonce bool
	// consent: the authorization endpoint shows a page with a link back
	// (the operator acts on the provider's site, as at a real provider)
	// instead of redirecting at once.
	consent bool
}

type grant struct {
	nonce, challenge, redirect string
}

const clientID = "kdsync-console"

func newIDP(t *testing.T) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{t: t, key: key, codes: map[string]grant{}, verified: true}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		u := p.srv.URL
		writeJSONTo(w, map[string]any{"issuer": u, "authorization_endpoint": u + "/auth", "token_endpoint": u + "/token",
			"jwks_uri": u + "/jwks", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSONTo(w, map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	})
	mux.HandleFunc("GET /auth", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != clientID || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := "code-" + b64([]byte(q.Get("state")))[:12]
		p.mu.Lock()
		p.codes[code] = grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		consent := p.consent
		p.mu.Unlock()
		back := q.Get("redirect_uri") + "?code=" + code + "&state=" + url.QueryEscape(q.Get("state"))
		if consent {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><title>Example IdP</title><a id="consent" href="%s">Continue to kdsync</a>`, html.EscapeString(back))
			return
		}
		http.Redirect(w, r, back, http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		g, ok := p.codes[r.PostForm.Get("code")]
		delete(p.codes, r.PostForm.Get("code"))
		email, verified, tamper := p.email, p.verified, p.tamperNonce
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || b64(sum[:]) != g.challenge || r.PostForm.Get("redirect_uri") != g.redirect {
			w.WriteHeader(http.StatusBadRequest)
			writeJSONTo(w, map[string]string{"error": "invalid_grant"})
			return
		}
		nonce := g.nonce
		if tamper {
			nonce = "another"
		}
		now := time.Now()
		idt := p.sign(map[string]any{"iss": p.srv.URL, "aud": clientID, "sub": "u-" + email, "email": email, "email_verified": verified,
			"nonce": nonce, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
		writeJSONTo(w, map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": idt})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func writeJSONTo(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// sign makes an RS256 JWT of claims.
func (p *idp) sign(claims map[string]any) string {
	h, err := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		p.t.Fatal(err)
	}
	in := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA256, sum[:])
	if err != nil {
		p.t.Fatal(err)
	}
	return in + "." + b64(sig)
}

func (p *idp) as(email string, verified bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.email, p.verified = email, verified
}

// TestOIDC: sign-in through the provider (code flow with PKCE, state and
// nonce); only verified addresses on the allowed list get in; each
// attempt is audited.
func TestOIDC(t *testing.T) {
	p := newIDP(t)
	w := newWorld(t, nil)
	// The console with OIDC, on an address known before it is built (the
	// redirect URL names it).
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, err := console.New(t.Context(), console.Options{Token: token, JetStream: w.JS, KooDrive: w.KD, Now: w.clock.now,
		OIDC: &console.OIDC{Issuer: p.srv.URL, ClientID: clientID, ClientSecret: "client-secret-0123456789",
			RedirectURL: srv.URL + "/login/callback", Allowed: []string{"ops@example.com", "@ops.example.org"},
			Name: "Example IdP", HTTPClient: p.srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = c.Handler()
	w.srv = srv

	signIn := func(next string) (*http.Response, string, *http.Client) {
		t.Helper()
		b := w.browser(t)
		b.CheckRedirect = nil // follow: console -> provider -> console
		_, page := do(t, b, "GET", srv.URL+"/login?next="+url.QueryEscape(next), nil, nil)
		if !strings.Contains(page, "Sign in with Example IdP") {
			t.Fatalf("no OIDC button:\n%s", page)
		}
		resp, body := do(t, b, "GET", srv.URL+"/login/oidc?next="+url.QueryEscape(next), nil, nil)
		return resp, body, b
	}

	p.as("ops@example.com", true)
	resp, body, b := signIn("/guard")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `content="0;url=/guard"`) || !strings.Contains(body, "Signed in as ops@example.com") {
		t.Fatalf("sign-in: %s\n%s", resp.Status, body)
	}
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, body = do(t, b, "GET", srv.URL+"/guard", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as ops@example.com") {
		t.Fatalf("after sign-in: %s\n%s", resp.Status, body)
	}

	for name, tc := range map[string]struct {
		email    string
		verified bool
		tamper   bool
		want     string
	}{
		"a domain allowed":        {"eve@ops.example.org", true, false, ""},
		"not allowed":             {"mallory@example.com", true, false, "not among those allowed"},
		"not verified":            {"ops@example.com", false, false, "does not vouch"},
		"another sign-in's nonce": {"ops@example.com", true, true, "nonce"},
	} {
		t.Run(name, func(t *testing.T) {
			p.as(tc.email, tc.verified)
			p.mu.Lock()
			p.tamperNonce = tc.tamper
			p.mu.Unlock()
			resp, body, _ := signIn("/")
			switch {
			case tc.want == "" && (resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as "+tc.email)):
				t.Errorf("%s: %s\n%s", tc.email, resp.Status, body)
			case tc.want != "" && (resp.StatusCode != http.StatusForbidden || !strings.Contains(body, tc.want) || strings.Contains(body, "Signed in as")):
				t.Errorf("%s: %s, want 403 saying %q\n%s", tc.email, resp.Status, tc.want, body)
			}
		})
	}
	p.mu.Lock()
	p.tamperNonce = false
	p.mu.Unlock()

	// A callback the browser did not start (state) is refused.
	b = w.browser(t)
	resp, _ = do(t, b, "GET", srv.URL+"/login/callback?code=x&state=forged", nil, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged callback: %s", resp.Status)
	}

	got := map[string]int{}
	for _, e := range w.audit(t) {
		got[e.Action+" "+e.Who]++
	}
	for _, want := range []string{"login ops@example.com", "login eve@ops.example.org", "login_failed mallory@example.com", "login_failed ops@example.com", "login_failed "} {
		if got[want] == 0 {
			t.Errorf("no audit entry %q in %v", want, got)
		}
	}
}
