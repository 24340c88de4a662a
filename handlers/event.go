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
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

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

// Field names of the structured envelope and of data, in the order the
// decoder records them.
const (
	kSpecVersion = iota
	kID
	kSource
	kType
	kSubject
	kTime
	kDataContentType
	kData
	kDataBase64
	nEnvelopeKeys
)

var envelopeKeys = []string{
	kSpecVersion: "specversion", kID: "id", kSource: "source", kType: "type",
	kSubject: "subject", kTime: "time", kDataContentType: "datacontenttype",
	kData: "data", kDataBase64: "data_base64",
}

const (
	kUserID = iota
	kDeptID
	kRole
	kStatus
	kName
	nDataKeys
)

var dataKeys = []string{kUserID: "userId", kDeptID: "deptId", kRole: "role", kStatus: "status", kName: "name"}

// Binary content mode headers.
const (
	hSpecVersion = iota
	hID
	hSource
	hType
	hSubject
	hTime
	hContentType
	nHeaders
)

var headerNames = [nHeaders]string{
	hSpecVersion: "ce-specversion", hID: "ce-id", hSource: "ce-source", hType: "ce-type",
	hSubject: "ce-subject", hTime: "ce-time", hContentType: "content-type",
}

// typeName is the CloudEvents type of an action, a constant so that a
// decoded Event's Type needs no allocation.
func typeName(a Action) string {
	switch a {
	case Hired:
		return TypePrefix + string(Hired)
	case Changed:
		return TypePrefix + string(Changed)
	case Disabled:
		return TypePrefix + string(Disabled)
	case Enabled:
		return TypePrefix + string(Enabled)
	case Deleted:
		return TypePrefix + string(Deleted)
	}
	return TypePrefix + string(a)
}

// Decode parses and validates one event. subject is the NATS subject it
// arrived on (empty when there is none, e.g. at an HTTP ingress); header
// holds the message headers, where a non-empty ce-specversion header (any
// case) selects binary content mode: the other attributes come from ce-*
// headers and the body is the data object. Every failure is an *InputError
// whose message names the offending field.
func (d Decoder) Decode(subject string, header map[string][]string, body []byte) (*Event, error) {
	limit := d.MaxSize
	if limit <= 0 {
		limit = DefaultMaxEventSize
	}
	var hs headers
	hsize := hs.scan(header)
	var ev *Event
	var err *InputError
	switch n := len(body) + hsize; {
	case n > limit:
		err = inputErr(ReasonTooLarge, "", "event is %d bytes (body %d, headers %d), the limit is %d", n, len(body), hsize, limit)
	case !utf8.Valid(body):
		err = inputErr(ReasonInvalidUTF8, "", "body is not valid UTF-8 (first bad byte at offset %d)", invalidUTF8At(body))
	case hs.binary:
		ev, err = d.decodeBinary(&hs, body)
	default:
		ev, err = d.decodeStructured(body)
	}
	if err == nil {
		err = ev.checkSubject(subject)
	}
	if err != nil {
		switch {
		case ev != nil:
			err.EventID, err.Source = ev.ID, ev.Source
		case err.EventID != "":
		case hs.binary:
			err.EventID, err.Source = hs.identity()
		case len(body) <= maxIdentityScan:
			err.EventID, err.Source = envelopeIdentity(body)
		}
		return nil, err
	}
	return ev, nil
}

// maxIdentityScan bounds the refused structured bodies read again for
// their id and source: a hostile size is refused without another look.
const maxIdentityScan = 1 << 20

// eventBox is an Event with room for its optional fields, so that decoding
// allocates once for all of them.
type eventBox struct {
	ev     Event
	deptID int64
	role   int
	status int
}

// fieldNames names the attributes in error messages, per content mode.
type fieldNames struct {
	id, typ, time, contentType string
}

var (
	structuredNames = fieldNames{id: "id", typ: "type", time: "time", contentType: "datacontenttype"}
	binaryNames     = fieldNames{id: "ce-id", typ: "ce-type", time: "ce-time", contentType: "content-type"}
)

