package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/envflag"
)

const dlqUsage = `kdsync dlq: inspect, replay and purge dead letters.

Usage:
  kdsync dlq list   [selectors] [-json]            list dead letters
  kdsync dlq show   [-json] SEQ|EVENT-ID|MSG-ID    one dead letter: event, reason, each attempt's error, origin, outcome
  kdsync dlq replay [selectors] [-dry-run] [-force] [-keep]
                                                   send dead letters through the pipeline again
  kdsync dlq purge  [selectors] -yes               remove dead letters

Selectors (all given must match): -seq 12,15-20 (DLQ sequences), -id ID,..
(event ids, or the original messages' Nats-Msg-Id),
-user USERID, -reason not_found, -action changed, -since/-until (RFC 3339,
2006-01-02, or a duration ago such as 24h). replay and purge need a
selector or -all. Connection flags (-nats-url, ...) and -dlq-stream are
also read from the environment (KDSYNC_NATS_URL, ...); selectors are not.
Run "kdsync dlq <command> -h" for every flag.
`

// cmdDLQ runs kdsync dlq <list|show|replay|purge>.
func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains([]string{"list", "show", "replay", "purge"}, args[0]) {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, dlqUsage)
			return nil
		}
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	}
	sub := args[0]
	// Connection and stream flags also come from the environment;
	// selectors and confirmations only from the command line, so that no
	// stray KDSYNC_USER or KDSYNC_YES can widen a purge.
	f, config := dlqFlags(sub, stderr)
	c, err := parseConfig(f, args[1:], config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	js, closeNATS, err := connect(c.nats)
	if err != nil {
		return err
	}
	defer closeNATS()
	store, err := dlq.New(js, c.store)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		ls, err := store.List(ctx, c.sel)
		if err != nil {
			return err
		}
		return dlq.PrintLetters(stdout, ls, c.json)
	case "show":
		return dlq.Show(ctx, stdout, store, c.ref, c.json)
	case "replay":
		return dlq.ReplayReport(ctx, stdout, store, c.sel, c.replay, c.dryRun, c.json)
	}
	return dlq.PurgeReport(ctx, stdout, store, c.sel, c.yes, c.json)
}

// dlqConfig is what kdsync dlq's flags say.
type dlqConfig struct {
	nats    consumer.ConnectOptions
	store   dlq.Options
	timeout time.Duration
	sel     dlq.Selector
	ref     string // show's argument
	json    bool
	all     bool
	dryRun  bool
	replay  dlq.ReplayOptions
	yes     bool
	conn    func() consumer.ConnectOptions
}

// dlqFlags declares the flags of kdsync dlq sub, its usage written to
// stderr; the returned function builds the configuration once they are
// parsed.
func dlqFlags(sub string, stderr io.Writer) (*cmdFlags, func() (*dlqConfig, error)) {
	var c dlqConfig
	f := newFlags("kdsync dlq " + sub)
	fs := f.FlagSet
	fs.SetOutput(stderr)
	conn := natsFlags(fs)
	dlqStreamName.bind(fs, &c.store.Stream)
	dlqPrefixName.bind(fs, &c.store.Prefix)
	outcomeStreamName.bind(fs, &c.store.OutcomeStream)
	outcomePrefixName.bind(fs, &c.store.OutcomePrefix)
	c.conn = conn
	f.CommandLineOnly()
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "how long the command may take")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	var seqs, ids, since, until string
	if sub != "show" {
		fs.StringVar(&seqs, "seq", "", "DLQ stream sequences, comma-separated; ranges as 15-20")
		fs.StringVar(&ids, "id", "", "event ids, comma-separated")
		fs.StringVar(&c.sel.User, "user", "", "user id")
		fs.StringVar(&c.sel.Reason, "reason", "", "reason (error class), e.g. not_found, permanent, retry_budget_exhausted, invalid_field")
		fs.StringVar(&c.sel.Action, "action", "", "action: hired, changed, disabled, enabled or deleted")
		fs.StringVar(&since, "since", "", "dead-lettered at or after: RFC 3339, 2006-01-02, or a duration ago (24h)")
		fs.StringVar(&until, "until", "", "dead-lettered at or before: RFC 3339, 2006-01-02, or a duration ago")
	}
	switch sub {
	case "replay":
		fs.BoolVar(&c.dryRun, "dry-run", false, "list what would be replayed, replay nothing")
		fs.BoolVar(&c.replay.Force, "force", false, "ask the consumer to apply the events even where the user's state moved on since (Kdsync-Replay-Force)")
		fs.BoolVar(&c.replay.Keep, "keep", false, "keep the dead letters after replaying them")
		fs.DurationVar(&c.replay.Wait, "wait", 30*time.Second, "wait this long for the replays' outcomes (0: do not wait); a letter whose replay the consumer skipped stays in the DLQ")
		fs.BoolVar(&c.all, "all", false, "replay every dead letter (needed when no selector is given)")
	case "purge":
		fs.BoolVar(&c.yes, "yes", false, "really remove them")
		fs.BoolVar(&c.all, "all", false, "purge every dead letter (needed when no selector is given)")
	}
	return f, func() (*dlqConfig, error) { return c.finish(sub, fs, stderr, seqs, ids, since, until) }
}

// finish reads what dlqFlags left in strings and checks the arguments.
func (c *dlqConfig) finish(sub string, fs *flag.FlagSet, stderr io.Writer, seqs, ids, since, until string) (*dlqConfig, error) {
	rest := fs.Args()
	if sub == "show" {
		if len(rest) == 0 {
			fmt.Fprintln(stderr, "kdsync dlq show: give a DLQ sequence, an event id or the original Nats-Msg-Id")
			return nil, errUsage
		}
		c.ref = rest[0]
		// Flags may follow the argument.
		if err := fs.Parse(rest[1:]); err != nil {
			return nil, err
		}
		rest = fs.Args()
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "kdsync dlq %s: unexpected arguments %q\n", sub, rest)
		return nil, errUsage
	}
	var errs []error
	var err error
	c.sel.Seqs, err = dlq.ParseSeqs(seqs)
	errs = append(errs, err)
	c.sel.IDs = envflag.List(ids)
	now := time.Now()
	c.sel.Since, err = dlq.ParseTime(since, now)
	errs = append(errs, err)
	c.sel.Until, err = dlq.ParseTime(until, now)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if (sub == "replay" || sub == "purge") && c.sel.Empty() && !c.all {
		fmt.Fprintf(stderr, "kdsync dlq %s: give a selector (-seq, -id, -user, -reason, -action, -since, -until) or -all\n", sub)
		return nil, errUsage
	}
	c.nats = c.conn()
	c.nats.Name = "kdsync-dlq"
	return c, nil
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
