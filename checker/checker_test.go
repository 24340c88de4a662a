package checker

import (
	"testing"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

func ptr[T any](v T) *T { return &v }

// history is a clean run of two users: u1 hired, moved, disabled; u2 hired.
func history() Input {
	evs := []Event{
		{ID: "a", UserID: "1", Action: handlers.Hired, DeptID: ptr[int64](10), Role: ptr(1)},
		{ID: "b", UserID: "2", Action: handlers.Hired, DeptID: ptr[int64](20), Role: ptr(5)},
		{ID: "c", UserID: "1", Action: handlers.Changed, DeptID: ptr[int64](11)},
		{ID: "d", UserID: "1", Action: handlers.Disabled},
	}
	eff := func(user, id, op string) Effect { return Effect{UserID: user, TraceID: kdapi.TraceID(id), Op: op} }
	out := func(id string, r consumer.Result) consumer.Outcome { return consumer.Outcome{EventID: id, Result: r} }
	return Input{
		Events:   evs,
		Effects:  []Effect{eff("1", "a", "create"), eff("2", "b", "create"), eff("1", "c", "update"), eff("1", "d", "update")},
		Outcomes: []consumer.Outcome{out("a", consumer.Applied), out("b", consumer.Applied), out("c", consumer.Applied), out("d", consumer.Applied)},
		Final:    map[string]UserState{"1": {DeptID: 11, Role: 1, Status: 1}, "2": {DeptID: 20, Role: 5, Status: 0}},
	}
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
				in.Outcomes[0] = consumer.Outcome{EventID: "a", Result: consumer.Skipped, Reason: consumer.SkipDuplicate}
			},
			field: func(r *Report) []string { return r.WrongResult },
		},
		"good event dead-lettered": {
			mutate: func(in *Input) { in.Outcomes[2].Result = consumer.Deadlettered },
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
