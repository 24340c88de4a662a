// Package service wires kdsync's process together: the NATS connection,
// the KooDrive client, the handlers, the consumer, metrics and the HTTP
// endpoints. cmd/kdsync parses configuration into Options; tests and the
// demo embed the service in-process through Run.
package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/ingress"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/metrics"
	"github.com/kdsync/kdsync/reconcile"
	"github.com/kdsync/kdsync/redact"
	"github.com/kdsync/kdsync/scim"
	"github.com/kdsync/kdsync/throttle"
)

// Options is kdsync's whole configuration.
type Options struct {
	NATS     consumer.ConnectOptions
	Consumer consumer.Options // Conn, Handler, Logger and Observer are set by Run

	// KooDrive.
	APIBaseURL string
	AppID      string
	AppSecret  kdapi.Secret
	APIUserID  string
	APIToken   kdapi.Secret
	APITimeout time.Duration
	HardDelete bool
	// DefaultDeptID is the department of a hire that names none.
	DefaultDeptID *int64
	// Shadow writes nothing to KooDrive: outcomes carry the planned calls.
	Shadow bool
	// ConcurrencyMin is the floor of the adaptive number of KooDrive
	// calls in flight, whose ceiling is Consumer.Concurrency; 0: 4.
	ConcurrencyMin int
	// APIRate is KooDrive's quota in requests per second, when known; 0:
	// none (one is learnt from its 429s). With partitions each instance
	// keeps to the share of the partitions it holds.
	APIRate float64
	// Reconcile, when its Interval > 0, compares KooDrive with the desired
	// state on a timer and exports the drift (kdsync_drift_users).
	Reconcile   ReconcileOptions
	Language    string
	ExistsCodes []string // nil: the client's defaults
	NotFound    []string

	// HTTPAddr serves /metrics, /healthz and /readyz; empty: none.
	HTTPAddr string
	// HTTPListener, when set, is used instead of listening on HTTPAddr.
	HTTPListener net.Listener
	// Pprof serves net/http/pprof under /debug/pprof/ on the HTTP address.
	Pprof bool
	// Ingress, when its Addr or Listener is set, serves the webhook
	// ingress (POST /events) on its own listener.
	Ingress IngressOptions
	// Console, when its Addr or Listener is set, serves the web console.
	Console ConsoleOptions

	Build metrics.BuildInfo

	// Injected dependencies.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Conn, when set, is used instead of dialling NATS; the caller owns it.
	Conn *nats.Conn
}

// IngressOptions configure the webhook ingress inside kdsync run. It
// publishes on run's NATS connection, registers its metrics with run's
// registerer (served on run's /metrics) and checks events with the
// consumer's decoder (Options.Consumer.Decoder), so that the ingress and
// the consumer accept exactly the same events. Run's /readyz does not
// depend on it.
type IngressOptions struct {
	// Addr is the address of POST /events; empty (and no Listener): no
	// ingress.
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// TLSCert and TLSKey, both set, serve HTTPS; empty: plain HTTP.
	TLSCert, TLSKey string
	// Options configure the ingress. Conn, Registerer, Logger and Decoder
	// are set by Run.
	Options ingress.Options
	// SCIM, when set, serves SCIM 2.0 under /scim/v2 on the ingress's
	// listener. Conn, Logger, Replicas, SubjectPrefix, DLQPrefix and
	// OutcomePrefix are set by Run (the consumer's and the ingress's).
	SCIM *scim.Options
}

func (o *IngressOptions) enabled() bool { return o.Addr != "" || o.Listener != nil }

// ReconcileOptions configure periodic reconciliation in kdsync run.
type ReconcileOptions struct {
	Interval time.Duration // 0: off
	// Source is an HRIS export (CSV or JSON Lines), read afresh each pass;
	// empty: kdsync's own records of what it applied.
	Source   string
	Complete bool
	// Apply publishes repair events; off, passes only report and export.
	Apply       bool
	Rate        float64 // KooDrive requests per second; default 5
	MaxRepairs  int
	MaxDisables int
}

