// Package checker verifies a run of kdsync against the events it was given,
// in the manner of Jepsen's queue checker: every event's effect is found in
// KooDrive's operation log (by the X-Traceid kdsync derives from the event
// id), nothing appears that no event caused, each user's effects follow the
// user's event order, every event has exactly one outcome, and KooDrive's
// final state equals the state the events imply.
//
// Every write beyond what an event needs is reported as duplicated, and it
// is a violation unless the run declared an ambiguous fault (Ambiguity)
// that explains it: a write the simulator applied and then answered with
// an error or too late, or an instance interrupted between a write and the
// watermark that records it.
package checker

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// Event is one published event, valid or not.
type Event = workload.Intent

// Effect is one write KooDrive applied, in the order it applied them.
type Effect struct {
	UserID  string
	TraceID string
	Op      string // create, update, delete
	// At is when KooDrive applied it.
	At time.Time
	// Fault names the fault injected after the write was applied (the
	// simulator's kdsim.FaultFailAfterWrite: answered 500, or
	// kdsim.FaultSlow: answered late); empty when it was answered
	// normally.
	Fault string
}

// Ambiguity declares the faults of a run that may make kdsync write an
// event's effect again: the only causes a duplicated effect may have. The
// zero value declares none, and then any duplicate is a violation.
type Ambiguity struct {
	// FailAfterWrite: the simulator answered some writes it had applied
	// with an error, or after the client gave up (its failAfterWrite and
	// slow faults). Each write so marked (Effect.Fault) explains one more
	// write of its event.
	FailAfterWrite bool
	// Interruptions are the moments an instance may have stopped between
	// a KooDrive write and the watermark that records it.
	Interruptions []Interruption
}

// Interruption is an instance stopped between a write and its watermark:
// SIGKILLed, or its lease lapsed (or moved) while a fenced call was already
// on the wire. It explains one more write of each event it left
// half-done: an event with a write applied no later than To and one no
// earlier than From.
type Interruption struct {
	// What describes it, for the report.
	What string
	// From is when the instance began to stop (the kill was sent, the
	// fence fell); To is when another instance, or the same restarted,
	// could take its events up. Zero means unbounded: a lapse under load
	// whose moment the test cannot know.
	From, To time.Time
	// Limit is at most how many events it may leave half-done (the writes
	// under way at once, e.g. kdsync's concurrency); 0 means no limit.
	Limit int
}

// UserState is a user's final state in KooDrive.
type UserState struct {
	DeptID int64
	Role   int
	Status int
}

// Input is a run to check. Events are in publish order.
type Input struct {
	Events     []Event
	Effects    []Effect
	Outcomes   []outcome.Outcome
	Final      map[string]UserState
	HardDelete bool
	// Ambiguous declares the faults that may explain duplicated effects.
	Ambiguous Ambiguity
}

// Report lists what the check found. Each slice holds event ids (or user
// ids for state mismatches).
type Report struct {
	Events int
	// Lost: an event with no outcome, or applied with no effect.
	Lost []string
	// Unexpected: effects whose trace id matches no event.
	Unexpected []string
	// Duplicated: every effect beyond what its event needs, one entry
	// per extra write.
	Duplicated []string
	// Unexplained: the duplicated effects no declared ambiguous fault
	// explains; any is a violation.
	Unexplained []string
	// Reordered: an effect of an older event after one of a newer event
	// of the same user.
	Reordered []string
	// OutcomeMissing, OutcomeDuplicated: events without exactly one
	// outcome.
	OutcomeMissing    []string
	OutcomeDuplicated []string
	// WrongResult: bad events not dead-lettered, or good events
	// dead-lettered.
	WrongResult []string
	// StateMismatch: users whose final state differs from the implied one.
	StateMismatch []string
}

// OK reports whether the run kept every promise.
func (r *Report) OK() bool {
	return len(r.Lost) == 0 && len(r.Unexpected) == 0 && len(r.Unexplained) == 0 && len(r.Reordered) == 0 &&
		len(r.OutcomeMissing) == 0 && len(r.OutcomeDuplicated) == 0 &&
		len(r.WrongResult) == 0 && len(r.StateMismatch) == 0
}

