package outcome

import (
	"slices"
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

// Reason says why an event was skipped or dead-lettered: one of Reasons.
// Its value is what outcomes, dead-letter headers and metric labels carry.
type Reason string

// String returns the reason's wire value.
func (r Reason) String() string { return string(r) }

// Reasons an event was skipped.
const (
	SkipDuplicate Reason = "duplicate"
	SkipStale     Reason = "stale"
	SkipNoop      Reason = "noop"
	// SkipGuardRejected: an operator rejected a deprovisioning held by the
	// mass-deprovisioning guard.
	SkipGuardRejected Reason = "guard_rejected"
)

// Reasons an event is dead-lettered, besides the handlers.Reason values
// (bad input, KooDrive failures).
const (
	// ReasonBadInput: the event could not be decoded, for a cause that is
	// not a *handlers.InputError.
	ReasonBadInput Reason = "bad_input"
	// ClassBudgetExhausted: the retry budget was spent.
	ClassBudgetExhausted Reason = "retry_budget_exhausted"
	// ClassPanic: working the event panicked.
	ClassPanic Reason = "panic"
	// ReasonMapping: a SCIM user the mapping cannot map (dead-lettered by
	// the SCIM service, never by the consumer).
	ReasonMapping Reason = "mapping"
)

// The enumeration of every Reason, for metric label sets: a reason added
// to one of these lists (or to handlers' InputReasons or KooDriveReasons)
// is in them all.
var (
	// SkipReasons lists every Reason an event is skipped for.
	SkipReasons = []Reason{SkipDuplicate, SkipStale, SkipNoop, SkipGuardRejected}
	// BadInputReasons lists every Reason of an event that cannot be read
	// or mapped to KooDrive calls: handlers.InputReasons and
	// ReasonBadInput.
	BadInputReasons = append(fromHandlers(handlers.InputReasons), ReasonBadInput)
	// DeadLetterReasons lists every Reason an event is dead-lettered for:
	// bad input, a KooDrive failure (handlers.KooDriveReasons), a spent
	// retry budget, a panic, a SCIM mapping failure.
	DeadLetterReasons = slices.Concat(BadInputReasons, fromHandlers(handlers.KooDriveReasons),
		[]Reason{ClassBudgetExhausted, ClassPanic, ReasonMapping})
	// Reasons lists every Reason an outcome can carry.
	Reasons = slices.Concat(SkipReasons, DeadLetterReasons)
)

// fromHandlers converts handlers' reasons: an outcome carries a
// handlers.Reason as it is.
func fromHandlers(rs []handlers.Reason) []Reason {
	out := make([]Reason, len(rs))
	for i, r := range rs {
		out[i] = Reason(r)
	}
	return out
}

// Outcome is published once per event on
// <OutcomePrefix>.<result>.<action>.<userId> (Subject), with
// Nats-Msg-Id <stream>:<sequence>.
type Outcome struct {
	EventID string `json:"eventId,omitempty"`
	// Source is the event's CloudEvents source: with EventID, its identity.
	Source   string          `json:"source,omitempty"`
	UserID   string          `json:"userId,omitempty"`
	Action   handlers.Action `json:"action"`
	Result   Result          `json:"result"`
	Reason   Reason          `json:"reason,omitempty"` // skip reason or error class
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

// MsgID is the Nats-Msg-Id of the outcome of the message at seq of
// stream: one per stream message, stable across redeliveries, so that a
// redelivered event's second outcome is dropped as a duplicate.
func MsgID(stream string, seq uint64) string {
	return stream + ":" + strconv.FormatUint(seq, 10)
}
