package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/reconcile"
	"github.com/nats-io/nats.go/jetstream"
)

const reconcileUsage = `kdsync reconcile: compare the users KooDrive should have with those it has.

Usage:
  kdsync reconcile -source FILE [-complete] [flags]   desired state from an HRIS export (CSV or JSON Lines; - is stdin)
  kdsync reconcile -from-state [flags]                desired state from kdsync's own records (KDSYNC_STATE)

It reads KooDrive (GET /userList, every page; or -per-user GETs) within
-rate requests per second, prints the drift (missing, unexpected, dept,
role, status) and, only with -apply, publishes one repair event per drifted
user into the identity stream (hired, changed or disabled; never deleted),
where kdsync applies it like any other event. Without -apply nothing
changes anywhere. See docs/reconcile.md.
`

// reconcileConfig is what kdsync reconcile's flags say: the pass's
// options (but for what is opened or connected) and how to run it.
type reconcileConfig struct {
	nats        consumer.ConnectOptions
	api         kdapi.Config
	pass        reconcile.Options
	source      string // the file of -source
	rate        float64
	json        bool
	failOnDrift bool
	timeout     time.Duration
	progress    bool // forced on (tests); otherwise only on a terminal
}

func parseReconcileFlags(args []string, stderr io.Writer) (*reconcileConfig, error) {
	f, config := reconcileFlags(stderr)
	return parseConfig(f, args, func() (*reconcileConfig, error) {
		if f.NArg() > 0 {
			fmt.Fprintf(stderr, "kdsync reconcile: unexpected argument %q (see kdsync reconcile -h)\n", f.Arg(0))
			return nil, errUsage
		}
		return config()
	})
}

// reconcileFlags declares kdsync reconcile's flags, its usage written to
// stderr; the returned function builds the configuration once they are
// parsed.
func reconcileFlags(stderr io.Writer) (*cmdFlags, func() (*reconcileConfig, error)) {
	var c reconcileConfig
	p := &c.pass
	f := newFlags("kdsync reconcile")
	fs := f.FlagSet
	conn := natsFlags(fs)
	api := apiFlags(fs)
	streamName.bind(fs, &p.Stream)
	stateBucketName.bind(fs, &p.StateBucket)
	subjectPrefixName.bind(fs, &p.SubjectPrefix)
	outcomeStreamName.bind(fs, &p.OutcomeStream)
	outcomePrefixName.bind(fs, &p.OutcomePrefix)

	f.CommandLineOnly()
	setUsage(f, stderr, reconcileUsage)
	fs.StringVar(&c.source, "source", "", "desired users: a CSV (header userId,deptId,role,status) or JSON Lines file; - reads standard input")
	format := fs.String("format", "auto", "format of -source: auto (by extension, else by the first character), csv or jsonl")
	fs.BoolVar(&p.FromState, "from-state", false, "desired users: kdsync's own records of what it applied (the state bucket) instead of -source")
	asOf := fs.String("as-of", "", "when the source was taken (RFC 3339; default: the file's modification time, none for stdin); a user kdsync changed after it is not repaired")
	fs.BoolVar(&p.Complete, "complete", false, "the desired users are everyone who should have an account: KooDrive users not among them (and enabled) are unexpected and, with -apply, disabled")
	fs.BoolVar(&p.PerUser, "per-user", false, "read KooDrive with one GET per desired user instead of listing everyone (for a small subset of a large tenant)")
	fs.IntVar(&p.Workers, "workers", 4, "GETs under way at once with -per-user (the rate still applies)")
	fs.Float64Var(&c.rate, "rate", reconcile.DefaultRate, "KooDrive requests per second at most")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.BoolVar(&p.Apply, "apply", false, "publish the repair events (without it nothing changes)")
	fs.StringVar(&p.RunID, "run-id", "", "name of this pass in event ids reconcile:<run id>:<userId> (default: time and a random suffix); reuse it to publish a pass again without doubles")
	fs.IntVar(&p.MaxRepairs, "max-repairs", 1000, "refuse to apply more repair events than this (-1: no limit)")
	fs.IntVar(&p.MaxDisables, "max-disables", 50, "refuse to apply more disables than this (-1: no limit)")
	fs.DurationVar(&p.Wait, "wait", 30*time.Second, "with -apply, wait this long for kdsync's outcomes of the repairs (0: do not wait)")
	ignore := fs.String("ignore", "", "user ids left out of the comparison, comma-separated (service accounts)")
	fs.BoolVar(&p.DisableAdmins, "disable-admins", false, "let -complete disable unexpected system and cloud-drive administrators (role 2, 3); by default they are only reported")
	fs.BoolVar(&c.failOnDrift, "fail-on-drift", false, "exit with status 1 when drift is found (for cron and CI)")
	fs.DurationVar(&c.timeout, "timeout", time.Hour, "how long the whole pass may take")
	return f, func() (*reconcileConfig, error) { return c.finish(conn, api, *format, *asOf, *ignore) }
}

