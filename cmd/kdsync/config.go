package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// envPrefix starts the name of every variable kdsync reads: -nats-url is
// KDSYNC_NATS_URL. The demo's are KDSYNC_DEMO_<FLAG>, so that a
// production environment (KDSYNC_HTTP_ADDR, ...) does not configure it.
const (
	envPrefix     = "KDSYNC_"
	demoEnvPrefix = "KDSYNC_DEMO_"
)

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

// otherPrefixes start variables accepted for the same reason.
var otherPrefixes = []string{"KDSYNC_TEST_"} // KDSYNC_TEST_SEED, KDSYNC_TEST_CHILD

// cmdFlags is one command's flags: every flag is read from the command
// line and, unless it is command-line only, from its variable (prefix and
// the flag's name in capitals, - as _). A command line flag wins over its
// variable; an empty variable is as if unset.
type cmdFlags struct {
	*flag.FlagSet
	prefix string
	// env names the flags also read from the environment; nil: all.
	env map[string]bool
}

// newFlags returns an empty command's flags reading KDSYNC_ variables.
func newFlags(name string) *cmdFlags {
	return &cmdFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), prefix: envPrefix}
}

// commandLineOnly makes the flags declared from now on command-line only:
// selectors and confirmations, so that no stray KDSYNC_ALL or KDSYNC_YES
// in a shared environment can widen or confirm anything.
func (f *cmdFlags) commandLineOnly() {
	f.env = map[string]bool{}
	f.VisitAll(func(fl *flag.Flag) { f.env[fl.Name] = true })
}

// fromEnv reports whether flag name is read from the environment.
func (f *cmdFlags) fromEnv(name string) bool { return f.env == nil || f.env[name] }

// variable is the environment variable of flag name.
func (f *cmdFlags) variable(name string) string {
	return f.prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// isSet reports whether flag name was given, on the command line or by
// its variable.
func (f *cmdFlags) isSet(name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

// parse reads args, then the environment for the flags args left unset.
// It returns flag.ErrHelp (usage printed) when asked for help; otherwise
// every problem found, one per line: a flag or variable that does not
// parse, with what was expected; a flag not defined; a KDSYNC_ variable
// no command knows, with the closest known name. The arguments after the
// flags are in f.Args() whatever the problems.
func (f *cmdFlags) parse(args []string) error {
	var errs []error
	rest, help := args, false
	for len(rest) > 0 {
		a := rest[0]
		if len(a) < 2 || a[0] != '-' {
			break
		}
		rest = rest[1:]
		if a == "--" {
			rest = append([]string{"--"}, rest...)
			break
		}
		name := strings.TrimPrefix(a[1:], "-")
		name, value, hasValue := strings.Cut(name, "=")
		fl := f.Lookup(name)
		switch {
		case name == "" || name[0] == '-' || name[0] == '=':
			errs = append(errs, cmdlineError{fmt.Errorf("bad flag syntax: %s", a)})
			continue
		case fl == nil && (name == "h" || name == "help"):
			help = true
			continue
		case fl == nil:
			// Whether a value follows is unknown: the rest is not read.
			errs = append(errs, cmdlineError{fmt.Errorf("flag provided but not defined: -%s", name)})
			rest = nil
			continue
		}
		if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if len(rest) == 0 {
				errs = append(errs, cmdlineError{fmt.Errorf("-%s: want %s, got nothing", name, want(fl))})
				break
			}
			value, rest = rest[0], rest[1:]
		}
		if err := f.Set(name, value); err != nil {
			errs = append(errs, cmdlineError{fmt.Errorf("-%s: want %s, got %q", name, want(fl), value)})
		}
	}
	if help {
		return f.Parse([]string{"-h"}) // prints the usage
	}
	if err := f.Parse(rest); err != nil { // only sets f.Args()
		errs = append(errs, err)
	}
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	f.VisitAll(func(fl *flag.Flag) {
		if given[fl.Name] || !f.fromEnv(fl.Name) {
			return
		}
		v := f.variable(fl.Name)
		value := os.Getenv(v)
		if value == "" {
			return
		}
		if err := f.Set(fl.Name, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: want %s, got %q", v, want(fl), value))
		}
	})
	errs = append(errs, unknownVariables(os.Environ(), knownVariables())...)
	return errors.Join(errs...)
}

// want says what a flag's value should look like.
func want(fl *flag.Flag) string {
	g, ok := fl.Value.(flag.Getter)
	if !ok {
		return "a valid value"
	}
	switch g.Get().(type) {
	case bool:
		return "true or false"
	case int, int64:
		return "an integer"
	case uint, uint64:
		return "a non-negative integer"
	case float64:
		return "a number"
	case time.Duration:
		return "a duration such as 30s, 5m or 1h30m"
	}
	return "a valid value"
}

// unknownVariables reports each KDSYNC_ variable of environ that is not
// in known, naming the closest known one.
func unknownVariables(environ []string, known map[string]bool) []error {
	var errs []error
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || known[name] || hasAnyPrefix(name, otherPrefixes) {
			continue
		}
		best, dist := "", -1
		for _, n := range names {
			if d := editDistance(name, n); dist < 0 || d < dist {
				best, dist = n, d
			}
		}
		errs = append(errs, fmt.Errorf("%s: unknown; did you mean %s?", name, best))
	}
	return errs
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// everyCommandsFlags declares the flags of every command that reads the
// environment, each on its own set.
func everyCommandsFlags() []*cmdFlags {
	r, _ := runFlags()
	i := newFlags("kdsync ingest")
	ingestFlags(i.FlagSet)
	p, _ := publishFlags()
	d, _ := demoFlags()
	sets := []*cmdFlags{r, i, p, d}
	for _, sub := range []string{"list", "show", "replay", "purge"} {
		f, _ := dlqFlags(sub, nil)
		sets = append(sets, f)
	}
	g, _ := guardFlags(nil)
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
		f.VisitAll(func(fl *flag.Flag) { known[f.variable(fl.Name)] = true })
	}
	for _, v := range otherVariables {
		known[v] = true
	}
	return known
}

// checkAddr reports an address that cannot be listened on: host:port
// with a port number; empty is none.
func checkAddr(name, addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		var p uint64
		if p, err = strconv.ParseUint(port, 10, 16); err == nil && p <= 65535 {
			return nil
		}
	}
	return fmt.Errorf("%s %q: want host:port or :port, e.g. :9090", name, addr)
}

// cmdlineError is a command line that does not parse: the command exits
// with status 2, as for any usage error (1 for other configuration
// problems).
type cmdlineError struct{ error }

func (e cmdlineError) Unwrap() error { return e.error }

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
