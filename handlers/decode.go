package handlers

import (
	"bytes"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

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
