package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/dlq"
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
	if len(args) == 0 || !slices.Contains(dlq.Verbs, args[0]) {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, dlqUsage)
			return nil
		}
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	}
	// Connection and stream flags also come from the environment;
	// selectors and confirmations only from the command line, so that no
	// stray KDSYNC_USER or KDSYNC_YES can widen a purge.
	f, config := dlqFlags(args[0], stderr)
	c, err := parseOperand(f, args[1:], config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	js, closeNATS, err := consumer.ConnectJetStream(c.nats)
	if err != nil {
		return err
	}
	defer closeNATS()
	store, err := dlq.New(js, c.store)
	if err != nil {
		return err
	}
	return c.cmd.Run(ctx, stdout, store)
}

// dlqConfig is what kdsync dlq's flags say.
type dlqConfig struct {
	nats    consumer.ConnectOptions
	store   dlq.Options
	timeout time.Duration
	cmd     dlq.Command
}

// dlqFlags declares the flags of kdsync dlq sub, its usage written to
// stderr; the returned function builds the configuration once they are
// parsed, from them and show's operand.
func dlqFlags(sub string, stderr io.Writer) (*cmdFlags, func(operand string) (*dlqConfig, error)) {
	c := dlqConfig{cmd: dlq.Command{Verb: sub}}
	d := &c.cmd
	f := newFlags("kdsync dlq " + sub)
	fs := f.FlagSet
	fs.SetOutput(stderr)
	conn := natsFlags(fs)
	dlqStreamName.bind(fs, &c.store.Stream)
	dlqPrefixName.bind(fs, &c.store.Prefix)
	outcomeStreamName.bind(fs, &c.store.OutcomeStream)
	outcomePrefixName.bind(fs, &c.store.OutcomePrefix)
	f.CommandLineOnly()
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "how long the command may take")
	fs.BoolVar(&d.JSON, "json", false, "print JSON instead of a table")
	var seqs, ids, since, until string
	if sub != "show" {
		fs.StringVar(&seqs, "seq", "", "DLQ stream sequences, comma-separated; ranges as 15-20")
		fs.StringVar(&ids, "id", "", "event ids, comma-separated")
		fs.StringVar(&d.Sel.User, "user", "", "user id")
		fs.StringVar(&d.Sel.Reason, "reason", "", "reason (error class), e.g. not_found, permanent, retry_budget_exhausted, invalid_field")
		fs.StringVar(&d.Sel.Action, "action", "", "action: hired, changed, disabled, enabled or deleted")
		fs.StringVar(&since, "since", "", "dead-lettered at or after: RFC 3339, 2006-01-02, or a duration ago (24h)")
		fs.StringVar(&until, "until", "", "dead-lettered at or before: RFC 3339, 2006-01-02, or a duration ago")
	}
	switch sub {
	case "replay":
		fs.BoolVar(&d.DryRun, "dry-run", false, "list what would be replayed, replay nothing")
		fs.BoolVar(&d.Replay.Force, "force", false, "ask the consumer to apply the events even where the user's state moved on since (Kdsync-Replay-Force)")
		fs.BoolVar(&d.Replay.Keep, "keep", false, "keep the dead letters after replaying them")
		fs.DurationVar(&d.Replay.Wait, "wait", 30*time.Second, "wait this long for the replays' outcomes (0: do not wait); a letter whose replay the consumer skipped stays in the DLQ")
		fs.BoolVar(&d.All, "all", false, "replay every dead letter (needed when no selector is given)")
	case "purge":
		fs.BoolVar(&d.Yes, "yes", false, "really remove them")
		fs.BoolVar(&d.All, "all", false, "purge every dead letter (needed when no selector is given)")
	}
	return f, func(operand string) (*dlqConfig, error) {
		rest := f.Args()
		if sub == "show" {
			d.Ref = operand
		} else if operand != "" {
			rest = append([]string{operand}, rest...)
		}
		if err := noArgs(stderr, f.Name(), rest); err != nil {
			return nil, err
		}
		if err := d.Sel.Parse(seqs, ids, since, until, time.Now()); err != nil {
			return nil, err
		}
		if err := d.Validate(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f.Name(), err)
			return nil, errUsage
		}
		c.nats = conn()
		c.nats.Name = "kdsync-dlq"
		return &c, nil
	}
}