// finish reads what reconcileFlags left in strings and checks the
// configuration, every problem at once.
func (c *reconcileConfig) finish(conn func() consumer.ConnectOptions, api func() (kdapi.Config, error), format, asOf, ignore string) (*reconcileConfig, error) {
	c.nats = conn()
	p := &c.pass
	var errs []error
	var err error
	c.api, err = api()
	errs = append(errs, err)
	if p.Format, err = reconcile.ParseFormat(format); err != nil {
		errs = append(errs, err)
	}
	switch {
	case p.FromState && c.source != "":
		errs = append(errs, errors.New("give -source or -from-state, not both"))
	case !p.FromState && c.source == "":
		errs = append(errs, errors.New("give the desired state: -source FILE or -from-state"))
	}
	if c.api.BaseURL == "" {
		errs = append(errs, errors.New("the KooDrive endpoint is required (-api-base-url or KDSYNC_API_BASE_URL)"))
	}
	if c.rate <= 0 || c.rate > 10000 {
		errs = append(errs, fmt.Errorf("-rate %g: want more than 0 and at most 10000", c.rate))
	}
	if p.Workers < 1 || p.Workers > 64 {
		errs = append(errs, fmt.Errorf("-workers %d: want 1 to 64", p.Workers))
	}
	if p.PerUser && p.Complete {
		errs = append(errs, errors.New("-per-user sees only the users asked for, so it cannot find unexpected users: drop -complete or -per-user"))
	}
	if asOf != "" {
		if p.AsOf, err = time.Parse(time.RFC3339, asOf); err != nil {
			errs = append(errs, fmt.Errorf("-as-of %q: want RFC 3339, e.g. 2026-11-23T02:00:00Z", asOf))
		}
	}
	p.Ignore = map[string]bool{}
	for _, id := range envflag.List(ignore) {
		p.Ignore[id] = true
	}
	p.Protect = map[string]bool{}
	if c.api.UserID != "" {
		p.Protect[c.api.UserID] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		// The usage and every flag's default, on stdout: -h as the flag
		// package handles it (fs.Usage), written where help was asked for.
		_, err := parseReconcileFlags([]string{"-h"}, stdout)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	c, err := parseReconcileFlags(args, stderr)
	if err != nil {
		return err
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.progress = true
	}
	return runReconcile(ctx, c, stdout, stderr)
}

func runReconcile(ctx context.Context, c *reconcileConfig, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	o := c.pass
	kd, tr, err := rateLimited(c.api, c.rate)
	if err != nil {
		return err
	}
	o.KooDrive, o.Requests = kd, tr.Requests
	r := reconcile.ReportOptions{Source: c.source, Rate: c.rate, JSON: c.json, FailOnDrift: c.failOnDrift,
		Connect: func() (jetstream.JetStream, func(), error) { return connect(c.nats) }}
	if c.progress {
		r.Progress = stderr
	}
	return reconcile.RunReport(ctx, stdout, o, r)
}
