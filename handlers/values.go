package handlers

import (
	"math"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/kdsync/kdsync/kdapi"
)

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
