package handlers

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the JSON scanner Decode uses instead of encoding/json.
// It reads the event in one pass, without reflection, and allocates only
// to unescape a string that holds escapes. On a valid UTF-8 body (Decode
// refuses any other first) it accepts exactly the documents encoding/json
// accepts: RFC 8259 JSON nested at most 10000 levels deep; FuzzDecode
// compares the two. It is stricter about member names, in the envelope and
// in data: they are matched case-sensitively, and a name given twice, or
// also in another case ("ID" besides "id"), is refused. encoding/json
// silently takes the last of them, in any case. Two parsers that disagree
// on which value counts are a classic way to slip a field past a filter;
// refusing the event is the safe answer. Unknown names are ignored, even
// when repeated.

// kind is the JSON type of a value.
type kind uint8

const (
	kNone kind = iota // absent
	kNull
	kBool
	kNumber
	kString
	kArray
	kObject
)

// String names the kind for error messages: "got a string".
func (k kind) String() string {
	switch k {
	case kNull:
		return "null"
	case kBool:
		return "a boolean"
	case kNumber:
		return "a number"
	case kString:
		return "a string"
	case kArray:
		return "an array"
	case kObject:
		return "an object"
	}
	return "nothing"
}

// value is a JSON value found in the body: its kind and its bytes,
// b[start:end], quotes included for a string.
type value struct {
	kind       kind
	esc        bool // a string holding escapes
	start, end int
}

func (v value) absent() bool { return v.kind == kNone || v.kind == kNull }

const maxDepth = 10000 // as encoding/json

// parser scans one JSON document, b.
type parser struct {
	b []byte
	i int
	// field names what a syntax error is in: "" for a structured event,
	// "data" for the body of a binary one.
	field string
	// keyErr is the first duplicated or case-variant name seen; it is
	// reported once the document is known to be well-formed.
	keyErr *InputError
}

// document scans the whole of b as one JSON value. When it is an object,
// the members named in keys are recorded in vals (prefix qualifies their
// names in errors).
func (p *parser) document(keys []string, vals []value, prefix string) (value, *InputError) {
	p.ws()
	if p.i == len(p.b) {
		return value{}, nil
	}
	var v value
	var err *InputError
	if p.b[p.i] == '{' {
		v, err = p.object(1, keys, vals, prefix)
	} else {
		v, err = p.value(0)
	}
	if err != nil {
		return value{}, err
	}
	p.ws()
	if p.i < len(p.b) {
		return value{}, p.syntaxErr("after the top-level value")
	}
	if p.keyErr != nil {
		return value{}, p.keyErr
	}
	return v, nil
}

// members re-reads object v, already scanned, recording the members named
// in keys.
func (p *parser) members(v value, keys []string, vals []value, prefix string) *InputError {
	q := parser{b: p.b[:v.end], i: v.start, field: p.field}
	if _, err := q.object(1, keys, vals, prefix); err != nil {
		return err
	}
	return q.keyErr
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// syntaxErr reports the byte at p.i, or the end of the input.
func (p *parser) syntaxErr(context string) *InputError {
	if p.i >= len(p.b) {
		return inputErr(ReasonMalformed, p.field, "invalid JSON: unexpected end of input at byte %d (truncated?)", p.i)
	}
	c := p.b[p.i]
	what := "character " + quoteChar(c)
	if c >= utf8.RuneSelf {
		r, _ := utf8.DecodeRune(p.b[p.i:])
		what = "character " + quoteRune(r)
	}
	return inputErr(ReasonMalformed, p.field, "invalid JSON at byte %d: unexpected %s %s", p.i, what, context)
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	if c < 0x20 || c == 0x7f {
		const hex = "0123456789abcdef"
		return `'\x` + string(hex[c>>4]) + string(hex[c&15]) + `'`
	}
	return "'" + string(rune(c)) + "'"
}

func quoteRune(r rune) string { return "'" + string(r) + "'" }

// value scans the value at p.i; depth is the nesting around it.
func (p *parser) value(depth int) (value, *InputError) {
	if p.i >= len(p.b) {
		return value{}, p.syntaxErr("")
	}
	start := p.i
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth+1, nil, nil, "")
	case c == '[':
		if depth+1 > maxDepth {
			return value{}, inputErr(ReasonMalformed, p.field, "invalid JSON at byte %d: nested more than %d levels deep", p.i, maxDepth)
		}
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return value{kind: kArray, start: start, end: p.i}, nil
		}
		for {
			if _, err := p.value(depth + 1); err != nil {
				return value{}, err
			}
			p.ws()
			if p.i >= len(p.b) {
				return value{}, p.syntaxErr("")
			}
			switch p.b[p.i] {
			case ',':
				p.i++
				p.ws()
			case ']':
				p.i++
				return value{kind: kArray, start: start, end: p.i}, nil
			default:
				return value{}, p.syntaxErr("after an array element")
			}
		}
	case c == '"':
		esc, err := p.string()
		return value{kind: kString, esc: esc, start: start, end: p.i}, err
	case c == '-' || c >= '0' && c <= '9':
		err := p.number()
		return value{kind: kNumber, start: start, end: p.i}, err
	case c == 't':
		return value{kind: kBool, start: start, end: start + 4}, p.literal("true")
	case c == 'f':
		return value{kind: kBool, start: start, end: start + 5}, p.literal("false")
	case c == 'n':
		return value{kind: kNull, start: start, end: start + 4}, p.literal("null")
	}
	return value{}, p.syntaxErr("looking for the beginning of a value")
}

