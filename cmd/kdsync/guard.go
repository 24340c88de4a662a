package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/outcome"
)

// shadowGuardBucket is the guard's bucket in shadow mode (kdsync run
// -shadow), apart from the active instances' KDSYNC_GUARD.
const shadowGuardBucket = "KDSYNC_SHADOW_GUARD"

// shadowParkStream and shadowParkPrefix are where a shadow instance parks
// the events its guard holds.
const (
	shadowParkStream = "KDSYNC_SHADOW_PARKED"
	shadowParkPrefix = "kdsync.shadow-parked"
)

const guardUsage = `Usage: kdsync guard status|release|reject [flags]

  status                      the held deprovisioning events and the window's count
  release -seq N,... | -all   apply the held events, in order
  reject  -seq N,... | -all   do not apply them: each gets a skipped outcome (guard_rejected)

Held events, and the later events of their users, are parked in the
stream KDSYNC_PARKED, out of kdsync's ack window: status counts them.

A shadow instance (kdsync run -shadow) holds in its own bucket,
KDSYNC_SHADOW_GUARD, and parks in KDSYNC_SHADOW_PARKED: add -shadow to
reach them. Its decisions change nothing
in KooDrive either way.

The connection flags, -guard-bucket and -deprovision-limit are also read
from the environment (KDSYNC_NATS_URL, KDSYNC_GUARD_BUCKET, ...), as kdsync
run reads them; -seq, -all, -by and -shadow only from the command line, so
that no stray KDSYNC_ALL can release anything.
`

// guardConfig is what kdsync guard's flags say.
type guardConfig struct {
	nats       consumer.ConnectOptions
	bucket     string
	parkStream string
	limit      guard.Limit
	json       bool
	seqs       []uint64
	all        bool
	by         string
}

// guardFlags declares kdsync guard's flags: on env those also read from
// the environment, on fs all of them, its usage written to out. The
// returned function builds the configuration once both are parsed.
func guardFlags(out io.Writer) (env, fs *flag.FlagSet, config func() (*guardConfig, error)) {
	var c guardConfig
	env = flag.NewFlagSet("kdsync guard", flag.ContinueOnError)
	env.SetOutput(io.Discard)
	conn := natsFlags(env)
	env.StringVar(&c.bucket, "guard-bucket", "KDSYNC_GUARD", "the guard's KV bucket, as kdsync run's -guard-bucket")
	limit := env.String("deprovision-limit", "", "the limit kdsync runs with, e.g. 50/10m (status shows the window's count against it)")
	env.StringVar(&c.parkStream, "park-stream", "KDSYNC_PARKED", "status: the stream kdsync parks held events in, as kdsync run's -park-stream")

	fs = flag.NewFlagSet("kdsync guard", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, guardUsage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	env.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	fs.BoolVar(&c.json, "json", false, "status: print JSON")
	seqList := fs.String("seq", "", "release, reject: stream sequences of held events, e.g. 1041,1045-1050 (see kdsync guard status)")
	fs.BoolVar(&c.all, "all", false, "release, reject: every held event pending a decision")
	fs.StringVar(&c.by, "by", os.Getenv("USER"), "release, reject: who decides, recorded with the decision")
	shadow := fs.Bool("shadow", false, "the shadow instance's guard: bucket "+shadowGuardBucket+" unless -guard-bucket (or KDSYNC_GUARD_BUCKET) names another, as kdsync run -shadow")

	return env, fs, func() (*guardConfig, error) {
		c.nats = conn()
		var errs []error
		var err error
		if c.limit, err = guard.ParseLimit(*limit); err != nil {
			errs = append(errs, err)
		}
		set := map[string]bool{}
		env.Visit(func(f *flag.Flag) { set[f.Name] = true })
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if *shadow && !set["guard-bucket"] {
			c.bucket = shadowGuardBucket
		}
		if *shadow && !set["park-stream"] {
			c.parkStream = shadowParkStream
		}
		if c.seqs, err = parseSeqs(*seqList); err != nil {
			errs = append(errs, err)
		}
		return &c, errors.Join(errs...)
	}
}

// parseGuardFlags reads the flags of kdsync guard verb from args and the
// environment.
func parseGuardFlags(verb string, args []string, stderr io.Writer) (*guardConfig, error) {
	env, fs, config := guardFlags(stderr)
	if err := ff.Parse(env, nil, ff.WithEnvVarPrefix("KDSYNC")); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage // explained by fs
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kdsync guard %s: unexpected argument %q (see kdsync guard -h)\n", verb, fs.Arg(0))
		return nil, errUsage
	}
	c, err := config()
	if err != nil {
		return nil, err
	}
	switch verb {
	case "release", "reject":
		if (len(c.seqs) == 0) == !c.all {
			return nil, errors.New("name the held events with -seq, or give -all (see kdsync guard status)")
		}
	default:
		if len(c.seqs) > 0 || c.all {
			return nil, fmt.Errorf("-seq and -all go with release and reject, not %s", verb)
		}
	}
	return c, nil
}

