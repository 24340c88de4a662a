package console

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/kdsync/kdsync/kdapi"
)

// OIDC configures sign-in through the team's OpenID Connect provider
// (authorization code flow with PKCE, a nonce and a state bound to the
// browser). The shared token stays valid beside it (for scripts).
type OIDC struct {
	// Issuer is the provider's issuer URL (discovery at
	// <Issuer>/.well-known/openid-configuration).
	Issuer       string
	ClientID     string
	ClientSecret kdapi.Secret
	// RedirectURL is the console's callback as registered with the
	// provider: https://<console>/login/callback.
	RedirectURL string
	// Allowed lists who may sign in: e-mail addresses, and domains
	// written @example.com. The provider must say the address is
	// verified. Required: an empty list lets nobody in.
	Allowed []string
	// Name is the provider's name on the sign-in button; default
	// "single sign-on".
	Name string
	// HTTPClient talks to the provider; default http.DefaultClient.
	HTTPClient *http.Client
}

// Validate reports what is missing from o.
func (o *OIDC) Validate() error {
	var errs []error
	if o.Issuer == "" || o.ClientID == "" || o.RedirectURL == "" {
		errs = append(errs, errors.New("console: OIDC needs an issuer, a client id and a redirect URL"))
	}
	if !strings.HasSuffix(o.RedirectURL, "/login/callback") {
		errs = append(errs, fmt.Errorf("console: OIDC redirect URL %q must end in /login/callback", o.RedirectURL))
	}
	if len(o.Allowed) == 0 {
		errs = append(errs, errors.New("console: OIDC needs the e-mail addresses or @domains allowed to sign in"))
	}
	return errors.Join(errs...)
}

// allowed reports whether email may sign in.
func (o *OIDC) allowed(email string) bool {
	email = strings.ToLower(email)
	_, domain, ok := strings.Cut(email, "@")
	if !ok {
		return false
	}
	return slices.ContainsFunc(o.Allowed, func(a string) bool {
		a = strings.ToLower(strings.TrimSpace(a))
		return a == email || a == "@"+domain
	})
}

// oidcLogin is the OIDC sign-in, once the provider is discovered.
type oidcLogin struct {
	cfg      *OIDC
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	client   *http.Client
}

func newOIDC(ctx context.Context, o *OIDC) (*oidcLogin, error) {
	client := o.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("console: OIDC provider %s: %w", o.Issuer, err)
	}
	return &oidcLogin{
		cfg: o,
		oauth: oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret.Reveal(), Endpoint: p.Endpoint(),
			RedirectURL: o.RedirectURL, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}},
		verifier: p.Verifier(&oidc.Config{ClientID: o.ClientID}),
		client:   client,
	}, nil
}

// oidcCookie holds the state, nonce, PKCE verifier and next page of one
// sign-in, bound to the browser. SameSite=Lax: the provider sends the
// browser back with a cross-site navigation.
const oidcCookie = "kdsync_console_oidc"

// oidcStart sends the browser to the provider.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		http.NotFound(w, r)
		return
	}
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	next := base64.RawURLEncoding.EncodeToString([]byte(safeNext(r.URL.Query().Get("next"))))
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: strings.Join([]string{state, nonce, verifier, next}, "."),
		Path: "/login", MaxAge: 600, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, s.oidc.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// oidcCallback finishes the sign-in the provider sent the browser back
// from.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		http.NotFound(w, r)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/login", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	refuse := func(who, why string) {
		s.record(r, nil, Entry{Who: who, Action: AuditLoginFailed, Target: "oidc", Result: why})
		s.fail(w, r, nil, http.StatusForbidden, "Sign-in refused: "+why+".")
	}
	c, err := r.Cookie(oidcCookie)
	parts := []string{}
	if err == nil {
		parts = strings.Split(c.Value, ".")
	}
	q := r.URL.Query()
	if len(parts) != 4 || !equal(q.Get("state"), parts[0]) {
		refuse("", "the sign-in did not start here (state)")
		return
	}
	if e := q.Get("error"); e != "" {
		refuse("", "the provider answered "+clip(e, 64))
		return
	}
	ctx := oidc.ClientContext(r.Context(), s.oidc.client)
	tok, err := s.oidc.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(parts[2]))
	if err != nil {
		s.log.Warn("OIDC code exchange failed", "err", err)
		refuse("", "the code could not be exchanged")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := s.oidc.verifier.Verify(ctx, raw)
	if err != nil {
		s.log.Warn("OIDC ID token refused", "err", err)
		refuse("", "the ID token is not valid")
		return
	}
	if !equal(idt.Nonce, parts[1]) {
		refuse("", "the ID token is not this sign-in's (nonce)")
		return
	}
	var claims struct {
		Email    string `json:"email"`
		Verified bool   `json:"email_verified"`
	}
	if err := idt.Claims(&claims); err != nil {
		refuse("", "the ID token's claims are unreadable")
		return
	}
	who := clip(claims.Email, 128)
	switch {
	case claims.Email == "" || !claims.Verified:
		refuse(who, "the provider does not vouch for an e-mail address")
		return
	case !s.oidc.cfg.allowed(claims.Email):
		refuse(who, "not among those allowed to sign in")
		return
	}
	next := "/"
	if b, err := base64.RawURLEncoding.DecodeString(parts[3]); err == nil {
		next = safeNext(string(b))
	}
	s.signIn(w, r, who)
	// The browser came here from the provider, another site: a
	// SameSite=Strict cookie is not sent on the redirects of that
	// navigation. A page of this site moving on is same-site.
	s.render(w, r, http.StatusOK, "continue.html", nil, "Signed in", continueData{Next: next, Who: who})
}

type continueData struct{ Next, Who string }