// Validate reports every configuration problem at once.
func (o *Options) Validate() error {
	var errs []error
	if o.APIBaseURL == "" {
		errs = append(errs, errors.New("the KooDrive endpoint is required (KDSYNC_API_BASE_URL, e.g. https://intl.myhuaweicloud-koodrive.com)"))
	}
	app := o.AppID != "" || o.AppSecret != "" || o.APIUserID != ""
	switch {
	case app && o.APIToken != "":
		errs = append(errs, errors.New("choose one authentication: app (KDSYNC_APP_ID, KDSYNC_APP_SECRET, KDSYNC_API_USER_ID) or a token (KDSYNC_API_TOKEN)"))
	case app && (o.AppID == "" || o.AppSecret == "" || o.APIUserID == ""):
		errs = append(errs, errors.New("app authentication needs all of KDSYNC_APP_ID, KDSYNC_APP_SECRET and KDSYNC_API_USER_ID"))
	case !app && o.APIToken == "":
		errs = append(errs, errors.New("authentication is required: KDSYNC_APP_ID + KDSYNC_APP_SECRET + KDSYNC_API_USER_ID, or KDSYNC_API_TOKEN"))
	}
	if o.DefaultDeptID != nil && *o.DefaultDeptID <= 0 {
		errs = append(errs, fmt.Errorf("default-dept-id %d: want a positive integer", *o.DefaultDeptID))
	}
	if o.APITimeout < 0 {
		errs = append(errs, errors.New("the KooDrive timeout must not be negative"))
	}
	if _, err := o.client(); err != nil && o.APIBaseURL != "" {
		errs = append(errs, err)
	}
	if err := o.Consumer.Check(); err != nil {
		errs = append(errs, err)
	}
	if err := o.NATS.Check(); err != nil {
		errs = append(errs, err)
	}
	if err := o.throttleOptions().Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Ingress.SCIM != nil && !o.Ingress.enabled() {
		errs = append(errs, errors.New("scim: KDSYNC_SCIM_TOKEN needs the ingress's address (KDSYNC_INGRESS_ADDR), which serves /scim/v2"))
	}
	errs = append(errs, o.Console.validate())
	if o.Ingress.enabled() {
		errs = append(errs, o.Ingress.validate())
	}
	if o.Consumer.Decoder.MaxSize != 0 {
		errs = append(errs, checkEventSize(o.Consumer.Decoder.MaxSize))
	}
	errs = append(errs, CheckAddr("http-addr", o.HTTPAddr), CheckAddr("ingress-addr", o.Ingress.Addr),
		CheckAddr("console-addr", o.Console.Addr))
	return errors.Join(errs...)
}

// validate reports every problem of an ingress that is on.
func (o *IngressOptions) validate() error {
	errs := []error{o.Options.Validate()}
	if o.SCIM != nil {
		errs = append(errs, o.SCIM.Validate())
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		errs = append(errs, errors.New("ingress: TLS needs both a certificate and a key (-ingress-tls-cert and -ingress-tls-key)"))
	}
	return errors.Join(errs...)
}

func (o *Options) client(extra ...kdapi.Option) (*kdapi.Client, error) {
	c := kdapi.Config{
		BaseURL: o.APIBaseURL, AppID: o.AppID, AppSecret: o.AppSecret, UserID: o.APIUserID, Token: o.APIToken,
		Timeout: o.APITimeout, Language: o.Language, AlreadyExists: o.ExistsCodes, NotFound: o.NotFound,
		MaxConns: max(o.Consumer.Concurrency, 64),
	}
	return kdapi.NewClient(append(c.Options(), extra...)...)
}

