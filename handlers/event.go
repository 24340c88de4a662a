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
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kdsync/kdsync/kdapi"
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

// Reason classifies bad input, for dead letters and metric labels.
type Reason string

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

// Reasons lists every Reason, for metric initialisation.
var Reasons = []Reason{ReasonTooLarge, ReasonInvalidUTF8, ReasonMalformed, ReasonSpecVersion,
	ReasonUnknownType, ReasonMissingField, ReasonInvalidField, ReasonMismatch}

// InputError is an event that cannot be applied as it is. It is permanent:
// the consumer dead-letters it.
type InputError struct {
	Reason Reason
	Field  string // the offending field, e.g. data.deptId; empty when none
	Detail string
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
type Decoder struct {
	// MaxSize bounds the body plus headers; 0 means DefaultMaxEventSize.
	MaxSize int
}

// wire is the structured-mode envelope. Attributes are raw so that a wrong
// JSON type is reported per field instead of as one unreadable document.
type wire struct {
	SpecVersion     json.RawMessage `json:"specversion"`
	ID              json.RawMessage `json:"id"`
	Source          json.RawMessage `json:"source"`
	Type            json.RawMessage `json:"type"`
	Subject         json.RawMessage `json:"subject"`
	Time            json.RawMessage `json:"time"`
	DataContentType json.RawMessage `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      json.RawMessage `json:"data_base64"`
}

type wireData struct {
	UserID json.RawMessage `json:"userId"`
	DeptID json.RawMessage `json:"deptId"`
	Role   json.RawMessage `json:"role"`
	Status json.RawMessage `json:"status"`
	Name   json.RawMessage `json:"name"`
}

// Decode parses and validates one event. subject is the NATS subject it
// arrived on (empty when there is none, e.g. at an HTTP ingress); header
// holds the message headers, where ce-* headers select binary content mode.
// Every failure is an *InputError.
func (d Decoder) Decode(subject string, header map[string][]string, body []byte) (*Event, error) {
	limit := d.MaxSize
	if limit <= 0 {
		limit = DefaultMaxEventSize
	}
	if n := len(body) + headerSize(header); n > limit {
		return nil, inputErr(ReasonTooLarge, "", "event is %d bytes, the limit is %d", n, limit)
	}
	if !utf8.Valid(body) {
		return nil, inputErr(ReasonInvalidUTF8, "", "body is not valid UTF-8")
	}
	var ev *Event
	var err error
	if sv := headerValue(header, "ce-specversion"); sv != "" {
		ev, err = decodeBinary(header, body)
	} else {
		ev, err = decodeStructured(body)
	}
	if err != nil {
		return nil, err
	}
	if err := ev.checkSubject(subject); err != nil {
		return nil, err
	}
	return ev, nil
}

func decodeStructured(body []byte) (*Event, error) {
	var w wire
	if err := unmarshalObject(body, &w); err != nil {
		return nil, inputErr(ReasonMalformed, "", "%s", describeJSONError(err))
	}
	ev := &Event{}
	var err error
	sv, err := str(w.SpecVersion, "specversion", true)
	if err != nil {
		return nil, err
	}
	if sv != "1.0" {
		return nil, inputErr(ReasonSpecVersion, "specversion", "%q is not supported (want 1.0)", sv)
	}
	if ev.ID, err = str(w.ID, "id", true); err != nil {
		return nil, err
	}
	if ev.Source, err = str(w.Source, "source", true); err != nil {
		return nil, err
	}
	if ev.Type, err = str(w.Type, "type", true); err != nil {
		return nil, err
	}
	if ev.Subject, err = str(w.Subject, "subject", false); err != nil {
		return nil, err
	}
	t, err := str(w.Time, "time", false)
	if err != nil {
		return nil, err
	}
	ct, err := str(w.DataContentType, "datacontenttype", false)
	if err != nil {
		return nil, err
	}
	if !isNull(w.DataBase64) {
		return nil, inputErr(ReasonInvalidField, "data_base64", "binary data is not supported; send data as a JSON object")
	}
	if err := ev.finish(t, ct, w.Data); err != nil {
		return nil, err
	}
	return ev, nil
}

func decodeBinary(header map[string][]string, body []byte) (*Event, error) {
	ev := &Event{Binary: true}
	if sv := headerValue(header, "ce-specversion"); sv != "1.0" {
		return nil, inputErr(ReasonSpecVersion, "ce-specversion", "%q is not supported (want 1.0)", sv)
	}
	for _, f := range []struct {
		name string
		dst  *string
		req  bool
	}{
		{"ce-id", &ev.ID, true},
		{"ce-source", &ev.Source, true},
		{"ce-type", &ev.Type, true},
		{"ce-subject", &ev.Subject, false},
	} {
		*f.dst = headerValue(header, f.name)
		if f.req && *f.dst == "" {
			return nil, inputErr(ReasonMissingField, f.name, "required header is absent or empty")
		}
	}
	ct := headerValue(header, "content-type")
	if err := ev.finish(headerValue(header, "ce-time"), ct, body); err != nil {
		return nil, err
	}
	return ev, nil
}

// finish validates the attributes common to both modes and decodes data.
func (ev *Event) finish(t, contentType string, data json.RawMessage) error {
	if len(ev.ID) > maxIDLen {
		return inputErr(ReasonInvalidField, "id", "is %d characters, the limit is %d", len(ev.ID), maxIDLen)
	}
	name, ok := strings.CutPrefix(ev.Type, TypePrefix)
	if !ok {
		return inputErr(ReasonUnknownType, "type", "%q is not an employee event (want %s<action>)", clip(ev.Type), TypePrefix)
	}
	if ev.Action, ok = ParseAction(name); !ok {
		return inputErr(ReasonUnknownType, "type", "%q is not one of employee.hired, changed, disabled, enabled, deleted", clip(ev.Type))
	}
	if t != "" {
		tt, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return inputErr(ReasonInvalidField, "time", "%q is not an RFC 3339 timestamp", clip(t))
		}
		ev.Time = tt
	}
	if contentType != "" && !strings.HasPrefix(strings.ToLower(contentType), "application/json") {
		return inputErr(ReasonInvalidField, "datacontenttype", "%q is not application/json", clip(contentType))
	}
	if isNull(data) {
		return inputErr(ReasonMissingField, "data", "required")
	}
	var wd wireData
	if err := unmarshalObject(data, &wd); err != nil {
		return inputErr(ReasonMalformed, "data", "%s", describeJSONError(err))
	}
	var err error
	if ev.UserID, err = str(wd.UserID, "data.userId", true); err != nil {
		return err
	}
	if len(ev.UserID) > maxUserIDLen || !digits(ev.UserID) {
		return inputErr(ReasonInvalidField, "data.userId", "%q is not an OrgID user id (digits, at most %d)", clip(ev.UserID), maxUserIDLen)
	}
	if ev.Subject != "" && ev.Subject != ev.UserID {
		return inputErr(ReasonMismatch, "subject", "CloudEvents subject %q differs from data.userId %q", clip(ev.Subject), ev.UserID)
	}
	if ev.DeptID, err = deptID(wd.DeptID); err != nil {
		return err
	}
	if ev.Role, err = enum(wd.Role, "data.role", kdapi.ValidRole, "0,1,2,3,5"); err != nil {
		return err
	}
	if ev.Status, err = enum(wd.Status, "data.status", kdapi.ValidStatus, "0 enabled, 1 disabled"); err != nil {
		return err
	}
	if ev.Name, err = str(wd.Name, "data.name", false); err != nil {
		return err
	}
	return nil
}

// checkSubject enforces that the NATS subject's action and user id agree
// with the event.
func (ev *Event) checkSubject(subject string) error {
	if subject == "" {
		return nil
	}
	action, user, ok := ParseSubject(subject)
	if !ok {
		return inputErr(ReasonMismatch, "subject", "NATS subject %q does not end in <action>.<userId>", clip(subject))
	}
	if action != string(ev.Action) {
		return inputErr(ReasonMismatch, "type", "type %q does not match the subject's action %q", ev.Type, clip(action))
	}
	if user != ev.UserID {
		return inputErr(ReasonMismatch, "data.userId", "%q does not match the subject's user id %q", ev.UserID, clip(user))
	}
	return nil
}

// unmarshalObject decodes a JSON object, refusing any other JSON value and
// trailing data.
func unmarshalObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(b, v)
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s has JSON type %s", te.Field, te.Value)
	}
	return err.Error()
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// str decodes a JSON string attribute.
func str(raw json.RawMessage, field string, required bool) (string, error) {
	if isNull(raw) {
		if required {
			return "", inputErr(ReasonMissingField, field, "required")
		}
		return "", nil
	}
	if raw[0] != '"' {
		return "", inputErr(ReasonInvalidField, field, "must be a JSON string, got %s", jsonKind(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", inputErr(ReasonInvalidField, field, "unreadable string")
	}
	if required && s == "" {
		return "", inputErr(ReasonMissingField, field, "must not be empty")
	}
	return s, nil
}

// deptID accepts a JSON string of digits or a JSON integer, within int64.
func deptID(raw json.RawMessage) (*int64, error) {
	const field = "data.deptId"
	if isNull(raw) {
		return nil, nil
	}
	text := string(raw)
	switch {
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, inputErr(ReasonInvalidField, field, "unreadable string")
		}
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
	default:
		return nil, inputErr(ReasonInvalidField, field, "must be a string or a number, got %s", jsonKind(raw))
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n <= 0 {
		return nil, inputErr(ReasonInvalidField, field, "%q is not a positive 64-bit department id", clip(text))
	}
	if raw[0] != '"' && n > 1<<53 {
		// Exactly representable here, but producers that encode numbers as
		// doubles lose precision above 2^53: ask for a string.
		return nil, inputErr(ReasonInvalidField, field, "%d is above 2^53; send department ids above 2^53 as strings", n)
	}
	return &n, nil
}

// enum decodes a JSON integer that valid accepts.
func enum(raw json.RawMessage, field string, valid func(int) bool, allowed string) (*int, error) {
	if isNull(raw) {
		return nil, nil
	}
	if !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return nil, inputErr(ReasonInvalidField, field, "must be a JSON number, got %s", jsonKind(raw))
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 || !valid(int(n)) {
		return nil, inputErr(ReasonInvalidField, field, "%s is not allowed (%s)", clip(string(raw)), allowed)
	}
	v := int(n)
	return &v, nil
}

func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func headerValue(h map[string][]string, name string) string {
	if v, ok := h[name]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

func headerSize(h map[string][]string) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return n
}