func (d Decoder) decodeStructured(body []byte) (*Event, *InputError) {
	p := getScanner(body, "")
	defer p.release()
	var env [nEnvelopeKeys]value
	var vals [nDataKeys]value
	data := members{keys: dataKeys, vals: vals[:], prefix: "data."}
	top, err := p.document(&members{keys: envelopeKeys, vals: env[:], at: kData}, &data)
	if err != nil {
		return nil, err
	}
	switch top {
	case jsontext.KindBeginObject:
	case 0:
		return nil, inputErr(ReasonMalformed, "", "the body is empty; an event is a JSON object")
	default:
		return nil, inputErr(ReasonMalformed, "", "an event must be a JSON object, got %s", kindName(top))
	}
	var sv []byte
	if sv, err = p.str(env[kSpecVersion], "specversion", true); err != nil {
		return nil, err
	}
	if string(sv) != "1.0" {
		return nil, inputErr(ReasonSpecVersion, "specversion", "%q is not supported (want 1.0)", clip(string(sv)))
	}
	// Text attributes are views of the body (or, when escaped, of a copy)
	// until the event is built.
	var id, source, typ, subject, tm, ct []byte
	if id, err = p.str(env[kID], "id", true); err != nil {
		return nil, err
	}
	if source, err = p.str(env[kSource], "source", true); err != nil {
		return nil, err
	}
	if typ, err = p.str(env[kType], "type", true); err != nil {
		return nil, err
	}
	if subject, err = p.str(env[kSubject], "subject", false); err != nil {
		return nil, err
	}
	if tm, err = p.str(env[kTime], "time", false); err != nil {
		return nil, err
	}
	if ct, err = p.str(env[kDataContentType], "datacontenttype", false); err != nil {
		return nil, err
	}
	if !env[kDataBase64].absent() {
		return nil, inputErr(ReasonInvalidField, "data_base64", "binary data is not supported; send data as a JSON object")
	}
	action, t, err := checkAttrs(structuredNames, id, typ, tm, ct)
	if err != nil {
		return nil, err.identify(id, source)
	}
	if env[kData].absent() {
		return nil, inputErr(ReasonMissingField, "data", "required").identify(id, source)
	}
	if k := env[kData].kind; k != jsontext.KindBeginObject {
		return nil, inputErr(ReasonInvalidField, "data", "must be a JSON object, got %s", kindName(k)).identify(id, source)
	}
	var dv dataView
	if dv.userID, err = p.userID(vals[kUserID]); err != nil {
		return nil, err.identify(id, source)
	}
	if len(subject) > 0 && !bytes.Equal(subject, dv.userID) {
		return nil, inputErr(ReasonMismatch, "subject", "CloudEvents subject %q differs from data.userId %q", clip(string(subject)), dv.userID).identify(id, source)
	}
	if err := p.optional(&vals, &dv, d.StrictNumbers); err != nil {
		return nil, err.identify(id, source)
	}
	box := &eventBox{}
	ev := &box.ev
	// The id gets a string of its own, as the consumer keeps the ids of
	// recent events; one string holds the other text fields.
	ev.ID = string(id)
	var sb strings.Builder
	sb.Grow(len(source) + len(dv.userID) + len(dv.name))
	sb.Write(source)
	sb.Write(dv.userID)
	sb.Write(dv.name)
	all := sb.String()
	ev.Source = all[:len(source)]
	ev.UserID = all[len(source) : len(source)+len(dv.userID)]
	ev.Name = all[len(source)+len(dv.userID):]
	if len(subject) > 0 {
		ev.Subject = ev.UserID
	}
	ev.Type, ev.Action, ev.Time = typeName(action), action, t
	box.fill(&dv)
	return ev, nil
}