// Run runs kdsync until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := o.Build
	log.Info("kdsync starting", "version", b.Version, "revision", b.Revision,
		"nats", redact.URLs(o.NATS.URLs), "stream", o.Consumer.Stream, "consumer", o.Consumer.Consumer,
		"koodrive", redact.URLs(o.APIBaseURL), "auth", o.authMode(), "hard_delete", o.HardDelete)
	reg := o.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, o.Gatherer = r, r
	}
	m, err := metrics.New(reg, o.Build)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	lim, err := throttle.New(o.throttleOptions())
	if err != nil {
		return err
	}
	m.SetThrottle(lim.Stats)
	client, err := o.client(kdapi.WithPacer(lim))
	if err != nil {
		return err
	}

	var shuttingDown atomic.Bool
	var cons atomic.Pointer[consumer.Consumer]
	ready := func() bool {
		c := cons.Load()
		return c != nil && !shuttingDown.Load() && c.Ready()
	}
	var srvErr chan error
	if o.HTTPAddr != "" || o.HTTPListener != nil {
		srv, ln, err := httpServer(o, ready)
		if err != nil {
			return err
		}
		srvErr = make(chan error, 1)
		go func() { srvErr <- srv.Serve(ln) }()
		log.Info("serving metrics and health", "addr", ln.Addr().String())
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	nc := o.Conn
	if nc == nil {
		nc, err = consumer.ConnectRetrying(ctx, o.NATS, log.With("component", "nats"), m.NATSConnected)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for NATS: a clean stop
			}
			return err
		}
		defer func() {
			if err := consumer.Drain(nc, 10*time.Second); err != nil {
				log.Warn("draining the NATS connection", "err", err)
			}
		}()
	} else {
		m.NATSConnected(nc.IsConnected())
	}

	co := o.Consumer
	co.Conn = nc
	if co.LapseGrace == 0 {
		// A lapsed partition lease waits out the calls its holder may
		// still have at KooDrive: at most one call timeout.
		co.LapseGrace = cmp.Or(o.APITimeout, kdapi.DefaultTimeout)
	}
	// Twice the calls in flight allowed: a worker also decodes, reads
	// the user's record and stores the outcome, outside its call.
	co.Workers = func() int { return lim.Limit() + lim.Limit()/4 }
	co.Logger = log.With("component", "consumer")
	co.Observer = m
	h := &handlers.Handler{Users: client, HardDelete: o.HardDelete, Observe: m.ObserveCall, DefaultDeptID: o.DefaultDeptID}
	co.Handler = h
	if o.Shadow {
		co.Handler, co.NoDLQ = handlers.Shadow{Handler: h}, true
		log.Info("shadow mode: KooDrive is read, never written", "consumer", co.Consumer, "outcomes", co.OutcomePrefix)
	}
	c, err := consumer.New(co)
	if err != nil {
		return err
	}
	cons.Store(c)
	m.SetStats(func() metrics.Stats { return metricsStats(c.Stats()) })
	pctx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go m.PollConsumer(pctx, 5*time.Second, c.JetStreamConsumers)
	if o.APIRate > 0 {
		go followShare(pctx, lim, c.Share, time.Second)
	}

	if o.Console.enabled() {
		if err := startConsole(ctx, o, nc, client, log.With("component", "console")); err != nil {
			return err
		}
	}
	if o.Reconcile.Interval > 0 {
		if err := startReconcile(ctx, o, nc, reg, c.Ready, c.Leads, log.With("component", "reconcile")); err != nil {
			return err
		}
	}

	// With the ingress on, the consumer stops only once the ingress has
	// stopped taking webhooks and the publishes under way have been
	// answered.
	consumerCtx := ctx
	var ingErr <-chan error
	if o.Ingress.enabled() {
		if sc := o.Ingress.SCIM; sc != nil {
			sc.Replicas, sc.DLQPrefix, sc.OutcomePrefix = co.Replicas, co.DLQPrefix, co.OutcomePrefix
		}
		ing, err := startIngress(ctx, o.Ingress, co.Decoder, nc, reg, log.With("component", "ingress"), nil)
		if err != nil {
			return err
		}
		cctx, stopConsumer := context.WithCancel(context.WithoutCancel(ctx))
		consumerCtx, ingErr = cctx, ing.errc
		stopped := make(chan struct{})
		defer func() { stopConsumer(); <-stopped }()
		go func() {
			defer close(stopped)
			select {
			case <-ctx.Done():
			case <-cctx.Done():
			}
			ing.stop()
			stopConsumer()
		}()
		go ing.checkStream(cctx, c.Ready)
	}

	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(consumerCtx) }()
	select {
	case err := <-runErr:
		shuttingDown.Store(true)
		return err
	case err := <-srvErr:
		shuttingDown.Store(true)
		return fmt.Errorf("http server: %w", err)
	case err := <-ingErr:
		shuttingDown.Store(true)
		return fmt.Errorf("ingress: %w", err)
	}
}

