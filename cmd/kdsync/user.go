package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/provision"
	"github.com/kdsync/kdsync/reconcile"
	"github.com/kdsync/kdsync/usertrace"
)

const userUsage = `Usage: kdsync user [flags] <userId>

One user's story: each of the user's events in the identity stream
(identity.employee.*.<userId>) with its time, action and fields, and its
outcome (result, reason, calls, attempts, latency); the user's dead
letters and guard holds; the record (watermark) kdsync keeps; KooDrive's
current state (GET /users/<userId>, when the KooDrive flags are given);
the desired state (the events kdsync applied); and a verdict: in sync, or
which field drifts. -json for scripts.

Every flag is also read from the environment (KDSYNC_NATS_URL, ...).
`

const syncUsage = `Usage: kdsync sync [flags] <userId>

Provision on demand: put one user right now. kdsync sync reads the desired
state (the events kdsync applied), checks the user is in scope, reads
KooDrive, decides, and publishes the repair as an identity event into the
stream, where kdsync applies it in the user's order with every other event.
It waits for that event's outcome and reads KooDrive again: exit status 0
when KooDrive matches, 1 with the reason otherwise. -dry-run stops before
publishing.

Connection flags and stream names are also read from the environment
(KDSYNC_NATS_URL, ...); -dry-run, -wait and -json only from the command line.
`

// userConfig is what kdsync user's and kdsync sync's flags say.
type userConfig struct {
	nats    consumer.ConnectOptions
	api     apiConfig
	rate    float64
	trace   usertrace.Options
	user    string
	json    bool
	dryRun  bool
	wait    time.Duration
	timeout time.Duration
}

// apiFlags declares the KooDrive client's flags on fs; the returned
// function reads them once parsed.
func apiFlags(fs *flag.FlagSet) func() (apiConfig, error) {
	var a apiConfig
	fs.StringVar(&a.baseURL, "api-base-url", "", "KooDrive endpoint root, e.g. https://intl.myhuaweicloud-koodrive.com")
	fs.StringVar(&a.appID, "app-id", "", "KooDrive app id (app authentication)")
	appSecret := fs.String("app-secret", "", "KooDrive app secret (prefer the environment or -app-secret-file)")
	appSecretFile := fs.String("app-secret-file", "", "file holding the KooDrive app secret")
	fs.StringVar(&a.userID, "api-user-id", "", "KooDrive user id the app acts as (X-User-Id); never changed by kdsync sync or reconcile")
	apiToken := fs.String("api-token", "", "KooDrive bearer token (instead of app authentication)")
	apiTokenFile := fs.String("api-token-file", "", "file holding the KooDrive bearer token")
	fs.DurationVar(&a.timeout, "api-timeout", 10*time.Second, "timeout of one KooDrive call")
	notFound := fs.String("not-found-codes", strings.Join(kdapi.DefaultNotFoundCodes, ","), "KooDrive codes meaning \"not found\"")
	return func() (apiConfig, error) {
		var errs []error
		var err error
		a.secret, err = secretValue("app secret", *appSecret, *appSecretFile)
		errs = append(errs, err)
		a.token, err = secretValue("api token", *apiToken, *apiTokenFile)
		errs = append(errs, err)
		a.notFound = splitList(*notFound)
		return a, errors.Join(errs...)
	}
}

// streamFlags declares where kdsync keeps events, outcomes, dead letters,
// records and holds, as kdsync run names them.
func streamFlags(fs *flag.FlagSet, o *usertrace.Options) {
	fs.StringVar(&o.Stream, "stream", "IDENTITY", "JetStream stream of identity events")
	fs.StringVar(&o.SubjectPrefix, "subject-prefix", reconcile.DefaultSubjectPrefix, "subject prefix of identity events: <prefix>.<action>.<userId>")
	fs.StringVar(&o.OutcomeStream, "outcome-stream", "KDSYNC_OUTCOMES", "stream of outcomes")
	fs.StringVar(&o.OutcomePrefix, "outcome-prefix", "kdsync.outcome", "subject prefix of outcomes")
	fs.StringVar(&o.DLQStream, "dlq-stream", "KDSYNC_DLQ", "stream of dead letters")
	fs.StringVar(&o.DLQPrefix, "dlq-prefix", "kdsync.dlq", "subject prefix of dead letters")
	fs.StringVar(&o.StateBucket, "state-bucket", "KDSYNC_STATE", "KV bucket of kdsync's per-user records")
	fs.StringVar(&o.GuardBucket, "guard-bucket", "KDSYNC_GUARD", "KV bucket of the mass-deprovisioning guard")
}

