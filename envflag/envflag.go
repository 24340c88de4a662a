// Package envflag reads a command's flags from its command line and, for
// the flags not given there, from environment variables: -nats-url is
// <prefix>NATS_URL. It reports every problem at once, one per line, with
// what was expected: a value that does not parse, a flag not defined,
// and (Unknown) a variable of the prefix that nothing reads, with the
// closest known name. Secret and Secrets read a value given directly or
// in a file.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// FlagSet is a flag.FlagSet whose flags are read from the environment
// too. A command line flag wins over its variable; an empty variable is
// as if unset.
type FlagSet struct {
	*flag.FlagSet
	// Prefix starts the name of every variable, e.g. KDSYNC_.
	Prefix string
	// Known, when set, returns every variable starting with Namespace
	// (default: Prefix) that is read, by any command sharing the
	// environment: Parse reports the others (see Unknown) but those
	// Accepted.
	Known     func() map[string]bool
	Namespace string
	Accepted  func(name string) bool
	// env names the flags also read from the environment; nil: all.
	env map[string]bool
}

// New returns an empty flag set named name whose variables start with
// prefix.
func New(name, prefix string) *FlagSet {
	return &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), Prefix: prefix}
}

// CommandLineOnly makes the flags declared from now on command-line
// only: selectors and confirmations, so that no stray variable in a
// shared environment can widen or confirm anything.
func (f *FlagSet) CommandLineOnly() {
	f.env = map[string]bool{}
	f.VisitAll(func(fl *flag.Flag) { f.env[fl.Name] = true })
}

// FromEnv reports whether flag name is read from the environment.
func (f *FlagSet) FromEnv(name string) bool { return f.env == nil || f.env[name] }

// Variable is the environment variable of flag name: the prefix and the
// name in capitals, - as _.
func (f *FlagSet) Variable(name string) string {
	return f.Prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// IsSet reports whether flag name was given, on the command line or by
// its variable.
func (f *FlagSet) IsSet(name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

// UsageError is a command line that does not parse (as opposed to a
// variable that does not).
type UsageError struct{ error }

func (e UsageError) Unwrap() error { return e.error }

// Parse reads args, then the environment for the flags args left unset.
// It returns flag.ErrHelp (the usage printed) when asked for help;
// otherwise every problem found, joined: a flag (a UsageError) or
// variable that does not parse, with what was expected; a flag not
// defined (a UsageError); with Known set, a variable of the prefix that
// nothing reads. The arguments after the flags are in f.Args() whatever
// the problems.
func (f *FlagSet) Parse(args []string) error {
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
			errs = append(errs, UsageError{fmt.Errorf("bad flag syntax: %s", a)})
			continue
		case fl == nil && (name == "h" || name == "help"):
			help = true
			continue
		case fl == nil:
			// Whether a value follows is unknown: the rest is not read.
			errs = append(errs, UsageError{fmt.Errorf("flag provided but not defined: -%s", name)})
			rest = nil
			continue
		}
		if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if len(rest) == 0 {
				errs = append(errs, UsageError{fmt.Errorf("-%s: want %s, got nothing", name, want(fl))})
				break
			}
			value, rest = rest[0], rest[1:]
		}
		if err := f.Set(name, value); err != nil {
			errs = append(errs, UsageError{fmt.Errorf("-%s: want %s, got %q", name, want(fl), value)})
		}
	}
	if help {
		return f.FlagSet.Parse([]string{"-h"}) // prints the usage
	}
	if err := f.FlagSet.Parse(rest); err != nil { // only sets f.Args()
		errs = append(errs, err)
	}
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	f.VisitAll(func(fl *flag.Flag) {
		if given[fl.Name] || !f.FromEnv(fl.Name) {
			return
		}
		v := f.Variable(fl.Name)
		value := os.Getenv(v)
		if value == "" {
			return
		}
		if err := f.Set(fl.Name, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: want %s, got %q", v, want(fl), value))
		}
	})
	if f.Known != nil {
		accepted := f.Accepted
		if accepted == nil {
			accepted = func(string) bool { return false }
		}
		ns := f.Namespace
		if ns == "" {
			ns = f.Prefix
		}
		errs = append(errs, Unknown(os.Environ(), ns, f.Known(), accepted)...)
	}
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

// Unknown reports each variable of environ (as os.Environ has it) whose
// name starts with prefix, is not in known and is not accepted by
// accepted, naming the closest known one.
func Unknown(environ []string, prefix string, known map[string]bool, accepted func(name string) bool) []error {
	var errs []error
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, prefix) || known[name] || accepted(name) {
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
