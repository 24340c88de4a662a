package outcome_test

import (
	"slices"
	"testing"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

func TestSubjects(t *testing.T) {
	for name, tc := range map[string]struct {
		got, want string
	}{
		"outcome":             {outcome.Subject("kdsync.outcome", outcome.Applied, handlers.Hired, "1001"), "kdsync.outcome.applied.hired.1001"},
		"outcome, no user":    {outcome.Subject("kdsync.outcome", outcome.Deadlettered, handlers.Unknown, ""), "kdsync.outcome.deadlettered.unknown._"},
		"outcome, odd user":   {outcome.Subject("p", outcome.Skipped, handlers.Changed, "a.b*c>d e"), "p.skipped.changed.a_b_c_d_e"},
		"dead letter":         {outcome.DeadLetterSubject("kdsync.dlq", "not_found", handlers.Changed, "42"), "kdsync.dlq.not_found.changed.42"},
		"dead letter, no why": {outcome.DeadLetterSubject("kdsync.dlq", "", handlers.Changed, "42"), "kdsync.dlq.unknown.changed.42"},
		"dotted reason":       {outcome.DeadLetterSubject("kdsync.dlq", "a.b", handlers.Changed, "42"), "kdsync.dlq.a_b.changed.42"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", name, tc.got, tc.want)
		}
	}
}

func TestParseSubject(t *testing.T) {
	for subj, tc := range map[string]struct {
		want outcome.SubjectParts
		ok   bool
	}{
		"kdsync.outcome.applied.hired.1001":     {outcome.SubjectParts{Kind: "applied", Action: "hired", User: "1001"}, true},
		"kdsync.outcome.applied.hired":          {outcome.SubjectParts{Kind: "applied", Action: "hired", Old: true}, true},
		"kdsync.outcome.deadlettered.unknown._": {outcome.SubjectParts{Kind: "deadlettered", Action: "unknown"}, true},
		"kdsync.outcome.applied":                {outcome.SubjectParts{}, false},
		"kdsync.outcome.a.b.c.d":                {outcome.SubjectParts{}, false},
		"kdsync.dlq.not_found.changed.1":        {outcome.SubjectParts{}, false},
	} {
		got, ok := outcome.ParseSubject("kdsync.outcome", subj)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: got %+v %v, want %+v %v", subj, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSubjectFilters(t *testing.T) {
	for name, tc := range map[string]struct {
		kind, action, user string
		want               []string
	}{
		"all":        {"", "", "", []string{"p.*.*", "p.*.*.*"}},
		"user":       {"", "", "1001", []string{"p.*.*", "p.*.*.1001"}},
		"everything": {"applied", "hired", "7", []string{"p.applied.hired", "p.applied.hired.7"}},
		"wildcards":  {"a*", "b.c", "x>y", []string{"p.*.*", "p.*.*.x_y"}},
	} {
		if got := outcome.SubjectFilters("p", tc.kind, tc.action, tc.user); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
}