// ingressServer is the webhook ingress served by Run.
type ingressServer struct {
	h       *ingress.Handler
	srv     *http.Server
	errc    chan error
	timeout time.Duration // bound of a graceful stop
	log     *slog.Logger
	once    sync.Once
}

// startIngress builds the ingress on run's connection and registerer,
// with the consumer's decoder, and serves it on its own listener.
// ops, when not nil, is served on the ingress's address too, under "/".
func startIngress(ctx context.Context, cfg IngressOptions, dec handlers.Decoder, nc *nats.Conn, reg prometheus.Registerer, log *slog.Logger, ops http.Handler) (*ingressServer, error) {
	o := cfg.Options
	o.Conn, o.Registerer, o.Logger, o.Decoder = nc, reg, log, dec
	h, err := ingress.New(o)
	if err != nil {
		return nil, err
	}
	var sc *scim.Server
	if cfg.SCIM != nil {
		so := *cfg.SCIM
		so.Conn, so.Logger = nc, log.With("component", "scim")
		so.SubjectPrefix = cmp.Or(o.SubjectPrefix, ingress.DefaultSubjectPrefix)
		if sc, err = scim.New(ctx, so); err != nil {
			return nil, err
		}
		go sc.Run(ctx)
	}
	ln := cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("ingress: listen on %s: %w", cfg.Addr, err)
		}
	}
	mux := http.NewServeMux()
	h.Register(mux)
	if ops != nil {
		mux.Handle("/", ops)
	}
	if sc != nil {
		sc.Register(mux)
		log.Info("serving SCIM 2.0", "path", scim.Prefix, "mapping", cfg.SCIM.Mapping.Name())
	}
	publishTimeout := cmp.Or(o.PublishTimeout, ingress.DefaultPublishTimeout)
	s := &ingressServer{h: h, srv: ingress.NewServer(mux, publishTimeout), errc: make(chan error, 1),
		timeout: publishTimeout + 5*time.Second, log: log}
	go func() {
		var err error
		if cfg.TLSCert != "" {
			err = s.srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = s.srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	}()
	log.Info("serving the webhook ingress", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "",
		"subjects", cmp.Or(o.SubjectPrefix, ingress.DefaultSubjectPrefix)+".<action>.<userId>")
	return s, nil
}

// stop closes the ingress's listener at once and waits, within the
// timeout, for the requests under way to be answered (their publishes
// acknowledged or timed out). Later calls do nothing.
func (s *ingressServer) stop() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.log.Warn("webhook requests still under way at the end of the shutdown", "err", err)
			_ = s.srv.Close()
		}
		s.log.Info("webhook ingress stopped")
	})
}

// checkStream waits until the consumer is ready (the streams exist), then
// warns when no stream stores the ingress's subjects: every event would be
// answered 503.
func (s *ingressServer) checkStream(ctx context.Context, ready func() bool) {
	for !ready() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := s.h.CheckStream(sctx)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		s.log.Warn("no stream stores the ingress's subjects: events will be answered 503 until one does", "err", err)
	default:
		s.log.Info("webhook events go to stream", "stream", stream)
	}
}