func (d Decoder) decodeBinary(hs *headers, body []byte) (*Event, *InputError) {
	for i, name := range headerNames {
		if hs.ambiguous[i] {
			return nil, inputErr(ReasonInvalidField, name, "header is given more than once with different values")
		}
		if !utf8.ValidString(hs.val[i]) {
			return nil, inputErr(ReasonInvalidUTF8, name, "header value is not valid UTF-8")
		}
	}
	if sv := hs.val[hSpecVersion]; sv != "1.0" {
		return nil, inputErr(ReasonSpecVersion, "ce-specversion", "%q is not supported (want 1.0)", clip(sv))
	}
	for _, i := range []int{hID, hSource, hType} {
		if hs.val[i] == "" {
			return nil, inputErr(ReasonMissingField, headerNames[i], "required header is absent or empty")
		}
	}
	id, subject := hs.val[hID], hs.val[hSubject]
	action, t, err := checkAttrs(binaryNames, id, hs.val[hType], hs.val[hTime], hs.val[hContentType])
	if err != nil {
		return nil, err
	}
	// The body is the data object.
	p := getScanner(body, "data")
	defer p.release()
	var vals [nDataKeys]value
	data, err := p.document(&members{keys: dataKeys, vals: vals[:], prefix: "data."}, nil)
	if err != nil {
		return nil, err
	}
	if data == 0 || data == jsontext.KindNull {
		return nil, inputErr(ReasonMissingField, "data", "required: the body is empty")
	}
	if data != jsontext.KindBeginObject {
		return nil, inputErr(ReasonInvalidField, "data", "the body must be a JSON object, got %s", kindName(data))
	}
	var dv dataView
	if dv.userID, err = p.userID(vals[kUserID]); err != nil {
		return nil, err
	}
	if subject != "" && subject != string(dv.userID) {
		return nil, inputErr(ReasonMismatch, "ce-subject", "CloudEvents subject %q differs from data.userId %q", clip(subject), dv.userID)
	}
	if err := p.optional(&vals, &dv, d.StrictNumbers); err != nil {
		return nil, err
	}
	box := &eventBox{}
	ev := &box.ev
	ev.Binary = true
	ev.ID, ev.Source = id, hs.val[hSource]
	var sb strings.Builder
	sb.Grow(len(dv.userID) + len(dv.name))
	sb.Write(dv.userID)
	sb.Write(dv.name)
	all := sb.String()
	ev.UserID, ev.Name = all[:len(dv.userID)], all[len(dv.userID):]
	if subject != "" {
		ev.Subject = ev.UserID
	}
	ev.Type, ev.Action, ev.Time = typeName(action), action, t
	box.fill(&dv)
	return ev, nil
}

// checkAttrs validates the attributes common to both modes: the id's
// length, the type, the time and the content type.
func checkAttrs[T string | []byte](f fieldNames, id, typ, tm, ct T) (Action, time.Time, *InputError) {
	if len(id) > maxIDLen {
		return Unknown, time.Time{}, inputErr(ReasonInvalidField, f.id, "is %d bytes long, the limit is %d", len(id), maxIDLen)
	}
	if len(typ) < len(TypePrefix) || string(typ[:len(TypePrefix)]) != TypePrefix {
		return Unknown, time.Time{}, inputErr(ReasonUnknownType, f.typ, "%q is not an employee event (want %s<action>)", clip(string(typ)), TypePrefix)
	}
	action, ok := actionOf(typ[len(TypePrefix):])
	if !ok {
		return Unknown, time.Time{}, inputErr(ReasonUnknownType, f.typ, "%q is not one of employee.hired, changed, disabled, enabled, deleted", clip(string(typ)))
	}
	var t time.Time
	if len(tm) > 0 {
		if t, ok = parseTime(tm); !ok {
			return Unknown, time.Time{}, inputErr(ReasonInvalidField, f.time, "%q is not an RFC 3339 timestamp (like 2026-11-23T10:00:00.123Z)", clip(string(tm)))
		}
	}
	if len(ct) > 0 && !jsonMediaType(ct) {
		return Unknown, time.Time{}, inputErr(ReasonInvalidField, f.contentType, "%q is not application/json", clip(string(ct)))
	}
	return action, t, nil
}

// actionOf is ParseAction for a string or bytes, without allocating.
func actionOf[T string | []byte](s T) (Action, bool) {
	switch string(s) {
	case "hired":
		return Hired, true
	case "changed":
		return Changed, true
	case "disabled":
		return Disabled, true
	case "enabled":
		return Enabled, true
	case "deleted":
		return Deleted, true
	}
	return Unknown, false
}