// String summarises the report in one line, with a few examples per
// violation.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events=%d lost=%d unexpected=%d duplicated=%d unexplained=%d reordered=%d outcome_missing=%d outcome_duplicated=%d wrong_result=%d state_mismatch=%d",
		r.Events, len(r.Lost), len(r.Unexpected), len(r.Duplicated), len(r.Unexplained), len(r.Reordered),
		len(r.OutcomeMissing), len(r.OutcomeDuplicated), len(r.WrongResult), len(r.StateMismatch))
	for _, v := range []struct {
		name string
		s    []string
	}{{"lost", r.Lost}, {"unexpected", r.Unexpected}, {"unexplained", r.Unexplained}, {"reordered", r.Reordered},
		{"outcome_missing", r.OutcomeMissing}, {"outcome_duplicated", r.OutcomeDuplicated},
		{"wrong_result", r.WrongResult}, {"state_mismatch", r.StateMismatch}} {
		if len(v.s) > 0 {
			fmt.Fprintf(&b, "\n  %s e.g. %v", v.name, v.s[:min(5, len(v.s))])
		}
	}
	return b.String()
}

// Check checks in.
func Check(in Input) *Report {
	r := &Report{Events: len(in.Events)}
	byTrace := make(map[string]int, len(in.Events)) // trace id -> event index
	userIndex := make([]int, len(in.Events))        // position in its user's order
	perUser := map[string]int{}
	for i, ev := range in.Events {
		byTrace[kdapi.TraceID(ev.ID)] = i
		userIndex[i] = perUser[ev.UserID]
		perUser[ev.UserID]++
	}

	// Outcomes: exactly one per event.
	outcomes := map[string][]outcome.Outcome{}
	for _, o := range in.Outcomes {
		outcomes[o.EventID] = append(outcomes[o.EventID], o)
	}
	for _, ev := range in.Events {
		os := outcomes[ev.ID]
		switch {
		case len(os) == 0:
			r.OutcomeMissing = append(r.OutcomeMissing, ev.ID)
			r.Lost = append(r.Lost, ev.ID)
			continue
		case len(os) > 1:
			r.OutcomeDuplicated = append(r.OutcomeDuplicated, ev.ID)
		}
		// A bad event must be dead-lettered; a good one applied, or skipped
		// only when it needs no call.
		res := os[0].Result
		ok := res == outcome.Deadlettered
		if !ev.Bad {
			ok = res == outcome.Applied || res == outcome.Skipped && os[0].Reason == outcome.SkipNoop && expectedWrites(ev) == 0
		}
		if !ok {
			r.WrongResult = append(r.WrongResult, fmt.Sprintf("%s:%s/%s(%s)", ev.ID, res, os[0].Reason, os[0].Error))
		}
	}

	// Effects: each maps to an event; per user the event index never
	// goes back.
	effects := make([][]Effect, len(in.Events))
	lastIdx := map[string]int{}
	for _, ef := range in.Effects {
		i, ok := byTrace[ef.TraceID]
		if !ok || in.Events[i].UserID != ef.UserID {
			r.Unexpected = append(r.Unexpected, fmt.Sprintf("%s/%s/%s", ef.UserID, ef.Op, ef.TraceID))
			continue
		}
		effects[i] = append(effects[i], ef)
		if prev, seen := lastIdx[ef.UserID]; seen && userIndex[i] < prev {
			r.Reordered = append(r.Reordered, in.Events[i].ID)
		}
		lastIdx[ef.UserID] = max(lastIdx[ef.UserID], userIndex[i])
	}
	budget := make([]int, len(in.Ambiguous.Interruptions)) // events each explained so far
	for i, ev := range in.Events {
		efs := effects[i]
		os := outcomes[ev.ID]
		if ev.Bad || len(os) == 0 {
			if ev.Bad && len(efs) > 0 {
				r.Unexpected = append(r.Unexpected, ev.ID)
			}
			continue
		}
		var least, most int
		switch os[0].Result {
		case outcome.Applied:
			least, most = writes(ev)
		case outcome.Skipped:
			// Needs no write: every write is extra.
		default:
			continue // a good event dead-lettered: a wrong result already
		}
		if len(efs) < least {
			r.Lost = append(r.Lost, ev.ID)
		}
		for n := most; n < len(efs); n++ {
			r.Duplicated = append(r.Duplicated, fmt.Sprintf("%s (write %d of %d, %d needed)", ev.ID, n+1, len(efs), most))
		}
		if extra := len(efs) - most; extra > 0 {
			if left := extra - explain(efs, extra, in.Ambiguous, budget); left > 0 {
				r.Unexplained = append(r.Unexplained, fmt.Sprintf("%s (%d extra writes unexplained: %s)", ev.ID, left, describe(efs)))
			}
		}
	}

	// Final state.
	want := Implied(in.Events, in.HardDelete)
	for _, u := range slices.Sorted(maps.Keys(want)) {
		w := want[u]
		got, ok := in.Final[u]
		switch {
		case w == nil && ok:
			r.StateMismatch = append(r.StateMismatch, fmt.Sprintf("%s: want absent, got %+v", u, got))
		case w != nil && !ok:
			r.StateMismatch = append(r.StateMismatch, fmt.Sprintf("%s: want %+v, got absent", u, *w))
		case w != nil && got != *w:
			r.StateMismatch = append(r.StateMismatch, fmt.Sprintf("%s: want %+v, got %+v", u, *w, got))
		}
	}
	for u := range in.Final {
		if _, ok := want[u]; !ok {
			r.StateMismatch = append(r.StateMismatch, fmt.Sprintf("%s: not in any event, got %+v", u, in.Final[u]))
		}
	}
	return r
}

