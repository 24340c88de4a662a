package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
	"github.com/nats-io/nats.go/jetstream"
)

// What kdsync reconcile prints: a table and totals for people, JSON for
// scripts, a progress line on a terminal.

// ProgressLine draws a pass's progress in one line on a terminal,
// rewritten in place (kdsync reconcile; Options.Progress = p.Show). Rate
// is the pass's request rate, shown with it.
type ProgressLine struct {
	W     io.Writer
	Rate  float64
	drawn bool
}

// Show draws pr.
func (p *ProgressLine) Show(pr Progress) {
	var s string
	switch pr.Phase {
	case PhaseState:
		s = fmt.Sprintf("reading kdsync's records: %d", pr.Users)
	case PhaseSource:
		s = fmt.Sprintf("read %d desired users", pr.Users)
	case PhaseKooDrive:
		of := ""
		if pr.Of > 0 {
			of = fmt.Sprintf(" of %d (%d%%)", pr.Of, 100*pr.Users/pr.Of)
		}
		s = fmt.Sprintf("reading KooDrive: %d users%s, %d requests (at most %g/s)", pr.Users, of, pr.Requests, p.Rate)
	case PhasePublish:
		s = "publishing repairs…"
		if pr.Done {
			s = fmt.Sprintf("published %d repairs, waiting for outcomes…", pr.Users)
		}
	}
	fmt.Fprintf(p.W, "\r\033[K%s", s)
	p.drawn = true
}

// Clear removes the line, if drawn; p may be nil.
func (p *ProgressLine) Clear() {
	if p != nil && p.drawn {
		fmt.Fprint(p.W, "\r\033[K")
	}
}

// PrintJSON writes res as JSON (kdsync reconcile -json).
func PrintJSON(w io.Writer, res *Result) error {
	type jsonResult struct {
		*Result
		DurationMs float64 `json:"durationMs"`
		ReadMs     float64 `json:"readMs"`
		Duration   any     `json:"duration,omitempty"`
		Read       any     `json:"read,omitempty"`
	}
	if res.Drifts == nil {
		res.Drifts = []Drift{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonResult{Result: res, DurationMs: ms(res.Duration), ReadMs: ms(res.Read)})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PrintOptions say how the pass Print reports was asked for.
type PrintOptions struct {
	Source string        // the desired state's file
	Rate   float64       // KooDrive requests per second
	Apply  bool          // repairs were to be published
	Wait   time.Duration // for their outcomes
}

// Print writes res for a terminal (kdsync reconcile): the drift as a
// table, then the totals.
func Print(w io.Writer, res *Result, c PrintOptions) error {
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
		fmt.Fprintf(w, "desired:   %d users from %s\n", t.Desired, c.Source)
	}
	how := "GET /userList"
	if res.PerUser {
		how = "GET /users/{userId}"
	}
	fmt.Fprintf(w, "KooDrive:  %d users, read in %s with %d requests (%s, at most %g/s)\n",
		t.KooDrive, res.Read.Round(time.Millisecond), res.Requests, how, c.Rate)
	fmt.Fprintf(w, "in sync:   %d", t.InSync)
	if t.DisabledAbsent > 0 {
		fmt.Fprintf(w, " (%d of them absent, as disabled or deleted users may be)", t.DisabledAbsent)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "drifted:   %d users:", t.Drifted)
	for _, k := range Kinds {
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
		if c.Apply {
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
			res.Outcomes[string(outcome.Deadlettered)], res.Outcomes["pending"], c.Wait)
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

func desiredText(d *Desired) string {
	switch {
	case d == nil:
		return "(not listed)"
	case d.Absent:
		return "(deleted: disabled or absent)"
	}
	return optText(d.DeptID) + "/" + optText(d.Role) + "/" + optText(d.Status)
}

func actualText(a *Actual) string {
	if a == nil {
		return "(absent)"
	}
	return fmt.Sprintf("%s/%d/%d", a.DeptID, a.Role, a.Status)
}

func repairText(r *Repair) string {
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

func resultText(r *Repair) string {
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

// ReportOptions say how kdsync reconcile runs and reports a pass.
type ReportOptions struct {
	// Pass is the pass to run; RunReport opens its Source.
	Pass Options
	// Source is the desired state's file (- is standard input), opened
	// unless the pass reads FromState; its name gives the format when
	// the pass's is FormatAuto, its modification time AsOf when unset.
	Source string
	Rate   float64 // KooDrive requests per second, for the report
	JSON   bool
	// Progress, when set (a terminal), shows how the pass is getting on.
	Progress io.Writer
	// FailOnDrift makes drift found, and not applied, an error.
	FailOnDrift bool
	// Timeout bounds the whole pass; 0: none.
	Timeout time.Duration
	// Connect, when the pass needs JetStream (FromState, Apply) and
	// Pass.JetStream is nil, dials it once the source is open; the
	// returned function closes it.
	Connect func() (jetstream.JetStream, func(), error)
}

// Validate reports every problem of r at once, before anything is opened
// or read; the messages name kdsync reconcile's flags.
func (r *ReportOptions) Validate() error {
	var errs []error
	switch {
	case r.Pass.FromState && r.Source != "":
		errs = append(errs, errors.New("give -source or -from-state, not both"))
	case !r.Pass.FromState && r.Source == "":
		errs = append(errs, errors.New("give the desired state: -source FILE or -from-state"))
	}
	errs = append(errs, CheckRate(r.Rate))
	if w := r.Pass.Workers; w < 1 || w > 64 {
		errs = append(errs, fmt.Errorf("-workers %d: want 1 to 64", w))
	}
	return errors.Join(append(errs, r.Pass.Validate())...)
}

// RunReport validates r, runs its pass and writes the report to w (Print,
// or PrintJSON), also when the pass failed part way.
func RunReport(ctx context.Context, w io.Writer, r ReportOptions) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	o := r.Pass
	if !o.FromState {
		src, modTime, closeSource, err := OpenSource(r.Source)
		if err != nil {
			return err
		}
		defer closeSource()
		o.Source = src
		if o.Format == FormatAuto {
			o.Format = FormatOf(r.Source)
		}
		if o.AsOf.IsZero() {
			o.AsOf = modTime
		}
	}
	if (o.FromState || o.Apply) && o.JetStream == nil && r.Connect != nil {
		js, closeJS, err := r.Connect()
		if err != nil {
			return err
		}
		defer closeJS()
		o.JetStream = js
	}
	var bar *ProgressLine
	if r.Progress != nil {
		bar = &ProgressLine{W: r.Progress, Rate: r.Rate}
		o.Progress = bar.Show
	}
	res, err := Run(ctx, o)
	bar.Clear()
	if res != nil {
		var perr error
		if r.JSON {
			perr = PrintJSON(w, res)
		} else {
			perr = Print(w, res, PrintOptions{Source: r.Source, Rate: r.Rate, Apply: o.Apply, Wait: o.Wait})
		}
		if err == nil {
			err = perr
		}
	}
	if err != nil {
		return err
	}
	if r.FailOnDrift && res.Totals.Drifted > 0 && !o.Apply {
		return fmt.Errorf("drift found: %d users", res.Totals.Drifted)
	}
	return nil
}
