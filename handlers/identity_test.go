package handlers_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/kdsync/kdsync/handlers"
)

// TestDecodeErrorKeepsIdentity checks that an event refused for anything
// after its envelope still names itself (id and source), so that its dead
// letter can be found by event id; and that nothing ambiguous is named.
func TestDecodeErrorKeepsIdentity(t *testing.T) {
	t.Parallel()
	valid := string(body(t))
	tests := map[string]struct {
		subject string
		header  map[string][]string
		body    string
		named   bool
	}{
		"bad role":                   {body: string(body(t, set("data.role", `7`))), named: true},
		"userId missing":             {body: string(body(t, del("data.userId"))), named: true},
		"data missing":               {body: string(body(t, del("data"))), named: true},
		"data an array":              {body: string(body(t, set("data", `[1]`))), named: true},
		"deptId not a number":        {body: string(body(t, set("data.deptId", `"sales"`))), named: true},
		"unknown type":               {body: string(body(t, set("type", `"employee.promoted"`))), named: true},
		"bad time":                   {body: string(body(t, set("time", `"yesterday"`))), named: true},
		"specversion 0.3":            {body: string(body(t, set("specversion", `"0.3"`))), named: true},
		"subject differs from user":  {body: string(body(t, set("subject", `"42"`))), named: true},
		"NATS subject of another":    {subject: "identity.employee.hired.42", body: valid, named: true},
		"NATS subject's action":      {subject: "identity.employee.deleted." + testUser, body: valid, named: true},
		"a name twice inside data":   {body: strings.Replace(string(body(t)), `"role":1`, `"role":1,"role":2`, 1), named: true},
		"a data name in other case":  {body: string(body(t, set("data.Role", `2`))), named: true},
		"too large":                  {body: string(body(t, set("data.name", `"`+strings.Repeat("x", 70<<10)+`"`))), named: true},
		"malformed JSON":             {body: valid[:len(valid)-3]},
		"id given twice":             {body: strings.Replace(valid, `{`, `{"id":"other",`, 1)},
		"id in another case besides": {body: string(body(t, set("ID", `"other"`)))},
		"id a number":                {body: string(body(t, set("id", `7`)))},
		"id a lone surrogate":        {body: string(body(t, set("id", `"a\ud800"`)))},
		"source missing":             {body: string(body(t, del("source")))},
		"id too long":                {body: string(body(t, set("id", `"`+strings.Repeat("i", 257)+`"`)))},
		"binary: bad data":           {header: binaryHeader(nil), body: `{"userId":"x"}`, named: true},
		"binary: unknown type":       {header: binaryHeader(map[string][]string{"ce-type": {"x"}}), body: binaryBody, named: true},
		"binary: ce-id ambiguous":    {header: binaryHeader(map[string][]string{"ce-id": {"a", "b"}}), body: binaryBody},
		"binary: ce-source absent":   {header: binaryHeader(map[string][]string{"ce-source": nil}), body: binaryBody},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := handlers.Decoder{}.Decode(tc.subject, tc.header, []byte(tc.body))
			var ie *handlers.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error = %v, want an *InputError", err)
			}
			if !tc.named {
				if ie.EventID != "" || ie.Source != "" {
					t.Errorf("%v: names event %q from %q; want none (the identity is not certain)", ie, ie.EventID, ie.Source)
				}
				return
			}
			if ie.EventID != testID || ie.Source != "hris/workday" {
				t.Errorf("%v: names event %q from %q; want %q from hris/workday", ie, ie.EventID, ie.Source, testID)
			}
		})
	}
}

// TestEventKey checks that the key tells events apart by source and id
// together, is stable, and fits a header.
func TestEventKey(t *testing.T) {
	t.Parallel()
	k := handlers.EventKey("hris/workday", "1")
	if k != handlers.EventKey("hris/workday", "1") {
		t.Fatal("EventKey is not deterministic")
	}
	if !strings.HasPrefix(k, handlers.KeyPrefix) || len(k) != len(handlers.KeyPrefix)+32 || strings.Trim(k[len(handlers.KeyPrefix):], "0123456789abcdef") != "" {
		t.Errorf("EventKey = %q, want %s and 32 hex digits", k, handlers.KeyPrefix)
	}
	seen := map[string][2]string{}
	for _, p := range [][2]string{
		{"hris/workday", "1"}, {"idp/okta", "1"}, {"ab", "c"}, {"a", "bc"}, {"", "abc"}, {"abc", ""},
		{"hris/workday", "2"}, {"s", "\ufffd"}, {"s", "\ufffd\ufffd"},
	} {
		key := handlers.EventKey(p[0], p[1])
		if q, ok := seen[key]; ok {
			t.Errorf("%q and %q share the key %s", p, q, key)
		}
		seen[key] = p
	}
	ev := &handlers.Event{ID: "1", Source: "idp/okta"}
	if ev.Key() != handlers.EventKey("idp/okta", "1") {
		t.Errorf("Event.Key = %s, want EventKey(source, id)", ev.Key())
	}
}

// TestDecodeStrictNumbers checks the opt-in refusal of JSON numbers above
// 2^53, and that strings are read exactly either way.
func TestDecodeStrictNumbers(t *testing.T) {
	t.Parallel()
	const two53 = 1 << 53
	strict := handlers.Decoder{StrictNumbers: true}
	for raw, ok := range map[string]bool{
		strconv.Itoa(two53):               true,
		strconv.Itoa(two53 + 1):           false,
		testDept:                          false,
		`"` + testDept + `"`:              true,
		`"` + strconv.Itoa(two53+1) + `"`: true,
	} {
		ev, err := strict.Decode("", nil, body(t, set("data.deptId", raw)))
		if !ok {
			ie := wantInputError(t, err, handlers.ReasonInvalidField, "data.deptId")
			if !strings.Contains(ie.Error(), "string") || !strings.Contains(ie.Error(), "KDSYNC_STRICT_NUMBERS") {
				t.Errorf("error %q does not say to send the id as a string, and why", ie)
			}
			continue
		}
		if err != nil {
			t.Errorf("deptId %s: %v", raw, err)
			continue
		}
		want, _ := strconv.ParseInt(strings.Trim(raw, `"`), 10, 64)
		if *ev.DeptID != want {
			t.Errorf("deptId %s read as %d", raw, *ev.DeptID)
		}
	}
}
