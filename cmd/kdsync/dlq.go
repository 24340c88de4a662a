package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/outcome"
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
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, dlqUsage)
			return nil
		}
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	}
	sub := args[0]
	c, err := parseDLQFlags(sub, args[1:], stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	nc, err := consumer.Connect(c.nats, nil, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
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
		return printLetters(stdout, ls, c.json)
	case "show":
		return dlqShow(ctx, store, c, stdout)
	case "replay":
		return dlqReplay(ctx, store, c, stdout)
	}
	return dlqPurge(ctx, store, c, stdout)
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
	force   bool
	keep    bool
	wait    time.Duration
	yes     bool
}

// parseDLQFlags parses sub's flags. Connection and stream flags also come
// from the environment; selectors and confirmations only from the command
// line, so that no stray KDSYNC_USER or KDSYNC_YES can widen a purge.
func parseDLQFlags(sub string, args []string, stderr io.Writer) (*dlqConfig, error) {
	var c dlqConfig
	env := flag.NewFlagSet("kdsync dlq "+sub, flag.ContinueOnError)
	env.SetOutput(io.Discard)
	conn := natsFlags(env)
	env.StringVar(&c.store.Stream, "dlq-stream", "KDSYNC_DLQ", "stream of dead letters")
	env.StringVar(&c.store.Prefix, "dlq-prefix", "kdsync.dlq", "subject prefix of dead letters: <prefix>.<reason>.<action>.<userId>")
	env.StringVar(&c.store.OutcomeStream, "outcome-stream", "KDSYNC_OUTCOMES", "stream of outcomes")
	env.StringVar(&c.store.OutcomePrefix, "outcome-prefix", "kdsync.outcome", "subject prefix of outcomes")

	fs := flag.NewFlagSet("kdsync dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
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
		fs.BoolVar(&c.force, "force", false, "ask the consumer to apply the events even where the user's state moved on since (Kdsync-Replay-Force)")
		fs.BoolVar(&c.keep, "keep", false, "keep the dead letters after replaying them")
		fs.DurationVar(&c.wait, "wait", 30*time.Second, "wait this long for the replays' outcomes (0: do not wait); a letter whose replay the consumer skipped stays in the DLQ")
		fs.BoolVar(&c.all, "all", false, "replay every dead letter (needed when no selector is given)")
	case "purge":
		fs.BoolVar(&c.yes, "yes", false, "really remove them")
		fs.BoolVar(&c.all, "all", false, "purge every dead letter (needed when no selector is given)")
	}
	if err := ff.Parse(env, nil, ff.WithEnvVarPrefix("KDSYNC")); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
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
	c.sel.Seqs, err = parseSeqs(seqs)
	errs = append(errs, err)
	c.sel.IDs = splitList(ids)
	now := time.Now()
	c.sel.Since, err = parseWhen(since, now)
	errs = append(errs, err)
	c.sel.Until, err = parseWhen(until, now)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if (sub == "replay" || sub == "purge") && c.sel.Empty() && !c.all {
		fmt.Fprintf(stderr, "kdsync dlq %s: give a selector (-seq, -id, -user, -reason, -action, -since, -until) or -all\n", sub)
		return nil, errUsage
	}
	c.nats = conn()
	c.nats.Name = "kdsync-dlq"
	return &c, nil
}

// parseSeqs reads "12,15-20".
func parseSeqs(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range splitList(s) {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 64)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 64)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a || b-a > 100_000 {
			return nil, fmt.Errorf("-seq %q: want sequences or ranges such as 12,15-20", part)
		}
		for q := a; q <= b; q++ {
			out = append(out, q)
		}
	}
	return out, nil
}

// parseWhen reads an RFC 3339 time, a date, or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) or a duration ago (24h)", s)
}