func parseUserFlags(name string, args []string, out io.Writer) (*userConfig, error) {
	var c userConfig
	env := flag.NewFlagSet("kdsync "+name, flag.ContinueOnError)
	env.SetOutput(io.Discard)
	conn := natsFlags(env)
	api := apiFlags(env)
	env.Float64Var(&c.rate, "rate", 5, "KooDrive requests per second at most")
	streamFlags(env, &c.trace)

	fs := flag.NewFlagSet("kdsync "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	usage := userUsage
	if name == "sync" {
		usage = syncUsage
	}
	fs.Usage = func() {
		fmt.Fprint(out, usage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	env.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "how long the whole command may take")
	if name == "user" {
		fs.IntVar(&c.trace.MaxEvents, "max-events", 200, "show the user's last N events")
	} else {
		fs.BoolVar(&c.dryRun, "dry-run", false, "stop before publishing the repair")
		fs.DurationVar(&c.wait, "wait", 30*time.Second, "how long to wait for the repair's outcome")
	}
	if err := ff.Parse(env, nil, ff.WithEnvVarPrefix("KDSYNC")); err != nil {
		return nil, err
	}
	// The user id may come before or after the flags.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.user, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if c.user == "" && fs.NArg() > 0 {
		c.user = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, errUsage
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "kdsync %s: unexpected argument %q (see kdsync %s -h)\n", name, fs.Arg(0), name)
		return nil, errUsage
	}
	if c.user == "" {
		fmt.Fprintf(out, "kdsync %s: which user? (kdsync %s <userId>)\n", name, name)
		return nil, errUsage
	}
	c.nats = conn()
	var errs []error
	if err := usertrace.CheckUser(c.user); err != nil {
		errs = append(errs, err)
	}
	var err error
	if c.api, err = api(); err != nil {
		errs = append(errs, err)
	}
	if name == "sync" && c.api.baseURL == "" {
		errs = append(errs, errors.New("the KooDrive endpoint is required (-api-base-url or KDSYNC_API_BASE_URL)"))
	}
	if c.rate <= 0 || c.rate > 10000 {
		errs = append(errs, fmt.Errorf("-rate %g: want more than 0 and at most 10000", c.rate))
	}
	return &c, errors.Join(errs...)
}

// connect dials NATS and, when configured, builds the KooDrive client.
func (c *userConfig) connect() (js jetstream.JetStream, kd *kdapi.Client, closeNATS func(), err error) {
	if c.api.baseURL != "" {
		tr, err := reconcile.NewTransport(nil, c.rate)
		if err != nil {
			return nil, nil, nil, err
		}
		if kd, err = c.api.client(tr); err != nil {
			return nil, nil, nil, err
		}
	}
	nc, err := consumer.Connect(c.nats, nil, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, kd, nc.Close, nil
}

func cmdUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseUserFlags("user", args, helpOut(args, stdout, stderr))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	js, kd, closeNATS, err := c.connect()
	if err != nil {
		return err
	}
	defer closeNATS()
	o := c.trace
	o.JetStream = js
	if kd != nil {
		o.KooDrive = kd
	}
	tr, err := usertrace.New(o)
	if err != nil {
		return err
	}
	tl, err := tr.Trace(ctx, c.user)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSONTo(stdout, tl)
	}
	printTimeline(stdout, tl, tr.Options())
	return nil
}

// helpOut is where usage goes: stdout when help was asked for.
func helpOut(args []string, stdout, stderr io.Writer) io.Writer {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "help" {
			return stdout
		}
	}
	return stderr
}

