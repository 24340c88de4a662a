// Command kdsync keeps KooDrive's users in step with an identity system:
// kdsync run is the service, the other commands are its operators' tools
// (see usage below, or kdsync help).
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
	"strings"
	"syscall"

	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/metrics"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `kdsync keeps KooDrive's users in step with an identity system.

Usage:
  kdsync run [flags]       run the service (NATS JetStream -> KooDrive)
  kdsync publish [flags]   publish one identity event
  kdsync ingest [flags]    webhook ingress: CloudEvents over HTTP into the stream
  kdsync dlq <command>     dead letters: list, show, replay, purge
  kdsync reconcile [flags] compare KooDrive with the desired users; -apply repairs the drift
  kdsync guard <command>   mass-deprovisioning guard: status, release, reject
  kdsync mapping test      what a SCIM mapping file makes of one user
  kdsync user <userId>     one user's events, outcomes, dead letters, holds, KooDrive state, verdict
  kdsync sync <userId>     provision on demand: repair one user through the stream now
  kdsync version           print the version

Run "kdsync <command> -h" for a command's flags. Every flag can be set by
an environment variable: -nats-url is KDSYNC_NATS_URL, and so on (except
the selectors and confirmations of kdsync dlq, guard, reconcile, user
and sync). An unknown KDSYNC_ variable is an error; KDSYNC_DEMO_<FLAG>
are the demo's, accepted and not read.

To try kdsync without any infrastructure (embedded NATS, a KooDrive
simulator, sample events): go run ./cmd/kddemo
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	commands := map[string]command{
		"run": cmdRun, "demo": cmdDemoMoved, "publish": cmdPublish, "ingest": cmdIngest, "dlq": cmdDLQ,
		"reconcile": cmdReconcile, "guard": cmdGuard, "mapping": cmdMapping, "user": cmdUser, "sync": cmdSync,
	}
	cmd, ok := commands[args[0]]
	switch {
	case ok:
	case args[0] == "version" || args[0] == "-version" || args[0] == "--version":
		b := metrics.ReadBuildInfo(version)
		fmt.Fprintf(stdout, "kdsync %s (%s, %s)\n", b.Version, b.Revision, b.GoVersion)
		return 0
	case isHelp(args[0]):
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "kdsync: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "kdsync %s: %v\n", args[0], err)
	if errors.As(err, new(envflag.UsageError)) {
		return 2
	}
	return 1
}

// command is one kdsync command, given its arguments.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// cmdDemoMoved answers the old habit: the demo is its own command, so
// that the daemon links neither it nor the NATS server it embeds.
func cmdDemoMoved(_ context.Context, _ []string, _, stderr io.Writer) error {
	fmt.Fprintln(stderr, "kdsync demo moved to its own command: go run ./cmd/kddemo")
	return errUsage
}

// errUsage marks an error already explained on stderr.
var errUsage = errors.New("usage")

// logFlags declares the service's -log-level and -log-format on fs (kdsync
// run, ingest); the returned function builds the logger once they are
// parsed, writing to w.
func logFlags(fs *flag.FlagSet) func(w io.Writer) (*slog.Logger, error) {
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "json", "json or text")
	return func(w io.Writer) (*slog.Logger, error) { return newLogger(w, *level, *format) }
}

// newLogger builds the process logger: JSON or text to w at level.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// readInput reads the file name, - being standard input (1 MiB at most).
func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	}
	return os.ReadFile(name)
}

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = ""
