package scim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/kdsync/kdsync/mapping"
)

// Schema URNs of the resources served.
const (
	userSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	enterpriseSchema = mapping.EnterpriseSchema
)

// resource is a SCIM resource as JSON decodes it (numbers as json.Number).
type resource = map[string]any

// The attribute names of the schemas served, for case-insensitive lookup
// (RFC 7643 section 2.1: attribute names are case insensitive) and to
// store each under its canonical name.
var canonical = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"schemas", "id", "externalId", "meta", "userName", "name", "displayName", "nickName", "profileUrl",
		"title", "userType", "preferredLanguage", "locale", "timezone", "active", "password", "emails",
		"phoneNumbers", "ims", "photos", "addresses", "groups", "entitlements", "roles", "x509Certificates",
		"members", "value", "display", "type", "primary", "$ref", "formatted", "familyName", "givenName",
		"middleName", "honorificPrefix", "honorificSuffix", "streetAddress", "locality", "region",
		"postalCode", "country", "employeeNumber", "costCenter", "organization", "division", "department",
		"manager", "displayName", "resourceType", "created", "lastModified", "version", "location",
	} {
		m[strings.ToLower(n)] = n
	}
	m[strings.ToLower(enterpriseSchema)] = enterpriseSchema
	m[strings.ToLower(userSchema)] = userSchema
	return m
}()

// canon is the canonical spelling of an attribute name.
func canon(name string) string {
	if c, ok := canonical[strings.ToLower(name)]; ok {
		return c
	}
	return name
}

// lookup finds the member of m named name in any case.
func lookup(m map[string]any, name string) (string, any, bool) {
	if v, ok := m[name]; ok {
		return name, v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return k, v, true
		}
	}
	return "", nil, false
}

// set stores v under name, replacing a member spelled in another case.
func set(m map[string]any, name string, v any) {
	if k, _, ok := lookup(m, name); ok && k != name {
		delete(m, k)
	}
	m[canon(name)] = v
}

func del(m map[string]any, name string) {
	if k, _, ok := lookup(m, name); ok {
		delete(m, k)
	}
}

func str(m map[string]any, name string) string {
	_, v, _ := lookup(m, name)
	s, _ := v.(string)
	return s
}

// booleans are the attributes of type boolean: their values are
// normalised, as Entra ID sends "True" and "False" strings.
var booleans = map[string]bool{"active": true, "primary": true}

// normalize stores known attributes under their canonical names (at every
// level) and turns booleans sent as text into booleans. It changes r in
// place.
func normalize(r map[string]any) {
	for k, v := range r {
		c := canon(k)
		if c != k {
			delete(r, k)
			r[c] = v
		}
		switch x := v.(type) {
		case map[string]any:
			normalize(x)
		case []any:
			for _, e := range x {
				if m, ok := e.(map[string]any); ok {
					normalize(m)
				}
			}
		case string:
			if booleans[c] {
				switch strings.ToLower(strings.TrimSpace(x)) {
				case "true":
					r[c] = true
				case "false":
					r[c] = false
				}
			}
		}
	}
}

// decode reads a JSON object, numbers kept exact.
func decode(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errTrailing
	}
	if m == nil {
		return nil, errNotObject
	}
	return m, nil
}

type decodeError string

func (e decodeError) Error() string { return string(e) }

const (
	errTrailing  decodeError = "data after the JSON object"
	errNotObject decodeError = "the body must be a JSON object"
)

// clone copies a decoded JSON value deeply.
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = clone(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = clone(e)
		}
		return out
	}
	return v
}

func cloneRes(r resource) resource {
	if r == nil {
		return nil
	}
	return clone(r).(map[string]any)
}

// schemasOf lists the schemas member of r.
func schemasOf(r resource) []string {
	_, v, _ := lookup(r, "schemas")
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func hasSchema(list []string, urn string) bool {
	for _, s := range list {
		if strings.EqualFold(s, urn) {
			return true
		}
	}
	return false
}

// readEdit reads a PUT (patch false) or PATCH request for the resource
// {id}, checked by check, and returns the id and the edit it asks for:
// given the stored resource, the new one, its meta kept. A request it
// cannot take is answered here (ok false).
func (s *Server) readEdit(w http.ResponseWriter, r *http.Request, patch bool, check func(resource) *Error) (id string, edit func(resource) (resource, *Error), ok bool) {
	if err := s.ready(); err != nil {
		s.writeError(w, err)
		return "", nil, false
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, err)
		return "", nil, false
	}
	id = r.PathValue("id")
	if !patch {
		if v, ok := body["id"].(string); ok && v != id {
			s.writeError(w, badRequest(mutability, "id %q differs from the resource's %q", clipText(v), id))
			return "", nil, false
		}
		if e := check(body); e != nil {
			s.writeError(w, e)
			return "", nil, false
		}
		return id, func(old resource) (resource, *Error) {
			res := cloneRes(body)
			res["meta"] = old["meta"]
			return res, nil
		}, true
	}
	ops, e := parsePatch(body)
	if e != nil {
		s.writeError(w, e)
		return "", nil, false
	}
	return id, func(old resource) (resource, *Error) {
		res := cloneRes(old)
		meta := res["meta"]
		if e := applyPatch(res, id, ops); e != nil {
			return nil, e
		}
		if e := check(res); e != nil {
			return nil, e
		}
		res["meta"] = meta
		return res, nil
	}, true
}
