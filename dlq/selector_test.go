package dlq_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kdsync/kdsync/dlq"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Time{
		"":                     {},
		"24h":                  now.Add(-24 * time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"2026-11-20":           time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC),
		"2026-11-20T08:30":     time.Date(2026, 11, 20, 8, 30, 0, 0, time.UTC),
		"2026-11-20T08:30:00Z": time.Date(2026, 11, 20, 8, 30, 0, 0, time.UTC),
	}
	for in, want := range cases {
		got, err := dlq.ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5h", "2026-13-01"} {
		if _, err := dlq.ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

func TestParseSeqs(t *testing.T) {
	got, err := dlq.ParseSeqs("3, 7-9,12")
	if err != nil || fmt.Sprint(got) != "[3 7 8 9 12]" {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := dlq.ParseSeqs(""); err != nil || got != nil {
		t.Errorf("ParseSeqs(\"\") = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "x", "9-7", "1-999999999"} {
		if _, err := dlq.ParseSeqs(bad); err == nil {
			t.Errorf("ParseSeqs(%q) accepted", bad)
		}
	}
}
