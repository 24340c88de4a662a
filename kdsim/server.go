package kdsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kdsync/kdsync/kdapi"
)

// Envelope codes the simulator answers with. KooDrive documents only
// 13000102 and 13000309; the others are the simulator's own (the kdapi client
// knows 13000501 and 13000502 by default).
const (
	CodeOK              = "0"
	CodeAuth            = "13000002"   // 401: authentication failed
	CodeInvalid         = "13000102"   // 400: parameter verification failed; 413 too
	CodeDeptNotFound    = "13000309"   // 400: resource (department) does not exist
	CodeUserExists      = "13000501"   // 400: user already exists
	CodeUserNotFound    = "13000502"   // 400: user does not exist
	CodeInternal        = "13000001"   // 500: injected error
	CodeUnavailable     = "13000003"   // 503: injected error, outage, aborted wait
	CodeTooManyRequests = "13000004"   // 429: injected error
	CodeNoSuchAPI       = "APIGW.0101" // 404: no such API (as Huawei's API gateway says)
)

// DefaultDateWindow is how old an X-Date may be.
const DefaultDateWindow = 15 * time.Minute

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Options configure a Server. At least one authentication mode is required:
// app authentication (AppID and AppSecret) and/or a bearer Token.
type Options struct {
	// AppID and AppSecret turn on app authentication (HMAC-SHA256).
	AppID     string
	AppSecret kdapi.Secret
	// Token turns on bearer authentication: "Authorization: Bearer+<token>"
	// or "Bearer <token>". A "Bearer+" or "Bearer " prefix is ignored.
	Token kdapi.Secret
	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on /_admin/ (except /_admin/healthz).
	AdminToken kdapi.Secret
	// DateWindow is how old an X-Date may be; zero means 15 minutes. An
	// X-Date may be at most one minute in the future.
	DateWindow time.Duration

	// Departments are the departments to serve; empty means
	// DefaultDepartments(). Exactly one must be the root.
	Departments []Department
	// OrgID and TenantID fill the orgId and tenantId fields; empty means
	// DefaultOrgID and DefaultTenantID.
	OrgID    string
	TenantID string

	// Faults is the initial fault configuration.
	Faults Faults
	// Seed seeds the random source of fault injection, so that a run can be
	// reproduced; zero picks a random seed (see Server.Seed).
	Seed uint64

	// Injected dependencies.

	// Logger receives the server's logs; nil discards them. Nothing is
	// logged per request above debug level.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o *Options) validate() error {
	if (o.AppID == "") != (o.AppSecret == "") {
		return errors.New("app authentication needs both AppID and AppSecret")
	}
	if o.AppID == "" && o.Token == "" {
		return errors.New("no authentication configured: set AppID and AppSecret, Token, or both")
	}
	if o.Token != "" && stripBearer(string(o.Token)) == "" {
		return errors.New("token is empty after its Bearer prefix")
	}
	if o.DateWindow < 0 {
		return errors.New("date window must not be negative")
	}
	return nil
}

// Server is the simulated KooDrive. It is an http.Handler and safe for
// concurrent use.
type Server struct {
	log   *slog.Logger
	debug bool
	now   func() time.Time

	appID      string
	secret     string
	token      string
	adminToken string
	window     time.Duration

	depts *depts
	store *store
	stats counters

	quota    quotaState
	faultsMu sync.Mutex // serialises changes of faults
	faults   atomic.Pointer[faultState]
	seed     uint64
	rngMu    sync.Mutex
	rng      *rand.Rand

	scratch sync.Pool // *scratch
	ctJSON  []string  // the Content-Type header value, shared read-only
}