// dataView is the data object, read but not yet copied out of the body.
type dataView struct {
	userID, name              []byte
	deptID                    int64
	role, status              int
	hasDept, hasRole, hasStat bool
}

// userID reads data.userId.
//
// The contract asks for a string of digits; an integer sent as a JSON
// number (a Java long, say) is taken as the digits of its literal, exactly.
func (p *scanner) userID(v value) ([]byte, *InputError) {
	var id []byte
	if v.kind == jsontext.KindNumber {
		id = p.b[v.start:v.end]
		if !digits(id) {
			return nil, inputErr(ReasonInvalidField, "data.userId", "%s is not an OrgID user id (a non-negative integer, best sent as a string of digits)", clip(string(id)))
		}
	} else {
		var err *InputError
		if id, err = p.str(v, "data.userId", true); err != nil {
			return nil, err
		}
	}
	if len(id) > maxUserIDLen || !digits(id) {
		return nil, inputErr(ReasonInvalidField, "data.userId", "%q is not an OrgID user id (digits, at most %d)", clip(string(id)), maxUserIDLen)
	}
	return id, nil
}

// optional reads the optional members of data.
func (p *scanner) optional(vals *[nDataKeys]value, dv *dataView, strictNumbers bool) *InputError {
	var err *InputError
	if dv.hasDept, err = p.deptID(vals[kDeptID], &dv.deptID, strictNumbers); err != nil {
		return err
	}
	if dv.hasRole, err = p.enum(vals[kRole], "data.role", kdapi.ValidRole, "0 department admin, 1 common user, 2 system admin, 3 cloud-drive admin, 5 member with management rights", &dv.role); err != nil {
		return err
	}
	if dv.hasStat, err = p.enum(vals[kStatus], "data.status", kdapi.ValidStatus, "0 enabled, 1 disabled", &dv.status); err != nil {
		return err
	}
	if dv.name, err = p.str(vals[kName], "data.name", false); err != nil {
		return err
	}
	return nil
}

func (b *eventBox) fill(dv *dataView) {
	if dv.hasDept {
		b.deptID = dv.deptID
		b.ev.DeptID = &b.deptID
	}
	if dv.hasRole {
		b.role = dv.role
		b.ev.Role = &b.role
	}
	if dv.hasStat {
		b.status = dv.status
		b.ev.Status = &b.status
	}
}

// checkSubject enforces that the NATS subject's action and user id agree
// with the event.
func (ev *Event) checkSubject(subject string) *InputError {
	if subject == "" {
		return nil
	}
	action, user, ok := ParseSubject(subject)
	if !ok || !digits(user) {
		return inputErr(ReasonMismatch, "subject", "NATS subject %q does not end in <action>.<userId>", clip(subject))
	}
	if action != string(ev.Action) {
		return inputErr(ReasonMismatch, "type", "type %q does not match the NATS subject's action %q", ev.Type, clip(action))
	}
	if user != ev.UserID {
		return inputErr(ReasonMismatch, "data.userId", "%q does not match the NATS subject's user id %q", ev.UserID, clip(user))
	}
	return nil
}

// str reads a JSON string attribute: its text, unescaped.
func (p *scanner) str(v value, field string, required bool) ([]byte, *InputError) {
	if v.absent() {
		if required {
			return nil, inputErr(ReasonMissingField, field, "required")
		}
		return nil, nil
	}
	if v.kind != jsontext.KindString {
		return nil, inputErr(ReasonInvalidField, field, "must be a JSON string, got %s", kindName(v.kind))
	}
	s, err := p.text(v, field)
	if err != nil {
		return nil, err
	}
	if required && len(s) == 0 {
		return nil, inputErr(ReasonMissingField, field, "must not be empty")
	}
	return s, nil
}

