// Package checker verifies a run of kdsync against the events it was given,
// in the manner of Jepsen's queue checker: every event's effect is found in
// KooDrive's operation log (by the X-Traceid kdsync derives from the event
// id), nothing appears that no event caused, each user's effects follow the
// user's event order, every event has exactly one outcome, and KooDrive's
// final state equals the state the events imply.
package checker

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// Event is one published event, valid or not.
type Event struct {
	ID     string
	UserID string
	Action handlers.Action
	DeptID *int64
	Role   *int
	Status *int
	// Bad marks an event that must be dead-lettered as bad input.
	Bad bool
}

// Effect is one write KooDrive applied, in the order it applied them.
type Effect struct {
	UserID  string
	TraceID string
	Op      string // create, update, delete
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
	Outcomes   []consumer.Outcome
	Final      map[string]UserState
	HardDelete bool
}

// Report lists what the check found. Each slice holds event ids (or user
// ids for state mismatches).
type Report struct {
	Events int
	// Lost: an event with no outcome, or applied with no effect.
	Lost []string
	// Unexpected: effects whose trace id matches no event.
	Unexpected []string
	// Duplicated: extra effects of one event (allowed after an ambiguous
	// failure; reported, not a violation).
	Duplicated []string
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
	return len(r.Lost) == 0 && len(r.Unexpected) == 0 && len(r.Reordered) == 0 &&
		len(r.OutcomeMissing) == 0 && len(r.OutcomeDuplicated) == 0 &&
		len(r.WrongResult) == 0 && len(r.StateMismatch) == 0
}

// String summarises the report in one line, with a few examples per
// violation.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events=%d lost=%d unexpected=%d duplicated=%d reordered=%d outcome_missing=%d outcome_duplicated=%d wrong_result=%d state_mismatch=%d",
		r.Events, len(r.Lost), len(r.Unexpected), len(r.Duplicated), len(r.Reordered),
		len(r.OutcomeMissing), len(r.OutcomeDuplicated), len(r.WrongResult), len(r.StateMismatch))
	for name, s := range map[string][]string{"lost": r.Lost, "unexpected": r.Unexpected, "reordered": r.Reordered,
		"outcome_missing": r.OutcomeMissing, "outcome_duplicated": r.OutcomeDuplicated,
		"wrong_result": r.WrongResult, "state_mismatch": r.StateMismatch} {
		if len(s) > 0 {
			fmt.Fprintf(&b, "\n  %s e.g. %v", name, s[:min(5, len(s))])
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
	outcomes := map[string][]consumer.Outcome{}
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
		ok := res == consumer.Deadlettered
		if !ev.Bad {
			ok = res == consumer.Applied || res == consumer.Skipped && os[0].Reason == consumer.SkipNoop && expectedWrites(ev, in.HardDelete) == 0
		}
		if !ok {
			r.WrongResult = append(r.WrongResult, fmt.Sprintf("%s:%s/%s(%s)", ev.ID, res, os[0].Reason, os[0].Error))
		}
	}

	// Effects: each maps to an event; per user the event index never
	// goes back.
	effects := make([]int, len(in.Events))
	lastIdx := map[string]int{}
	for _, ef := range in.Effects {
		i, ok := byTrace[ef.TraceID]
		if !ok || in.Events[i].UserID != ef.UserID {
			r.Unexpected = append(r.Unexpected, fmt.Sprintf("%s/%s/%s", ef.UserID, ef.Op, ef.TraceID))
			continue
		}
		effects[i]++
		if prev, seen := lastIdx[ef.UserID]; seen && userIndex[i] < prev {
			r.Reordered = append(r.Reordered, in.Events[i].ID)
		}
		lastIdx[ef.UserID] = max(lastIdx[ef.UserID], userIndex[i])
	}
	for i, ev := range in.Events {
		want := expectedWrites(ev, in.HardDelete)
		os := outcomes[ev.ID]
		if ev.Bad || len(os) == 0 || os[0].Result != consumer.Applied {
			if ev.Bad && effects[i] > 0 {
				r.Unexpected = append(r.Unexpected, ev.ID)
			}
			continue
		}
		if effects[i] < want {
			r.Lost = append(r.Lost, ev.ID)
		}
		if effects[i] > want+1 { // an upsert adds one PUT
			r.Duplicated = append(r.Duplicated, ev.ID)
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

// expectedWrites is the least number of writes an applied event makes.
func expectedWrites(ev Event, hardDelete bool) int {
	switch ev.Action {
	case handlers.Hired:
		if ev.Status != nil && *ev.Status != kdapi.StatusEnabled {
			return 2
		}
		return 1
	case handlers.Changed:
		if ev.DeptID == nil && ev.Role == nil && ev.Status == nil {
			return 0
		}
	}
	return 1
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