// printTimeline writes tl for a terminal.
func printTimeline(w io.Writer, tl *usertrace.Timeline, o usertrace.Options) {
	fmt.Fprintf(w, "User %s: %s\n\n", tl.UserID, tl.Verdict.Summary)
	fmt.Fprintf(w, "Events (stream %s, %s):\n", o.Stream, reconcile.GuardSubject(o.SubjectPrefix, tl.UserID, nil))
	if tl.EarlierEvents > 0 {
		fmt.Fprintf(w, "  (%d earlier events not shown; -max-events)\n", tl.EarlierEvents)
	}
	if len(tl.Events) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range tl.Events {
		when := e.Stored.Format(time.RFC3339)
		fmt.Fprintf(tw, "  #%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, when, cmp.Or(e.Action, "?"), cmp.Or(e.Fields(), "-"), e.State, eventDetail(&e))
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "\nDead letters:")
	if len(tl.DeadLetters) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, l := range tl.DeadLetters {
		fmt.Fprintf(w, "  #%d %s %s (%s): %s  (kdsync dlq show %d)\n", l.Seq, l.Stored.Format(time.RFC3339), l.Action, l.Reason, clipText(l.Error, 120), l.Seq)
	}
	fmt.Fprintln(w, "\nGuard holds:")
	if len(tl.Holds) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, h := range tl.Holds {
		d := string(h.Decision)
		if d == "" {
			d = "pending a decision (kdsync guard release|reject -seq " + strconv.FormatUint(h.Seq, 10) + ")"
		} else {
			d += " by " + cmp.Or(h.By, "?")
		}
		fmt.Fprintf(w, "  #%d %s since %s: %s\n", h.Seq, h.Action, h.Since.Format(time.RFC3339), d)
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	if r := tl.Record; r != nil {
		fmt.Fprintf(tw, "kdsync's record:\twatermark #%d, last applied #%d, at %s; state %s\n", r.Seq, r.AppliedSeq, r.At.Format(time.RFC3339), stateText(r.State.Exists, r.State.DeptID, r.State.Role, r.State.Status))
	} else {
		fmt.Fprintf(tw, "kdsync's record:\tnone\n")
	}
	switch {
	case !tl.KooDriveRead:
		fmt.Fprintf(tw, "KooDrive:\tnot read (give -api-base-url and credentials)\n")
	case tl.KooDriveError != "":
		fmt.Fprintf(tw, "KooDrive:\tunreadable: %s\n", tl.KooDriveError)
	case tl.KooDrive == nil:
		fmt.Fprintf(tw, "KooDrive:\tGET /users/%s: not found\n", tl.UserID)
	default:
		a := tl.KooDrive
		fmt.Fprintf(tw, "KooDrive:\tGET /users/%s: dept %s, role %d, status %d\n", tl.UserID, a.DeptID, a.Role, a.Status)
	}
	if d := tl.Desired; d != nil {
		s := stateText(true, d.DeptID, d.Role, d.Status)
		if d.Absent {
			s = "absent or disabled (kdsync hard-deleted the user)"
		}
		fmt.Fprintf(tw, "Desired:\t%s (from %s)\n", s, tl.DesiredFrom)
	} else {
		fmt.Fprintf(tw, "Desired:\tunknown (kdsync has applied no event of this user)\n")
	}
	fmt.Fprintf(tw, "Verdict:\t%s\n", tl.Verdict.Summary)
	_ = tw.Flush()
}

func eventDetail(e *usertrace.Event) string {
	var p []string
	if o := e.Outcome; o != nil {
		if o.Reason != "" {
			p = append(p, string(o.Reason))
		}
		if len(o.Calls) > 0 {
			p = append(p, "calls "+strings.Join(o.Calls, ","))
		}
		p = append(p, "attempts "+strconv.Itoa(o.Attempts))
		if o.LatencyMs != nil {
			p = append(p, fmt.Sprintf("latency %.0fms", *o.LatencyMs))
		}
		if o.Error != "" {
			p = append(p, clipText(o.Error, 80))
		}
	}
	if e.DeadLetter > 0 {
		p = append(p, "dead letter #"+strconv.FormatUint(e.DeadLetter, 10))
	}
	if e.Hold != nil {
		p = append(p, "guard: "+cmp.Or(string(e.Hold.Decision), "pending"))
	}
	if e.ReplayOf != "" {
		p = append(p, "replay of "+e.ReplayOf)
	}
	if e.DecodeError != "" && e.Outcome == nil {
		p = append(p, clipText(e.DecodeError, 80))
	}
	if e.EventID != "" {
		p = append(p, "id "+e.EventID)
	}
	return strings.Join(p, "; ")
}

func stateText(exists bool, dept *int64, role, status *int) string {
	if !exists {
		return "absent"
	}
	var p []string
	if dept != nil {
		p = append(p, "dept "+strconv.FormatInt(*dept, 10))
	}
	if role != nil {
		p = append(p, "role "+strconv.Itoa(*role))
	}
	if status != nil {
		p = append(p, "status "+strconv.Itoa(*status))
	}
	if len(p) == 0 {
		return "exists"
	}
	return strings.Join(p, ", ")
}

func cmdSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseUserFlags("sync", args, helpOut(args, stdout, stderr))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if !c.json {
		fmt.Fprintf(stdout, "connect: NATS %s, KooDrive %s\n", c.nats.URLs, c.api.baseURL)
	}
	js, kd, closeNATS, err := c.connect()
	if err != nil {
		return err
	}
	defer closeNATS()
	o := provision.Options{
		JetStream: js, KooDrive: kd,
		Stream: c.trace.Stream, SubjectPrefix: c.trace.SubjectPrefix,
		OutcomeStream: c.trace.OutcomeStream, OutcomePrefix: c.trace.OutcomePrefix,
		StateBucket: c.trace.StateBucket, Protect: map[string]bool{},
		Wait: c.wait, DryRun: c.dryRun,
	}
	if c.api.userID != "" {
		o.Protect[c.api.userID] = true
	}
	if !c.json {
		o.Steps = func(s provision.Step) {
			mark := ""
			if s.Failed {
				mark = "FAILED: "
			}
			fmt.Fprintf(stdout, "%s: %s%s\n", s.Name, mark, s.Detail)
		}
	}
	res, err := provision.Sync(ctx, o, c.user)
	if c.json && res != nil {
		if perr := writeJSONTo(stdout, res); err == nil {
			err = perr
		}
	}
	if err != nil {
		return err
	}
	if !c.json {
		switch {
		case res.DryRun && !res.InSync:
			fmt.Fprintln(stdout, "dry run: KooDrive differs; run without -dry-run to repair")
		default:
			fmt.Fprintf(stdout, "%s is in sync\n", c.user)
		}
	}
	return nil
}
