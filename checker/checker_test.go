package checker

import (
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
)

func ptr[T any](v T) *T { return &v }

// t0 is the time of history's first write; each later write is a second
// later.
var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// history is a clean run of two users: u1 hired, moved, disabled; u2 hired.
// Its writes are a second apart from t0.
func history() Input {
	evs := []Event{
		{ID: "a", UserID: "1", Action: handlers.Hired, DeptID: ptr[int64](10), Role: ptr(1)},
		{ID: "b", UserID: "2", Action: handlers.Hired, DeptID: ptr[int64](20), Role: ptr(5)},
		{ID: "c", UserID: "1", Action: handlers.Changed, DeptID: ptr[int64](11)},
		{ID: "d", UserID: "1", Action: handlers.Disabled},
	}
	out := func(id string, r outcome.Result) outcome.Outcome { return outcome.Outcome{EventID: id, Result: r} }
	return Input{
		Events:   evs,
		Effects:  []Effect{eff("1", "a", "create", 0), eff("2", "b", "create", 1), eff("1", "c", "update", 2), eff("1", "d", "update", 3)},
		Outcomes: []outcome.Outcome{out("a", outcome.Applied), out("b", outcome.Applied), out("c", outcome.Applied), out("d", outcome.Applied)},
		Final:    map[string]UserState{"1": {DeptID: 11, Role: 1, Status: 1}, "2": {DeptID: 20, Role: 5, Status: 0}},
	}
}

// eff is a write of event id to user, applied sec seconds after t0.
func eff(user, id, op string, sec int) Effect {
	return Effect{UserID: user, TraceID: kdapi.TraceID(id), Op: op, At: t0.Add(time.Duration(sec) * time.Second)}
}

// again returns in's effects with a repeat of effect k (at its time plus
// half a second) inserted after it, marked with fault.
func again(in *Input, k int, fault string) {
	rep := in.Effects[k]
	rep.At = rep.At.Add(500 * time.Millisecond)
	in.Effects = append(in.Effects[:k+1], append([]Effect{rep}, in.Effects[k+1:]...)...)
	in.Effects[k].Fault = fault
}

// killAt is an interruption from t0+sec to half a second later.
func killAt(sec int, limit int) Interruption {
	from := t0.Add(time.Duration(sec) * time.Second)
	return Interruption{What: "SIGKILL", From: from, To: from.Add(500 * time.Millisecond), Limit: limit}
}

