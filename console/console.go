// Package console is kdsync's web console for operators: an overview
// (rates, lag, breaker, throttling, guard and dead-letter counts), a
// user's timeline with a "sync now" button (usertrace, provision), dead
// letters with show and replay (dlq), the guard's holds with release and
// reject (guard), and the audit log.
//
// It is server-rendered (html/template from an embed.FS, no JavaScript).
// Sign-in is with a shared token (Options.Token, at least 16 characters):
// a form sets a session cookie (Secure, HttpOnly, SameSite=Strict), and
// scripts send Authorization: Bearer <token>. Sessions live in memory and
// expire (Options.SessionTTL from sign-in, Options.IdleTimeout since the
// last request). With Options.OIDC operators can also sign in through the
// team's OpenID Connect provider. Every state-changing request carries a CSRF token (403
// without: the form's hidden field, or the X-CSRF-Token header, which a
// script reads from GET /api/session), asks for confirmation (a first POST
// renders what will happen; the second, with confirm=yes, does it), and is
// recorded in the audit stream (KDSYNC_AUDIT: who, what, when), which the
// console shows. Options.ReadOnly hides every action and refuses them.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/provision"
	"github.com/kdsync/kdsync/reconcile"
	"github.com/kdsync/kdsync/usertrace"
)

//go:embed templates/*.html static/*
var assets embed.FS

// MinTokenLen is the shortest token accepted.
const MinTokenLen = 16