// New returns a Server configured by opts.
func New(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("kdsim: %w", err)
	}
	if err := opts.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("kdsim: %w", err)
	}
	if opts.OrgID == "" {
		opts.OrgID = DefaultOrgID
	}
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if len(opts.Departments) == 0 {
		opts.Departments = DefaultDepartments()
	}
	d, err := newDepts(opts.Departments, opts.OrgID, opts.TenantID)
	if err != nil {
		return nil, fmt.Errorf("kdsim: departments: %w", err)
	}
	s := &Server{
		log:        opts.Logger,
		now:        opts.Now,
		appID:      opts.AppID,
		secret:     opts.AppSecret.Reveal(),
		token:      stripBearer(opts.Token.Reveal()),
		adminToken: opts.AdminToken.Reveal(),
		window:     opts.DateWindow,
		depts:      d,
		store:      newStore(d, opts.OrgID),
		seed:       opts.Seed,
		ctJSON:     []string{"application/json;charset=UTF-8"},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.debug = s.log.Enabled(context.Background(), slog.LevelDebug)
	if s.now == nil {
		s.now = time.Now
	}
	if s.window == 0 {
		s.window = DefaultDateWindow
	}
	s.quota.start = s.now()
	if s.seed == 0 {
		s.seed = rand.Uint64() | 1
	}
	s.rng = rand.New(rand.NewPCG(s.seed, s.seed^0x9e3779b97f4a7c15))
	s.faults.Store(newFaultState(opts.Faults))
	s.scratch.New = func() any { return &scratch{out: make([]byte, 0, 1024)} }
	return s, nil
}

// Seed returns the seed of the fault-injection random source.
func (s *Server) Seed() uint64 { return s.seed }

// scratch holds one request's buffers.
type scratch struct {
	body bytes.Buffer
	out  []byte
}

func (s *Server) getScratch() *scratch { return s.scratch.Get().(*scratch) }

func (s *Server) putScratch(sc *scratch) {
	if sc.body.Cap() > 64<<10 || cap(sc.out) > 256<<10 {
		return // let an outsized buffer go
	}
	sc.body.Reset()
	sc.out = sc.out[:0]
	s.scratch.Put(sc)
}

// ServeHTTP serves the API under /koodrive/ose/v1 and the admin API under
// /_admin/. Anything else is answered 404 with an envelope.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/_admin/") {
		s.serveAdmin(w, r)
		return
	}
	rest, ok := strings.CutPrefix(p, kdapi.APIPath)
	if !ok || rest != "" && rest[0] != '/' {
		sc := s.getScratch()
		defer s.putScratch(sc)
		s.write(w, http.StatusNotFound, nil, appendError(sc.out, CodeNoSuchAPI, "the API does not exist: "+r.Method+" "+p))
		return
	}
	s.serveAPI(w, r, rest)
}

// call is one API request on its way through a handler.
type call struct {
	r       *http.Request
	body    []byte
	param   string    // the path parameter
	after   faultKind // fault injected after a write is applied
	status  int
	out     []byte
	applied bool // a write was applied to the store
}

