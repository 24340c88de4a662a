// Package scim is kdsync's SCIM 2.0 service provider (RFC 7643, 7644):
// identity providers such as Microsoft Entra ID and Okta provision users
// and groups into it under /scim/v2, and every write that changes what
// KooDrive should hold publishes the identity events it implies (hired,
// changed, disabled, enabled, deleted) to the identity stream, where the
// consumer applies them like any other event.
//
// What a user becomes in KooDrive (in scope or not, user id, department,
// role, status) is decided by a mapping.Mapping over the SCIM User and the
// display names of its groups.
//
// State lives in a JetStream KV bucket, nothing only in memory: the SCIM
// resources as last written, the userName index, and for each user what
// its published events made KooDrive hold. The KV revision is the ETag
// (If-Match is honoured, 412 on a mismatch). A write is stored together
// with the messages it implies (compare and set on the revision read),
// then they are published and acknowledged, then cleared; only then does
// the client get its answer. Event ids are deterministic (resource id,
// revision written over, index) and Nats-Msg-Id is handlers.EventKey of
// source and id, so a write retried after a crash is neither lost (the
// stored messages are published again on the next access and by Sweep)
// nor doubled. See docs/scim.md.
package scim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/mapping"
	"github.com/kdsync/kdsync/outcome"
)

// Prefix is where the service is mounted.
const Prefix = "/scim/v2"

// Defaults of Options.
const (
	DefaultBucket         = "KDSYNC_SCIM"
	DefaultSource         = "kdsync/scim"
	DefaultSubjectPrefix  = "identity.employee"
	DefaultDLQPrefix      = outcome.DefaultDLQPrefix
	DefaultOutcomePrefix  = outcome.DefaultOutcomePrefix
	DefaultMaxBytes       = 1 << 20
	DefaultMaxResults     = 200
	DefaultTimeout        = 10 * time.Second
	DefaultRetryAfter     = 5 * time.Second
	DefaultSweepInterval  = 10 * time.Minute
	minTokenLen           = 16
	maxWriteAttempts      = 8
	defaultPageSize       = 100
	sweepPendingOlderThan = 30 * time.Second
)

// Options configure a Server. Zero values take the defaults above.
type Options struct {
	// Conn is the NATS connection; required. The caller owns it.
	Conn *nats.Conn
	// Tokens are the bearer tokens accepted (several for rotation), each
	// at least 16 characters.
	Tokens []kdapi.Secret
	// Mapping maps a SCIM User to KooDrive; required.
	Mapping *mapping.Mapping
	// Bucket is the KV bucket of SCIM resources, created when missing
	// with Replicas replicas.
	Bucket   string
	Replicas int
	// SubjectPrefix: events go to <prefix>.<action>.<userId>.
	SubjectPrefix string
	// Source is the CloudEvents source of the events published.
	Source string
	// DLQPrefix and OutcomePrefix are the consumer's: a mapping failure is
	// dead-lettered on <DLQPrefix>.mapping.<action> with its outcome.
	DLQPrefix, OutcomePrefix string
	// MaxBytes bounds a request body.
	MaxBytes int64
	// MaxResults bounds a page of a list.
	MaxResults int
	// Timeout bounds one request's KV writes and publishes.
	Timeout time.Duration
	// RetryAfter is what a 503 tells clients to wait.
	RetryAfter time.Duration
	// SweepInterval is how often Run publishes messages a crashed write
	// left stored but unpublished and maps again the users whose mapping
	// failed; negative: only at start.
	SweepInterval time.Duration

	// Injected dependencies.
	Logger *slog.Logger
	Now    func() time.Time
}

