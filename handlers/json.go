package handlers

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// This file reads event bodies with jsontext, the streaming tokenizer of
// github.com/go-json-experiment/json (the prototype of encoding/json/v2).
// Decode walks the envelope and data token by token, without reflection,
// and records where the members it needs lie in the body; everything else
// is read as a raw value and dropped.
//
// On a valid UTF-8 body (Decode refuses any other first) it accepts the
// documents encoding/json accepts, RFC 8259 JSON nested at most 10000 levels
// deep, except for one stricter rule: jsontext refuses an object that gives
// a member name twice (RFC 7493, I-JSON), at any depth, where encoding/json
// silently takes the last value. Decode adds that a name of the envelope or
// of data given in another case ("ID" besides "id", or alone) is refused
// too, as encoding/json would take it for the field. Two parsers that
// disagree on which value counts are a classic way to slip a field past a
// filter; refusing the event is the safe answer. FuzzDecode compares Decode
// with encoding/json.

// value is a JSON value found in the body: its kind (0 when absent) and, for
// a scalar, its bytes b[start:end], quotes included for a string.
type value struct {
	kind       jsontext.Kind
	start, end int
}

func (v value) absent() bool { return v.kind == 0 || v.kind == jsontext.KindNull }

// kindName names the JSON type of a value for error messages: "got a string".
func kindName(k jsontext.Kind) string {
	switch k {
	case jsontext.KindNull:
		return "null"
	case jsontext.KindTrue, jsontext.KindFalse:
		return "a boolean"
	case jsontext.KindNumber:
		return "a number"
	case jsontext.KindString:
		return "a string"
	case jsontext.KindBeginArray:
		return "an array"
	case jsontext.KindBeginObject:
		return "an object"
	}
	return "nothing"
}

// members says which members of an object to record: those named in keys
// go to vals, and prefix qualifies their names in errors. With an inner
// members (data, in the envelope), an object value of the member keys[at]
// has its members recorded as inner says.
type members struct {
	keys   []string
	vals   []value
	prefix string
	at     int
}

// A scanner reads one body. Scanners are pooled: a jsontext.Decoder is
// reused through Reset, keeping its buffers, so that reading an event
// allocates nothing in the steady state. The pool holds no configuration.
type scanner struct {
	dec jsontext.Decoder
	in  bytes.Buffer // the body; dec reads a bytes.Buffer in place
	b   []byte       // the body
	// field names what a syntax error is in: "" for a structured event,
	// "data" for the body of a binary one.
	field string
	// keyErr is the first name seen in another case; it is reported once
	// the document is known to be well-formed.
	keyErr *InputError
	name   []byte // an escaped member name, unescaped
	unesc  []byte // escaped string values, unescaped
}

var scanners = sync.Pool{New: func() any { return new(scanner) }}

// reset starts reading p.b afresh; dups allows duplicate names. Decode has
// refused invalid UTF-8 bytes already, with a reason of their own: what
// AllowInvalidUTF8 lets through besides is a \u escape of a lone surrogate,
// which reads as U+FFFD, as in encoding/json.
func (p *scanner) reset(dups bool) {
	p.in = *bytes.NewBuffer(p.b)
	p.dec.Reset(&p.in, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(dups))
}

func getScanner(body []byte, field string) *scanner {
	p := scanners.Get().(*scanner)
	p.b, p.field = body, field
	p.reset(false)
	return p
}

// release returns s to the pool, keeping no reference to the body.
func (p *scanner) release() {
	p.b, p.keyErr = nil, nil
	p.in = bytes.Buffer{}
	p.dec.Reset(&p.in)
	p.name, p.unesc = p.name[:0], p.unesc[:0]
	if cap(p.name)+cap(p.unesc) > 4<<10 {
		p.name, p.unesc = nil, nil // hold on to no large event's worth
	}
	scanners.Put(p)
}

// document reads the whole body as one JSON value and returns its kind, 0
// for an empty body. When it is an object, its members are recorded as m
// and inner (nil for none) say.
func (p *scanner) document(m, inner *members) (jsontext.Kind, *InputError) {
	d := &p.dec
	k := d.PeekKind()
	var err error
	switch k {
	case jsontext.KindInvalid:
		// Nothing but whitespace, or a syntax error.
		if _, err = d.ReadToken(); errors.Is(err, io.EOF) {
			return 0, nil
		}
	case jsontext.KindBeginObject:
		err = p.object(m, inner)
	default:
		_, err = d.ReadValue()
	}
	if err != nil {
		return 0, p.syntaxErr(err, m, inner)
	}
	if err := p.trailing(); err != nil {
		return 0, err
	}
	if p.keyErr != nil {
		return 0, p.keyErr
	}
	return k, nil
}

