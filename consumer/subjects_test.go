package consumer_test

import (
	"slices"
	"testing"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
)

func TestSubjects(t *testing.T) {
	for name, tc := range map[string]struct {
		got, want string
	}{
		"outcome":             {consumer.OutcomeSubject("kdsync.outcome", consumer.Applied, handlers.Hired, "1001"), "kdsync.outcome.applied.hired.1001"},
		"outcome, no user":    {consumer.OutcomeSubject("kdsync.outcome", consumer.Deadlettered, handlers.Unknown, ""), "kdsync.outcome.deadlettered.unknown._"},
		"outcome, odd user":   {consumer.OutcomeSubject("p", consumer.Skipped, handlers.Changed, "a.b*c>d e"), "p.skipped.changed.a_b_c_d_e"},
		"dead letter":         {consumer.DeadLetterSubject("kdsync.dlq", "not_found", handlers.Changed, "42"), "kdsync.dlq.not_found.changed.42"},
		"dead letter, no why": {consumer.DeadLetterSubject("kdsync.dlq", "", handlers.Changed, "42"), "kdsync.dlq.unknown.changed.42"},
		"dotted reason":       {consumer.DeadLetterSubject("kdsync.dlq", "a.b", handlers.Changed, "42"), "kdsync.dlq.a_b.changed.42"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", name, tc.got, tc.want)
		}
	}
}

func TestParseSubject(t *testing.T) {
	for subj, tc := range map[string]struct {
		want consumer.SubjectParts
		ok   bool
	}{
		"kdsync.outcome.applied.hired.1001":     {consumer.SubjectParts{Kind: "applied", Action: "hired", User: "1001"}, true},
		"kdsync.outcome.applied.hired":          {consumer.SubjectParts{Kind: "applied", Action: "hired", Old: true}, true},
		"kdsync.outcome.deadlettered.unknown._": {consumer.SubjectParts{Kind: "deadlettered", Action: "unknown"}, true},
		"kdsync.outcome.applied":                {consumer.SubjectParts{}, false},
		"kdsync.outcome.a.b.c.d":                {consumer.SubjectParts{}, false},
		"kdsync.dlq.not_found.changed.1":        {consumer.SubjectParts{}, false},
	} {
		got, ok := consumer.ParseSubject("kdsync.outcome", subj)
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
		if got := consumer.SubjectFilters("p", tc.kind, tc.action, tc.user); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
}
