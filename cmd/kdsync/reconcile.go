package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3"
	"golang.org/x/oauth2"
	"golang.org/x/term"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/reconcile"
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

Connection flags (-nats-url, -api-base-url, -app-id, ...) and the stream
names are also read from the environment (KDSYNC_NATS_URL, ...); the
others only from the command line, so that no stray KDSYNC_APPLY can
publish anything.
`

// reconcileConfig is what kdsync reconcile's flags say.
type reconcileConfig struct {
	nats          consumer.ConnectOptions
	api           apiConfig
	stream        string
	stateBucket   string
	subjectPrefix string
	outcomeStream string
	outcomePrefix string

	source        string
	format        reconcile.Format
	fromState     bool
	asOf          time.Time
	complete      bool
	perUser       bool
	workers       int
	rate          float64
	json          bool
	apply         bool
	runID         string
	maxRepairs    int
	maxDisables   int
	wait          time.Duration
	ignore        map[string]bool
	disableAdmins bool
	failOnDrift   bool
	timeout       time.Duration
	progress      bool // forced on (tests); otherwise only on a terminal
}

// apiConfig is the KooDrive client's configuration.
type apiConfig struct {
	baseURL  string
	appID    string
	secret   kdapi.Secret
	userID   string
	token    kdapi.Secret
	timeout  time.Duration
	notFound []string
}

func parseReconcileFlags(args []string, stderr io.Writer) (*reconcileConfig, error) {
	var c reconcileConfig
	env := flag.NewFlagSet("kdsync reconcile", flag.ContinueOnError)
	env.SetOutput(io.Discard)
	conn := natsFlags(env)
	api := apiFlags(env)
	env.StringVar(&c.stream, "stream", "IDENTITY", "JetStream stream of identity events (repairs are published into it)")
	env.StringVar(&c.stateBucket, "state-bucket", "KDSYNC_STATE", "KV bucket of kdsync's per-user records")
	env.StringVar(&c.subjectPrefix, "subject-prefix", reconcile.DefaultSubjectPrefix, "subject prefix of repairs: <prefix>.<action>.<userId>")
	env.StringVar(&c.outcomeStream, "outcome-stream", "KDSYNC_OUTCOMES", "stream of outcomes")
	env.StringVar(&c.outcomePrefix, "outcome-prefix", "kdsync.outcome", "subject prefix of outcomes")

	fs := flag.NewFlagSet("kdsync reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, reconcileUsage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	env.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	fs.StringVar(&c.source, "source", "", "desired users: a CSV (header userId,deptId,role,status) or JSON Lines file; - reads standard input")
	format := fs.String("format", "auto", "format of -source: auto (by extension, else by the first character), csv or jsonl")
	fs.BoolVar(&c.fromState, "from-state", false, "desired users: kdsync's own records of what it applied (the state bucket) instead of -source")
	asOf := fs.String("as-of", "", "when the source was taken (RFC 3339; default: the file's modification time, none for stdin); a user kdsync changed after it is not repaired")
	fs.BoolVar(&c.complete, "complete", false, "the desired users are everyone who should have an account: KooDrive users not among them (and enabled) are unexpected and, with -apply, disabled")
	fs.BoolVar(&c.perUser, "per-user", false, "read KooDrive with one GET per desired user instead of listing everyone (for a small subset of a large tenant)")
	fs.IntVar(&c.workers, "workers", 4, "GETs under way at once with -per-user (the rate still applies)")
	fs.Float64Var(&c.rate, "rate", reconcile.DefaultRate, "KooDrive requests per second at most")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.BoolVar(&c.apply, "apply", false, "publish the repair events (without it nothing changes)")
	fs.StringVar(&c.runID, "run-id", "", "name of this pass in event ids reconcile:<run id>:<userId> (default: time and a random suffix); reuse it to publish a pass again without doubles")
	fs.IntVar(&c.maxRepairs, "max-repairs", 1000, "refuse to apply more repair events than this (-1: no limit)")
	fs.IntVar(&c.maxDisables, "max-disables", 50, "refuse to apply more disables than this (-1: no limit)")
	fs.DurationVar(&c.wait, "wait", 30*time.Second, "with -apply, wait this long for kdsync's outcomes of the repairs (0: do not wait)")
	ignore := fs.String("ignore", "", "user ids left out of the comparison, comma-separated (service accounts)")
	fs.BoolVar(&c.disableAdmins, "disable-admins", false, "let -complete disable unexpected system and cloud-drive administrators (role 2, 3); by default they are only reported")
	fs.BoolVar(&c.failOnDrift, "fail-on-drift", false, "exit with status 1 when drift is found (for cron and CI)")
	fs.DurationVar(&c.timeout, "timeout", time.Hour, "how long the whole pass may take")
	if err := ff.Parse(env, nil, ff.WithEnvVarPrefix("KDSYNC")); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kdsync reconcile: unexpected argument %q (see kdsync reconcile -h)\n", fs.Arg(0))
		return nil, errUsage
	}
	c.nats = conn()
	var errs []error
	var err error
	c.api, err = api()
	errs = append(errs, err)
	if c.format, err = reconcile.ParseFormat(*format); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.fromState && c.source != "":
		errs = append(errs, errors.New("give -source or -from-state, not both"))
	case !c.fromState && c.source == "":
		errs = append(errs, errors.New("give the desired state: -source FILE or -from-state"))
	}
	if c.api.baseURL == "" {
		errs = append(errs, errors.New("the KooDrive endpoint is required (-api-base-url or KDSYNC_API_BASE_URL)"))
	}
	if c.rate <= 0 || c.rate > 10000 {
		errs = append(errs, fmt.Errorf("-rate %g: want more than 0 and at most 10000", c.rate))
	}
	if c.workers < 1 || c.workers > 64 {
		errs = append(errs, fmt.Errorf("-workers %d: want 1 to 64", c.workers))
	}
	if c.perUser && c.complete {
		errs = append(errs, errors.New("-per-user sees only the users asked for, so it cannot find unexpected users: drop -complete or -per-user"))
	}
	if *asOf != "" {
		if c.asOf, err = time.Parse(time.RFC3339, *asOf); err != nil {
			errs = append(errs, fmt.Errorf("-as-of %q: want RFC 3339, e.g. 2026-11-23T02:00:00Z", *asOf))
		}
	}
	c.ignore = map[string]bool{}
	for _, id := range splitList(*ignore) {
		c.ignore[id] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

// client builds the KooDrive client as the service does, its requests
// going through t.
func (a *apiConfig) client(t *reconcile.Transport) (*kdapi.Client, error) {
	opts := []kdapi.Option{
		kdapi.WithBaseURL(a.baseURL),
		kdapi.WithHTTPClient(&http.Client{Transport: t}),
		kdapi.WithTimeout(a.timeout),
		kdapi.WithNotFoundCodes(a.notFound...),
	}
	app := a.appID != "" || a.secret != "" || a.userID != ""
	switch {
	case app && a.token != "":
		return nil, errors.New("choose one KooDrive authentication: app (-app-id, -app-secret, -api-user-id) or a token (-api-token)")
	case a.token != "":
		opts = append(opts, kdapi.WithBearer(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: a.token.Reveal()})))
	case app:
		opts = append(opts, kdapi.WithAppAuth(a.appID, a.secret, a.userID))
	default:
		return nil, errors.New("KooDrive authentication is required: -app-id, -app-secret and -api-user-id, or -api-token (or their KDSYNC_ variables)")
	}
	return kdapi.NewClient(opts...)
}

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
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
	tr, err := reconcile.NewTransport(nil, c.rate)
	if err != nil {
		return err
	}
	kd, err := c.api.client(tr)
	if err != nil {
		return err
	}
	o := reconcile.Options{
		Format: c.format, FromState: c.fromState, AsOf: c.asOf,
		KooDrive: kd, PerUser: c.perUser, Workers: c.workers,
		Complete: c.complete, Ignore: c.ignore, DisableAdmins: c.disableAdmins,
		Protect: map[string]bool{},
		Apply:   c.apply, RunID: c.runID, MaxRepairs: c.maxRepairs, MaxDisables: c.maxDisables, Wait: c.wait,
		StateBucket: c.stateBucket, Stream: c.stream, SubjectPrefix: c.subjectPrefix,
		OutcomeStream: c.outcomeStream, OutcomePrefix: c.outcomePrefix,
		Requests: tr.Requests,
	}
	if c.api.userID != "" {
		o.Protect[c.api.userID] = true
	}
	if !c.fromState {
		src, when, closeSrc, err := openSource(c.source)
		if err != nil {
			return err
		}
		defer closeSrc()
		o.Source = src
		if o.Format == reconcile.FormatAuto {
			o.Format = reconcile.FormatOf(c.source)
		}
		if o.AsOf.IsZero() {
			o.AsOf = when
		}
	}
	if c.fromState || c.apply {
		nc, err := consumer.Connect(c.nats, nil, nil)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		o.JetStream = js
	}
	var bar *progressLine
	if c.progress {
		bar = &progressLine{w: stderr, rate: c.rate}
		o.Progress = bar.show
	}
	res, err := reconcile.Run(ctx, o)
	bar.clear()
	if res != nil {
		var perr error
		if c.json {
			perr = printReconcileJSON(stdout, res)
		} else {
			perr = printReconcile(stdout, res, c)
		}
		if err == nil {
			err = perr
		}
	}
	if err != nil {
		return err
	}
	if c.failOnDrift && res.Totals.Drifted > 0 && !c.apply {
		return fmt.Errorf("drift found: %d users", res.Totals.Drifted)
	}
	return nil
}

// openSource opens the source file (- is standard input) and returns its
// modification time (zero for standard input).
func openSource(name string) (io.Reader, time.Time, func(), error) {
	if name == "-" {
		return os.Stdin, time.Time{}, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	var when time.Time
	if fi, err := f.Stat(); err == nil {
		when = fi.ModTime()
	}
	return f, when, func() { _ = f.Close() }, nil
}

// progressLine draws one line on a terminal, rewritten in place.
type progressLine struct {
	w     io.Writer
	rate  float64
	drawn bool
}

func (p *progressLine) show(pr reconcile.Progress) {
	var s string
	switch pr.Phase {
	case reconcile.PhaseState:
		s = fmt.Sprintf("reading kdsync's records: %d", pr.Users)
	case reconcile.PhaseSource:
		s = fmt.Sprintf("read %d desired users", pr.Users)
	case reconcile.PhaseKooDrive:
		of := ""
		if pr.Of > 0 {
			of = fmt.Sprintf(" of %d (%d%%)", pr.Of, 100*pr.Users/pr.Of)
		}
		s = fmt.Sprintf("reading KooDrive: %d users%s, %d requests (at most %g/s)", pr.Users, of, pr.Requests, p.rate)
	case reconcile.PhasePublish:
		s = "publishing repairs…"
		if pr.Done {
			s = fmt.Sprintf("published %d repairs, waiting for outcomes…", pr.Users)
		}
	}
	fmt.Fprintf(p.w, "\r\033[K%s", s)
	p.drawn = true
}

func (p *progressLine) clear() {
	if p != nil && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func printReconcileJSON(w io.Writer, res *reconcile.Result) error {
	type jsonResult struct {
		*reconcile.Result
		DurationMs float64 `json:"durationMs"`
		ReadMs     float64 `json:"readMs"`
		Duration   any     `json:"duration,omitempty"`
		Read       any     `json:"read,omitempty"`
	}
	if res.Drifts == nil {
		res.Drifts = []reconcile.Drift{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonResult{Result: res, DurationMs: ms(res.Duration), ReadMs: ms(res.Read)})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// printReconcile prints the drift as a table, then the totals.
func printReconcile(w io.Writer, res *reconcile.Result, c *reconcileConfig) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(res.Drifts) > 0 {
		head := "USER\tDRIFT\tDESIRED dept/role/status\tKOODRIVE dept/role/status\tREPAIR"
		if res.Applied {
			head += "\tRESULT"
		}
		fmt.Fprintln(tw, head)
		for i := range res.Drifts {
			d := &res.Drifts[i]
			kinds := make([]string, len(d.Kinds))
			for j, k := range d.Kinds {
				kinds[j] = string(k)
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", d.UserID, strings.Join(kinds, ","), desiredText(d.Desired), actualText(d.Actual), repairText(d.Repair))
			if res.Applied {
				line += "\t" + resultText(d.Repair)
			}
			fmt.Fprintln(tw, line)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := res.Totals
	if res.State != nil {
		s := res.State
		fmt.Fprintf(w, "desired:   %d users from kdsync's records (%d records: %d hard-deleted, %d with nothing applied yet, %d unreadable)\n",
			t.Desired, s.Records, s.Deleted, s.Unknown, s.Unreadable)
	} else {
		fmt.Fprintf(w, "desired:   %d users from %s\n", t.Desired, c.source)
	}
	how := "GET /userList"
	if res.PerUser {
		how = "GET /users/{userId}"
	}
	fmt.Fprintf(w, "KooDrive:  %d users, read in %s with %d requests (%s, at most %g/s)\n",
		t.KooDrive, res.Read.Round(time.Millisecond), res.Requests, how, c.rate)
	fmt.Fprintf(w, "in sync:   %d", t.InSync)
	if t.DisabledAbsent > 0 {
		fmt.Fprintf(w, " (%d of them absent, as disabled or deleted users may be)", t.DisabledAbsent)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "drifted:   %d users:", t.Drifted)
	for _, k := range reconcile.Kinds {
		fmt.Fprintf(w, " %s %d", k, t.ByKind[k])
	}
	fmt.Fprintln(w)
	switch {
	case t.NotDesired > 0:
		fmt.Fprintf(w, "not judged: %d KooDrive users the desired state does not list (without -complete they are left alone)\n", t.NotDesired)
	case res.Complete && t.NotDesiredDisabled > 0:
		fmt.Fprintf(w, "not listed but disabled (in sync): %d\n", t.NotDesiredDisabled)
	}
	if t.Ignored > 0 {
		fmt.Fprintf(w, "ignored:   %d users (-ignore)\n", t.Ignored)
	}
	if t.Drifted == 0 {
		fmt.Fprintln(w, "no drift.")
		return nil
	}
	fmt.Fprintf(w, "repairs:   %s", actionCounts(res.Repairs))
	if res.Unrepairable > 0 {
		fmt.Fprintf(w, "; %d drifted users have none (see REPAIR)", res.Unrepairable)
	}
	fmt.Fprintln(w)
	if !res.Applied {
		if c.apply {
			fmt.Fprintln(w, "nothing was published.")
		} else {
			fmt.Fprintln(w, "dry run:   nothing was published; run again with -apply to publish these repairs.")
		}
		return nil
	}
	p := res.Publish
	fmt.Fprintf(w, "published: %d repair events (run %s): %s; %d superseded, %d already in the stream, %d failed\n",
		p.Published, res.RunID, actionCounts(p.ByAction), p.Superseded, p.Duplicates, p.Failed)
	if res.Outcomes != nil {
		fmt.Fprintf(w, "outcomes:  %d applied, %d skipped, %d dead-lettered, %d not seen within %s\n",
			res.Outcomes[string(outcome.Applied)], res.Outcomes[string(outcome.Skipped)],
			res.Outcomes[string(outcome.Deadlettered)], res.Outcomes["pending"], c.wait)
		if res.Outcomes[string(outcome.Deadlettered)] > 0 {
			fmt.Fprintln(w, "           see kdsync dlq list -since 1h")
		}
	}
	return nil
}

func actionCounts(m map[handlers.Action]int) string {
	var parts []string
	for _, a := range []handlers.Action{handlers.Hired, handlers.Changed, handlers.Disabled} {
		if m[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[a], a))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func optText[T int | int64](v *T) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(int64(*v), 10)
}

func desiredText(d *reconcile.Desired) string {
	switch {
	case d == nil:
		return "(not listed)"
	case d.Absent:
		return "(deleted: disabled or absent)"
	}
	return optText(d.DeptID) + "/" + optText(d.Role) + "/" + optText(d.Status)
}

func actualText(a *reconcile.Actual) string {
	if a == nil {
		return "(absent)"
	}
	return fmt.Sprintf("%s/%d/%d", a.DeptID, a.Role, a.Status)
}

func repairText(r *reconcile.Repair) string {
	if r == nil {
		return ""
	}
	if r.Action == "" {
		return "none: " + r.Skip
	}
	var fields []string
	if r.DeptID != nil {
		fields = append(fields, "deptId "+optText(r.DeptID))
	}
	if r.Role != nil {
		fields = append(fields, "role "+optText(r.Role))
	}
	if r.Status != nil && r.Action != handlers.Disabled {
		fields = append(fields, "status "+optText(r.Status))
	}
	if len(fields) == 0 {
		return string(r.Action)
	}
	return string(r.Action) + " " + strings.Join(fields, ", ")
}

func resultText(r *reconcile.Repair) string {
	switch {
	case r == nil || r.Action == "":
		return "-"
	case r.NotPublished != "":
		return r.NotPublished
	case r.Duplicate:
		return fmt.Sprintf("already in the stream (#%d)", r.Sequence)
	case r.Outcome == nil:
		return fmt.Sprintf("published #%d", r.Sequence)
	case r.Outcome.Result == outcome.Deadlettered:
		return fmt.Sprintf("#%d dead-lettered: %s", r.Sequence, r.Outcome.Reason)
	}
	return fmt.Sprintf("#%d %s", r.Sequence, r.Outcome.Result)
}