// object reads the object that comes next, recording its members as m and
// inner say. (inner is not in m so that the values recorded stay on the
// caller's stack: the compiler cannot see that through a recursive walk of
// pointers.)
func (p *scanner) object(m, inner *members) error {
	d := &p.dec
	if _, err := d.ReadToken(); err != nil { // {
		return err
	}
	for d.PeekKind() == jsontext.KindString {
		name, err := d.ReadValue() // jsontext refuses a name given twice
		if err != nil {
			return err
		}
		i := p.lookup(name, m)
		if inner != nil && i == m.at && d.PeekKind() == jsontext.KindBeginObject {
			m.vals[i] = value{kind: jsontext.KindBeginObject}
			if err := p.object(inner, nil); err != nil {
				return err
			}
			continue
		}
		v, err := d.ReadValue()
		if err != nil {
			return err
		}
		if i >= 0 {
			end := int(d.InputOffset())
			m.vals[i] = value{kind: v.Kind(), start: end - len(v), end: end}
		}
	}
	_, err := d.ReadToken() // }, or the syntax error PeekKind met
	return err
}

// lookup returns the index in m.keys of the member name raw, a JSON
// string, or -1. It notes a name that matches a key only when case is
// ignored.
func (p *scanner) lookup(raw []byte, m *members) int {
	name := raw[1 : len(raw)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		// The decoder has validated the string: the only error left to
		// report is a lone surrogate, which reads as U+FFFD.
		p.name, _ = jsontext.AppendUnquote(p.name[:0], raw)
		name = p.name
	}
	for i, k := range m.keys {
		if string(name) == k {
			return i
		}
	}
	for _, k := range m.keys {
		if bytes.EqualFold(name, []byte(k)) {
			if p.keyErr == nil {
				p.keyErr = inputErr(ReasonMalformed, m.prefix+k, "the name %q differs from %q only in case; names are case-sensitive", clip(string(name)), k)
			}
			break
		}
	}
	return -1
}

// trailing refuses anything but whitespace after the top-level value.
func (p *scanner) trailing() *InputError {
	rest := bytes.TrimLeft(p.b[p.dec.InputOffset():], " \t\r\n")
	if len(rest) == 0 {
		return nil
	}
	r, _ := utf8.DecodeRune(rest)
	return inputErr(ReasonMalformed, p.field, "invalid JSON at byte %d: unexpected character %s after the top-level value", len(p.b)-len(rest), strconv.QuoteRune(r))
}

// syntaxErr turns an error of the decoder reading the document whose
// members m and inner record into an InputError.
func (p *scanner) syntaxErr(err error, m, inner *members) *InputError {
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		// Not expected: the decoder reads from memory.
		return inputErr(ReasonMalformed, p.field, "invalid JSON: %v", err)
	}
	switch {
	case errors.Is(se.Err, jsontext.ErrDuplicateName):
		return p.duplicate(se.JSONPointer, m, inner)
	case errors.Is(se.Err, io.ErrUnexpectedEOF):
		return inputErr(ReasonMalformed, p.field, "invalid JSON: unexpected end of input at byte %d (truncated?)", se.ByteOffset)
	case se.JSONPointer != "":
		return inputErr(ReasonMalformed, p.field, "invalid JSON at byte %d, in %q: %v", se.ByteOffset, clip(string(se.JSONPointer)), se.Err)
	}
	return inputErr(ReasonMalformed, p.field, "invalid JSON at byte %d: %v", se.ByteOffset, se.Err)
}

// duplicate reports the member name that ptr points to, given twice. A
// syntax error anywhere in the body comes first, as does a name in another
// case seen before it.
func (p *scanner) duplicate(ptr jsontext.Pointer, m, inner *members) *InputError {
	p.reset(true)
	if _, err := p.dec.ReadValue(); err != nil {
		return p.syntaxErr(err, m, inner)
	}
	if err := p.trailing(); err != nil {
		return err
	}
	if p.keyErr != nil {
		return p.keyErr
	}
	name, parent := ptr.LastToken(), ptr.Parent()
	if inner != nil && parent.Parent() == "" && parent.LastToken() == m.keys[m.at] {
		m, parent = inner, ""
	}
	if parent == "" {
		for _, k := range m.keys {
			if name == k {
				return inputErr(ReasonMalformed, m.prefix+k, "the name %q is given twice; an event must have one value per field", k)
			}
		}
	}
	where := "the top-level object"
	if ptr.Parent() != "" {
		where = strconv.Quote(clip(string(ptr.Parent())))
	}
	return inputErr(ReasonMalformed, p.field, "the member name %q is given twice in %s; names must be unique", clip(name), where)
}

// text returns the content of string v, unescaped: a view of the body
// when it has no escapes, else of the scanner's scratch space. A \u escape
// of a lone surrogate is refused: it is no Unicode text, and read as
// U+FFFD (as encoding/json does) two different ids would become one.
func (p *scanner) text(v value, field string) ([]byte, *InputError) {
	raw := p.b[v.start:v.end]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], nil
	}
	start := len(p.unesc)
	// The decoder has validated the string: the only error left to report
	// is a lone surrogate.
	var err error
	if p.unesc, err = jsontext.AppendUnquote(p.unesc, raw); err != nil {
		p.unesc = p.unesc[:start]
		return nil, inputErr(ReasonInvalidUTF8, field, "holds a \\u escape of a lone surrogate (U+D800 to U+DFFF without its pair), which is not Unicode text")
	}
	return p.unesc[start:len(p.unesc):len(p.unesc)], nil
}
