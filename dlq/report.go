package dlq

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kdsync/kdsync/outcome"
)

// What kdsync dlq prints: tables for people, JSON for scripts.

// PrintLetters prints letters as a table (kdsync dlq list) or JSON.
func PrintLetters(w io.Writer, ls []*Letter, asJSON bool) error {
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
	*Letter
	Body    any              `json:"body"`
	Outcome *outcome.Outcome `json:"outcome,omitempty"`
}

func viewOf(l *Letter, out *outcome.Outcome) letterView {
	v := letterView{Letter: l, Outcome: out, Body: string(l.Data)}
	if json.Valid(l.Data) {
		v.Body = json.RawMessage(l.Data)
	}
	return v
}

// Show prints the dead letters ref names (kdsync dlq show): each with its
// event, reason, attempts, origin and outcome.
func Show(ctx context.Context, w io.Writer, store *Store, ref string, asJSON bool) error {
	ls, err := store.Find(ctx, ref)
	if err != nil {
		return err
	}
	if len(ls) == 0 {
		return fmt.Errorf("no dead letter has sequence, event id or original Nats-Msg-Id %q", ref)
	}
	var views []letterView
	for _, l := range ls {
		out, err := store.Outcome(ctx, l)
		if err != nil {
			return err
		}
		views = append(views, viewOf(l, out))
	}
	if asJSON {
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

func printLetter(w io.Writer, v letterView, store *Store) {
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
func printAttempts(w io.Writer, l *Letter) {
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

// ReplayReport replays the dead letters sel selects (kdsync dlq replay),
// or with dryRun lists them, and reports what became of each.
func ReplayReport(ctx context.Context, w io.Writer, store *Store, sel Selector, o ReplayOptions, dryRun, asJSON bool) error {
	ls, err := store.List(ctx, sel)
	if err != nil {
		return err
	}
	if dryRun {
		fmt.Fprintln(w, "Would replay (dry run):")
		return PrintLetters(w, ls, asJSON)
	}
	rs := store.Replay(ctx, ls, o)
	if asJSON {
		type result struct {
			*Replayed
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
		if !asJSON {
			fmt.Fprintln(w, replayLine(store, r))
		}
	}
	if !asJSON {
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
func replayLine(store *Store, r *Replayed) string {
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

// PurgeReport removes the dead letters sel selects (kdsync dlq purge);
// without yes it only lists them, and says so in its error.
func PurgeReport(ctx context.Context, w io.Writer, store *Store, sel Selector, yes, asJSON bool) error {
	ls, err := store.List(ctx, sel)
	if err != nil {
		return err
	}
	if !yes {
		fmt.Fprintln(w, "Would purge:")
		if err := PrintLetters(w, ls, asJSON); err != nil {
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