func httpServer(o Options, ready func() bool) (*http.Server, net.Listener, error) {
	ln := o.HTTPListener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", o.HTTPAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("http: listen on %s: %w", o.HTTPAddr, err)
		}
	}
	return &http.Server{Handler: opsHandler(o, ready), ReadHeaderTimeout: 5 * time.Second}, ln, nil
}

// opsHandler serves /metrics (o.Gatherer's), /healthz, /readyz (ready)
// and, with o.Pprof, the Go profiles.
func opsHandler(o Options, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	g := o.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	mux.Handle("GET /metrics", metrics.Handler(g))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: NATS not connected, consumer not bound, or shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(strings.TrimSpace(`
kdsync: /metrics (Prometheus), /healthz (alive), /readyz (NATS connected, consumer bound)`) + "\n"))
	})
	return mux
}

// startReconcile runs reconciliation passes on a timer, with their own
// KooDrive client so that their request rate is bounded apart from the
// pipeline's calls.
// The first pass waits until the consumer is ready (its state bucket
// exists). With several instances only the one leading (holding partition
// 0) reconciles; the others skip their passes.
func startReconcile(ctx context.Context, o Options, nc *nats.Conn, reg prometheus.Registerer, ready, leads func() bool, log *slog.Logger) error {
	r := o.Reconcile
	if r.Rate <= 0 {
		r.Rate = 5
	}
	rm, err := reconcile.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("reconcile metrics: %w", err)
	}
	tr, err := reconcile.NewTransport(nil, r.Rate)
	if err != nil {
		return err
	}
	rc, err := o.client(kdapi.WithHTTPClient(&http.Client{Transport: tr, Timeout: 30 * time.Second}))
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	log.Info("periodic reconciliation on", "every", r.Interval, "source", cmp.Or(r.Source, "kdsync's records"),
		"apply", r.Apply, "rate", r.Rate)
	go func() {
		for !ready() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		_ = reconcile.Every(ctx, r.Interval, func() (reconcile.Options, func(), error) {
			if !leads() {
				return reconcile.Options{}, nil, fmt.Errorf("another instance holds partition 0: %w", reconcile.ErrSkip)
			}
			ro := reconcile.Options{
				KooDrive: rc, JetStream: js, FromState: r.Source == "", Complete: r.Complete,
				Apply: r.Apply, Requests: tr.Requests, Protect: map[string]bool{o.APIUserID: true},
				MaxRepairs: r.MaxRepairs, MaxDisables: r.MaxDisables,
				StateBucket: o.Consumer.StateBucket, Stream: o.Consumer.Stream,
				OutcomeStream: o.Consumer.OutcomeStream, OutcomePrefix: o.Consumer.OutcomePrefix,
			}
			if r.Source == "" {
				return ro, nil, nil
			}
			f, err := os.Open(r.Source)
			if err != nil {
				return ro, nil, err
			}
			if fi, err := f.Stat(); err == nil {
				ro.AsOf = fi.ModTime()
			}
			ro.Source, ro.Format = f, reconcile.FormatOf(r.Source)
			return ro, func() { f.Close() }, nil
		}, rm, log)
	}()
	return nil
}

// metricsStats hands the consumer's lane figures to metrics, which reads
// no consumer type.
func metricsStats(s consumer.Stats) metrics.Stats {
	st := s.State
	return metrics.Stats{
		Lanes: s.Lanes, InFlight: s.InFlight, Oldest: s.Oldest, GuardHeld: s.GuardHeld, Parked: s.Parked,
		State: metrics.StateStats{
			Cached: st.Cached, CachedBytes: st.CachedBytes,
			Hits: st.Hits, Misses: st.Misses, Evictions: st.Evictions,
			Reads: st.Reads, Writes: st.Writes,
		},
	}
}
