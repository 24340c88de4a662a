package dlq

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kdsync/kdsync/outcome"
)

// TestPrintAttempts: kdsync dlq show prints the attempt log as a table
// and says where attempts were left out of it.
func TestPrintAttempts(t *testing.T) {
	at := time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC)
	a := func(n int, class string) outcome.Attempt {
		return outcome.Attempt{N: n, At: at.Add(time.Duration(n) * time.Second), Class: class, Error: "error " + strconv.Itoa(n)}
	}
	cases := map[string]struct {
		letter Letter
		want   []string
		absent []string
	}{
		"none": {Letter{Attempts: 0}, nil, []string{"Attempts"}},
		"all kept": {
			Letter{Attempts: 2, AttemptLog: []outcome.Attempt{a(1, "retryable"), a(2, "permanent")}},
			[]string{"Attempts (2):", "  N  TIME", "  1  2026-11-23T17:00:01.000Z  retryable  error 1", "  2  2026-11-23T17:00:02.000Z  permanent  error 2"},
			[]string{"not kept"},
		},
		"trimmed": {
			Letter{Attempts: 1000, AttemptsNotKept: 997, AttemptLog: []outcome.Attempt{a(1, "retryable"), a(999, "retryable"), a(1000, "retryable")}},
			[]string{"Attempts (1000, the first and last 3 kept):", "997 attempts not kept …", "  999   2026-11-23T17:16:39.000Z"},
			nil,
		},
		"one not kept at the end": {
			Letter{Attempts: 3, AttemptsNotKept: 1, AttemptLog: []outcome.Attempt{a(1, "retryable"), a(2, "retryable")}},
			[]string{"1 attempt not kept …"},
			nil,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			printAttempts(&b, &tc.letter)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(b.String(), w) {
					t.Errorf("has %q:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestPrintLettersClipsLongColumns: one letter with a very long user id
// and event id does not widen every row of kdsync dlq list.
func TestPrintLettersClipsLongColumns(t *testing.T) {
	long := strings.Repeat("9", 300)
	ls := []*Letter{
		{Seq: 1, Reason: "invalid_field", Action: "hired", UserID: "1001", EventID: "e-1", Error: "bad"},
		{Seq: 2, Reason: "invalid_field", Action: "hired", UserID: long, EventID: "ev-" + long, Error: strings.Repeat("x", 500)},
	}
	var out strings.Builder
	if err := PrintLetters(&out, ls, false); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if n := utf8.RuneCountInString(line); n > 260 {
			t.Errorf("line %d is %d characters wide:\n%s", i, n, line)
		}
	}
	if !strings.Contains(out.String(), "…") {
		t.Errorf("long values not marked as clipped:\n%s", out.String())
	}
}
