// Command kdsim serves the KooDrive simulator (package kdsim) over HTTP, for
// local runs and end-to-end tests of kdsync.
//
// Every flag can also be set from the environment as KDSIM_<FLAG>, with
// dashes as underscores (KDSIM_APP_SECRET, KDSIM_FAIL_RATE, ...). Pass
// secrets that way rather than on the command line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 5 * time.Second

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, os.Args[1:], os.Stderr, nil)
}

// usageError is a bad flag or setting: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// serve parses args and KDSIM_* environment variables, then serves until ctx
// ends. Logs go to logOut as JSON. ready, when not nil, is called with the
// address once the server listens. It returns the exit status.
func serve(ctx context.Context, args []string, logOut io.Writer, ready func(addr string)) int {
	cfg, err := parseConfig(args, logOut)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(logOut, "kdsim: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: cfg.level}))
	cfg.opts.Logger = logger
	if err := listenAndServe(ctx, logger, cfg, ready); err != nil {
		logger.Error("kdsim exited with error", "err", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// config is what the flags say.
type config struct {
	addr  string
	level slog.Level
	opts  kdsim.Options
	// outageAfter and outageFor schedule an outage relative to the start;
	// outageFor zero means none.
	outageAfter, outageFor time.Duration
}

func parseConfig(args []string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("kdsim", flag.ContinueOnError)
	fs.SetOutput(out)
	var (
		addr        = fs.String("addr", "127.0.0.1:8090", "listen address")
		appID       = fs.String("app-id", "", "AppId for app authentication (HMAC-SHA256); needs -app-secret")
		appSecret   = fs.String("app-secret", "", "AppSecret for app authentication; prefer KDSIM_APP_SECRET")
		token       = fs.String("token", "", "bearer token, turns bearer authentication on; prefer KDSIM_TOKEN")
		adminToken  = fs.String("admin-token", "", "bearer token required on /_admin/ (default: none required)")
		dateWindow  = fs.Duration("date-window", kdsim.DefaultDateWindow, "how old an X-Date may be")
		deptFile    = fs.String("departments", "", "JSON file with the departments to serve, a list of {id, parentId, name, ...} (default: a built-in tree)")
		latency     = fs.Duration("latency", 0, "delay added to every API request")
		jitter      = fs.Duration("jitter", 0, "random extra delay, uniform in [0, jitter)")
		failRate    = fs.Float64("fail-rate", 0, "probability (0..1) that a request is answered with an injected error")
		failStat    = fs.String("fail-statuses", "500,503,429", "statuses of injected errors, comma-separated: 429, 500, 503")
		failRates   = fs.String("fail-rates", "", "probability per status of an injected error, e.g. 503=0.05,429=0.01; adds to -fail-rate")
		retryAfter  = fs.Duration("retry-after", time.Second, "Retry-After of injected 429 and 503 answers")
		slowRate    = fs.Float64("slow-rate", 0, "probability that a request is handled but answered only after -slow-for")
		slowFor     = fs.Duration("slow-for", 30*time.Second, "delay of slow answers; choose it above the client's timeout")
		failAfterWr = fs.Float64("fail-after-write-rate", 0, "probability that a write is applied and then answered 500")
		outageAfter = fs.Duration("outage-after", 0, "start an outage (every API request 503) this long after start; needs -outage-for")
		outageFor   = fs.Duration("outage-for", 0, "length of the outage that -outage-after schedules (from start when -outage-after is 0)")
		quota       = fs.Float64("quota", 0, "accept at most this many API requests per second (fixed one-second windows); answer the others 429 with Retry-After (0: no quota; PUT /_admin/quota?rate=N changes it)")
		maxConc     = fs.Int("max-concurrent", 0, "accept at most this many API requests in progress at once; answer the others 429 with Retry-After: 1 (0: no cap; PUT /_admin/quota?concurrency=N)")
		seed        = fs.Uint64("seed", 0, "seed of the fault-injection random source (0: random)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn, error")
	)
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("KDSIM")); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *outageAfter < 0 || *outageFor < 0 {
		return config{}, errors.New("-outage-after and -outage-for must not be negative")
	}
	if *outageAfter > 0 && *outageFor == 0 {
		return config{}, errors.New("-outage-after needs -outage-for")
	}
	cfg := config{addr: *addr, outageAfter: *outageAfter, outageFor: *outageFor}
	if err := cfg.level.UnmarshalText([]byte(*logLevel)); err != nil {
		return config{}, fmt.Errorf("-log-level: %w", err)
	}
	statuses, err := parseStatuses(*failStat)
	if err != nil {
		return config{}, fmt.Errorf("-fail-statuses: %w", err)
	}
	rates, err := parseRates(*failRates)
	if err != nil {
		return config{}, fmt.Errorf("-fail-rates: %w", err)
	}
	cfg.opts = kdsim.Options{
		AppID:      *appID,
		AppSecret:  kdapi.Secret(*appSecret),
		Token:      kdapi.Secret(*token),
		AdminToken: kdapi.Secret(*adminToken),
		DateWindow: *dateWindow,
		Seed:       *seed,
		Faults: kdsim.Faults{
			Latency: *latency, Jitter: *jitter,
			ErrorRate: *failRate, ErrorStatuses: statuses, ErrorRates: rates, RetryAfter: *retryAfter,
			SlowRate: *slowRate, SlowFor: *slowFor, FailAfterWriteRate: *failAfterWr,
			Quota: *quota, MaxConcurrent: *maxConc,
		},
	}
	if *deptFile != "" {
		b, err := os.ReadFile(*deptFile)
		if err != nil {
			return config{}, fmt.Errorf("-departments: %w", err)
		}
		if err := json.Unmarshal(b, &cfg.opts.Departments); err != nil {
			return config{}, fmt.Errorf("-departments %s: %w", *deptFile, err)
		}
		if len(cfg.opts.Departments) == 0 {
			return config{}, fmt.Errorf("-departments %s: no departments", *deptFile)
		}
	}
	return cfg, nil
}

func parseStatuses(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a status", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseRates parses "503=0.05,429=0.01" into rates per status. The
// statuses and ranges are checked by kdsim.Faults.Validate.
func parseRates(s string) (map[int]float64, error) {
	var out map[int]float64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		st, rate, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want status=rate, e.g. 503=0.05", part)
		}
		n, err := strconv.Atoi(strings.TrimSpace(st))
		if err != nil {
			return nil, fmt.Errorf("%q: %q is not a status", part, st)
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(rate), 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %q is not a rate", part, rate)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("status %d given twice", n)
		}
		if out == nil {
			out = make(map[int]float64)
		}
		out[n] = r
	}
	return out, nil
}

// listenAndServe serves the simulator on cfg.addr until ctx ends, then
// shuts down: waits that faults inject are cut short, and requests in flight
// get up to shutdownTimeout to finish.
func listenAndServe(ctx context.Context, logger *slog.Logger, cfg config, ready func(string)) error {
	if cfg.outageFor > 0 {
		// The same outage as POST /_admin/outage, scheduled from now.
		from := time.Now().Add(cfg.outageAfter)
		cfg.opts.Faults.OutageFrom, cfg.opts.Faults.OutageUntil = from, from.Add(cfg.outageFor)
	}
	srv, err := kdsim.New(cfg.opts)
	if err != nil {
		return usageError{err}
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Requests get a context of their own that shutdown cancels, so that a
	// slow answer does not hold the shutdown up.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("kdsim listening",
		"addr", ln.Addr().String(),
		"app_auth", cfg.opts.AppID != "", "app_id", cfg.opts.AppID,
		"bearer_auth", cfg.opts.Token != "",
		"admin_token", cfg.opts.AdminToken != "",
		"seed", srv.Seed(),
		"faults", cfg.opts.Faults)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("kdsim shutting down")
	cancelRequests()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	st := srv.Stats()
	logger.Info("kdsim stopped", "requests", st.Requests, "writes", st.Writes, "auth_failures", st.AuthFailures)
	return nil
}