// printLetters prints letters as a table or JSON.
func printLetters(w io.Writer, ls []*dlq.Letter, asJSON bool) error {
	if asJSON {
		views := make([]letterView, len(ls))
		for i, l := range ls {
			views[i] = viewOf(l, nil)
		}
		return writeJSONTo(w, views)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD AT\tREASON\tACTION\tUSER\tEVENT ID\tATTEMPTS\tERROR")
	for _, l := range ls {
		// Columns are clipped (dlq show prints them whole): one very long
		// id must not widen every row.
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Seq, l.Stored.Format(time.RFC3339), clipText(l.Reason, 24), clipText(l.Action, 12),
			clipText(cmp.Or(l.UserID, "-"), 24), clipText(cmp.Or(l.EventID, "-"), 40), l.Attempts, clipText(l.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d dead letter%s\n", len(ls), plural(len(ls)))
	return err
}

// letterView is a letter as kdsync dlq prints it in JSON: the event body
// as JSON when it is JSON, else as text.
type letterView struct {
	*dlq.Letter
	Body    any              `json:"body"`
	Outcome *outcome.Outcome `json:"outcome,omitempty"`
}

func viewOf(l *dlq.Letter, out *outcome.Outcome) letterView {
	v := letterView{Letter: l, Outcome: out, Body: string(l.Data)}
	if json.Valid(l.Data) {
		v.Body = json.RawMessage(l.Data)
	}
	return v
}

func dlqShow(ctx context.Context, store *dlq.Store, c *dlqConfig, w io.Writer) error {
	ls, err := store.Find(ctx, c.ref)
	if err != nil {
		return err
	}
	if len(ls) == 0 {
		return fmt.Errorf("no dead letter has sequence, event id or original Nats-Msg-Id %q", c.ref)
	}
	var views []letterView
	for _, l := range ls {
		out, err := store.Outcome(ctx, l)
		if err != nil {
			return err
		}
		views = append(views, viewOf(l, out))
	}
	if c.json {
		if len(views) == 1 {
			return writeJSONTo(w, views[0])
		}
		return writeJSONTo(w, views)
	}
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(w)
		}
		printLetter(w, v, store)
	}
	return nil
}

func printLetter(w io.Writer, v letterView, store *dlq.Store) {
	l := v.Letter
	fmt.Fprintf(w, "Dead letter %s (subject %s), stored %s\n", store.Ref(l), l.Subject, l.Stored.Format(time.RFC3339Nano))
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "  reason:\t%s\n", l.Reason)
	fmt.Fprintf(tw, "  error:\t%s\n", l.Error)
	fmt.Fprintf(tw, "  attempts:\t%d\n", l.Attempts)
	fmt.Fprintf(tw, "  dead at:\t%s\n", l.DeadAt.Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "  event:\tid %s, source %s, user %s, action %s\n", cmp.Or(l.EventID, "-"), cmp.Or(l.Source, "-"), cmp.Or(l.UserID, "-"), l.Action)
	fmt.Fprintf(tw, "  original:\t%s, %s #%d, Nats-Msg-Id %s\n", l.OriginalSubject, l.OriginalStream, l.OriginalSeq, cmp.Or(l.OriginalMsgID, "-"))
	if l.ReplayOf != "" {
		fmt.Fprintf(tw, "  replay of:\t%s (it died again)\n", l.ReplayOf)
	}
	_ = tw.Flush()
	printAttempts(w, l)
	fmt.Fprintln(w, "Headers of the original event:")
	keys := make([]string, 0, len(l.Header))
	for k := range l.Header {
		if !strings.HasPrefix(strings.ToLower(k), "kdsync-") && !strings.HasPrefix(strings.ToLower(k), "nats-") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, val := range l.Header[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, val)
		}
	}
	if len(keys) == 0 {
		fmt.Fprintln(w, "  (none: structured mode)")
	}
	fmt.Fprintln(w, "Event body:")
	fmt.Fprintln(w, indentJSON(l.Data))
	if v.Outcome != nil {
		b, _ := json.MarshalIndent(v.Outcome, "  ", "  ")
		fmt.Fprintf(w, "Outcome (%s #%d):\n  %s\n", v.Outcome.Stream, v.Outcome.Sequence, b)
	} else {
		fmt.Fprintln(w, "Outcome: not found (outcomes expire; see KDSYNC_OUTCOMES)")
	}
}