func cmdGuard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, guardUsage)
		return errUsage
	}
	verb := args[0]
	switch verb {
	case "help", "-h", "-help", "--help":
		_, fs, _ := guardFlags(stdout)
		fs.Usage()
		return nil
	case "status", "release", "reject":
	default:
		fmt.Fprintf(stderr, "kdsync guard: unknown command %q\n\n%s", verb, guardUsage)
		return errUsage
	}
	c, err := parseGuardFlags(verb, args[1:], stderr)
	if err != nil {
		return err
	}
	nc, err := consumer.Connect(c.nats, nil, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	st, err := guard.Open(ctx, js, c.bucket, 1, false)
	if err != nil {
		return fmt.Errorf("%w (is kdsync running with KDSYNC_DEPROVISION_LIMIT? a shadow instance's guard needs -shadow)", err)
	}
	if verb == "status" {
		return guardStatus(ctx, js, st, c, stdout)
	}
	return guardDecide(ctx, st, c, guard.Decision(verb), stdout)
}

// guardStatus prints the held events, the window's count and what is
// parked: the held events and their users' later events, out of kdsync's
// ack window.
func guardStatus(ctx context.Context, js jetstream.JetStream, st *guard.Store, c *guardConfig, stdout io.Writer) error {
	held, err := st.Held(ctx)
	if err != nil {
		return err
	}
	counted := -1
	if c.limit.N > 0 {
		if counted, err = st.Counted(ctx, c.limit); err != nil {
			return err
		}
	}
	parked, perr := guard.ReadParked(ctx, js, c.parkStream)
	if perr != nil && !errors.Is(perr, jetstream.ErrStreamNotFound) {
		return perr
	}
	if parked == nil {
		parked = &guard.Parked{Stream: c.parkStream}
	}
	parkedOf := func(h guard.Hold) uint64 {
		if h.Subject != "" {
			return parked.ByUser[consumer.ParkToken(h.Subject)]
		}
		return parked.ByUser[outcome.KVKey(h.UserID)]
	}
	if c.json {
		type heldJSON struct {
			guard.Hold
			Parked uint64 `json:"parked"`
		}
		hs := make([]heldJSON, 0, len(held))
		for _, h := range held {
			hs = append(hs, heldJSON{h, parkedOf(h)})
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"bucket": c.bucket, "held": hs, "counted": counted,
			"limit": c.limit.String(), "parked": parked})
	}
	fmt.Fprintf(stdout, "bucket: %s\n", c.bucket)
	if counted >= 0 {
		fmt.Fprintf(stdout, "window: %d of %s\n", counted, c.limit)
	} else {
		fmt.Fprintln(stdout, "window: not shown (give -deprovision-limit or KDSYNC_DEPROVISION_LIMIT)")
	}
	pending := 0
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tHELD SINCE\tACTION\tUSER\tEVENT ID\tDECISION\tPARKED")
	for _, h := range held {
		d := string(h.Decision)
		if d == "" {
			d, pending = "pending", pending+1
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", h.Seq, h.Since.UTC().Format("2006-01-02T15:04:05Z"), h.Action, h.UserID, h.EventID, d, parkedOf(h))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d held, %d pending a decision\n", len(held), pending)
	if perr != nil {
		fmt.Fprintf(stdout, "parked: none (no parking stream %s yet; see -park-stream)\n", c.parkStream)
	} else {
		fmt.Fprintf(stdout, "parked: %d events of %d users in %s, out of kdsync's ack window (other users flow); each user's are applied in order once decided\n",
			parked.Events, parked.Users, parked.Stream)
	}
	return nil
}

// guardDecide records d on the events c names, and says which of them
// were not pending a decision.
func guardDecide(ctx context.Context, st *guard.Store, c *guardConfig, d guard.Decision, stdout io.Writer) error {
	seqs := c.seqs
	if c.all {
		seqs = nil
	}
	done, err := st.Decide(ctx, seqs, d, c.by)
	past := map[guard.Decision]string{guard.Release: "released", guard.Reject: "rejected"}[d]
	for _, h := range done {
		fmt.Fprintf(stdout, "%s %d (%s %s)\n", past, h.Seq, h.Action, h.UserID)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d held events %s; kdsync acts on them within seconds\n", len(done), past)
	var missing []uint64
	for _, s := range seqs {
		if !slices.ContainsFunc(done, func(h guard.Hold) bool { return h.Seq == s }) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not pending a decision (not held, or decided already): %v (see kdsync guard status)", missing)
	}
	return nil
}
