package outcome

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// Dead-letter headers, set on the copy of the original event in the DLQ
// stream. The original headers and body are kept unchanged.
const (
	HdrReason          = "Kdsync-Reason"
	HdrErrorClass      = "Kdsync-Error-Class"
	HdrAttempts        = "Kdsync-Attempts"
	HdrOriginalSubject = "Kdsync-Original-Subject"
	HdrOriginalStream  = "Kdsync-Original-Stream"
	HdrOriginalSeq     = "Kdsync-Original-Sequence"
	// HdrOriginalMsgID keeps the original's Nats-Msg-Id (the dead letter
	// has its own, so that a redelivery does not double it).
	HdrOriginalMsgID = "Kdsync-Original-Msg-Id"
	HdrEventID       = "Kdsync-Event-Id"
	HdrEventSource   = "Kdsync-Event-Source"
	HdrUserID        = "Kdsync-User-Id"
	HdrDeadAt        = "Kdsync-Dead-At"
	// HdrAttemptLog holds the attempts that failed, with their errors, as
	// compact JSON: an array of Attempt, oldest first. It is bounded: the
	// first AttemptLogFirst and the last AttemptLogLast attempts are kept,
	// each error clipped to AttemptLogErrorMax bytes; Kdsync-Attempts says
	// how many there were, and gaps in the numbers show where some were
	// left out. Absent when the event died before any attempt (bad input).
	HdrAttemptLog = "Kdsync-Attempt-Log"
	// HdrReplayOf names the dead letter a replayed event came from.
	HdrReplayOf = "Kdsync-Replay-Of"
	// HdrReplayForce on a replayed event applies it even when it is older
	// than what was applied since for its user.
	HdrReplayForce = "Kdsync-Replay-Force"
)

// Attempt is one failed attempt at an event's KooDrive calls, as the dead
// letter's Kdsync-Attempt-Log header records it.
type Attempt struct {
	// N numbers the attempt from 1.
	N  int       `json:"n"`
	At time.Time `json:"at"`
	// Class is how the failure was judged: retryable, auth, permanent,
	// not_found, ... (the kdapi classes and handlers reasons), panic, or
	// fenced (the call was abandoned when the partition's lease went).
	Class string `json:"class"`
	Error string `json:"error"`
}

// Bounds of the attempt log: an event can be retried for hours.
const (
	// AttemptLogFirst and AttemptLogLast are how many of the first and of
	// the last failed attempts are kept.
	AttemptLogFirst = 5
	AttemptLogLast  = 20
	// AttemptLogErrorMax bounds each error, in bytes.
	AttemptLogErrorMax = 256
	// AttemptLogMax bounds the encoded header value, in bytes; past it
	// the oldest of the last attempts are left out first.
	AttemptLogMax = 16 << 10
)

// AttemptLog keeps the first and the last failed attempts of one event,
// within the bounds above. The zero value is an empty log.
type AttemptLog struct {
	first []Attempt // the first AttemptLogFirst
	last  []Attempt // a ring of the last AttemptLogLast after those
	next  int       // where the next entry goes in last once it is full
	total int       // failed attempts recorded
}

// Add records a failed attempt. The error is clipped, and its text made
// one line, as it is stored.
func (l *AttemptLog) Add(a Attempt) {
	a.Error = ClipLine(a.Error, AttemptLogErrorMax)
	l.total++
	switch {
	case len(l.first) < AttemptLogFirst:
		l.first = append(l.first, a)
	case len(l.last) < AttemptLogLast:
		l.last = append(l.last, a)
	default:
		l.last[l.next] = a
		l.next = (l.next + 1) % AttemptLogLast
	}
}

// Total is how many failed attempts were recorded, kept or not.
func (l *AttemptLog) Total() int { return l.total }

// Attempts returns the kept attempts, oldest first.
func (l *AttemptLog) Attempts() []Attempt {
	out := make([]Attempt, 0, len(l.first)+len(l.last))
	out = append(out, l.first...)
	out = append(out, l.last[l.next:]...)
	return append(out, l.last[:l.next]...)
}

// EncodeAttempts encodes as for HdrAttemptLog: compact JSON on one line,
// at most AttemptLogMax bytes. When the entries do not fit, the oldest of
// the last attempts are left out first, then the latest of the first; the
// very first and the very last stay.
func EncodeAttempts(as []Attempt) string {
	for len(as) > 0 {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(as); err != nil {
			return "" // cannot happen: plain fields
		}
		b := bytes.TrimRight(buf.Bytes(), "\n")
		if len(b) <= AttemptLogMax {
			return string(b)
		}
		drop := 0
		switch {
		case len(as) > AttemptLogFirst+1:
			drop = AttemptLogFirst
		case len(as) > 2:
			drop = len(as) - 2
		}
		as = append(as[:drop:drop], as[drop+1:]...)
	}
	return ""
}

// ParseAttemptLog decodes a Kdsync-Attempt-Log header value. An empty
// value is an empty log.
func ParseAttemptLog(v string) ([]Attempt, error) {
	if v == "" {
		return nil, nil
	}
	var as []Attempt
	if err := json.Unmarshal([]byte(v), &as); err != nil {
		return nil, err
	}
	return as, nil
}

// ClipLine makes s one valid-UTF-8 line of at most limit bytes, cut on a
// rune boundary and marked with "…" when cut: for header values (a
// newline would end the header) and the attempt log's errors.
func ClipLine(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) <= limit {
		return s
	}
	const ellipsis = "…"
	cut := limit - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// ClipHeader keeps a header value on one line and within 1 KiB.
func ClipHeader(s string) string { return ClipLine(s, 1024) }