// deptID reads data.deptId: a JSON string of digits or a JSON integer, a
// positive int64, read exactly from its digits (never through a float64).
// With strict, a number above 2^53 is refused.
func (p *scanner) deptID(v value, dst *int64, strict bool) (bool, *InputError) {
	const field = "data.deptId"
	switch v.kind {
	case 0, jsontext.KindNull:
		return false, nil
	case jsontext.KindString:
		s, err := p.text(v, field)
		if err != nil {
			return false, err
		}
		n, ok := parseDigits(s)
		if !ok || n == 0 {
			return false, inputErr(ReasonInvalidField, field, "%q is not a department id (a positive 64-bit integer)", clip(string(s)))
		}
		*dst = n
		return true, nil
	case jsontext.KindNumber:
		s := p.b[v.start:v.end]
		n, ok := parseDigits(s)
		if !ok || n == 0 {
			return false, inputErr(ReasonInvalidField, field, "%s is not a department id (a positive 64-bit integer)", clip(string(s)))
		}
		if strict && n > 1<<53 {
			// Read exactly here, but producers that encode numbers as
			// doubles lose precision above 2^53: ask for a string.
			return false, inputErr(ReasonInvalidField, field, "%d is above 2^53, where JSON numbers lose precision in producers that use doubles; send it as a string (KDSYNC_STRICT_NUMBERS is on)", n)
		}
		*dst = n
		return true, nil
	}
	return false, inputErr(ReasonInvalidField, field, "must be a string or a number, got %s", kindName(v.kind))
}

// enum reads a JSON integer that valid accepts.
func (p *scanner) enum(v value, field string, valid func(int) bool, allowed string, dst *int) (bool, *InputError) {
	switch v.kind {
	case 0, jsontext.KindNull:
		return false, nil
	case jsontext.KindNumber:
	default:
		return false, inputErr(ReasonInvalidField, field, "must be a JSON number, got %s", kindName(v.kind))
	}
	s := p.b[v.start:v.end]
	mag, neg := s, s[0] == '-'
	if neg {
		mag = s[1:]
	}
	n, ok := parseDigits(mag) // refuses fractions and exponents
	x := int(n)
	if neg {
		x = -x
		ok = ok && n != 0 // -0 is no integer literal of the contract, as 1.0 is not
	}
	if !ok || n > math.MaxInt32 || !valid(x) {
		return false, inputErr(ReasonInvalidField, field, "%s is not allowed (%s)", clip(string(s)), allowed)
	}
	*dst = x
	return true, nil
}

// parseDigits reads a non-empty string of ASCII digits as an int64.
func parseDigits(s []byte) (int64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func digits[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseTime reads an RFC 3339 timestamp: YYYY-MM-DDTHH:MM:SS, an optional
// fraction of any length (nanoseconds kept), then Z or ±HH:MM. It is
// stricter than time.Parse, which also takes a comma before the fraction
// and offsets of 24 hours or more.
func parseTime[T string | []byte](s T) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for k := i; k < i+n; k++ {
			if s[k] < '0' || s[k] > '9' {
				return -1
			}
			v = v*10 + int(s[k]-'0')
		}
		return v
	}
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' && s[10] != 't' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if s[i] == '.' {
		i++
		start := i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if i-start < 9 {
				nsec = nsec*10 + int(s[i]-'0')
			}
		}
		if i == start {
			return time.Time{}, false
		}
		for k := i - start; k < 9; k++ {
			nsec *= 10
		}
	}
	if i >= len(s) {
		return time.Time{}, false
	}
	loc := time.UTC
	switch s[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		if len(s)-i != 6 || s[i+3] != ':' {
			return time.Time{}, false
		}
		oh, om := num(i+1, 2), num(i+4, 2)
		if oh < 0 || oh > 23 || om < 0 || om > 59 {
			return time.Time{}, false
		}
		off := (oh*60 + om) * 60
		if s[i] == '-' {
			off = -off
		}
		if off != 0 {
			loc = time.FixedZone("", off)
		}
		i += 6
	default:
		return time.Time{}, false
	}
	if i != len(s) {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int((m-1)%7%2)
}

