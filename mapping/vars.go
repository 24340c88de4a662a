package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// The attributes of the SCIM User schema (RFC 7643 section 4.1) and of the
// enterprise extension (section 4.3). Absent ones read as null (multi-valued
// ones as an empty list), so that 'user.userType != "Contractor"' holds for
// a user without a userType instead of failing.
var (
	userSingular = []string{"id", "externalId", "userName", "name", "displayName", "nickName", "profileUrl",
		"title", "userType", "preferredLanguage", "locale", "timezone", "active"}
	userMulti = []string{"emails", "phoneNumbers", "ims", "photos", "addresses", "groups",
		"entitlements", "roles", "x509Certificates"}
	nameParts       = []string{"formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"}
	enterpriseAttrs = []string{"employeeNumber", "costCenter", "organization", "division", "department", "manager"}
)

// Vars builds the variables user, enterprise and groups for rec (not
// departments, which belongs to the mapping). Numbers become int64 or
// double, booleans sent as strings ("True", "false": Entra ID sends them
// so) become booleans, and an absent active is true.
func Vars(rec Record) map[string]any {
	user, _ := plain(rec.User).(map[string]any)
	if user == nil {
		user = map[string]any{}
	}
	for _, a := range userSingular {
		if _, ok := user[a]; !ok {
			user[a] = nil
		}
	}
	for _, a := range userMulti {
		if _, ok := user[a]; !ok {
			user[a] = []any{}
		}
	}
	user["active"] = normBool(user["active"], true)
	if name, ok := user["name"].(map[string]any); ok {
		fillNull(name, nameParts)
	}
	for _, a := range userMulti {
		if l, ok := user[a].([]any); ok {
			for _, el := range l {
				if m, ok := el.(map[string]any); ok {
					if p, ok := m["primary"]; ok {
						m["primary"] = normBool(p, false)
					}
				}
			}
		}
	}
	ent, _ := user[EnterpriseSchema].(map[string]any)
	if ent == nil {
		ent = map[string]any{}
	}
	fillNull(ent, enterpriseAttrs)
	groups := rec.Groups
	if groups == nil {
		groups = []string{}
	}
	return map[string]any{"user": user, "enterprise": ent, "groups": groups}
}

func fillNull(m map[string]any, keys []string) {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			m[k] = nil
		}
	}
}

// normBool reads a boolean sent as a boolean or as the text true/false in
// any case; nil gives def. Anything else is kept, for the expression to
// judge.
func normBool(v any, def bool) any {
	switch x := v.(type) {
	case nil:
		return def
	case bool:
		return x
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true
		case "false":
			return false
		}
	}
	return v
}

// plain copies a decoded JSON value into the types CEL reads: maps,
// lists, strings, booleans, int64 (whole numbers) and float64.
func plain(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plain(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	}
	return v
}

// DecodeUser reads a SCIM User from JSON, numbers kept exact.
func DecodeUser(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var u map[string]any
	if err := d.Decode(&u); err != nil {
		return nil, fmt.Errorf("mapping: the user is not a JSON object: %w", err)
	}
	return u, nil
}
