// Command kddemo runs kdsync with everything it needs in one process, to
// try it without any infrastructure: an embedded NATS JetStream server,
// the KooDrive simulator and a flow of sample identity events, the
// outcomes printed and kdsync's metrics served (package demo). It is a
// command of its own so that the daemon, cmd/kdsync, links neither the
// demo, nor the NATS server, nor the simulator.
//
// Every flag is also read from KDSYNC_DEMO_<FLAG> (-users:
// KDSYNC_DEMO_USERS), never from the daemon's KDSYNC_<FLAG>, so that a
// production environment does not configure it; a KDSYNC_DEMO_ variable
// that no flag reads is an error. It exits 0 when stopped (SIGINT,
// SIGTERM or -duration), 2 on a bad command line or configuration, 1
// when the demo fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kdsync/kdsync/demo"
	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/metrics"
	"github.com/kdsync/kdsync/service"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// envPrefix starts the name of every variable kddemo reads: -users is
// KDSYNC_DEMO_USERS. The daemon's KDSYNC_ variables are left alone.
const envPrefix = "KDSYNC_DEMO_"

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = ""

// run runs kddemo with args until it is stopped, and returns its exit
// code.
func run(args []string, stdout, stderr io.Writer) int {
	f, options := demoFlags(stdout)
	parseErr := f.Parse(args)
	if errors.Is(parseErr, flag.ErrHelp) {
		return 0
	}
	o, showVersion, err := options(stderr)
	if showVersion {
		b := o.Build
		fmt.Fprintf(stdout, "kddemo %s (%s, %s)\n", b.Version, b.Revision, b.GoVersion)
		return 0
	}
	var rest error
	if f.NArg() > 0 {
		rest = fmt.Errorf("unexpected argument %q: kddemo takes flags only", f.Arg(0))
	}
	if err := errors.Join(parseErr, err, rest); err != nil {
		fmt.Fprintf(stderr, "kddemo: invalid configuration (see kddemo -h):\n%v\n", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	o.Stdout = stdout
	if err := demo.Run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "kddemo: %v\n", err)
		return 1
	}
	return 0
}

// demoFlags declares kddemo's flags, read from KDSYNC_DEMO_<FLAG> too,
// their usage written to usageOut; the returned function builds the
// demo's options once they are parsed, its logger writing to stderr, and
// says whether -version was given.
func demoFlags(usageOut io.Writer) (*envflag.FlagSet, func(stderr io.Writer) (demo.Options, bool, error)) {
	var o demo.Options
	f := envflag.New("kddemo", envPrefix)
	f.Namespace = envPrefix
	f.Known = func() map[string]bool {
		known := map[string]bool{}
		f.VisitAll(func(fl *flag.Flag) { known[f.Variable(fl.Name)] = true })
		return known
	}
	fs := f.FlagSet
	fs.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:9090", "address of /metrics, /healthz and /readyz (port 0: any free port)")
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
	f.CommandLineOnly()
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.SetOutput(usageOut)
	fs.Usage = func() {
		fmt.Fprintf(usageOut, `kddemo runs kdsync with an embedded NATS JetStream server, the KooDrive
simulator and sample identity events in one process.

Usage:
  kddemo [flags]

Every flag but -version is also read from its variable (-users: %sUSERS).

Flags:
`, envPrefix)
		fs.PrintDefaults()
	}
	return f, func(stderr io.Writer) (demo.Options, bool, error) {
		var lv slog.Level
		logErr := lv.UnmarshalText([]byte(*logLevel))
		if logErr != nil {
			logErr = fmt.Errorf("log level %q: want debug, info, warn or error", *logLevel)
		}
		o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
		var limitErr error
		o.DeprovisionLimit, limitErr = guard.ParseLimit(*deprov)
		o.Build = metrics.ReadBuildInfo(version)
		return o, *showVersion, errors.Join(logErr, limitErr,
			service.CheckAddr("http-addr", o.HTTPAddr), service.CheckAddr("scim-addr", o.SCIMAddr))
	}
}
