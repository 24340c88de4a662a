package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"time"

	"github.com/kdsync/kdsync/demo"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/metrics"
)

// demoConfig is what kdsync demo's flags say.
type demoConfig struct {
	httpAddr, dataDir, logLevel, deprov, scimAddr string
	natsPort, users, perUser                      int
	rate, errRate                                 float64
	loop, quiet                                   bool
	latency, duration                             time.Duration
}

// demoFlags declares kdsync demo's flags, read from KDSYNC_DEMO_<FLAG>
// too (not KDSYNC_<FLAG>: a production environment leaves the demo be).
func demoFlags() (*cmdFlags, *demoConfig) {
	var c demoConfig
	f := newFlags("kdsync demo")
	f.Prefix = demoEnvPrefix
	fs := f.FlagSet
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:9090", "address of /metrics, /healthz and /readyz")
	fs.IntVar(&c.natsPort, "nats-port", 4222, "port of the embedded NATS server (0: any free port)")
	fs.StringVar(&c.dataDir, "data-dir", "", "JetStream store of the embedded server (default: a temporary folder, removed at exit)")
	fs.IntVar(&c.users, "users", 50, "sample users")
	fs.IntVar(&c.perUser, "events-per-user", 5, "events per sample user (a hire, moves, disables and enables, some leavers)")
	fs.Float64Var(&c.rate, "rate", 20, "sample events per second (0: all at once)")
	fs.BoolVar(&c.loop, "loop", true, "start over with new users when the sample is sent, until stopped")
	fs.Float64Var(&c.errRate, "sim-error-rate", 0.02, "share of simulator calls answered 429/500/503")
	fs.DurationVar(&c.latency, "sim-latency", 5*time.Millisecond, "simulator latency")
	fs.BoolVar(&c.quiet, "quiet", false, "do not print outcomes")
	fs.StringVar(&c.logLevel, "log-level", "warn", "kdsync's log level: debug, info, warn or error")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long (0: run until interrupted)")
	fs.StringVar(&c.deprov, "deprovision-limit", "", "mass-deprovisioning guard for the demo, e.g. 5/10m (try kdsync guard status)")
	fs.StringVar(&c.scimAddr, "scim-addr", "127.0.0.1:8081", "address of the ingress with SCIM 2.0 under /scim/v2 (the demo prints curl commands for it; empty: off)")
	return f, &c
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, c := demoFlags()
	f.SetOutput(stderr)
	parseErr := f.Parse(args)
	if errors.Is(parseErr, flag.ErrHelp) {
		return parseErr
	}
	log, logErr := newLogger(stderr, c.logLevel, "text")
	limit, limitErr := guard.ParseLimit(c.deprov)
	if err := errors.Join(parseErr, logErr, limitErr, checkAddr("http-addr", c.httpAddr), checkAddr("scim-addr", c.scimAddr)); err != nil {
		return invalid("kdsync demo", err)
	}
	b := buildInfo()
	return demo.Run(ctx, demo.Options{
		HTTPAddr: c.httpAddr, SCIMAddr: c.scimAddr, NATSPort: c.natsPort, DataDir: c.dataDir,
		Users: c.users, EventsPerUser: c.perUser, Rate: c.rate, Loop: c.loop,
		SimErrorRate: c.errRate, SimLatency: c.latency, Quiet: c.quiet, Duration: c.duration,
		DeprovisionLimit: limit, Stdout: stdout, Logger: log,
		Build: metrics.BuildInfo{Version: b.Version, Revision: b.Revision, GoVersion: b.GoVersion},
	})
}
