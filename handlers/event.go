// Package handlers decodes identity events and applies them to KooDrive.
//
// An event is a CloudEvents 1.0 message (structured JSON or binary ce-*
// headers) whose type is employee.<action>. Decode validates it completely,
// so that everything after it works on a typed Event; Handler.Apply turns an
// Event into KooDrive user calls following the event contract's table. The
// package knows nothing of NATS: headers are a plain map and ordering,
// retries and acknowledgements belong to the consumer.
package handlers

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Action is what happened to a person.
type Action string

// The actions of the contract.
const (
	Hired    Action = "hired"
	Changed  Action = "changed"
	Disabled Action = "disabled"
	Enabled  Action = "enabled"
	Deleted  Action = "deleted"
	// Unknown labels events whose action could not be read (bad input).
	Unknown Action = "unknown"
)

// Actions lists the valid actions, for metric initialisation.
var Actions = []Action{Hired, Changed, Disabled, Enabled, Deleted}

// ParseAction returns the action named s.
func ParseAction(s string) (Action, bool) {
	switch a := Action(s); a {
	case Hired, Changed, Disabled, Enabled, Deleted:
		return a, true
	}
	return Unknown, false
}

// TypePrefix is the CloudEvents type prefix: type = TypePrefix + action.
const TypePrefix = "employee."

// Limits on event fields.
const (
	DefaultMaxEventSize = 64 << 10
	maxIDLen            = 256
	maxUserIDLen        = 64
)

// Event is a validated identity event.
type Event struct {
	ID      string
	Source  string
	Type    string
	Subject string
	// Time is when the source says it happened; zero when absent.
	Time   time.Time
	Action Action
	// Binary is true when the event came in binary content mode.
	Binary bool

	UserID string
	DeptID *int64
	Role   *int
	Status *int
	Name   string
}

// Reason classifies a failure of Decode or Apply, for outcomes, dead
// letters and metric labels: bad input (InputReasons) or a KooDrive
// failure (KooDriveReasons). Classify gives an error's.
type Reason string

// String returns the reason's wire value.
func (r Reason) String() string { return string(r) }

// The reasons an event is bad input.
const (
	ReasonTooLarge     Reason = "too_large"
	ReasonInvalidUTF8  Reason = "invalid_utf8"
	ReasonMalformed    Reason = "malformed_json"
	ReasonSpecVersion  Reason = "unsupported_specversion"
	ReasonUnknownType  Reason = "unknown_type"
	ReasonMissingField Reason = "missing_field"
	ReasonInvalidField Reason = "invalid_field"
	ReasonMismatch     Reason = "mismatch"
)

// InputReasons lists every Reason of bad input, for metric
// initialisation.
var InputReasons = []Reason{ReasonTooLarge, ReasonInvalidUTF8, ReasonMalformed, ReasonSpecVersion,
	ReasonUnknownType, ReasonMissingField, ReasonInvalidField, ReasonMismatch}

// InputError is an event that cannot be applied as it is. It is permanent:
// the consumer dead-letters it.
type InputError struct {
	Reason Reason
	Field  string // the offending field, e.g. data.deptId; empty when none
	Detail string
	// EventID and Source are the event's identity when its envelope gave
	// them, even though something else is wrong (empty when they could not
	// be read), so that a dead letter still names the event.
	EventID, Source string
}

// Error reads like "invalid_field data.role: 7 is not a role (0,1,2,3,5)".
func (e *InputError) Error() string {
	if e.Field == "" {
		return "bad input: " + string(e.Reason) + ": " + e.Detail
	}
	return "bad input: " + string(e.Reason) + " " + e.Field + ": " + e.Detail
}

func inputErr(r Reason, field, format string, args ...any) *InputError {
	return &InputError{Reason: r, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// ParseSubject reads the action and user id from a subject whose last two
// tokens are <action>.<userId>, as in identity.employee.hired.1008600000029937613.
func ParseSubject(subject string) (action, userID string, ok bool) {
	i := strings.LastIndexByte(subject, '.')
	if i <= 0 {
		return "", "", false
	}
	userID = subject[i+1:]
	j := strings.LastIndexByte(subject[:i], '.')
	action = subject[j+1 : i]
	return action, userID, action != "" && userID != ""
}

// Decoder decodes events. Its zero value uses DefaultMaxEventSize.
//
// Decode is on the consumer's hot path: it reads the body in one pass with
// a pooled jsontext.Decoder (which validates the whole document at least as
// strictly as encoding/json does, see json.go) and allocates the Event and
// its text fields only: two or three allocations per event.
type Decoder struct {
	// MaxSize bounds the body plus headers; 0 means DefaultMaxEventSize.
	MaxSize int
	// StrictNumbers refuses a data.deptId sent as a JSON number above 2^53,
	// for producers known to encode numbers as doubles (JavaScript, jq),
	// which round such ids silently. By default a JSON number is read
	// exactly, as its literal: Java and Go producers, and KooDrive's own
	// API, send a 64-bit id as a number.
	StrictNumbers bool
}

// Key is the event's identity: CloudEvents identifies an event by source
// and id together (two sources may use the same id). See EventKey.
func (ev *Event) Key() string { return EventKey(ev.Source, ev.ID) }

// KeyPrefix starts every EventKey.
const KeyPrefix = "ce1-"

// EventKey is the identity of the event with source and id, in a form fit
// for a Nats-Msg-Id header and kdsync's per-user record: KeyPrefix and 32
// hexadecimal digits of the SHA-256 of the length of source, source and id.
// Equal keys mean the same event; the length prefix keeps ("ab", "c") and
// ("a", "bc") apart.
func EventKey(source, id string) string {
	var buf [512]byte
	b := binary.AppendUvarint(buf[:0], uint64(len(source)))
	b = append(append(b, source...), id...)
	sum := sha256.Sum256(b)
	out := make([]byte, len(KeyPrefix), len(KeyPrefix)+32)
	copy(out, KeyPrefix)
	return string(hex.AppendEncode(out, sum[:16]))
}