func TestCheck(t *testing.T) {
	tests := map[string]struct {
		mutate func(*Input)
		field  func(*Report) []string
	}{
		"clean": {mutate: func(*Input) {}},
		"outcome missing": {
			mutate: func(in *Input) { in.Outcomes = in.Outcomes[:3] },
			field:  func(r *Report) []string { return r.OutcomeMissing },
		},
		"outcome duplicated": {
			mutate: func(in *Input) { in.Outcomes = append(in.Outcomes, in.Outcomes[0]) },
			field:  func(r *Report) []string { return r.OutcomeDuplicated },
		},
		"applied without effect": {
			mutate: func(in *Input) {
				in.Effects = in.Effects[:3]
				in.Final["1"] = UserState{DeptID: 11, Role: 1, Status: 1}
			},
			field: func(r *Report) []string { return r.Lost },
		},
		"effect of no event": {
			mutate: func(in *Input) {
				in.Effects = append(in.Effects, Effect{UserID: "1", TraceID: kdapi.TraceID("zzz"), Op: "update"})
			},
			field: func(r *Report) []string { return r.Unexpected },
		},
		"reordered": {
			mutate: func(in *Input) { in.Effects[2], in.Effects[3] = in.Effects[3], in.Effects[2] },
			field:  func(r *Report) []string { return r.Reordered },
		},
		"hire skipped as duplicate": {
			mutate: func(in *Input) {
				in.Outcomes[0] = outcome.Outcome{EventID: "a", Result: outcome.Skipped, Reason: outcome.SkipDuplicate}
			},
			field: func(r *Report) []string { return r.WrongResult },
		},
		"good event dead-lettered": {
			mutate: func(in *Input) { in.Outcomes[2].Result = outcome.Deadlettered },
			field:  func(r *Report) []string { return r.WrongResult },
		},
		"final state differs": {
			mutate: func(in *Input) { in.Final["1"] = UserState{DeptID: 10, Role: 1, Status: 1} },
			field:  func(r *Report) []string { return r.StateMismatch },
		},
		"user missing": {
			mutate: func(in *Input) { delete(in.Final, "2") },
			field:  func(r *Report) []string { return r.StateMismatch },
		},
		"unknown user present": {
			mutate: func(in *Input) { in.Final["3"] = UserState{} },
			field:  func(r *Report) []string { return r.StateMismatch },
		},

		// Duplicates: one extra write is a violation unless a declared
		// ambiguous fault explains it.
		"update written twice, no fault declared": {
			mutate: func(in *Input) { again(in, 2, "") },
			field:  func(r *Report) []string { return r.Unexplained },
		},
		"create written twice, no fault declared": {
			mutate: func(in *Input) { again(in, 0, "") },
			field:  func(r *Report) []string { return r.Unexplained },
		},
		"every write twice, fail-after-write declared": {
			mutate: func(in *Input) {
				for k := len(in.Effects) - 1; k >= 0; k-- {
					again(in, k, "")
				}
				in.Ambiguous.FailAfterWrite = true
			},
			field: func(r *Report) []string { return r.Unexplained },
		},
		"repeat after fail-after-write, fault declared": {
			mutate: func(in *Input) {
				again(in, 2, "failAfterWrite")
				in.Ambiguous.FailAfterWrite = true
			},
		},
		"repeat after a slow answer, fault declared": {
			mutate: func(in *Input) {
				again(in, 0, "slow")
				in.Ambiguous.FailAfterWrite = true
			},
		},
		"repeat after fail-after-write, fault not declared": {
			mutate: func(in *Input) { again(in, 2, "failAfterWrite") },
			field:  func(r *Report) []string { return r.Unexplained },
		},
		"two repeats, one fault": {
			mutate: func(in *Input) {
				again(in, 2, "failAfterWrite")
				again(in, 2, "")
				in.Ambiguous.FailAfterWrite = true
			},
			field: func(r *Report) []string { return r.Unexplained },
		},
		"fault on another event's write": {
			mutate: func(in *Input) {
				again(in, 2, "")
				in.Effects[0].Fault = "failAfterWrite"
				in.Ambiguous.FailAfterWrite = true
			},
			field: func(r *Report) []string { return r.Unexplained },
		},
		"repeat across a kill": {
			mutate: func(in *Input) {
				again(in, 2, "")
				in.Ambiguous.Interruptions = []Interruption{killAt(2, 1)}
			},
		},
		"repeat across a lapse at an unknown moment": {
			mutate: func(in *Input) {
				again(in, 2, "")
				in.Ambiguous.Interruptions = []Interruption{{What: "lease lapse", Limit: 1}}
			},
		},
		"repeat long before the kill": {
			mutate: func(in *Input) {
				again(in, 0, "")
				in.Ambiguous.Interruptions = []Interruption{killAt(3, 0)}
			},
			field: func(r *Report) []string { return r.Unexplained },
		},
		"repeat long after the kill": {
			mutate: func(in *Input) {
				again(in, 3, "")
				in.Ambiguous.Interruptions = []Interruption{killAt(1, 0)}
			},
			field: func(r *Report) []string { return r.Unexplained },
		},
		"two events repeated, kill limited to one": {
			mutate: func(in *Input) {
				again(in, 2, "")
				again(in, 0, "")
				in.Ambiguous.Interruptions = []Interruption{{What: "lease lapse", Limit: 1}}
			},
			field: func(r *Report) []string { return r.Unexplained },
		},
		"disabled hire: create then status is not a duplicate": {
			mutate: func(in *Input) {
				in.Events[1].Status = ptr(kdapi.StatusDisabled)
				st := in.Effects[1]
				st.Op, st.At = "update", st.At.Add(time.Millisecond)
				in.Effects = append(in.Effects[:2], append([]Effect{st}, in.Effects[2:]...)...)
				in.Final["2"] = UserState{DeptID: 20, Role: 5, Status: kdapi.StatusDisabled}
			},
		},
		"skipped event with a write": {
			mutate: func(in *Input) {
				in.Events = append(in.Events, Event{ID: "e", UserID: "2", Action: handlers.Changed})
				in.Outcomes = append(in.Outcomes, outcome.Outcome{EventID: "e", Result: outcome.Skipped, Reason: outcome.SkipNoop})
				in.Effects = append(in.Effects, eff("2", "e", "update", 4))
			},
			field: func(r *Report) []string { return r.Unexplained },
		},

		// Bad events.
		"bad event dead-lettered": {
			mutate: func(in *Input) {
				in.Events = append(in.Events, Event{ID: "x", UserID: "3", Action: handlers.Hired, Bad: true})
				in.Outcomes = append(in.Outcomes, outcome.Outcome{EventID: "x", Result: outcome.Deadlettered, Reason: "invalid_field"})
			},
		},
		"bad event applied": {
			mutate: func(in *Input) {
				in.Events = append(in.Events, Event{ID: "x", UserID: "3", Action: handlers.Hired, Bad: true})
				in.Outcomes = append(in.Outcomes, outcome.Outcome{EventID: "x", Result: outcome.Applied})
			},
			field: func(r *Report) []string { return r.WrongResult },
		},
		"bad event skipped": {
			mutate: func(in *Input) {
				in.Events = append(in.Events, Event{ID: "x", UserID: "3", Action: handlers.Hired, Bad: true})
				in.Outcomes = append(in.Outcomes, outcome.Outcome{EventID: "x", Result: outcome.Skipped, Reason: outcome.SkipNoop})
			},
			field: func(r *Report) []string { return r.WrongResult },
		},
		"bad event dead-lettered after a write": {
			mutate: func(in *Input) {
				in.Events = append(in.Events, Event{ID: "x", UserID: "1", Action: handlers.Changed, Role: ptr(3), Bad: true})
				in.Outcomes = append(in.Outcomes, outcome.Outcome{EventID: "x", Result: outcome.Deadlettered, Reason: "invalid_field"})
				in.Effects = append(in.Effects, eff("1", "x", "update", 4))
			},
			field: func(r *Report) []string { return r.Unexpected },
		},
		"bad event without an outcome": {
			mutate: func(in *Input) {
				in.Events = append(in.Events, Event{ID: "x", UserID: "3", Action: handlers.Hired, Bad: true})
			},
			field: func(r *Report) []string { return r.OutcomeMissing },
		},
		"bad event's user not created": {
			mutate: func(in *Input) {
				in.Events = append(in.Events, Event{ID: "x", UserID: "3", Action: handlers.Hired, DeptID: ptr[int64](30), Bad: true})
				in.Outcomes = append(in.Outcomes, outcome.Outcome{EventID: "x", Result: outcome.Deadlettered, Reason: "invalid_field"})
				in.Final["3"] = UserState{DeptID: 30}
			},
			field: func(r *Report) []string { return r.StateMismatch },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := history()
			tc.mutate(&in)
			r := Check(in)
			if tc.field == nil {
				if !r.OK() {
					t.Fatalf("clean history reported: %s", r)
				}
				return
			}
			if r.OK() || len(tc.field(r)) == 0 {
				t.Fatalf("violation not reported: %s", r)
			}
		})
	}
}

func TestImpliedHardDelete(t *testing.T) {
	evs := []Event{
		{ID: "a", UserID: "1", Action: handlers.Hired, DeptID: ptr[int64](10), Role: ptr(1)},
		{ID: "b", UserID: "1", Action: handlers.Deleted},
	}
	if s := Implied(evs, true)["1"]; s != nil {
		t.Fatalf("hard delete: want absent, got %+v", *s)
	}
	if s := Implied(evs, false)["1"]; s == nil || s.Status != kdapi.StatusDisabled {
		t.Fatalf("soft delete: want disabled, got %+v", s)
	}
}
