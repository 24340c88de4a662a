package dlq_test

import (
	"errors"
	"fmt"
	"strings"
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

func TestSelectorParse(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := dlq.Selector{User: "1001"}
	if err := s.Parse("3,5-6", " ev-1, ,ev-2", "24h", "2026-11-23", now); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.Seqs) != "[3 5 6]" || fmt.Sprint(s.IDs) != "[ev-1 ev-2]" || s.User != "1001" ||
		!s.Since.Equal(now.Add(-24*time.Hour)) || !s.Until.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("parsed %+v", s)
	}
	// Every problem at once.
	err := (&dlq.Selector{}).Parse("0", "", "last week", "soon", now)
	for _, w := range []string{`-seq "0"`, `time "last week"`, `time "soon"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

func TestCommandValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		c     dlq.Command
		valid bool
	}{
		"list everything":      {dlq.Command{Verb: "list"}, true},
		"show":                 {dlq.Command{Verb: "show", Ref: "12"}, true},
		"show what":            {dlq.Command{Verb: "show"}, false},
		"replay by user":       {dlq.Command{Verb: "replay", Sel: dlq.Selector{User: "1"}}, true},
		"replay all":           {dlq.Command{Verb: "replay", All: true}, true},
		"replay nothing named": {dlq.Command{Verb: "replay"}, false},
		"purge nothing named":  {dlq.Command{Verb: "purge", Yes: true}, false},
	} {
		err := tc.c.Validate()
		if (err == nil) != tc.valid {
			t.Errorf("%s: %v", name, err)
		}
		if strings.HasSuffix(name, "nothing named") && !errors.Is(err, dlq.ErrNoSelector) {
			t.Errorf("%s: %v, want ErrNoSelector", name, err)
		}
	}
}
