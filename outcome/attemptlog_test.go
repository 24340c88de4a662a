package outcome

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestAttemptLogKeeps: the log keeps the first AttemptLogFirst and the
// last AttemptLogLast failed attempts, oldest first, however many there
// were.
func TestAttemptLogKeeps(t *testing.T) {
	seq := func(from, to int) []int {
		var out []int
		for n := from; n <= to; n++ {
			out = append(out, n)
		}
		return out
	}
	cases := map[string]struct {
		attempts int
		want     []int
	}{
		"one":                {1, []int{1}},
		"first only":         {AttemptLogFirst, seq(1, AttemptLogFirst)},
		"all fit":            {AttemptLogFirst + AttemptLogLast, seq(1, 25)},
		"one past":           {26, append(seq(1, 5), seq(7, 26)...)},
		"hours of retrying":  {1000, append(seq(1, 5), seq(981, 1000)...)},
		"ring wraps exactly": {5 + 2*AttemptLogLast, append(seq(1, 5), seq(26, 45)...)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var l AttemptLog
			for n := 1; n <= tc.attempts; n++ {
				l.Add(Attempt{N: n, Class: "retryable", Error: "try " + strconv.Itoa(n)})
			}
			got := l.Attempts()
			var ns []int
			for _, a := range got {
				ns = append(ns, a.N)
				if a.Error != "try "+strconv.Itoa(a.N) {
					t.Errorf("attempt %d carries %q", a.N, a.Error)
				}
			}
			if !slices.Equal(ns, tc.want) {
				t.Errorf("kept %v, want %v", ns, tc.want)
			}
			if l.total != tc.attempts {
				t.Errorf("total %d, want %d", l.total, tc.attempts)
			}
		})
	}
}

// TestClipLine: errors (and header values) are stored on one line, valid UTF-8, at
// most AttemptLogErrorMax bytes.
func TestClipLine(t *testing.T) {
	cases := map[string]struct {
		in, want string
	}{
		"short":        {"kdapi: HTTP 503", "kdapi: HTTP 503"},
		"lines":        {"first\r\nsecond\tthird", "first  second third"},
		"invalid utf8": {"bad \xff byte", "bad \uFFFD byte"},
		"long":         {strings.Repeat("x", 1000), strings.Repeat("x", AttemptLogErrorMax-len("…")) + "…"},
		// A cut inside a multi-byte rune moves back to its start.
		"long runes": {strings.Repeat("é", 1000), strings.Repeat("é", (AttemptLogErrorMax-len("…"))/2) + "…"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := ClipLine(tc.in, AttemptLogErrorMax)
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if len(got) > AttemptLogErrorMax || !utf8.ValidString(got) || strings.ContainsAny(got, "\r\n") {
				t.Errorf("%q: %d bytes, valid %v", got, len(got), utf8.ValidString(got))
			}
		})
	}
}

// TestEncodeAttempts: the header value is compact JSON on one line within
// AttemptLogMax, reads back as it was kept, and when the errors are
// unusually costly to encode it leaves out middle attempts, never the
// first nor the last.
func TestEncodeAttempts(t *testing.T) {
	at := time.Date(2026, 11, 23, 17, 21, 27, 123456789, time.UTC)
	mk := func(n int, msg string) []Attempt {
		var l AttemptLog
		for i := 1; i <= n; i++ {
			l.Add(Attempt{N: i, At: at.Add(time.Duration(i) * time.Second), Class: "retryable", Error: msg + " #" + strconv.Itoa(i)})
		}
		return l.Attempts()
	}
	cases := map[string]struct {
		in       []Attempt
		wantKept int
	}{
		"plain":       {mk(3, "kdapi: POST /users: HTTP 503 <html> & more\nline two"), 3},
		"full":        {mk(100, strings.Repeat("e", 300)), AttemptLogFirst + AttemptLogLast},
		"costly JSON": {mk(100, strings.Repeat("\x01", 300)), 0}, // 0: fewer, checked below
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v := EncodeAttempts(tc.in)
			if len(v) > AttemptLogMax || strings.ContainsAny(v, "\r\n") {
				t.Fatalf("%d bytes, or a line break: %q", len(v), v)
			}
			got, err := ParseAttemptLog(v)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantKept > 0 && len(got) != tc.wantKept {
				t.Fatalf("kept %d, want %d", len(got), tc.wantKept)
			}
			if len(got) < 2 || got[0] != tc.in[0] || got[len(got)-1] != tc.in[len(tc.in)-1] {
				t.Fatalf("first or last attempt lost: %+v", got)
			}
			if tc.wantKept == 0 && len(got) >= len(tc.in) {
				t.Fatalf("kept all %d costly attempts in %d bytes", len(got), len(v))
			}
			for i := 1; i < len(got); i++ {
				if got[i].N <= got[i-1].N {
					t.Fatalf("out of order: %+v", got)
				}
			}
		})
	}
	if !strings.Contains(EncodeAttempts(mk(1, "<html> & more")), `"error":"<html> & more #1"`) {
		t.Errorf("HTML escaped: %s", EncodeAttempts(mk(1, "<html> & more")))
	}
	if as, err := ParseAttemptLog(""); err != nil || as != nil {
		t.Errorf("empty: %v %v", as, err)
	}
}
