package outcome_test

import (
	"slices"
	"testing"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// TestReasons: the enumeration holds every reason of handlers' and of
// outcome's own, each once.
func TestReasons(t *testing.T) {
	t.Parallel()
	want := []outcome.Reason{outcome.SkipDuplicate, outcome.SkipStale, outcome.SkipNoop, outcome.SkipGuardRejected,
		outcome.ReasonBadInput, outcome.ClassBudgetExhausted, outcome.ClassPanic, outcome.ReasonMapping}
	for _, r := range slices.Concat(handlers.InputReasons, handlers.KooDriveReasons) {
		want = append(want, outcome.Reason(r))
	}
	got := slices.Clone(outcome.Reasons)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Reasons %v\nwant %v", got, want)
	}
	if n := len(slices.Compact(got)); n != len(outcome.Reasons) {
		t.Errorf("Reasons has %d distinct values of %d", n, len(outcome.Reasons))
	}
	for _, r := range outcome.BadInputReasons {
		if !slices.Contains(outcome.DeadLetterReasons, r) {
			t.Errorf("bad input %q is no dead-letter reason", r)
		}
	}
}
