package dlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseSeqs reads stream sequences as operators write them: "12,15-20".
func ParseSeqs(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 64)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 64)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a || b-a > 100_000 {
			return nil, fmt.Errorf("-seq %q: want sequences or ranges such as 12,15-20", part)
		}
		for q := a; q <= b; q++ {
			out = append(out, q)
		}
	}
	return out, nil
}

// ParseTime reads a bound of Selector.Since or Until: an RFC 3339 time, a
// date, or a duration before now (24h); empty is none.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) or a duration ago (24h)", s)
}

// Parse sets s's sequences, event ids and time bounds from text as
// operators write them (kdsync dlq's -seq, -id, -since, -until): seqs as
// ParseSeqs reads them, ids comma-separated, since and until as ParseTime
// reads them, now being now. It reports every problem at once.
func (s *Selector) Parse(seqs, ids, since, until string, now time.Time) error {
	var seqErr, sinceErr, untilErr error
	s.Seqs, seqErr = ParseSeqs(seqs)
	s.IDs = nil
	for _, id := range strings.Split(ids, ",") {
		if id = strings.TrimSpace(id); id != "" {
			s.IDs = append(s.IDs, id)
		}
	}
	s.Since, sinceErr = ParseTime(since, now)
	s.Until, untilErr = ParseTime(until, now)
	return errors.Join(seqErr, sinceErr, untilErr)
}
