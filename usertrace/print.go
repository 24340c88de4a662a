package usertrace

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kdsync/kdsync/reconcile"
)

// Report traces user with the options o (kdsync user) and writes the
// timeline to w: Print, or with asJSON as JSON.
func Report(ctx context.Context, w io.Writer, o Options, user string, asJSON bool) error {
	tr, err := New(o)
	if err != nil {
		return err
	}
	tl, err := tr.Trace(ctx, user)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(tl)
	}
	Print(w, tl, tr.Options())
	return nil
}

// Print writes tl for a terminal (kdsync user), o being the options
// it was traced with.
func Print(w io.Writer, tl *Timeline, o Options) {
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

func eventDetail(e *Event) string {
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