func (o *Options) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.Bucket, DefaultBucket)
	def(&o.Source, DefaultSource)
	def(&o.SubjectPrefix, DefaultSubjectPrefix)
	def(&o.DLQPrefix, DefaultDLQPrefix)
	def(&o.OutcomePrefix, DefaultOutcomePrefix)
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxResults == 0 {
		o.MaxResults = DefaultMaxResults
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every problem with the settings at once, defaults
// applied (not the injected dependencies).
func (o Options) Validate() error {
	o.setDefaults()
	var errs []error
	if len(o.Tokens) == 0 {
		errs = append(errs, errors.New("scim: a bearer token is required (KDSYNC_SCIM_TOKEN)"))
	}
	for i, t := range o.Tokens {
		if len(t) < minTokenLen {
			errs = append(errs, fmt.Errorf("scim: bearer token %d is shorter than %d characters", i+1, minTokenLen))
		}
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("scim: replicas %d: want 1 to 5", o.Replicas))
	}
	if o.MaxBytes < 1024 {
		errs = append(errs, fmt.Errorf("scim: MaxBytes %d: want at least 1024", o.MaxBytes))
	}
	if o.MaxResults < 1 {
		errs = append(errs, errors.New("scim: MaxResults must be positive"))
	}
	if o.Timeout < 0 || o.RetryAfter < 0 {
		errs = append(errs, errors.New("scim: timeouts must not be negative"))
	}
	for _, p := range []string{o.SubjectPrefix, o.DLQPrefix, o.OutcomePrefix} {
		if strings.HasSuffix(p, ".") || strings.ContainsAny(p, " *>") {
			errs = append(errs, fmt.Errorf("scim: subject prefix %q: want tokens separated by dots, without wildcards", p))
		}
	}
	return errors.Join(errs...)
}

// Server serves SCIM 2.0 under Prefix. Build it with New; it is safe for
// concurrent use.
type Server struct {
	opts       Options
	st         *store
	tokens     kdapi.Tokens
	log        *slog.Logger
	now        func() time.Time
	retryAfter int
	mux        *http.ServeMux
}

// New checks o, creates or binds the bucket and builds a Server.
func New(ctx context.Context, o Options) (*Server, error) {
	o.setDefaults()
	errs := []error{o.Validate()}
	if o.Conn == nil {
		errs = append(errs, errors.New("scim: Options.Conn is required"))
	}
	if o.Mapping == nil {
		errs = append(errs, errors.New("scim: Options.Mapping is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("scim: jetstream: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: o.Bucket, Description: "kdsync SCIM resources (users, groups, userName index)",
		History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("scim: bucket %s: %w", o.Bucket, err)
	}
	s := &Server{opts: o, st: &store{kv: kv, js: js}, log: o.Logger, now: o.Now,
		retryAfter: max(int((o.RetryAfter+time.Second-1)/time.Second), 1)}
	s.tokens = kdapi.NewTokens(o.Tokens...)
	s.routes()
	return s, nil
}

// Register mounts the service under Prefix on mux.
func (s *Server) Register(mux *http.ServeMux) { mux.Handle(Prefix+"/", s) }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET "+Prefix+"/ServiceProviderConfig", s.serviceProviderConfig)
	m.HandleFunc("GET "+Prefix+"/Schemas", s.schemas)
	m.HandleFunc("GET "+Prefix+"/Schemas/{id}", s.schemas)
	m.HandleFunc("GET "+Prefix+"/ResourceTypes", s.resourceTypes)
	m.HandleFunc("GET "+Prefix+"/ResourceTypes/{id}", s.resourceTypes)
	m.HandleFunc("POST "+Prefix+"/Users", s.createUser)
	m.HandleFunc("GET "+Prefix+"/Users", s.listUsers)
	m.HandleFunc("GET "+Prefix+"/Users/{id}", s.getUser)
	m.HandleFunc("PUT "+Prefix+"/Users/{id}", s.replaceUser)
	m.HandleFunc("PATCH "+Prefix+"/Users/{id}", s.patchUser)
	m.HandleFunc("DELETE "+Prefix+"/Users/{id}", s.deleteUser)
	m.HandleFunc("POST "+Prefix+"/Groups", s.createGroup)
	m.HandleFunc("GET "+Prefix+"/Groups", s.listGroups)
	m.HandleFunc("GET "+Prefix+"/Groups/{id}", s.getGroup)
	m.HandleFunc("PUT "+Prefix+"/Groups/{id}", s.replaceGroup)
	m.HandleFunc("PATCH "+Prefix+"/Groups/{id}", s.patchGroup)
	m.HandleFunc("DELETE "+Prefix+"/Groups/{id}", s.deleteGroup)
	m.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, errf(http.StatusNotFound, scimTypeNone, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.mux = m
}

// ServeHTTP authenticates the request and serves it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kdsync SCIM"`)
		s.writeError(w, errf(http.StatusUnauthorized, scimTypeNone, "a valid bearer token is required"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.Timeout)
	defer cancel()
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

func (s *Server) authorized(h string) bool {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return false
	}
	return s.tokens.Match(strings.TrimSpace(h[len(scheme):]))
}

// ready refuses a write while NATS is disconnected: nothing is half done.
func (s *Server) ready() error {
	if !s.opts.Conn.IsConnected() {
		return unavailable("scim", nats.ErrDisconnected)
	}
	return nil
}

// readBody reads a JSON object body, up to MaxBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt := strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
		if mt != mediaType && mt != "application/json" {
			return nil, errf(http.StatusUnsupportedMediaType, invalidSyntax, "Content-Type %q: send application/scim+json", clipText(ct))
		}
	}
	if r.ContentLength > s.opts.MaxBytes {
		return nil, errf(http.StatusRequestEntityTooLarge, scimTypeNone, "the body is %d bytes, the limit is %d", r.ContentLength, s.opts.MaxBytes)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errf(http.StatusRequestEntityTooLarge, scimTypeNone, "the body is over the limit of %d bytes", s.opts.MaxBytes)
		}
		return nil, badRequest(invalidSyntax, "unreadable body: %v", err)
	}
	m, err := decode(b)
	if err != nil {
		return nil, badRequest(invalidSyntax, "the body is not a JSON object: %v", err)
	}
	return m, nil
}

