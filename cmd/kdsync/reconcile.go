package main

import (
	"context"
	"errors"
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

// reconcileConfig is what kdsync reconcile's flags say: how to run and
// report the pass (but for what is opened or connected).
type reconcileConfig struct {
	nats   consumer.ConnectOptions
	api    kdapi.Config
	report reconcile.ReportOptions
}

func parseReconcileFlags(args []string, out io.Writer) (*reconcileConfig, error) {
	f, config := reconcileFlags(out)
	return parseConfig(f, args, func() (*reconcileConfig, error) {
		if err := noArgs(out, "kdsync reconcile", f.Args()); err != nil {
			return nil, err
		}
		return config()
	})
}

// reconcileFlags declares kdsync reconcile's flags, its usage written to
// out; the returned function builds the configuration once they are
// parsed.
func reconcileFlags(out io.Writer) (*cmdFlags, func() (*reconcileConfig, error)) {
	var c reconcileConfig
	r := &c.report
	p := &r.Pass
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
	setUsage(f, out, reconcileUsage)
	fs.StringVar(&r.Source, "source", "", "desired users: a CSV (header userId,deptId,role,status) or JSON Lines file; - reads standard input")
	format := fs.String("format", "auto", "format of -source: auto (by extension, else by the first character), csv or jsonl")
	fs.BoolVar(&p.FromState, "from-state", false, "desired users: kdsync's own records of what it applied (the state bucket) instead of -source")
	asOf := fs.String("as-of", "", "when the source was taken (RFC 3339; default: the file's modification time, none for stdin); a user kdsync changed after it is not repaired")
	fs.BoolVar(&p.Complete, "complete", false, "the desired users are everyone who should have an account: KooDrive users not among them (and enabled) are unexpected and, with -apply, disabled")
	fs.BoolVar(&p.PerUser, "per-user", false, "read KooDrive with one GET per desired user instead of listing everyone (for a small subset of a large tenant)")
	fs.IntVar(&p.Workers, "workers", 4, "GETs under way at once with -per-user (the rate still applies)")
	fs.Float64Var(&r.Rate, "rate", reconcile.DefaultRate, "KooDrive requests per second at most")
	fs.BoolVar(&r.JSON, "json", false, "print the report as JSON")
	fs.BoolVar(&p.Apply, "apply", false, "publish the repair events (without it nothing changes)")
	fs.StringVar(&p.RunID, "run-id", "", "name of this pass in event ids reconcile:<run id>:<userId> (default: time and a random suffix); reuse it to publish a pass again without doubles")
	fs.IntVar(&p.MaxRepairs, "max-repairs", 1000, "refuse to apply more repair events than this (-1: no limit)")
	fs.IntVar(&p.MaxDisables, "max-disables", 50, "refuse to apply more disables than this (-1: no limit)")
	fs.DurationVar(&p.Wait, "wait", 30*time.Second, "with -apply, wait this long for kdsync's outcomes of the repairs (0: do not wait)")
	ignore := fs.String("ignore", "", "user ids left out of the comparison, comma-separated (service accounts)")
	fs.BoolVar(&p.DisableAdmins, "disable-admins", false, "let -complete disable unexpected system and cloud-drive administrators (role 2, 3); by default they are only reported")
	fs.BoolVar(&r.FailOnDrift, "fail-on-drift", false, "exit with status 1 when drift is found (for cron and CI)")
	fs.DurationVar(&r.Timeout, "timeout", time.Hour, "how long the whole pass may take")
	return f, func() (*reconcileConfig, error) {
		c.nats = conn()
		var apiErr, formatErr, asOfErr error
		c.api, apiErr = api(true)
		p.Format, formatErr = reconcile.ParseFormat(*format)
		if *asOf != "" {
			if p.AsOf, asOfErr = time.Parse(time.RFC3339, *asOf); asOfErr != nil {
				asOfErr = fmt.Errorf("-as-of %q: want RFC 3339, e.g. 2026-11-23T02:00:00Z", *asOf)
			}
		}
		p.Ignore = map[string]bool{}
		for _, id := range envflag.List(*ignore) {
			p.Ignore[id] = true
		}
		p.Protect = protected(c.api)
		return &c, errors.Join(apiErr, formatErr, r.Validate(), asOfErr)
	}
}

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseReconcileFlags(helpArgs(args, stdout, stderr))
	if err != nil {
		return err
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.report.Progress = stderr
	}
	return runReconcile(ctx, c, stdout)
}

// runReconcile runs the pass c says, its report written to stdout.
func runReconcile(ctx context.Context, c *reconcileConfig, stdout io.Writer) error {
	kd, tr, err := reconcile.NewPacedClient(c.api, c.report.Rate)
	if err != nil {
		return err
	}
	r := c.report
	r.Pass.KooDrive, r.Pass.Requests = kd, tr.Requests
	r.Connect = func() (jetstream.JetStream, func(), error) { return consumer.ConnectJetStream(c.nats) }
	return reconcile.RunReport(ctx, stdout, r)
}