// object scans the object at p.i, recording the members named in keys.
func (p *parser) object(depth int, keys []string, vals []value, prefix string) (value, *InputError) {
	if depth > maxDepth {
		return value{}, inputErr(ReasonMalformed, p.field, "invalid JSON at byte %d: nested more than %d levels deep", p.i, maxDepth)
	}
	start := p.i
	p.i++ // {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return value{kind: kObject, start: start, end: p.i}, nil
	}
	var seen uint32
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return value{}, p.syntaxErr("looking for the beginning of an object key")
		}
		ks := p.i
		kesc, err := p.string()
		if err != nil {
			return value{}, err
		}
		key := p.b[ks+1 : p.i-1]
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return value{}, p.syntaxErr("after an object key")
		}
		p.i++
		p.ws()
		v, err := p.value(depth)
		if err != nil {
			return value{}, err
		}
		if keys != nil {
			if kesc {
				key = unescape(make([]byte, 0, len(key)), key)
			}
			p.record(key, keys, vals, prefix, v, &seen)
		}
		p.ws()
		if p.i >= len(p.b) {
			return value{}, p.syntaxErr("")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.ws()
		case '}':
			p.i++
			return value{kind: kObject, start: start, end: p.i}, nil
		default:
			return value{}, p.syntaxErr("after an object member")
		}
	}
}

// record stores v under key if keys names it, and notes a name given
// twice or in another case.
func (p *parser) record(key []byte, keys []string, vals []value, prefix string, v value, seen *uint32) {
	for i, k := range keys {
		if string(key) == k {
			if *seen&(1<<i) != 0 && p.keyErr == nil {
				p.keyErr = inputErr(ReasonMalformed, prefix+k, "the name %q is given twice; an event must have one value per field", k)
			}
			*seen |= 1 << i
			vals[i] = v
			return
		}
	}
	for _, k := range keys {
		if bytes.EqualFold(key, []byte(k)) {
			if p.keyErr == nil {
				p.keyErr = inputErr(ReasonMalformed, prefix+k, "the name %q differs from %q only in case; names are case-sensitive", clip(string(key)), k)
			}
			return
		}
	}
}

// string scans the string at p.i and reports whether it holds escapes.
// The body is known to be valid UTF-8.
func (p *parser) string() (esc bool, err *InputError) {
	p.i++ // "
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c >= 0x20 && c != '"' && c != '\\' {
			p.i++
			continue
		}
		switch {
		case c == '"':
			p.i++
			return esc, nil
		case c == '\\':
			esc = true
			p.i++
			if p.i >= len(p.b) {
				return esc, p.syntaxErr("")
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				p.i++
				for range 4 {
					if p.i >= len(p.b) {
						return esc, p.syntaxErr("")
					}
					if !isHex(p.b[p.i]) {
						return esc, p.syntaxErr(`in a \u escape (want 4 hexadecimal digits)`)
					}
					p.i++
				}
			default:
				return esc, p.syntaxErr("in a string escape")
			}
		default:
			return esc, p.syntaxErr("in a string (control characters must be escaped)")
		}
	}
	return esc, p.syntaxErr("")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at p.i.
func (p *parser) number() *InputError {
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i >= len(p.b):
		return p.syntaxErr("")
	case p.b[p.i] == '0':
		p.i++
	case p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return p.syntaxErr("in a number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if err := p.needDigits(); err != nil {
			return err
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if err := p.needDigits(); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) digits() {
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
}

func (p *parser) needDigits() *InputError {
	if p.i >= len(p.b) {
		return p.syntaxErr("")
	}
	if p.b[p.i] < '0' || p.b[p.i] > '9' {
		return p.syntaxErr("in a number")
	}
	p.digits()
	return nil
}

func (p *parser) literal(lit string) *InputError {
	for i := 0; i < len(lit); i++ {
		if p.i >= len(p.b) {
			return p.syntaxErr("")
		}
		if p.b[p.i] != lit[i] {
			return p.syntaxErr("in the literal " + lit)
		}
		p.i++
	}
	return nil
}

// text returns the content of string v, unescaped: a view of the body
// when it has no escapes, else a copy.
func (p *parser) text(v value) []byte {
	s := p.b[v.start+1 : v.end-1]
	if !v.esc {
		return s
	}
	return unescape(make([]byte, 0, len(s)), s)
}

// unescape appends the unescaped form of s, the well-formed content of a
// JSON string, to dst. Like encoding/json it turns a \u escape of a lone
// surrogate into U+FFFD.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			j := bytes.IndexByte(s[i:], '\\')
			if j < 0 {
				return append(dst, s[i:]...)
			}
			dst = append(dst, s[i:i+j]...)
			i += j
			continue
		}
		i++
		switch c := s[i]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+1:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2 = hex4(s[i+3:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // " \ /
			dst = append(dst, c)
		}
		i++
	}
	return dst
}

// hex4 reads the 4 hexadecimal digits at the start of s.
func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