func (c *call) fail(status int, code, msg string) {
	c.status = status
	c.out = appendError(c.out[:0], code, msg)
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, rest string) {
	o, param := route(r.Method, rest)
	s.stats.byMethod[methodOf(r.Method)].Add(1)
	s.stats.byOp[o].Add(1)

	sc := s.getScratch()
	defer s.putScratch(sc)
	c := call{r: r, param: param, status: http.StatusOK, out: sc.out}
	defer func() { sc.out = c.out[:0] }()

	if r.Body != nil && r.Body != http.NoBody {
		n, err := sc.body.ReadFrom(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			c.fail(http.StatusBadRequest, CodeInvalid, "parameter verification failed: body could not be read")
			s.write(w, c.status, nil, c.out)
			return
		}
		if n > maxBody {
			c.fail(http.StatusRequestEntityTooLarge, CodeInvalid, "parameter verification failed: body larger than 1 MiB")
			s.write(w, c.status, nil, c.out)
			return
		}
		c.body = sc.body.Bytes()
	}

	if msg := s.authenticate(r, c.body); msg != "" {
		s.stats.authFailures.Add(1)
		if s.debug {
			s.log.Debug("authentication failed", "method", r.Method, "path", r.URL.Path, "reason", msg)
		}
		c.fail(http.StatusUnauthorized, CodeAuth, "authentication failed: "+msg)
		s.write(w, c.status, nil, c.out)
		return
	}
	if o == opUnknown {
		c.fail(http.StatusNotFound, CodeNoSuchAPI, "the API does not exist: "+r.Method+" "+r.URL.Path)
		s.write(w, c.status, nil, c.out)
		return
	}

	fs := s.faults.Load()
	var d decision
	if fs.active {
		if left := fs.outageLeft(s.now()); left > 0 {
			s.stats.faults[fOutage].Add(1)
			c.fail(http.StatusServiceUnavailable, CodeUnavailable, "service unavailable (outage)")
			s.write(w, c.status, []string{strconv.FormatInt(ceilSeconds(left), 10)}, c.out)
			return
		}
		if fs.f.Quota > 0 || fs.f.MaxConcurrent > 0 {
			ok, retryAfter := s.quota.admit(s.now(), fs.f.Quota, fs.f.MaxConcurrent)
			if !ok {
				s.stats.faults[fQuota].Add(1)
				if fs.f.Latency > 0 && !sleep(r.Context(), fs.f.Latency) {
					return
				}
				c.fail(http.StatusTooManyRequests, CodeTooManyRequests, "too many requests (quota)")
				s.write(w, c.status, []string{strconv.FormatInt(retryAfter, 10)}, c.out)
				return
			}
			defer s.quota.release()
		}
		d = s.decide(fs, o.isWrite())
		if d.delay > 0 {
			s.stats.faults[fLatency].Add(1)
			if !sleep(r.Context(), d.delay) {
				c.fail(http.StatusServiceUnavailable, CodeUnavailable, "request aborted")
				s.write(w, c.status, nil, c.out)
				return
			}
		}
		if d.errStatus != 0 {
			s.stats.faults[errorFault(d.errStatus)].Add(1)
			var retryAfter []string
			switch d.errStatus {
			case http.StatusTooManyRequests:
				c.fail(d.errStatus, CodeTooManyRequests, "too many requests (injected)")
				retryAfter = fs.retryAfter
			case http.StatusServiceUnavailable:
				c.fail(d.errStatus, CodeUnavailable, "service unavailable (injected)")
				retryAfter = fs.retryAfter
			default:
				c.fail(d.errStatus, CodeInternal, "internal server error (injected)")
			}
			s.write(w, c.status, retryAfter, c.out)
			return
		}
		c.after = d.after
	}

	s.handle(o, &c)

	switch {
	case c.after == faultFailAfterWrite && c.applied:
		s.stats.faults[fFailAfterWrite].Add(1)
		c.fail(http.StatusInternalServerError, CodeInternal, "internal server error (injected)")
	case c.after == faultSlow:
		s.stats.faults[fSlow].Add(1)
		if !sleep(r.Context(), fs.f.SlowFor) {
			s.stats.faults[fSlowAborted].Add(1)
			c.fail(http.StatusServiceUnavailable, CodeUnavailable, "request aborted")
		}
	}
	s.write(w, c.status, nil, c.out)
}

// write sends an answer with a JSON body.
func (s *Server) write(w http.ResponseWriter, status int, retryAfter []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = s.ctJSON
	if retryAfter != nil {
		h["Retry-After"] = retryAfter
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// route maps a method and a path below /koodrive/ose/v1 to an operation and
// its path parameter.
func route(method, rest string) (op, string) {
	switch {
	case rest == "/users":
		if method == http.MethodPost {
			return opCreateUser, ""
		}
	case rest == "/users/count":
		if method == http.MethodGet {
			return opCountUsers, ""
		}
	case strings.HasPrefix(rest, "/users/"):
		id := rest[len("/users/"):]
		if !validParam(id) {
			break
		}
		switch method {
		case http.MethodGet:
			return opGetUser, id
		case http.MethodPut:
			return opUpdateUser, id
		case http.MethodDelete:
			return opDeleteUser, id
		}
	case rest == "/userList":
		if method == http.MethodGet {
			return opListUsers, ""
		}
	case rest == "/departmentList":
		if method == http.MethodGet {
			return opListDepartments, ""
		}
	case strings.HasPrefix(rest, "/departments/"):
		id := rest[len("/departments/"):]
		if method == http.MethodGet && validParam(id) {
			return opGetDepartment, id
		}
	}
	return opUnknown, ""
}

// validParam reports whether a path parameter is one clean segment. The
// signature covers the canonical URI, which drops "." and ".." segments and
// empty ones, so only clean paths are routed: a signature for one resource
// then never authorizes a request the router sends to another.
func validParam(p string) bool {
	return p != "" && p != "." && p != ".." && strings.IndexByte(p, '/') < 0
}

func (s *Server) handle(o op, c *call) {
	switch o {
	case opCreateUser:
		s.createUser(c)
	case opUpdateUser:
		s.updateUser(c)
	case opGetUser:
		s.getUser(c)
	case opDeleteUser:
		s.deleteUser(c)
	case opListUsers:
		s.listUsers(c)
	case opCountUsers:
		s.countUsers(c)
	case opListDepartments:
		s.listDepartments(c)
	case opGetDepartment:
		s.getDepartment(c)
	}
}