// writes is the least and the most number of writes an applied event
// makes without an ambiguous fault: a hire with a status other than enabled
// makes two (create, then status) unless the user existed (one PUT).
func writes(ev Event) (least, most int) {
	switch ev.Action {
	case handlers.Hired:
		if ev.Status != nil && *ev.Status != kdapi.StatusEnabled {
			return 1, 2
		}
	case handlers.Changed:
		if ev.DeptID == nil && ev.Role == nil && ev.Status == nil {
			return 0, 0
		}
	}
	return 1, 1
}

// expectedWrites is the least number of writes an applied event makes.
func expectedWrites(ev Event) int {
	least, _ := writes(ev)
	return least
}

// explain returns how many of an event's extra writes (at most extra) the
// declared ambiguous faults explain: one per write answered with an
// injected fault, and one per interruption the event's writes straddle
// (while the interruption's limit lasts; budget counts the events each
// explained).
func explain(efs []Effect, extra int, a Ambiguity, budget []int) int {
	n := 0
	if a.FailAfterWrite {
		for _, ef := range efs {
			if ef.Fault != "" {
				n++
			}
		}
	}
	if n >= extra {
		return extra
	}
	first, last := efs[0].At, efs[0].At
	for _, ef := range efs[1:] {
		if ef.At.Before(first) {
			first = ef.At
		}
		if ef.At.After(last) {
			last = ef.At
		}
	}
	for k, in := range a.Interruptions {
		if n == extra {
			break
		}
		if in.Limit > 0 && budget[k] >= in.Limit {
			continue
		}
		if (!in.To.IsZero() && first.After(in.To)) || (!in.From.IsZero() && last.Before(in.From)) {
			continue
		}
		budget[k]++
		n++
	}
	return n
}

// describe lists an event's writes: op, time and fault.
func describe(efs []Effect) string {
	parts := make([]string, len(efs))
	for i, ef := range efs {
		parts[i] = ef.Op + "@" + ef.At.Format("15:04:05.000")
		if ef.Fault != "" {
			parts[i] += "[" + ef.Fault + "]"
		}
	}
	return strings.Join(parts, " ")
}

// Implied folds the valid events per user, in order, into the final state
// they imply; nil means the user must not exist. Users whose events were
// all refused (e.g. a change before any hire) are absent from the map
// unless an event created them.
func Implied(events []Event, hardDelete bool) map[string]*UserState {
	out := map[string]*UserState{}
	for _, ev := range events {
		if ev.Bad {
			continue
		}
		cur := out[ev.UserID]
		switch ev.Action {
		case handlers.Hired:
			s := UserState{}
			if cur != nil {
				s = *cur
			}
			if ev.DeptID != nil {
				s.DeptID = *ev.DeptID
			}
			if ev.Role != nil {
				s.Role = *ev.Role
			}
			s.Status = kdapi.StatusEnabled
			if ev.Status != nil {
				s.Status = *ev.Status
			}
			out[ev.UserID] = &s
		case handlers.Changed:
			if cur == nil {
				continue
			}
			if ev.DeptID != nil {
				cur.DeptID = *ev.DeptID
			}
			if ev.Role != nil {
				cur.Role = *ev.Role
			}
			if ev.Status != nil {
				cur.Status = *ev.Status
			}
		case handlers.Disabled, handlers.Enabled:
			if cur == nil {
				continue
			}
			cur.Status = kdapi.StatusDisabled
			if ev.Action == handlers.Enabled {
				cur.Status = kdapi.StatusEnabled
			}
		case handlers.Deleted:
			if cur == nil {
				continue
			}
			if hardDelete {
				out[ev.UserID] = nil
			} else {
				cur.Status = kdapi.StatusDisabled
			}
		}
	}
	return out
}
