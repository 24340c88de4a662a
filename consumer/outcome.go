package consumer

import (
	"strconv"
	"time"

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
// <OutcomePrefix>.<result>.<action>, with Nats-Msg-Id <stream>:<sequence>.
type Outcome struct {
	EventID  string          `json:"eventId,omitempty"`
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
	HdrEventID         = "Kdsync-Event-Id"
	HdrUserID          = "Kdsync-User-Id"
	HdrDeadAt          = "Kdsync-Dead-At"
	// HdrReplayOf names the dead letter a replayed event came from.
	HdrReplayOf = "Kdsync-Replay-Of"
	// HdrReplayForce on a replayed event applies it even when it is older
	// than what was applied since for its user.
	HdrReplayForce = "Kdsync-Replay-Force"
)
