package scim

import (
	"encoding/json"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// parseFilter parses a filter query parameter (RFC 7644 section 3.4.2.2)
// with scim2/filter-parser.
func parseFilter(s string) (filter.Expression, *Error) {
	e, err := filter.ParseFilter([]byte(s))
	if err != nil {
		return nil, badRequest(invalidFilter, "filter %q: %v", clipText(s), err)
	}
	return e, nil
}

// caseExact lists the attributes compared case-sensitively: ids. Other
// strings (userName, emails, displayName) compare in any case, as RFC 7643
// has them.
var caseExact = map[string]bool{"id": true, "externalid": true, "value": true, "$ref": true}

// match evaluates a filter on a resource.
func match(r map[string]any, e filter.Expression) bool {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		if x.Operator == filter.AND {
			return match(r, x.Left) && match(r, x.Right)
		}
		return match(r, x.Left) || match(r, x.Right)
	case *filter.NotExpression:
		return !match(r, x.Expression)
	case *filter.ValuePath:
		container, ok := scope(r, x.AttributePath)
		if !ok {
			return false
		}
		_, v, _ := lookup(container, x.AttributePath.AttributeName)
		for _, el := range asList(v) {
			if m, ok := el.(map[string]any); ok && match(m, x.ValueFilter) {
				return true
			}
		}
		return false
	case *filter.AttributeExpression:
		return matchAttr(r, x)
	}
	return false
}

// scope is the object an attribute path's URI prefix names: the resource
// itself for a core schema, the extension's object for an extension.
func scope(r map[string]any, p filter.AttributePath) (map[string]any, bool) {
	uri := p.URI()
	if uri == "" || strings.EqualFold(uri, userSchema) || strings.EqualFold(uri, groupSchema) {
		return r, true
	}
	_, v, ok := lookup(r, uri)
	m, isMap := v.(map[string]any)
	return m, ok && isMap
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// matchAttr evaluates one comparison. A multi-valued attribute matches
// when any of its values does; its complex values compare by their sub
// attribute, or by "value" when none is named.
func matchAttr(r map[string]any, x *filter.AttributeExpression) bool {
	container, ok := scope(r, x.AttributePath)
	if !ok {
		return false
	}
	name := x.AttributePath.AttributeName
	_, v, found := lookup(container, name)
	sub := x.AttributePath.SubAttributeName()
	var vals []any
	for _, el := range asList(v) {
		m, isMap := el.(map[string]any)
		switch {
		case sub != "" && isMap:
			if _, sv, ok := lookup(m, sub); ok {
				vals = append(vals, sv)
			}
		case sub != "":
		case isMap:
			if _, sv, ok := lookup(m, "value"); ok {
				vals = append(vals, sv)
			}
		default:
			vals = append(vals, el)
		}
	}
	if x.Operator == filter.PR {
		for _, v := range vals {
			if v != nil && v != "" {
				return true
			}
		}
		return false
	}
	if !found {
		return false
	}
	exact := caseExact[strings.ToLower(name)] || sub != "" && caseExact[strings.ToLower(sub)]
	for _, v := range vals {
		if compare(v, x.Operator, x.CompareValue, exact) {
			return true
		}
	}
	return false
}

func compare(v any, op filter.CompareOperator, want any, exact bool) bool {
	switch w := want.(type) {
	case string:
		s, ok := v.(string)
		if !ok {
			if n, isNum := v.(json.Number); isNum {
				s, ok = n.String(), true
			}
		}
		if !ok {
			return false
		}
		if !exact {
			s, w = strings.ToLower(s), strings.ToLower(w)
		}
		switch op {
		case filter.EQ:
			return s == w
		case filter.NE:
			return s != w
		case filter.CO:
			return strings.Contains(s, w)
		case filter.SW:
			return strings.HasPrefix(s, w)
		case filter.EW:
			return strings.HasSuffix(s, w)
		case filter.GT:
			return s > w
		case filter.GE:
			return s >= w
		case filter.LT:
			return s < w
		case filter.LE:
			return s <= w
		}
	case bool:
		b, ok := v.(bool)
		switch op {
		case filter.EQ:
			return ok && b == w
		case filter.NE:
			return !ok || b != w
		}
	case nil:
		switch op {
		case filter.EQ:
			return v == nil
		case filter.NE:
			return v != nil
		}
	default:
		a, ok1 := number(v)
		b, ok2 := number(w)
		if !ok1 || !ok2 {
			return false
		}
		switch op {
		case filter.EQ:
			return a == b
		case filter.NE:
			return a != b
		case filter.GT:
			return a > b
		case filter.GE:
			return a >= b
		case filter.LT:
			return a < b
		case filter.LE:
			return a <= b
		}
	}
	return false
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// eqTerm returns the attribute and value of a filter of the form
// `name eq "value"` (or several of them joined by and), for a PATCH add
// whose filtered path matches nothing: the new element gets them.
func eqTerms(e filter.Expression, out map[string]any) bool {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		if x.Operator != filter.EQ || x.AttributePath.SubAttribute != nil || x.AttributePath.URIPrefix != nil {
			return false
		}
		out[canon(x.AttributePath.AttributeName)] = x.CompareValue
		return true
	case *filter.LogicalExpression:
		return x.Operator == filter.AND && eqTerms(x.Left, out) && eqTerms(x.Right, out)
	}
	return false
}

// userNameEq returns the value of a filter `userName eq "x"`, which the
// server answers from its index instead of scanning.
func userNameEq(e filter.Expression) (string, bool) {
	x, ok := e.(*filter.AttributeExpression)
	if !ok || x.Operator != filter.EQ || x.AttributePath.SubAttribute != nil || !strings.EqualFold(x.AttributePath.AttributeName, "userName") {
		return "", false
	}
	if u := x.AttributePath.URI(); u != "" && !strings.EqualFold(u, userSchema) {
		return "", false
	}
	s, ok := x.CompareValue.(string)
	return s, ok
}

func clipText(s string) string {
	if len(s) <= 200 {
		return s
	}
	return s[:200] + "…"
}
