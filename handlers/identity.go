package handlers

import (
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// maxIdentityScan bounds the refused structured bodies read again for
// their id and source: a hostile size is refused without another look.
const maxIdentityScan = 1 << 20

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
