package consumer

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kdsync/kdsync/handlers"
)

// Result is how an event ended.
type Result string

// The results an outcome can carry.
const (
	// Applied: KooDrive now reflects the event.
	Applied Result = "applied"
	// Skipped: nothing to do (a duplicate, a stale event, a no-op).
	Skipped Result = "skipped"
	// Deadlettered: the event cannot be applied; it is in the DLQ stream.
	Deadlettered Result = "deadlettered"
)

// Results lists every Result, for metric initialisation.
var Results = []Result{Applied, Skipped, Deadlettered}

// Reasons an event was skipped.
const (
	SkipDuplicate = "duplicate"
	SkipStale     = "stale"
	SkipNoop      = "noop"
	// SkipGuardRejected: an operator rejected a deprovisioning held by the
	// mass-deprovisioning guard.
	SkipGuardRejected = "guard_rejected"
)

// Error classes reported for dead letters, besides the handlers.Reason
// values for bad input and the kdapi classes for KooDrive refusals.
const (
	ClassBudgetExhausted = "retry_budget_exhausted"
	ClassPanic           = "panic"
)

// Outcome is published once per event on
// <OutcomePrefix>.<result>.<action>.<userId> (OutcomeSubject), with
// Nats-Msg-Id <stream>:<sequence>.
type Outcome struct {
	EventID string `json:"eventId,omitempty"`
	// Source is the event's CloudEvents source: with EventID, its identity.
	Source   string          `json:"source,omitempty"`
	UserID   string          `json:"userId,omitempty"`
	Action   handlers.Action `json:"action"`
	Result   Result          `json:"result"`
	Reason   string          `json:"reason,omitempty"` // skip reason or error class
	Error    string          `json:"error,omitempty"`
	Note     string          `json:"note,omitempty"`
	Calls    []string        `json:"calls,omitempty"`
	Attempts int             `json:"attempts"`
	// LatencyMs is from the event's time to the outcome; absent without a
	// time.
	LatencyMs *float64 `json:"latencyMs,omitempty"`
	// ProcessingMs is from the event's receipt by kdsync to the outcome.
	ProcessingMs float64 `json:"processingMs"`
	Subject      string  `json:"subject"`
	Stream       string  `json:"stream"`
	Sequence     uint64  `json:"sequence"`
	Delivered    uint64  `json:"delivered"`
	TraceID      string  `json:"traceId,omitempty"`
	// Plan and Diff, in shadow mode: the writes that would be made and the
	// fields they would change.
	Plan []handlers.PlannedCall `json:"plan,omitempty"`
	Diff []handlers.FieldChange `json:"diff,omitempty"`
	// Instance is the kdsync instance that finished the event.
	Instance string    `json:"instance,omitempty"`
	Time     time.Time `json:"time"`

	// failed records the failed attempts for the dead letter; nil until
	// an attempt fails, so that the success path allocates nothing.
	failed *attemptLog
}

// OutcomeMsgID is the Nats-Msg-Id of the outcome of the message at seq of
// stream: one per stream message, stable across redeliveries, so that a
// redelivered event's second outcome is dropped as a duplicate.
func OutcomeMsgID(stream string, seq uint64) string {
	return stream + ":" + strconv.FormatUint(seq, 10)
}

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

// attemptLog keeps the first and the last failed attempts of one event.
type attemptLog struct {
	first []Attempt // the first AttemptLogFirst
	last  []Attempt // a ring of the last AttemptLogLast after those
	next  int       // where the next entry goes in last once it is full
	total int       // failed attempts recorded
}

// add records a failed attempt. The error is clipped, and its text made
// one line, as it is stored.
func (l *attemptLog) add(a Attempt) {
	a.Error = clipLine(a.Error, AttemptLogErrorMax)
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

// attempts returns the kept attempts, oldest first.
func (l *attemptLog) attempts() []Attempt {
	out := make([]Attempt, 0, len(l.first)+len(l.last))
	out = append(out, l.first...)
	out = append(out, l.last[l.next:]...)
	return append(out, l.last[:l.next]...)
}

// encodeAttempts encodes as for HdrAttemptLog: compact JSON on one line,
// at most AttemptLogMax bytes. When the entries do not fit, the oldest of
// the last attempts are left out first, then the latest of the first; the
// very first and the very last stay.
func encodeAttempts(as []Attempt) string {
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

// clipLine makes s one valid-UTF-8 line of at most limit bytes, cut on a
// rune boundary and marked with "…" when cut: for header values (a
// newline would end the header) and the attempt log's errors.
func clipLine(s string, limit int) string {
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

// clipHeader keeps a header value on one line and within 1 KiB.
func clipHeader(s string) string { return clipLine(s, 1024) }
