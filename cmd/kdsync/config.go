package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kdsync/kdsync/envflag"
)

// envPrefix starts the name of every variable kdsync reads: -nats-url is
// KDSYNC_NATS_URL.
const envPrefix = "KDSYNC_"

// otherVariables are the KDSYNC_ variables that are no command's flag and
// that kdsync accepts in its environment without reading them: the test
// and CI switches, the host ports of docker-compose.yml and deploy/ci.sh.
var otherVariables = []string{
	"KDSYNC_CI",                  // .ci/run: the tests that may skip must run
	"KDSYNC_REQUIRE_DOCKER",      // .ci/run: the container tests must run
	"KDSYNC_CI_SKIP_DOCKER",      // deploy/ci.sh: skip where docker is missing
	"KDSYNC_PARK_FULL",           // consumer tests: the full-size parking test
	"KDSYNC_RECONCILE_TEST_RATE", // e2e: reconcile's rate against kdsim
	"KDSYNC_SCREENSHOTS",         // console browser tests: where screenshots go
	"KDSYNC_PORT",                // docker-compose.yml, deploy/ci.sh: kdsync's host port
	"KDSYNC_CONSOLE_PORT",        // docker-compose.yml: the console's host port
}

// otherPrefixes start variables accepted for the same reason: the test
// switches, and the demo's (cmd/kddemo reads KDSYNC_DEMO_<FLAG> and
// checks those names itself; a shared environment file may hold them).
var otherPrefixes = []string{
	"KDSYNC_TEST_", // KDSYNC_TEST_SEED, KDSYNC_TEST_CHILD
	"KDSYNC_DEMO_", // cmd/kddemo's flags
}

// cmdFlags is one command's flags, read from the command line and from
// KDSYNC_ variables; Parse reports every problem at once, a KDSYNC_
// variable no command knows among them.
type cmdFlags = envflag.FlagSet

// newFlags returns an empty command's flags reading KDSYNC_ variables.
func newFlags(name string) *cmdFlags {
	f := envflag.New(name, envPrefix)
	f.Known, f.Namespace = knownVariables, envPrefix
	f.Accepted = func(name string) bool {
		return slices.ContainsFunc(otherPrefixes, func(p string) bool { return strings.HasPrefix(name, p) })
	}
	return f
}

// everyCommandsFlags declares the flags of every command that reads the
// environment, each on its own set.
func everyCommandsFlags() []*cmdFlags {
	r, _ := runFlags()
	i := newFlags("kdsync ingest")
	ingestFlags(i.FlagSet)
	p, _ := publishFlags()
	sets := []*cmdFlags{r, i, p}
	for _, sub := range []string{"list", "show", "replay", "purge"} {
		f, _ := dlqFlags(sub, nil)
		sets = append(sets, f)
	}
	g, _ := guardFlags("status", nil)
	rc, _ := reconcileFlags(nil)
	u, _ := userFlags("user", nil)
	s, _ := userFlags("sync", nil)
	return append(sets, g, rc, u, s)
}

// knownVariables is the union of every command's variables, command-line
// only flags included (a shared environment file serves every command;
// those names are accepted there and never read), and otherVariables.
func knownVariables() map[string]bool {
	known := map[string]bool{}
	for _, f := range everyCommandsFlags() {
		f.VisitAll(func(fl *flag.Flag) { known[f.Variable(fl.Name)] = true })
	}
	for _, v := range otherVariables {
		known[v] = true
	}
	return known
}

// setUsage makes f's usage, written to out, text followed by which flags
// are read from the command line only (never from a variable, so that a
// stray one in a shared environment cannot select or confirm anything)
// and every flag with its default.
func setUsage(f *cmdFlags, out io.Writer, text string) {
	f.SetOutput(out)
	f.Usage = func() {
		var only []string
		f.VisitAll(func(fl *flag.Flag) {
			if !f.FromEnv(fl.Name) {
				only = append(only, "-"+fl.Name)
			}
		})
		fmt.Fprintf(out, "%s\nEvery flag is also read from its variable (-nats-url: %sNATS_URL)", text, f.Prefix)
		if len(only) > 0 {
			fmt.Fprintf(out, ",\nbut %s only from the command line", strings.Join(only, " "))
		}
		fmt.Fprint(out, ".\n\nFlags:\n")
		f.PrintDefaults()
	}
}

// parseConfig parses args into f's flags, then builds the command's
// configuration with config: every problem of both at once, as an
// invalid configuration. It returns flag.ErrHelp when help was asked for,
// and errUsage when config explained its problem on stderr.
func parseConfig[C any](f *cmdFlags, args []string, config func() (C, error)) (C, error) {
	var zero C
	parseErr := f.Parse(args)
	if errors.Is(parseErr, flag.ErrHelp) {
		return zero, parseErr
	}
	c, err := config()
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return zero, err
	}
	if err := invalid(f.Name(), parseErr, err); err != nil {
		return zero, err
	}
	return c, nil
}

// parseOperand is parseConfig for a command that takes one operand (kdsync
// user 42, kdsync dlq show 12): before the flags or after them, the flags
// that follow it parsed too. config gets the operand, "" when none.
func parseOperand[C any](f *cmdFlags, args []string, config func(operand string) (C, error)) (C, error) {
	var op string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		op, args = args[0], args[1:]
	}
	return parseConfig(f, args, func() (C, error) {
		if op == "" && f.NArg() > 0 {
			op = f.Arg(0)
			if err := f.FlagSet.Parse(f.Args()[1:]); err != nil {
				var zero C
				if errors.Is(err, flag.ErrHelp) {
					return zero, err
				}
				return zero, errUsage // explained by the flag package
			}
		}
		return config(op)
	})
}

// noArgs explains on out the arguments left after a command's flags
// (f.Args()), if any, as a mistake of the command line cmd.
func noArgs(out io.Writer, cmd string, rest []string) error {
	if len(rest) == 0 {
		return nil
	}
	fmt.Fprintf(out, "%s: unexpected argument %q (see %s -h)\n", cmd, rest[0], cmd)
	return errUsage
}

// helpArgs reads a command's arguments for help: "help" first is -h,
// and the usage goes to stdout when help is asked for, to stderr with a
// mistake.
func helpArgs(args []string, stdout, stderr io.Writer) ([]string, io.Writer) {
	if len(args) > 0 && args[0] == "help" {
		args = append([]string{"-h"}, args[1:]...)
	}
	if slices.ContainsFunc(args, isHelp) {
		return args, stdout
	}
	return args, stderr
}

// configError is a configuration kdsync cannot start with: every problem,
// one per line.
type configError struct {
	cmd string
	err error
}

// invalid returns the problems of errs as a configError, nil if none.
func invalid(cmd string, errs ...error) error {
	if err := errors.Join(errs...); err != nil {
		return &configError{cmd: cmd, err: err}
	}
	return nil
}

func (e *configError) Error() string {
	return fmt.Sprintf("invalid configuration (see %s -h):\n%v", e.cmd, e.err)
}

func (e *configError) Unwrap() error { return e.err }
