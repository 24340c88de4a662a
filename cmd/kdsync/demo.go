package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/kdsync/kdsync/demo"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/metrics"
	"github.com/kdsync/kdsync/service"
)

// demoFlags declares kdsync demo's flags, read from KDSYNC_DEMO_<FLAG>
// too (not KDSYNC_<FLAG>: a production environment leaves the demo be);
// the returned function builds the demo's options once they are parsed,
// its logger writing to stderr.
func demoFlags() (*cmdFlags, func(stderr io.Writer) (demo.Options, error)) {
	var o demo.Options
	f := newFlags("kdsync demo")
	f.Prefix = demoEnvPrefix
	fs := f.FlagSet
	fs.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:9090", "address of /metrics, /healthz and /readyz")
	fs.IntVar(&o.NATSPort, "nats-port", 4222, "port of the embedded NATS server (0: any free port)")
	fs.StringVar(&o.DataDir, "data-dir", "", "JetStream store of the embedded server (default: a temporary folder, removed at exit)")
	fs.IntVar(&o.Users, "users", 50, "sample users")
	fs.IntVar(&o.EventsPerUser, "events-per-user", 5, "events per sample user (a hire, moves, disables and enables, some leavers)")
	fs.Float64Var(&o.Rate, "rate", 20, "sample events per second (0: all at once)")
	fs.BoolVar(&o.Loop, "loop", true, "start over with new users when the sample is sent, until stopped")
	fs.Float64Var(&o.SimErrorRate, "sim-error-rate", 0.02, "share of simulator calls answered 429/500/503")
	fs.DurationVar(&o.SimLatency, "sim-latency", 5*time.Millisecond, "simulator latency")
	fs.BoolVar(&o.Quiet, "quiet", false, "do not print outcomes")
	logLevel := fs.String("log-level", "warn", "kdsync's log level: debug, info, warn or error")
	fs.DurationVar(&o.Duration, "duration", 0, "stop after this long (0: run until interrupted)")
	deprov := fs.String("deprovision-limit", "", "mass-deprovisioning guard for the demo, e.g. 5/10m (try kdsync guard status)")
	fs.StringVar(&o.SCIMAddr, "scim-addr", "127.0.0.1:8081", "address of the ingress with SCIM 2.0 under /scim/v2 (the demo prints curl commands for it; empty: off)")
	return f, func(stderr io.Writer) (demo.Options, error) {
		var logErr, limitErr error
		o.Logger, logErr = newLogger(stderr, *logLevel, "text")
		o.DeprovisionLimit, limitErr = guard.ParseLimit(*deprov)
		o.Build = metrics.ReadBuildInfo(version)
		return o, errors.Join(logErr, limitErr, service.CheckAddr("http-addr", o.HTTPAddr), service.CheckAddr("scim-addr", o.SCIMAddr))
	}
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, options := demoFlags()
	f.SetOutput(stderr)
	o, err := parseConfig(f, args, func() (demo.Options, error) { return options(stderr) })
	if err != nil {
		return err
	}
	o.Stdout = stdout
	return demo.Run(ctx, o)
}
