package scim

import (
	"reflect"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// patchOp is one operation of a PATCH request (RFC 7644 section 3.5.2).
type patchOp struct {
	Op    string
	Path  string
	Value any
}

// readOnly attributes cannot be patched; id may be "set" to itself (Okta
// sends the id back in a group's replace).
var readOnly = map[string]bool{"id": true, "meta": true, "groups": true, "schemas": true}

// parsePatch reads a PATCH body: the PatchOp schema and its Operations.
// Op names are read in any case ("Replace", as Entra ID sends them).
func parsePatch(body map[string]any) ([]patchOp, *Error) {
	if !hasSchema(schemasOf(body), patchOpSchema) {
		return nil, badRequest(invalidSyntax, "a PATCH body must list the schema %s", patchOpSchema)
	}
	_, v, ok := lookup(body, "Operations")
	list, isList := v.([]any)
	if !ok || !isList || len(list) == 0 {
		return nil, badRequest(invalidSyntax, "a PATCH body needs Operations, a non-empty list")
	}
	ops := make([]patchOp, 0, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, badRequest(invalidSyntax, "Operations[%d] is not an object", i)
		}
		op := patchOp{Op: strings.ToLower(str(m, "op")), Path: str(m, "path")}
		_, op.Value, _ = lookup(m, "value")
		switch op.Op {
		case "add", "replace", "remove":
		default:
			return nil, badRequest(invalidSyntax, "Operations[%d]: op %q is not add, replace or remove", i, str(m, "op"))
		}
		if op.Op != "remove" && op.Value == nil {
			return nil, badRequest(invalidValue, "Operations[%d]: %s needs a value", i, op.Op)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// applyPatch applies ops to r in order. id is the resource's id, which a
// value may repeat but not change.
func applyPatch(r map[string]any, id string, ops []patchOp) *Error {
	for i, op := range ops {
		if err := applyOp(r, id, op); err != nil {
			err.Detail = "Operations[" + itoa(i) + "] (" + op.Op + " " + op.Path + "): " + err.Detail
			return err
		}
	}
	return nil
}

func applyOp(r map[string]any, id string, op patchOp) *Error {
	if op.Path == "" {
		if op.Op == "remove" {
			return badRequest(noTarget, "remove needs a path")
		}
		m, ok := op.Value.(map[string]any)
		if !ok {
			return badRequest(invalidValue, "without a path the value must be an object of attributes")
		}
		// Each member is an attribute, or a path ("name.givenName", an
		// extension's "urn:...:User:department", as Entra ID sends), or an
		// extension's URN with an object of its attributes.
		for k, v := range m {
			if strings.HasPrefix(strings.ToLower(k), "urn:") {
				if sub, ok := v.(map[string]any); ok && strings.EqualFold(k, enterpriseSchema) {
					for sk, sv := range sub {
						if err := applyOp(r, id, patchOp{Op: op.Op, Path: enterpriseSchema + ":" + sk, Value: sv}); err != nil {
							return err
						}
					}
					continue
				}
			}
			if err := applyOp(r, id, patchOp{Op: op.Op, Path: k, Value: v}); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := filter.ParsePath([]byte(op.Path))
	if err != nil {
		return badRequest(invalidPath, "path %q: %v", clipText(op.Path), err)
	}
	container, uerr := target(r, p.AttributePath, op.Op != "remove")
	if uerr != nil {
		return uerr
	}
	if container == nil { // removing from an extension the resource lacks
		return nil
	}
	name := p.AttributePath.AttributeName
	if p.AttributePath.URI() == "" && readOnly[strings.ToLower(name)] {
		if strings.EqualFold(name, "id") && op.Op != "remove" && op.Value == id {
			return nil
		}
		return badRequest(mutability, "%s is read-only", name)
	}
	if p.ValueExpression != nil {
		return applyFiltered(container, name, p.ValueExpression, p.SubAttributeName(), op)
	}
	if sub := p.AttributePath.SubAttributeName(); sub != "" {
		_, cur, _ := lookup(container, name)
		m, ok := cur.(map[string]any)
		if !ok {
			if op.Op == "remove" {
				return nil
			}
			if cur != nil {
				return badRequest(invalidPath, "%s is not a complex attribute", name)
			}
			m = map[string]any{}
			set(container, name, m)
		}
		if op.Op == "remove" {
			del(m, sub)
		} else {
			set(m, sub, op.Value)
		}
		return nil
	}
	_, cur, exists := lookup(container, name)
	switch op.Op {
	case "remove":
		// Entra ID removes group members with a value: the members to
		// remove, not the whole attribute.
		if l, ok := cur.([]any); ok && op.Value != nil {
			set(container, name, removeValues(l, asList(op.Value)))
			return nil
		}
		del(container, name)
	case "add":
		switch c := cur.(type) {
		case []any:
			set(container, name, appendNew(c, asList(op.Value)))
		case map[string]any:
			if v, ok := op.Value.(map[string]any); ok {
				for k, e := range v {
					set(c, k, e)
				}
				return nil
			}
			set(container, name, op.Value)
		default:
			if !exists && isMultiValued(name) {
				set(container, name, appendNew(nil, asList(op.Value)))
				return nil
			}
			set(container, name, op.Value)
		}
	case "replace":
		if c, ok := cur.(map[string]any); ok {
			if v, ok := op.Value.(map[string]any); ok {
				for k, e := range v {
					set(c, k, e)
				}
				return nil
			}
		}
		if isMultiValued(name) {
			set(container, name, asList(op.Value))
			return nil
		}
		set(container, name, op.Value)
	}
	return nil
}

// target is the object a path's URI prefix names; create makes an
// extension's object when the resource has none yet.
func target(r map[string]any, p filter.AttributePath, create bool) (map[string]any, *Error) {
	uri := p.URI()
	if uri == "" || strings.EqualFold(uri, userSchema) || strings.EqualFold(uri, groupSchema) {
		return r, nil
	}
	if !strings.EqualFold(uri, enterpriseSchema) {
		return nil, badRequest(invalidPath, "unknown schema %q", clipText(uri))
	}
	_, v, ok := lookup(r, enterpriseSchema)
	m, isMap := v.(map[string]any)
	if !ok || !isMap {
		if !create {
			return nil, nil
		}
		m = map[string]any{}
		set(r, enterpriseSchema, m)
	}
	return m, nil
}

// applyFiltered applies op to the elements of the multi-valued attribute
// name that match f, or to their sub attribute sub. An add or replace
// that matches nothing adds an element made of the filter's equalities
// and the value, as Entra ID expects for emails[type eq "work"].value.
func applyFiltered(container map[string]any, name string, f filter.Expression, sub string, op patchOp) *Error {
	_, cur, _ := lookup(container, name)
	list, _ := cur.([]any)
	matched := false
	out := list[:0:0]
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok || !match(m, f) {
			out = append(out, el)
			continue
		}
		matched = true
		switch {
		case op.Op == "remove" && sub == "":
			continue // drop the element
		case op.Op == "remove":
			del(m, sub)
		case sub != "":
			set(m, sub, op.Value)
		default:
			v, ok := op.Value.(map[string]any)
			if !ok {
				return badRequest(invalidValue, "the value for %s[...] must be an object", name)
			}
			for k, e := range v {
				set(m, k, e)
			}
		}
		out = append(out, m)
	}
	if !matched && op.Op != "remove" {
		el := map[string]any{}
		if !eqTerms(f, el) {
			return badRequest(noTarget, "no %s matches the filter", name)
		}
		if sub != "" {
			set(el, sub, op.Value)
		} else if v, ok := op.Value.(map[string]any); ok {
			for k, e := range v {
				set(el, k, e)
			}
		} else {
			return badRequest(invalidValue, "the value for %s[...] must be an object", name)
		}
		out = append(out, el)
	}
	set(container, name, out)
	return nil
}

// multiValued are the multi-valued attributes of the schemas served.
var multiValued = map[string]bool{"emails": true, "phonenumbers": true, "ims": true, "photos": true, "addresses": true,
	"entitlements": true, "roles": true, "x509certificates": true, "members": true, "schemas": true}

func isMultiValued(name string) bool { return multiValued[strings.ToLower(name)] }

// appendNew appends the values not already in l.
func appendNew(l []any, vals []any) []any {
	out := append([]any(nil), l...)
	for _, v := range vals {
		dup := false
		for _, e := range out {
			if sameValue(e, v) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, v)
		}
	}
	return out
}

// removeValues drops the elements of l equal to one of vals (compared by
// their "value" when both are objects with one).
func removeValues(l []any, vals []any) []any {
	out := l[:0:0]
	for _, e := range l {
		drop := false
		for _, v := range vals {
			if sameValue(e, v) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, e)
		}
	}
	return out
}

func sameValue(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		_, av, ok1 := lookup(am, "value")
		_, bv, ok2 := lookup(bm, "value")
		if ok1 && ok2 {
			return reflect.DeepEqual(av, bv)
		}
	}
	return reflect.DeepEqual(a, b)
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