// write answers a resource.
func (s *Server) write(w http.ResponseWriter, status int, rev uint64, v any) {
	w.Header().Set("Content-Type", mediaType)
	if rev != 0 {
		w.Header().Set("ETag", etag(rev))
	}
	w.WriteHeader(status)
	enc := newEncoder(w)
	_ = enc.Encode(v)
}

func etag(rev uint64) string { return `W/"` + strconv.FormatUint(rev, 10) + `"` }

// etagMatches reports whether an If-Match value names revision rev.
func etagMatches(h string, rev uint64) bool {
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return true
		}
		t = strings.Trim(strings.TrimPrefix(t, "W/"), `"`)
		if t == strconv.FormatUint(rev, 10) {
			return true
		}
	}
	return false
}

func preconditionFailed(rev uint64) *Error {
	return errf(http.StatusPreconditionFailed, scimTypeNone, "If-Match does not name the current version %s", etag(rev))
}

// location is the URL of a resource, from the request's host.
func location(r *http.Request, kind, id string) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host + Prefix + "/" + kind + "/" + id
}

// Run sweeps at once and then every SweepInterval until ctx ends.
func (s *Server) Run(ctx context.Context) {
	for {
		if n, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scim: sweep", "err", err)
		} else if n > 0 {
			s.log.Info("scim: sweep finished writes left pending", "resources", n)
		}
		if s.opts.SweepInterval < 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.SweepInterval):
		}
	}
}

// Sweep finds resources whose write stored messages that were never
// acknowledged (a crash, NATS lost between the KV write and the publish),
// users whose mapping failed (the mapping may be fixed since) and groups
// whose members were not all updated, and finishes them. It returns how
// many it touched.
func (s *Server) Sweep(ctx context.Context) (int, error) {
	w, err := s.st.kv.WatchFiltered(ctx, []string{userPrefix + "*", groupPrefix + "*"}, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, kvErr("sweep", err)
	}
	defer func() { _ = w.Stop() }()
	var users, groups []string
	cutoff := s.now().Add(-sweepPendingOlderThan)
	for e := range w.Updates() {
		if e == nil {
			break
		}
		key := e.Key()
		switch {
		case strings.HasPrefix(key, userPrefix):
			var rec userRecord
			if decodeRecord(e.Value(), &rec) && (len(rec.Pending) > 0 && e.Created().Before(cutoff) || rec.MappingError != "" || rec.Deleted) {
				users = append(users, strings.TrimPrefix(key, userPrefix))
			}
		case strings.HasPrefix(key, groupPrefix):
			var rec groupRecord
			if decodeRecord(e.Value(), &rec) && (len(rec.Sync) > 0 && e.Created().Before(cutoff) || rec.Deleted) {
				groups = append(groups, strings.TrimPrefix(key, groupPrefix))
			}
		}
	}
	n := 0
	for _, id := range groups {
		if _, _, err := s.writeGroup(ctx, id, false, "", func(*groupRecord) *Error { return nil }); err != nil && !isNotFound(err) {
			return n, err
		}
		n++
	}
	for _, id := range users {
		if _, _, err := s.writeUser(ctx, id, false, "", func(*userRecord) *Error { return nil }); err != nil && !isNotFound(err) {
			return n, err
		}
		n++
	}
	return n, nil
}

func isNotFound(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}