// jsonMediaType reports whether ct is application/json or a +json type
// (application/cloudevents+json, ...), with any parameters.
func jsonMediaType[T string | []byte](ct T) bool {
	end := len(ct)
	for i := 0; i < len(ct); i++ {
		if ct[i] == ';' {
			end = i
			break
		}
	}
	start := 0
	for start < end && (ct[start] == ' ' || ct[start] == '\t') {
		start++
	}
	for end > start && (ct[end-1] == ' ' || ct[end-1] == '\t') {
		end--
	}
	mt := ct[start:end]
	const app, suffix = "application/", "+json"
	if len(mt) <= len(app) || !asciiEqualFold(mt[:len(app)], app) {
		return false
	}
	sub := mt[len(app):]
	if asciiEqualFold(sub, "json") {
		return true
	}
	if len(sub) <= len(suffix) || !asciiEqualFold(sub[len(sub)-len(suffix):], suffix) {
		return false
	}
	for i := 0; i < len(sub)-len(suffix); i++ {
		if !isTokenChar(sub[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$&-^_.+", c) >= 0
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

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// headers holds the binary-mode headers, found by name in any case.
type headers struct {
	val       [nHeaders]string
	set       [nHeaders]bool
	ambiguous [nHeaders]bool
	// binary is true when some ce-specversion header is not empty.
	binary bool
}

// scan reads the headers Decode uses and returns the size of all headers.
func (hs *headers) scan(h map[string][]string) int {
	size := 0
	for k, vs := range h {
		idx := -1
		for i, name := range headerNames {
			if asciiEqualFold(k, name) {
				idx = i
				break
			}
		}
		for _, v := range vs {
			size += len(k) + len(v)
			if idx < 0 {
				continue
			}
			if hs.set[idx] && hs.val[idx] != v {
				hs.ambiguous[idx] = true
			}
			hs.val[idx], hs.set[idx] = v, true
			if idx == hSpecVersion && v != "" {
				hs.binary = true
			}
		}
	}
	return size
}

// asciiEqualFold is strings.EqualFold for ASCII names.
func asciiEqualFold[T string | []byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// identify records the event's id and source on e, when they are fit to
// name it (the checks of the id and source themselves passed), and returns e.
func (e *InputError) identify(id, source []byte) *InputError {
	if validIdentity(id, source) {
		e.EventID, e.Source = string(id), string(source)
	}
	return e
}

func validIdentity[T string | []byte](id, source T) bool {
	return len(id) > 0 && len(id) <= maxIDLen && len(source) > 0 && len(source) <= maxIDLen &&
		utf8.Valid([]byte(id)) && utf8.Valid([]byte(source))
}

// identity returns ce-id and ce-source when both are given once, for an
// event refused for something else.
func (hs *headers) identity() (id, source string) {
	id, source = hs.val[hID], hs.val[hSource]
	if hs.ambiguous[hID] || hs.ambiguous[hSource] || !validIdentity(id, source) {
		return "", ""
	}
	return id, source
}

// envelopeIdentity reads the id and source of a structured event refused
// for something else: the top-level members id and source, when the body
// is well-formed JSON that gives each once as a string. It is off the hot
// path: only refused events come here.
func envelopeIdentity(body []byte) (id, source string) {
	p := getScanner(body, "")
	defer p.release()
	p.reset(true) // a name given twice elsewhere does not hide the id
	var env [nEnvelopeKeys]value
	d := &p.dec
	if d.PeekKind() != jsontext.KindBeginObject {
		return "", ""
	}
	if _, err := d.ReadToken(); err != nil {
		return "", ""
	}
	seen := [nEnvelopeKeys]int{}
	m := &members{keys: envelopeKeys, vals: env[:]}
	for d.PeekKind() == jsontext.KindString {
		name, err := d.ReadValue()
		if err != nil {
			return "", ""
		}
		i := p.lookup(name, m)
		v, err := d.ReadValue()
		if err != nil {
			return "", ""
		}
		if i == kID || i == kSource {
			end := int(d.InputOffset())
			env[i] = value{kind: v.Kind(), start: end - len(v), end: end}
			seen[i]++
		}
	}
	if _, err := d.ReadToken(); err != nil || p.trailing() != nil || p.keyErr != nil || seen[kID] != 1 || seen[kSource] != 1 ||
		env[kID].kind != jsontext.KindString || env[kSource].kind != jsontext.KindString {
		return "", ""
	}
	rid, err1 := p.text(env[kID], "id")
	rsrc, err2 := p.text(env[kSource], "source")
	if err1 != nil || err2 != nil || !validIdentity(rid, rsrc) {
		return "", ""
	}
	return string(rid), string(rsrc)
}
