package kdapi

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// decoders reuses jsontext decoders between responses; it holds buffers
// only, no configuration.
var decoders = sync.Pool{New: func() any { return jsontext.NewDecoder(bytes.NewReader(nil)) }}

// decodeEnvelope reads the members of KooDrive's envelope from body, a
// JSON object, without reflection: code, msg, and the raw data, list and
// total (which slice body). Other members are skipped. Names are matched
// as KooDrive writes them (lower case); a repeated member is refused.
func decodeEnvelope(body []byte, env *envelope) error {
	d := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(d)
	d.Reset(bytes.NewReader(body))
	if tok, err := d.ReadToken(); err != nil {
		return err
	} else if tok.Kind() != '{' {
		return errors.New("not a JSON object")
	}
	for d.PeekKind() != '}' {
		// The name as it stands in the body, quotes included; names with
		// escapes are taken as unknown.
		name, err := d.ReadValue()
		if err != nil {
			return err
		}
		var key string
		switch string(name) { // compared without allocating
		case `"code"`:
			key = "code"
		case `"msg"`:
			key = "msg"
		case `"data"`:
			key = "data"
		case `"list"`:
			key = "list"
		case `"total"`:
			key = "total"
		}
		raw, err := d.ReadValue()
		if err != nil {
			return err
		}
		end := int(d.InputOffset())
		val := body[end-len(raw) : end] // raw lives in the decoder's buffer; body outlives it
		switch key {
		case "code":
			if err := env.Code.UnmarshalJSON(val); err != nil {
				return err
			}
		case "msg":
			if val[0] == '"' {
				s, err := jsontext.AppendUnquote(nil, val)
				if err != nil {
					return fmt.Errorf("msg: %w", err)
				}
				env.Msg = string(s)
			} else if !bytes.Equal(val, []byte("null")) {
				return fmt.Errorf("msg: want a string, got %.20s", val)
			}
		case "data":
			env.Data = val
		case "list":
			env.List = val
		case "total":
			var n FlexInt64
			if err := n.UnmarshalJSON(val); err != nil {
				return fmt.Errorf("total: %w", err)
			}
			env.Total = &n
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return err
	}
	if _, err := d.ReadToken(); err == nil {
		return errors.New("data after the JSON object")
	}
	return nil
}