// printAttempts prints the letter's attempt log as a table, saying where
// attempts were left out of it.
func printAttempts(w io.Writer, l *dlq.Letter) {
	if len(l.AttemptLog) == 0 {
		return
	}
	if total := max(l.Attempts, len(l.AttemptLog)); total > len(l.AttemptLog) {
		fmt.Fprintf(w, "Attempts (%d, the first and last %d kept):\n", total, len(l.AttemptLog))
	} else {
		fmt.Fprintf(w, "Attempts (%d):\n", total)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  N\tTIME\tCLASS\tERROR")
	notKept := func(n int) {
		if n > 0 {
			fmt.Fprintf(tw, "  …\t%d attempt%s not kept …\t\t\n", n, plural(n))
		}
	}
	prev := 0
	for _, a := range l.AttemptLog {
		notKept(a.N - prev - 1)
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", a.N, a.At.Format(attemptTime), cmp.Or(a.Class, "-"), a.Error)
		prev = a.N
	}
	notKept(l.Attempts - prev)
	_ = tw.Flush()
}

// attemptTime is how kdsync dlq show prints an attempt's time.
const attemptTime = "2006-01-02T15:04:05.000Z07:00"

func dlqReplay(ctx context.Context, store *dlq.Store, c *dlqConfig, w io.Writer) error {
	ls, err := store.List(ctx, c.sel)
	if err != nil {
		return err
	}
	if c.dryRun {
		fmt.Fprintln(w, "Would replay (dry run):")
		return printLetters(w, ls, c.json)
	}
	rs := store.Replay(ctx, ls, dlq.ReplayOptions{Keep: c.keep, Force: c.force, Wait: c.wait})
	if c.json {
		type result struct {
			*dlq.Replayed
			Error string `json:"error,omitempty"`
		}
		out := make([]result, len(rs))
		for i, r := range rs {
			out[i] = result{Replayed: r}
			if r.Err != nil {
				out[i].Error = r.Err.Error()
			}
		}
		if err := writeJSONTo(w, out); err != nil {
			return err
		}
	}
	var failed, skipped, removed int
	for _, r := range rs {
		switch {
		case r.Err != nil:
			failed++
		case r.Skipped():
			skipped++
		}
		if r.Removed {
			removed++
		}
		if !c.json {
			fmt.Fprintln(w, replayLine(store, r))
		}
	}
	if !c.json {
		fmt.Fprintf(w, "%d dead letter%s: %d replayed, %d failed, %d skipped by the consumer; %d removed from the DLQ\n",
			len(rs), plural(len(rs)), len(rs)-failed, failed, skipped, removed)
		if skipped > 0 {
			fmt.Fprintln(w, "Skipped replays stay in the DLQ; docs/dead-letters.md says why the consumer skips one and what to do.")
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d replay%s failed", failed, plural(failed))
	}
	return nil
}

// replayLine says in one line what became of a replay.
func replayLine(store *dlq.Store, r *dlq.Replayed) string {
	l := r.Letter
	head := fmt.Sprintf("%s (event %s, user %s)", store.Ref(l), cmp.Or(l.EventID, "-"), cmp.Or(l.UserID, "-"))
	if r.Seq == 0 {
		return fmt.Sprintf("%s: FAILED: %v", head, r.Err)
	}
	where := fmt.Sprintf("%s -> %s #%d", head, r.Stream, r.Seq)
	if r.Duplicate {
		where += " (replayed before: stored once)"
	}
	var verdict string
	switch o := r.Outcome; {
	case o == nil:
		verdict = "no outcome yet (watch kdsync.outcome.>)"
	case o.Result == outcome.Deadlettered:
		verdict = fmt.Sprintf("dead-lettered again (%s: %s)", o.Reason, o.Error)
	case o.Reason != "":
		verdict = fmt.Sprintf("%s (%s)", o.Result, o.Reason)
	default:
		verdict = string(o.Result)
	}
	state := "removed from the DLQ"
	switch {
	case r.Err != nil:
		state = "FAILED: " + r.Err.Error()
	case !r.Removed:
		state = "kept in the DLQ"
	}
	return fmt.Sprintf("%s: %s; %s", where, verdict, state)
}

func dlqPurge(ctx context.Context, store *dlq.Store, c *dlqConfig, w io.Writer) error {
	ls, err := store.List(ctx, c.sel)
	if err != nil {
		return err
	}
	if !c.yes {
		fmt.Fprintln(w, "Would purge:")
		if err := printLetters(w, ls, c.json); err != nil {
			return err
		}
		return fmt.Errorf("nothing purged: add -yes to remove the %d dead letter%s listed", len(ls), plural(len(ls)))
	}
	for _, l := range ls {
		if err := store.Purge(ctx, l); err != nil {
			return fmt.Errorf("after %d purged: %w", slices.Index(ls, l), err)
		}
	}
	fmt.Fprintf(w, "purged %d dead letter%s\n", len(ls), plural(len(ls)))
	return nil
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func indentJSON(b []byte) string {
	var buf bytes.Buffer
	if json.Indent(&buf, b, "  ", "  ") == nil {
		return "  " + buf.String()
	}
	return "  " + strconv.Quote(string(b))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