// Options configure the console.
type Options struct {
	// Token signs operators in; at least MinTokenLen characters.
	Token kdapi.Secret
	// ReadOnly hides and refuses every action.
	ReadOnly bool
	// SessionTTL bounds a session from sign-in (default 8h); IdleTimeout
	// ends one unused for that long (default 30m).
	SessionTTL  time.Duration
	IdleTimeout time.Duration

	// JetStream is required; KooDrive is needed for KooDrive's state and
	// sync (nil: not read, no sync).
	JetStream jetstream.JetStream
	KooDrive  reconcile.Getter
	// Gatherer, when set, is read for the overview's rates, lag, breaker
	// and throttling (kdsync run's registry).
	Gatherer prometheus.Gatherer

	// Where kdsync keeps things; zero values take kdsync's defaults.
	Stream        string // IDENTITY
	SubjectPrefix string // identity.employee
	Consumer      string // kdsync (its lag, when no Gatherer says it)
	OutcomeStream string // KDSYNC_OUTCOMES
	OutcomePrefix string // kdsync.outcome
	DLQStream     string // KDSYNC_DLQ
	DLQPrefix     string // kdsync.dlq
	StateBucket   string // KDSYNC_STATE
	GuardBucket   string // KDSYNC_GUARD
	AuditStream   string // KDSYNC_AUDIT
	AuditPrefix   string // kdsync.audit
	Replicas      int    // of the audit stream; default 1
	// OIDC, when set, adds sign-in through an OpenID Connect provider.
	OIDC *OIDC
	// Protect lists users sync never changes (kdsync's API user).
	Protect map[string]bool
	// SyncWait and ReplayWait bound the wait for an outcome; default 30s
	// and 10s.
	SyncWait, ReplayWait time.Duration

	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Validate reports every problem with o at once.
func (o *Options) Validate() error {
	var errs []error
	if len(o.Token) < MinTokenLen {
		errs = append(errs, fmt.Errorf("console: the token (KDSYNC_CONSOLE_TOKEN) must be at least %d characters", MinTokenLen))
	}
	if o.JetStream == nil {
		errs = append(errs, errors.New("console: a JetStream context is required"))
	}
	if o.SessionTTL < 0 || o.IdleTimeout < 0 {
		errs = append(errs, errors.New("console: session times must not be negative"))
	}
	if o.OIDC != nil {
		errs = append(errs, o.OIDC.Validate())
	}
	return errors.Join(errs...)
}

func (o *Options) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Stream, outcome.DefaultStream)
	def(&o.SubjectPrefix, reconcile.DefaultSubjectPrefix)
	def(&o.Consumer, "kdsync")
	def(&o.OutcomeStream, outcome.DefaultOutcomeStream)
	def(&o.OutcomePrefix, outcome.DefaultOutcomePrefix)
	def(&o.DLQStream, outcome.DefaultDLQStream)
	def(&o.DLQPrefix, outcome.DefaultDLQPrefix)
	def(&o.StateBucket, outcome.DefaultStateBucket)
	def(&o.GuardBucket, outcome.DefaultGuardBucket)
	def(&o.AuditStream, "KDSYNC_AUDIT")
	def(&o.AuditPrefix, "kdsync.audit")
	if o.SessionTTL == 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.SyncWait <= 0 {
		o.SyncWait = 30 * time.Second
	}
	if o.ReplayWait <= 0 {
		o.ReplayWait = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Server is the console.
type Server struct {
	opts     Options
	tokens   kdapi.Tokens
	key      []byte // derives the bearer clients' CSRF token
	sessions *sessions
	audit    *audit
	tracer   *usertrace.Tracer
	dlq      *dlq.Store
	pages    map[string]*template.Template
	rates    rates
	log      *slog.Logger
	mux      *http.ServeMux

	guardMu sync.Mutex
	guardS  *guard.Store

	// failures limits wrong tokens (sign-in forms and bearer headers) to
	// a guessing pace: a burst of 10, then one per 2 seconds.
	failures *rate.Limiter
	oidc     *oidcLogin // nil: token sign-in only
}

// New builds the console and creates the audit stream when missing.
func New(ctx context.Context, o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	s := &Server{opts: o, tokens: kdapi.NewTokens(o.Token), key: []byte(randomToken()),
		sessions: newSessions(o.SessionTTL, o.IdleTimeout, o.Now), log: o.Logger,
		failures: rate.NewLimiter(rate.Every(2*time.Second), 10)}
	s.audit = &audit{js: o.JetStream, stream: o.AuditStream, prefix: o.AuditPrefix}
	if err := s.audit.ensure(ctx, o.Replicas); err != nil {
		return nil, err
	}
	var err error
	s.tracer, err = usertrace.New(usertrace.Options{
		JetStream: o.JetStream, KooDrive: o.KooDrive, Stream: o.Stream, SubjectPrefix: o.SubjectPrefix,
		OutcomeStream: o.OutcomeStream, OutcomePrefix: o.OutcomePrefix, DLQStream: o.DLQStream, DLQPrefix: o.DLQPrefix,
		StateBucket: o.StateBucket, GuardBucket: o.GuardBucket,
	})
	if err != nil {
		return nil, err
	}
	s.dlq, err = dlq.New(o.JetStream, dlq.Options{Stream: o.DLQStream, Prefix: o.DLQPrefix,
		OutcomeStream: o.OutcomeStream, OutcomePrefix: o.OutcomePrefix, FetchWait: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if o.OIDC != nil {
		if s.oidc, err = newOIDC(ctx, o.OIDC); err != nil {
			return nil, err
		}
	}
	s.routes()
	return s, nil
}

// Handler serves the console.
func (s *Server) Handler() http.Handler { return s.secure(s.mux) }

// Serve serves the console on ln until ctx ends, sampling the metrics for
// the overview's rates meanwhile. With certFile and keyFile it serves
// HTTPS.
func (s *Server) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	go s.sample(ctx, 10*time.Second)
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

// sample records the finished counters every interval for the rates.
func (s *Server) sample(ctx context.Context, every time.Duration) {
	if s.opts.Gatherer == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if fams, err := s.opts.Gatherer.Gather(); err == nil {
			var o overview
			o.fromMetrics(fams)
			s.rates.add(s.opts.Now(), o.Finished)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// secure sets the headers every answer carries.
func (s *Server) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// Cookie names.
const (
	sessionCookie = "kdsync_console"
	loginCookie   = "kdsync_console_login"
)

// principal is who a request comes from.
type principal struct {
	who    string
	csrf   string
	bearer bool
	sid    string
}

// authenticate returns the request's principal, nil when it has none. A
// wrong bearer token is nil too.
func (s *Server) authenticate(r *http.Request) *principal {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || s.guessing() || !s.tokenOK(tok) {
			s.failed()
			return nil
		}
		who := "bearer"
		if op := clip(strings.TrimSpace(r.Header.Get("X-Kdsync-Operator")), 64); op != "" {
			who = op + " (bearer)"
		}
		return &principal{who: who, csrf: bearerCSRF(s.key), bearer: true}
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	ss := s.sessions.get(c.Value)
	if ss == nil {
		return nil
	}
	return &principal{who: ss.who, csrf: ss.csrf, sid: ss.id}
}

// guessing reports whether wrong tokens came too fast lately: then no
// token is checked until the pace slows.
func (s *Server) guessing() bool { return s.failures.TokensAt(s.opts.Now()) < 1 }

// failed counts a wrong token.
func (s *Server) failed() { s.failures.AllowN(s.opts.Now(), 1) }

func (s *Server) tokenOK(tok string) bool {
	return s.tokens.Match(tok)
}

type handler func(w http.ResponseWriter, r *http.Request, p *principal)

// page wraps a handler that needs a signed-in principal. A stranger is
// sent to the login page (GET of an HTML page) or answered 401.
func (s *Server) page(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := s.authenticate(r)
		if p == nil {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("Authorization") == "" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="kdsync console"`)
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		h(w, r, p)
	}
}

// action wraps a state-changing handler: signed in, a valid CSRF token,
// not read-only. Refusals are audited.
func (s *Server) action(name string, h handler) http.HandlerFunc {
	return s.page(func(w http.ResponseWriter, r *http.Request, p *principal) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		tok := r.PostForm.Get("csrf")
		if tok == "" {
			tok = r.Header.Get("X-CSRF-Token")
		}
		var why string
		switch {
		case !equal(tok, p.csrf):
			why = "CSRF token missing or wrong"
		case s.opts.ReadOnly:
			why = "the console is read-only"
		}
		if why != "" {
			s.record(r, p, Entry{Action: AuditRefused, Target: name + " " + r.URL.Path, Result: why})
			s.render(w, r, http.StatusForbidden, "error.html", p, "Refused", errorData{Message: "Refused: " + why + "."})
			return
		}
		h(w, r, p)
	})
}

// record writes an audit entry, filling in who, where from and when.
func (s *Server) record(r *http.Request, p *principal, e Entry) {
	e.Time = s.opts.Now().UTC()
	if p != nil {
		e.Who = p.who
	}
	e.Remote = r.RemoteAddr
	if err := s.audit.record(r.Context(), e); err != nil {
		s.log.Error("writing the audit log failed", "entry", e, "err", err)
	}
}

// errGuardOff: the guard's bucket does not exist (no deprovision limit).
var errGuardOff = errors.New("the mass-deprovisioning guard is off (no KDSYNC_DEPROVISION_LIMIT)")

// guard opens the guard's bucket once it exists.
func (s *Server) guard(ctx context.Context) (*guard.Store, error) {
	s.guardMu.Lock()
	defer s.guardMu.Unlock()
	if s.guardS != nil {
		return s.guardS, nil
	}
	g, err := guard.Open(ctx, s.opts.JetStream, s.opts.GuardBucket, 1, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, errGuardOff
	}
	if err != nil {
		return nil, err
	}
	s.guardS = g
	return g, nil
}

// syncOptions are provision's options for a sync from the console.
func (s *Server) syncOptions() provision.Options {
	o := s.opts
	return provision.Options{JetStream: o.JetStream, KooDrive: o.KooDrive, Stream: o.Stream, SubjectPrefix: o.SubjectPrefix,
		OutcomeStream: o.OutcomeStream, OutcomePrefix: o.OutcomePrefix, StateBucket: o.StateBucket,
		Protect: o.Protect, Wait: o.SyncWait, Source: "kdsync/console"}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// staticFS is the stylesheet.
func staticFS() http.Handler {
	sub, _ := fs.Sub(assets, "static")
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}
