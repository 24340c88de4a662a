package handlers_test

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

const (
	testUser = "1008600000029937613"
	testDept = "1243693141656107521"
	testID   = "0b8f6c1e-5b7a-4d0e-9a51-1f0c1c2d3e4f"
)

// subjectOf is the NATS subject an event of action a for testUser is
// published on.
func subjectOf(a handlers.Action) string { return "identity.employee." + string(a) + "." + testUser }

// edit changes the envelope or the data object of a test event. Values are
// raw JSON.
type edit func(env, data map[string]json.RawMessage)

// set sets key ("id", "data.role", ...) to raw JSON.
func set(key, raw string) edit {
	return func(env, data map[string]json.RawMessage) {
		if k, ok := strings.CutPrefix(key, "data."); ok {
			data[k] = json.RawMessage(raw)
			return
		}
		env[key] = json.RawMessage(raw)
	}
}

// del removes key.
func del(key string) edit {
	return func(env, data map[string]json.RawMessage) {
		if k, ok := strings.CutPrefix(key, "data."); ok {
			delete(data, k)
			return
		}
		delete(env, key)
	}
}

// body is the contract's example event (employee.hired), edited.
func body(t testing.TB, edits ...edit) []byte {
	t.Helper()
	env := map[string]json.RawMessage{
		"specversion":     json.RawMessage(`"1.0"`),
		"id":              json.RawMessage(`"` + testID + `"`),
		"source":          json.RawMessage(`"hris/workday"`),
		"type":            json.RawMessage(`"employee.hired"`),
		"subject":         json.RawMessage(`"` + testUser + `"`),
		"time":            json.RawMessage(`"2026-11-23T10:00:00.123Z"`),
		"datacontenttype": json.RawMessage(`"application/json"`),
	}
	data := map[string]json.RawMessage{
		"userId": json.RawMessage(`"` + testUser + `"`),
		"deptId": json.RawMessage(`"` + testDept + `"`),
		"role":   json.RawMessage(`1`),
		"status": json.RawMessage(`0`),
		"name":   json.RawMessage(`"Sam"`),
	}
	const placeholder = "@data"
	env["data"] = json.RawMessage(placeholder)
	for _, e := range edits {
		e(env, data)
	}
	if string(env["data"]) == placeholder {
		env["data"] = object(data)
	}
	return object(env)
}

// object writes the members in name order, values as they are (which may
// be invalid JSON, on purpose).
func object(members map[string]json.RawMessage) []byte {
	b := []byte{'{'}
	for i, k := range slices.Sorted(maps.Keys(members)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, k)
		b = append(b, ':')
		b = append(b, members[k]...)
	}
	return append(b, '}')
}

// binaryHeader is the binary-mode header set of the contract's example.
func binaryHeader(edits map[string][]string) map[string][]string {
	h := map[string][]string{
		"ce-specversion": {"1.0"},
		"ce-id":          {testID},
		"ce-source":      {"hris/workday"},
		"ce-type":        {"employee.hired"},
		"ce-subject":     {testUser},
		"ce-time":        {"2026-11-23T10:00:00.123Z"},
		"content-type":   {"application/json"},
		"Nats-Msg-Id":    {testID},
	}
	for k, v := range edits {
		if v == nil {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	return h
}

const binaryBody = `{"userId":"` + testUser + `","deptId":"` + testDept + `","role":1,"status":0,"name":"Sam"}`

// wantEvent is the Event of the contract's example, for action a.
func wantEvent(a handlers.Action) *handlers.Event {
	return &handlers.Event{
		ID:      testID,
		Source:  "hris/workday",
		Type:    "employee." + string(a),
		Subject: testUser,
		Time:    time.Date(2026, 11, 23, 10, 0, 0, 123e6, time.UTC),
		Action:  a,
		UserID:  testUser,
		DeptID:  kdapi.Ptr(int64(1243693141656107521)),
		Role:    kdapi.Ptr(1),
		Status:  kdapi.Ptr(0),
		Name:    "Sam",
	}
}

func with(ev *handlers.Event, f func(*handlers.Event)) *handlers.Event {
	f(ev)
	return ev
}

func TestDecodeValid(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		subject string
		header  map[string][]string
		body    []byte
		want    *handlers.Event
	}{
		"hired": {
			subject: subjectOf(handlers.Hired),
			body:    body(t),
			want:    wantEvent(handlers.Hired),
		},
		"changed": {
			subject: subjectOf(handlers.Changed),
			body:    body(t, set("type", `"employee.changed"`)),
			want:    wantEvent(handlers.Changed),
		},
		"disabled": {
			subject: subjectOf(handlers.Disabled),
			body:    body(t, set("type", `"employee.disabled"`), set("data.status", "1")),
			want:    with(wantEvent(handlers.Disabled), func(ev *handlers.Event) { ev.Status = kdapi.Ptr(1) }),
		},
		"enabled": {
			subject: subjectOf(handlers.Enabled),
			body:    body(t, set("type", `"employee.enabled"`)),
			want:    wantEvent(handlers.Enabled),
		},
		"deleted": {
			subject: subjectOf(handlers.Deleted),
			body:    body(t, set("type", `"employee.deleted"`)),
			want:    wantEvent(handlers.Deleted),
		},
		"no NATS subject (HTTP ingress)": {
			body: body(t),
			want: wantEvent(handlers.Hired),
		},
		"minimal: only required fields": {
			subject: subjectOf(handlers.Disabled),
			body: []byte(`{"specversion":"1.0","id":"e1","source":"s","type":"employee.disabled",` +
				`"data":{"userId":"` + testUser + `"}}`),
			want: &handlers.Event{ID: "e1", Source: "s", Type: "employee.disabled", Action: handlers.Disabled, UserID: testUser},
		},
		"optional fields null are absent": {
			body: body(t, set("subject", "null"), set("time", "null"), set("datacontenttype", "null"),
				set("data_base64", "null"), set("data.deptId", "null"), set("data.role", "null"),
				set("data.status", "null"), set("data.name", "null")),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) {
				ev.Subject, ev.Time, ev.DeptID, ev.Role, ev.Status, ev.Name = "", time.Time{}, nil, nil, nil, ""
			}),
		},
		"role 0 and status 0 are present, not absent": {
			body: body(t, set("data.role", "0"), set("data.status", "0")),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.Role, ev.Status = kdapi.Ptr(0), kdapi.Ptr(0) }),
		},
		"role 5 and status 1": {
			body: body(t, set("data.role", "5"), set("data.status", "1")),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.Role, ev.Status = kdapi.Ptr(5), kdapi.Ptr(1) }),
		},
		"unknown fields are ignored, at any depth": {
			body: body(t, set("traceparent", `"00-abc-01"`), set("extension", `{"a":[1,{"b":null}],"id":7}`),
				set("data.email", `"sam@example.com"`), set("data.manager", `{"userId":12}`), set("data.tags", `[true,false,-1.5e3]`)),
			want: wantEvent(handlers.Hired),
		},
		"escapes in strings are decoded as encoding/json does": {
			body: body(t, set("id", `"e\u00e9\n\"\\\/\t"`), set("data.name", `"\ud83d\ude00 \u00e9 x"`),
				set("source", `"\u0068ris"`)),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) {
				ev.ID, ev.Name, ev.Source = "eé\n\"\\/\t", "😀 é x", "hris"
			}),
		},
		"userId as a JSON number (a Java long) is read as its digits": {
			subject: subjectOf(handlers.Hired),
			body:    body(t, set("data.userId", testUser), set("data.deptId", testDept)),
			want:    wantEvent(handlers.Hired),
		},
		"escaped member names match": {
			body: []byte(strings.Replace(string(body(t, set("id", `"escaped"`))), `"id":`, `"\u0069d":`, 1)),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.ID = "escaped" }),
		},
		"whitespace around and inside": {
			body: []byte(" \r\n\t{ \"specversion\" : \"1.0\" , \"id\":\"e1\",\"source\":\"s\",\"type\":\"employee.enabled\",\n" +
				"\"data\" : { \"userId\" :\"" + testUser + "\" , \"status\" : 0 } } \n"),
			want: &handlers.Event{ID: "e1", Source: "s", Type: "employee.enabled", Action: handlers.Enabled, UserID: testUser, Status: kdapi.Ptr(0)},
		},
		"time with an offset and nanoseconds": {
			body: body(t, set("time", `"2026-11-23T12:00:00.123456789+02:00"`)),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) {
				ev.Time = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
			}),
		},
		"time without a fraction, lower-case t and z (RFC 3339 allows them)": {
			body: body(t, set("time", `"2024-02-29t23:59:59z"`)),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.Time = time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC) }),
		},
		"datacontenttype with parameters, in another case": {
			body: body(t, set("datacontenttype", `"Application/JSON; charset=utf-8"`)),
			want: wantEvent(handlers.Hired),
		},
		"datacontenttype of a +json type": {
			body: body(t, set("datacontenttype", `"application/vnd.hris+json"`)),
			want: wantEvent(handlers.Hired),
		},
		"user id of 64 digits": {
			body: body(t, set("data.userId", `"`+strings.Repeat("9", 64)+`"`), del("subject")),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.UserID, ev.Subject = strings.Repeat("9", 64), "" }),
		},
		"id of 256 bytes": {
			body: body(t, set("id", `"`+strings.Repeat("x", 256)+`"`)),
			want: with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.ID = strings.Repeat("x", 256) }),
		},
		"structured event with unrelated headers": {
			subject: subjectOf(handlers.Hired),
			header:  map[string][]string{"Nats-Msg-Id": {testID}, "content-type": {"application/cloudevents+json"}, "ce-specversion": {""}},
			body:    body(t),
			want:    wantEvent(handlers.Hired),
		},
		"nesting of 10000 levels is accepted, as by encoding/json": {
			body: body(t, set("data.deep", strings.Repeat("[", 9998)+strings.Repeat("]", 9998))),
			want: wantEvent(handlers.Hired),
		},

		// Binary content mode.
		"binary": {
			subject: subjectOf(handlers.Hired),
			header:  binaryHeader(nil),
			body:    []byte(binaryBody),
			want:    with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.Binary = true }),
		},
		"binary: header names in any case": {
			subject: subjectOf(handlers.Changed),
			header: map[string][]string{
				"Ce-Specversion": {"1.0"}, "CE-ID": {testID}, "Ce-Source": {"hris/workday"},
				"ce-Type": {"employee.changed"}, "CE-SUBJECT": {testUser}, "Ce-Time": {"2026-11-23T10:00:00.123Z"},
				"Content-Type": {"application/json; charset=utf-8"},
			},
			body: []byte(binaryBody),
			want: with(wantEvent(handlers.Changed), func(ev *handlers.Event) { ev.Binary = true }),
		},
		"binary: only required headers": {
			header: binaryHeader(map[string][]string{"ce-subject": nil, "ce-time": nil, "content-type": nil}),
			body:   []byte(`{"userId":"` + testUser + `"}`),
			want: &handlers.Event{ID: testID, Source: "hris/workday", Type: "employee.hired", Action: handlers.Hired,
				Binary: true, UserID: testUser},
		},
		"binary: a header repeated with the same value": {
			header: binaryHeader(map[string][]string{"ce-id": {testID, testID}, "CE-ID": {testID}}),
			body:   []byte(binaryBody),
			want:   with(wantEvent(handlers.Hired), func(ev *handlers.Event) { ev.Binary = true }),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := handlers.Decoder{}.Decode(tc.subject, tc.header, tc.body)
			if err != nil {
				t.Fatalf("Decode: %v\nbody: %s", err, clipped(tc.body))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decode mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func clipped(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func TestDecodeDeptID(t *testing.T) {
	t.Parallel()
	const two53 = 1 << 53
	tests := map[string]struct {
		raw  string
		want int64 // 0: refused
	}{
		"string":                       {`"` + testDept + `"`, 1243693141656107521},
		"number":                       {`42`, 42},
		"number 1":                     {`1`, 1},
		"number 2^53":                  {strconv.Itoa(two53), two53},
		"number 2^53+1 (read exactly)": {strconv.Itoa(two53 + 1), two53 + 1},
		"number above 2^53 (an id)":    {testDept, 1243693141656107521},
		"number 2^63-1":                {`9223372036854775807`, 9223372036854775807},
		"string 2^53+1":                {`"` + strconv.Itoa(two53+1) + `"`, two53 + 1},
		"string 2^63-1":                {`"9223372036854775807"`, 9223372036854775807},
		"string 2^63":                  {`"9223372036854775808"`, 0},
		"number 2^63":                  {`9223372036854775808`, 0},
		"string 2^64":                  {`"18446744073709551616"`, 0},
		"number 2^64+":                 {`184467440737095516160`, 0},
		"string with leading zeros":    {`"007"`, 7},
		"number zero":                  {`0`, 0},
		"string zero":                  {`"0"`, 0},
		"number negative":              {`-5`, 0},
		"number negative zero":         {`-0`, 0},
		"string negative":              {`"-5"`, 0},
		"string with a plus sign":      {`"+5"`, 0},
		"string with spaces":           {`" 5"`, 0},
		"empty string":                 {`""`, 0},
		"string not a number":          {`"sales"`, 0},
		"string hexadecimal":           {`"0x10"`, 0},
		"number with a fraction":       {`5.0`, 0},
		"number with an exponent":      {`5e0`, 0},
		"boolean":                      {`true`, 0},
		"object":                       {`{"id":5}`, 0},
		"array":                        {`[5]`, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev, err := handlers.Decoder{}.Decode("", nil, body(t, set("data.deptId", tc.raw)))
			if tc.want == 0 {
				wantInputError(t, err, handlers.ReasonInvalidField, "data.deptId")
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.DeptID == nil || *ev.DeptID != tc.want {
				t.Errorf("DeptID = %v, want %d", ev.DeptID, tc.want)
			}
		})
	}
}

// wantInputError checks that err is an *InputError with reason and field,
// whose message names the field.
func wantInputError(t *testing.T, err error, reason handlers.Reason, field string) *handlers.InputError {
	t.Helper()
	var ie *handlers.InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error = %v (%T), want an *InputError", err, err)
	}
	if ie.Reason != reason || ie.Field != field {
		t.Errorf("error = %v: reason %q, field %q; want reason %q, field %q", ie, ie.Reason, ie.Field, reason, field)
	}
	if field != "" && !strings.Contains(ie.Error(), field) {
		t.Errorf("error %q does not name the field %q", ie, field)
	}
	if ie.Detail == "" {
		t.Errorf("error %q has no detail", ie)
	}
	return ie
}

func TestDecodeBadInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("9", 65)
	valid := body(t)
	type test struct {
		subject string
		header  map[string][]string
		body    []byte
		max     int
		reason  handlers.Reason
		field   string
		// mention must appear in the message (besides the field).
		mention string
	}
	tests := map[string]test{
		// Not JSON, or not an object.
		"malformed JSON":                      {body: []byte(`{"specversion":"1.0",}`), reason: handlers.ReasonMalformed, mention: "invalid JSON at byte 20"},
		"single quotes":                       {body: []byte(`{'id':'x'}`), reason: handlers.ReasonMalformed, mention: "invalid JSON"},
		"bare word":                           {body: []byte(`hired`), reason: handlers.ReasonMalformed, mention: "invalid JSON"},
		"truncated JSON":                      {body: valid[:len(valid)/2], reason: handlers.ReasonMalformed, mention: "truncated"},
		"truncated after the object":          {body: valid[:len(valid)-1], reason: handlers.ReasonMalformed, mention: "truncated"},
		"trailing data":                       {body: append(append([]byte{}, valid...), `{}`...), reason: handlers.ReasonMalformed, mention: "after the top-level value"},
		"two documents":                       {body: append(append(append([]byte{}, valid...), '\n'), valid...), reason: handlers.ReasonMalformed, mention: "after the top-level value"},
		"empty body":                          {body: nil, reason: handlers.ReasonMalformed, mention: "empty"},
		"whitespace body":                     {body: []byte(" \n"), reason: handlers.ReasonMalformed, mention: "empty"},
		"array":                               {body: []byte(`[` + string(valid) + `]`), reason: handlers.ReasonMalformed, mention: "got an array"},
		"string":                              {body: []byte(`"event"`), reason: handlers.ReasonMalformed, mention: "got a string"},
		"null":                                {body: []byte(`null`), reason: handlers.ReasonMalformed, mention: "got null"},
		"number":                              {body: []byte(`1`), reason: handlers.ReasonMalformed, mention: "got a number"},
		"control character in a string":       {body: []byte(strings.Replace(string(valid), "Sam", "S\tam", 1)), reason: handlers.ReasonMalformed, mention: `'\t'`},
		"bad escape":                          {body: body(t, set("data.name", `"S\am"`)), reason: handlers.ReasonMalformed, mention: "escape"},
		"bad unicode escape":                  {body: body(t, set("data.name", `"S\u12G4"`)), reason: handlers.ReasonMalformed, mention: "escape"},
		"number with a leading zero":          {body: []byte(`{"a":01}`), reason: handlers.ReasonMalformed, mention: "invalid JSON"},
		"number without digits after the dot": {body: []byte(`{"a":1.}`), reason: handlers.ReasonMalformed, mention: "invalid JSON"},
		"bad literal":                         {body: []byte(`{"a":nul}`), reason: handlers.ReasonMalformed, mention: "literal null"},
		"missing colon":                       {body: []byte(`{"a" 1}`), reason: handlers.ReasonMalformed, mention: "after object name"},
		"byte order mark":                     {body: append([]byte("\uFEFF"), valid...), reason: handlers.ReasonMalformed, mention: "invalid JSON at byte 0"},
		"nesting beyond 10000 levels":         {body: body(t, set("deep", strings.Repeat("[", 10000)+strings.Repeat("]", 10000))), reason: handlers.ReasonMalformed, mention: "max depth"},
		"objects nested beyond 10000 levels":  {body: body(t, set("deep", strings.Repeat(`{"a":`, 10000)+"1"+strings.Repeat("}", 10000))), reason: handlers.ReasonMalformed, mention: "max depth"},

		// Member names.
		"duplicated key":                   {body: []byte(`{"id":"a","id":"b","specversion":"1.0"}`), reason: handlers.ReasonMalformed, field: "id", mention: "twice"},
		"duplicated key in data":           {body: body(t, set("data", `{"userId":"1","role":1,"role":2}`)), reason: handlers.ReasonMalformed, field: "data.role", mention: "twice"},
		"duplicated data":                  {body: []byte(strings.Replace(string(valid), `"data":`, `"data":{"userId":"1"},"data":`, 1)), reason: handlers.ReasonMalformed, field: "data", mention: "twice"},
		"key in another case":              {body: body(t, set("ID", `"other"`)), reason: handlers.ReasonMalformed, field: "id", mention: "case"},
		"key in another case only":         {body: body(t, set("Type", `"employee.hired"`), del("type")), reason: handlers.ReasonMalformed, field: "type", mention: "case"},
		"data key in another case":         {body: body(t, set("data.userid", `"2"`)), reason: handlers.ReasonMalformed, field: "data.userId", mention: "case"},
		"escaped duplicate key":            {body: []byte(strings.Replace(string(valid), `{`, `{"\u0069d":"other",`, 1)), reason: handlers.ReasonMalformed, field: "id", mention: "twice"},
		"syntax error beats duplicate key": {body: []byte(`{"id":"a","id":"b",}`), reason: handlers.ReasonMalformed, mention: "invalid JSON"},
		"syntax error beats duplicate key in data": {body: body(t, set("data", `{"userId":"1","role":1,"role":2,}`)), reason: handlers.ReasonMalformed,
			mention: "invalid JSON"},
		"key in another case beats a later duplicate": {body: []byte(strings.Replace(string(valid), `{`, `{"Source":"x","id":"a","id":"b",`, 1)),
			reason: handlers.ReasonMalformed, field: "source", mention: "case"},
		// jsontext refuses a name given twice in any object (RFC 7493).
		"duplicated unknown key": {body: []byte(strings.Replace(string(valid), `{`, `{"trace":1,"trace":2,`, 1)), reason: handlers.ReasonMalformed,
			mention: `"trace" is given twice`},
		"duplicated key inside an unknown member": {body: body(t, set("ext", `{"a":[{"b":1,"b":2}]}`)), reason: handlers.ReasonMalformed,
			mention: `"/ext/a/0"`},

		// Wrong JSON types.
		"specversion as number":       {body: body(t, set("specversion", `1.0`)), reason: handlers.ReasonInvalidField, field: "specversion", mention: "got a number"},
		"id as number":                {body: body(t, set("id", `42`)), reason: handlers.ReasonInvalidField, field: "id", mention: "got a number"},
		"source as object":            {body: body(t, set("source", `{"uri":"hris"}`)), reason: handlers.ReasonInvalidField, field: "source", mention: "got an object"},
		"type as array":               {body: body(t, set("type", `["employee.hired"]`)), reason: handlers.ReasonInvalidField, field: "type", mention: "got an array"},
		"subject as number":           {body: body(t, set("subject", testUser)), reason: handlers.ReasonInvalidField, field: "subject", mention: "got a number"},
		"time as number":              {body: body(t, set("time", `1763892000`)), reason: handlers.ReasonInvalidField, field: "time", mention: "got a number"},
		"datacontenttype as boolean":  {body: body(t, set("datacontenttype", `true`)), reason: handlers.ReasonInvalidField, field: "datacontenttype", mention: "got a boolean"},
		"data as string":              {body: body(t, set("data", `"{\"userId\":\"1\"}"`)), reason: handlers.ReasonInvalidField, field: "data", mention: "got a string"},
		"data as array":               {body: body(t, set("data", `[{"userId":"1"}]`)), reason: handlers.ReasonInvalidField, field: "data", mention: "got an array"},
		"userId as negative number":   {body: body(t, set("data.userId", "-"+testUser)), reason: handlers.ReasonInvalidField, field: "data.userId", mention: "integer"},
		"userId with a fraction":      {body: body(t, set("data.userId", testUser+".0")), reason: handlers.ReasonInvalidField, field: "data.userId"},
		"userId with an exponent":     {body: body(t, set("data.userId", "1e3")), reason: handlers.ReasonInvalidField, field: "data.userId"},
		"role as string":              {body: body(t, set("data.role", `"1"`)), reason: handlers.ReasonInvalidField, field: "data.role", mention: "got a string"},
		"role as boolean":             {body: body(t, set("data.role", `true`)), reason: handlers.ReasonInvalidField, field: "data.role", mention: "got a boolean"},
		"role minus zero":             {body: body(t, set("data.role", `-0`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"status minus zero":           {body: body(t, set("data.status", `-0`)), reason: handlers.ReasonInvalidField, field: "data.status"},
		"role with a fraction":        {body: body(t, set("data.role", `1.0`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"role with an exponent":       {body: body(t, set("data.role", `1e0`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"status as bool":              {body: body(t, set("data.status", `false`)), reason: handlers.ReasonInvalidField, field: "data.status", mention: "got a boolean"},
		"status as string":            {body: body(t, set("data.status", `"0"`)), reason: handlers.ReasonInvalidField, field: "data.status", mention: "got a string"},
		"name as number":              {body: body(t, set("data.name", `7`)), reason: handlers.ReasonInvalidField, field: "data.name", mention: "got a number"},
		"data_base64 present":         {body: body(t, set("data_base64", `"e30="`), del("data")), reason: handlers.ReasonInvalidField, field: "data_base64", mention: "JSON object"},
		"data_base64 besides data":    {body: body(t, set("data_base64", `"e30="`)), reason: handlers.ReasonInvalidField, field: "data_base64"},
		"datacontenttype text/plain":  {body: body(t, set("datacontenttype", `"text/plain"`)), reason: handlers.ReasonInvalidField, field: "datacontenttype", mention: "application/json"},
		"datacontenttype xml":         {body: body(t, set("datacontenttype", `"application/xml"`)), reason: handlers.ReasonInvalidField, field: "datacontenttype"},
		"datacontenttype jsonx":       {body: body(t, set("datacontenttype", `"application/jsonx"`)), reason: handlers.ReasonInvalidField, field: "datacontenttype"},
		"datacontenttype bare +json":  {body: body(t, set("datacontenttype", `"application/+json"`)), reason: handlers.ReasonInvalidField, field: "datacontenttype"},
		"time not RFC 3339":           {body: body(t, set("time", `"yesterday"`)), reason: handlers.ReasonInvalidField, field: "time", mention: "RFC 3339"},
		"time with a space":           {body: body(t, set("time", `"2026-11-23 10:00:00Z"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time without a zone":         {body: body(t, set("time", `"2026-11-23T10:00:00"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time with a comma":           {body: body(t, set("time", `"2026-11-23T10:00:00,123Z"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time with an empty fraction": {body: body(t, set("time", `"2026-11-23T10:00:00.Z"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time offset of 24 hours":     {body: body(t, set("time", `"2026-11-23T10:00:00+24:00"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time offset without colon":   {body: body(t, set("time", `"2026-11-23T10:00:00+0100"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time on February 30":         {body: body(t, set("time", `"2026-02-30T10:00:00Z"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time on February 29, 2100":   {body: body(t, set("time", `"2100-02-29T10:00:00Z"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time at hour 24":             {body: body(t, set("time", `"2026-11-23T24:00:00Z"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time date only":              {body: body(t, set("time", `"2026-11-23"`)), reason: handlers.ReasonInvalidField, field: "time"},
		"time with trailing text":     {body: body(t, set("time", `"2026-11-23T10:00:00Z!"`)), reason: handlers.ReasonInvalidField, field: "time"},

		// Type.
		"unknown type":                  {body: body(t, set("type", `"employee.fired"`)), reason: handlers.ReasonUnknownType, field: "type", mention: "employee.fired"},
		"type without employee. prefix": {body: body(t, set("type", `"hired"`)), reason: handlers.ReasonUnknownType, field: "type", mention: "employee.<action>"},
		"type with a longer prefix":     {body: body(t, set("type", `"com.example.employee.hired"`)), reason: handlers.ReasonUnknownType, field: "type"},
		"type in another case":          {body: body(t, set("type", `"Employee.Hired"`)), reason: handlers.ReasonUnknownType, field: "type"},
		"type prefix only":              {body: body(t, set("type", `"employee."`)), reason: handlers.ReasonUnknownType, field: "type"},
		"type unknown action":           {body: body(t, set("type", `"employee.unknown"`)), reason: handlers.ReasonUnknownType, field: "type"},

		// Missing fields.
		"missing id":          {body: body(t, del("id")), reason: handlers.ReasonMissingField, field: "id", mention: "required"},
		"empty id":            {body: body(t, set("id", `""`)), reason: handlers.ReasonMissingField, field: "id", mention: "empty"},
		"null id":             {body: body(t, set("id", `null`)), reason: handlers.ReasonMissingField, field: "id"},
		"missing source":      {body: body(t, del("source")), reason: handlers.ReasonMissingField, field: "source"},
		"missing type":        {body: body(t, del("type")), reason: handlers.ReasonMissingField, field: "type"},
		"missing specversion": {body: body(t, del("specversion")), reason: handlers.ReasonMissingField, field: "specversion"},
		"missing data":        {body: body(t, del("data")), reason: handlers.ReasonMissingField, field: "data"},
		"null data":           {body: body(t, set("data", "null")), reason: handlers.ReasonMissingField, field: "data"},
		"missing userId":      {body: body(t, del("data.userId")), reason: handlers.ReasonMissingField, field: "data.userId"},
		"empty userId":        {body: body(t, set("data.userId", `""`)), reason: handlers.ReasonMissingField, field: "data.userId"},
		"empty object":        {body: []byte(`{}`), reason: handlers.ReasonMissingField, field: "specversion"},

		// Values out of range.
		"specversion 0.3":   {body: body(t, set("specversion", `"0.3"`)), reason: handlers.ReasonSpecVersion, field: "specversion", mention: "0.3"},
		"specversion 1":     {body: body(t, set("specversion", `"1"`)), reason: handlers.ReasonSpecVersion, field: "specversion"},
		"specversion 1.0.0": {body: body(t, set("specversion", `"1.0.0"`)), reason: handlers.ReasonSpecVersion, field: "specversion"},
		"role 4":            {body: body(t, set("data.role", `4`)), reason: handlers.ReasonInvalidField, field: "data.role", mention: "4 is not allowed"},
		"role 6":            {body: body(t, set("data.role", `6`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"role -1":           {body: body(t, set("data.role", `-1`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"role 2^40":         {body: body(t, set("data.role", `1099511627776`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"role 2^32+1":       {body: body(t, set("data.role", `4294967297`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"role 2^64+1":       {body: body(t, set("data.role", `18446744073709551617`)), reason: handlers.ReasonInvalidField, field: "data.role"},
		"status 2":          {body: body(t, set("data.status", `2`)), reason: handlers.ReasonInvalidField, field: "data.status", mention: "0 enabled, 1 disabled"},
		"status -1":         {body: body(t, set("data.status", `-1`)), reason: handlers.ReasonInvalidField, field: "data.status"},
		"userId non-digits": {body: body(t, set("data.userId", `"10086abc"`), del("subject")), reason: handlers.ReasonInvalidField, field: "data.userId", mention: "digits"},
		"userId negative":   {body: body(t, set("data.userId", `"-1"`), del("subject")), reason: handlers.ReasonInvalidField, field: "data.userId"},
		"userId with space": {body: body(t, set("data.userId", `" 1"`), del("subject")), reason: handlers.ReasonInvalidField, field: "data.userId"},
		"userId non-ASCII digits": {body: body(t, set("data.userId", `"١٢٣"`), del("subject")), reason: handlers.ReasonInvalidField,
			field: "data.userId"},
		"userId longer than 64": {body: body(t, set("data.userId", `"`+long+`"`), del("subject")), reason: handlers.ReasonInvalidField, field: "data.userId", mention: "at most 64"},
		"id longer than 256":    {body: body(t, set("id", `"`+strings.Repeat("x", 257)+`"`)), reason: handlers.ReasonInvalidField, field: "id", mention: "256"},

		// Agreement.
		"CloudEvents subject differs from data.userId": {body: body(t, set("subject", `"42"`)), reason: handlers.ReasonMismatch, field: "subject", mention: "differs from data.userId"},
		"NATS subject action differs from type":        {subject: subjectOf(handlers.Deleted), body: valid, reason: handlers.ReasonMismatch, field: "type", mention: `"deleted"`},
		"NATS subject user differs from data.userId": {subject: "identity.employee.hired.42", body: valid, reason: handlers.ReasonMismatch,
			field: "data.userId", mention: `"42"`},
		"NATS subject with one token":                 {subject: testUser, body: valid, reason: handlers.ReasonMismatch, field: "subject", mention: "<action>.<userId>"},
		"NATS subject without the user":               {subject: "identity.employee.hired", body: valid, reason: handlers.ReasonMismatch, field: "subject", mention: "<action>.<userId>"},
		"NATS subject ending in a dot":                {subject: "identity.employee.hired.", body: valid, reason: handlers.ReasonMismatch, field: "subject"},
		"NATS subject with an unknown action":         {subject: "identity.employee.fired." + testUser, body: valid, reason: handlers.ReasonMismatch, field: "type"},
		"NATS subject matching neither (action wins)": {subject: "identity.employee.deleted.42", body: valid, reason: handlers.ReasonMismatch, field: "type"},

		// Size and encoding.
		"body over the default limit": {body: body(t, set("pad", `"`+strings.Repeat("x", handlers.DefaultMaxEventSize)+`"`)), reason: handlers.ReasonTooLarge, mention: "limit is 65536"},
		"body over a custom limit":    {body: valid, max: len(valid) - 1, reason: handlers.ReasonTooLarge, mention: "limit is " + strconv.Itoa(len(valid)-1)},
		"headers count toward the limit": {header: map[string][]string{"Nats-Msg-Id": {"0123456789"}}, body: valid, max: len(valid) + 20,
			reason: handlers.ReasonTooLarge, mention: "headers 21"},
		"invalid UTF-8 in a value":      {body: []byte(strings.Replace(string(valid), "Sam", "S\xffm", 1)), reason: handlers.ReasonInvalidUTF8, mention: "UTF-8"},
		"invalid UTF-8 in a key":        {body: []byte(strings.Replace(string(valid), `"name"`, "\"n\xc3\"", 1)), reason: handlers.ReasonInvalidUTF8, mention: "offset"},
		"invalid UTF-8 in whitespace":   {body: append([]byte{0xa0}, valid...), reason: handlers.ReasonInvalidUTF8, mention: "offset 0"},
		"invalid UTF-8 at the end":      {body: append(append([]byte{}, valid...), 0xe2, 0x82), reason: handlers.ReasonInvalidUTF8},
		"UTF-16 surrogate in UTF-8":     {body: []byte(strings.Replace(string(valid), "Sam", "S\xed\xa0\x80m", 1)), reason: handlers.ReasonInvalidUTF8},
		"overlong UTF-8 encoding":       {body: []byte(strings.Replace(string(valid), "Sam", "S\xc0\xafm", 1)), reason: handlers.ReasonInvalidUTF8},
		"invalid UTF-8 in unknown data": {body: body(t, set("data.x", "\"\xff\"")), reason: handlers.ReasonInvalidUTF8},

		// Binary content mode.
		"binary: specversion 0.3":      {header: binaryHeader(map[string][]string{"ce-specversion": {"0.3"}}), body: []byte(binaryBody), reason: handlers.ReasonSpecVersion, field: "ce-specversion"},
		"binary: missing ce-id":        {header: binaryHeader(map[string][]string{"ce-id": nil}), body: []byte(binaryBody), reason: handlers.ReasonMissingField, field: "ce-id"},
		"binary: empty ce-id":          {header: binaryHeader(map[string][]string{"ce-id": {""}}), body: []byte(binaryBody), reason: handlers.ReasonMissingField, field: "ce-id"},
		"binary: missing ce-source":    {header: binaryHeader(map[string][]string{"ce-source": nil}), body: []byte(binaryBody), reason: handlers.ReasonMissingField, field: "ce-source"},
		"binary: missing ce-type":      {header: binaryHeader(map[string][]string{"ce-type": nil}), body: []byte(binaryBody), reason: handlers.ReasonMissingField, field: "ce-type"},
		"binary: unknown ce-type":      {header: binaryHeader(map[string][]string{"ce-type": {"employee.promoted"}}), body: []byte(binaryBody), reason: handlers.ReasonUnknownType, field: "ce-type"},
		"binary: ce-type unprefixed":   {header: binaryHeader(map[string][]string{"ce-type": {"hired"}}), body: []byte(binaryBody), reason: handlers.ReasonUnknownType, field: "ce-type"},
		"binary: ce-subject differs":   {header: binaryHeader(map[string][]string{"ce-subject": {"42"}}), body: []byte(binaryBody), reason: handlers.ReasonMismatch, field: "ce-subject"},
		"binary: ce-time bad":          {header: binaryHeader(map[string][]string{"ce-time": {"Mon, 23 Nov 2026 10:00:00 GMT"}}), body: []byte(binaryBody), reason: handlers.ReasonInvalidField, field: "ce-time"},
		"binary: content-type bad":     {header: binaryHeader(map[string][]string{"content-type": {"text/csv"}}), body: []byte(binaryBody), reason: handlers.ReasonInvalidField, field: "content-type"},
		"binary: ce-id too long":       {header: binaryHeader(map[string][]string{"ce-id": {strings.Repeat("i", 257)}}), body: []byte(binaryBody), reason: handlers.ReasonInvalidField, field: "ce-id"},
		"binary: empty body":           {header: binaryHeader(nil), body: nil, reason: handlers.ReasonMissingField, field: "data"},
		"binary: null body":            {header: binaryHeader(nil), body: []byte("null"), reason: handlers.ReasonMissingField, field: "data"},
		"binary: array body":           {header: binaryHeader(nil), body: []byte(`[` + binaryBody + `]`), reason: handlers.ReasonInvalidField, field: "data", mention: "got an array"},
		"binary: malformed body":       {header: binaryHeader(nil), body: []byte(`{"userId":`), reason: handlers.ReasonMalformed, field: "data", mention: "truncated"},
		"binary: userId as a fraction": {header: binaryHeader(nil), body: []byte(`{"userId":1.5}`), reason: handlers.ReasonInvalidField, field: "data.userId"},
		"binary: duplicated userId":    {header: binaryHeader(nil), body: []byte(`{"userId":"` + testUser + `","userId":"2"}`), reason: handlers.ReasonMalformed, field: "data.userId"},
		"binary: duplicated unknown key": {header: binaryHeader(nil), body: []byte(`{"userId":"` + testUser + `","x":{},"x":{}}`), reason: handlers.ReasonMalformed,
			field: "data", mention: "twice"},
		"binary: invalid UTF-8 body": {header: binaryHeader(nil), body: []byte("{\"userId\":\"1\",\"name\":\"\xff\"}"), reason: handlers.ReasonInvalidUTF8},
		"binary: NATS subject differs": {subject: subjectOf(handlers.Enabled), header: binaryHeader(nil), body: []byte(binaryBody),
			reason: handlers.ReasonMismatch, field: "type"},
		"binary: ce-id given twice, differently": {header: binaryHeader(map[string][]string{"ce-id": {"a", "b"}}), body: []byte(binaryBody),
			reason: handlers.ReasonInvalidField, field: "ce-id", mention: "more than once"},
		"binary: ce-type in two cases, differently": {header: binaryHeader(map[string][]string{"CE-TYPE": {"employee.deleted"}}), body: []byte(binaryBody),
			reason: handlers.ReasonInvalidField, field: "ce-type", mention: "more than once"},
		"binary: invalid UTF-8 in a header": {header: binaryHeader(map[string][]string{"ce-source": {"hris\xff"}}), body: []byte(binaryBody),
			reason: handlers.ReasonInvalidUTF8, field: "ce-source"},
		"binary: headers count toward the limit": {header: binaryHeader(map[string][]string{"ce-source": {strings.Repeat("s", 200)}}), body: []byte(binaryBody),
			max: 300, reason: handlers.ReasonTooLarge},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev, err := handlers.Decoder{MaxSize: tc.max}.Decode(tc.subject, tc.header, tc.body)
			if ev != nil {
				t.Errorf("Decode returned an event with its error: %+v", ev)
			}
			ie := wantInputError(t, err, tc.reason, tc.field)
			if !strings.Contains(ie.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", ie, tc.mention)
			}
			if !strings.Contains(ie.Error(), string(tc.reason)) {
				t.Errorf("error %q does not give its reason %q", ie, tc.reason)
			}
		})
	}
}

// TestDecodeSizeBoundary checks that the limit is inclusive and counts
// header names and values.
func TestDecodeSizeBoundary(t *testing.T) {
	t.Parallel()
	b := body(t)
	h := map[string][]string{"Nats-Msg-Id": {testID}, "X-Two": {"a", "bc"}}
	hsize := len("Nats-Msg-Id") + len(testID) + 2*len("X-Two") + 3
	if _, err := (handlers.Decoder{MaxSize: len(b) + hsize}).Decode("", h, b); err != nil {
		t.Errorf("event of exactly MaxSize bytes: %v", err)
	}
	_, err := handlers.Decoder{MaxSize: len(b) + hsize - 1}.Decode("", h, b)
	wantInputError(t, err, handlers.ReasonTooLarge, "")
	if _, err := (handlers.Decoder{MaxSize: -1}).Decode("", h, b); err != nil {
		t.Errorf("negative MaxSize means the default: %v", err)
	}
}

// TestDecodeMatchesEncodingJSON checks the decoder's strings against
// encoding/json's reading of the same body, and that a lone surrogate,
// which encoding/json reads as U+FFFD, is refused instead.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`"\ud83d"`, `"\ude00\ud83d"`, `"\ud83d\u0041"`, `"\ud83d\\u0041"`, `"\ud83dx"`, `"\ud83d\ud83d\ude00"`, `"a\udfff"`} {
		for _, field := range []string{"id", "source", "data.name", "data.deptId"} {
			_, err := handlers.Decoder{}.Decode("", nil, body(t, set(field, raw)))
			wantInputError(t, err, handlers.ReasonInvalidUTF8, field)
		}
	}
	names := []string{`"plain"`, `"\u00e9t\u00E9"`, `"\ud83d\ude00"`, `"a\/b\\c\"d"`, `"\b\f\n\r\t"`, `"\u0000"`, `"日本語"`}
	for _, raw := range names {
		b := body(t, set("data.name", raw), set("source", raw))
		ev, err := handlers.Decoder{}.Decode("", nil, b)
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		if ev.Name != want || ev.Source != want {
			t.Errorf("%s: Name %+q, Source %+q; encoding/json reads %+q", raw, ev.Name, ev.Source, want)
		}
	}
}

// TestDecodeNesting checks that the nesting limit is encoding/json's.
func TestDecodeNesting(t *testing.T) {
	t.Parallel()
	for _, n := range []int{9998, 9999, 10000} {
		for _, open := range []string{"[", `{"a":`} {
			close := "]"
			if open != "[" {
				close = "}"
			}
			b := body(t, set("data.deep", strings.Repeat(open, n)+"1"+strings.Repeat(close, n)))
			_, err := handlers.Decoder{}.Decode("", nil, b)
			if valid := json.Valid(b); valid != (err == nil) {
				t.Errorf("nesting %d+2 of %q: encoding/json valid %v, Decode error %v", n, open, valid, err)
			}
		}
	}
}

// TestDecodeDoesNotRetainBody checks that the event does not change when
// the caller reuses the body's buffer.
func TestDecodeDoesNotRetainBody(t *testing.T) {
	t.Parallel()
	b := body(t)
	ev, err := handlers.Decoder{}.Decode("", nil, b)
	if err != nil {
		t.Fatal(err)
	}
	want := *ev
	for i := range b {
		b[i] = 'x'
	}
	if diff := cmp.Diff(&want, ev); diff != "" {
		t.Errorf("event changed with the body (-before +after):\n%s", diff)
	}
}

// TestDecodeHeadersUnchanged checks that Decode does not modify the
// caller's headers.
func TestDecodeHeadersUnchanged(t *testing.T) {
	t.Parallel()
	h := binaryHeader(map[string][]string{"CE-ID": {testID}})
	before := maps.Clone(h)
	if _, err := (handlers.Decoder{}).Decode("", h, []byte(binaryBody)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, h); diff != "" {
		t.Errorf("headers changed (-before +after):\n%s", diff)
	}
}

func TestParseSubject(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		subject      string
		action, user string
		ok           bool
	}{
		"contract form":         {"identity.employee.hired." + testUser, "hired", testUser, true},
		"other prefix":          {"hr.eu.people.deleted.42", "deleted", "42", true},
		"two tokens":            {"changed.42", "changed", "42", true},
		"unknown action parsed": {"identity.employee.fired.42", "fired", "42", true},
		"one token":             {testUser, "", "", false},
		"empty":                 {"", "", "", false},
		"trailing dot":          {"identity.employee.hired.", "", "", false},
		"empty action token":    {"identity.employee..42", "", "", false},
		"leading dot":           {".42", "", "", false},
		"only dots":             {"...", "", "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			action, user, ok := handlers.ParseSubject(tc.subject)
			if ok != tc.ok || ok && (action != tc.action || user != tc.user) {
				t.Errorf("ParseSubject(%q) = %q, %q, %v; want %q, %q, %v", tc.subject, action, user, ok, tc.action, tc.user, tc.ok)
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	t.Parallel()
	for _, a := range handlers.Actions {
		if got, ok := handlers.ParseAction(string(a)); !ok || got != a {
			t.Errorf("ParseAction(%q) = %q, %v", a, got, ok)
		}
	}
	for _, s := range []string{"", "unknown", "Hired", "employee.hired", "hired "} {
		if got, ok := handlers.ParseAction(s); ok || got != handlers.Unknown {
			t.Errorf("ParseAction(%q) = %q, %v; want unknown, false", s, got, ok)
		}
	}
}

func TestInputErrorMessage(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		err  handlers.InputError
		want string
	}{
		"with field":    {handlers.InputError{Reason: handlers.ReasonInvalidField, Field: "data.role", Detail: "7 is not allowed"}, "bad input: invalid_field data.role: 7 is not allowed"},
		"without field": {handlers.InputError{Reason: handlers.ReasonTooLarge, Detail: "too big"}, "bad input: too_large: too big"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDecodeAllocations guards the decoder's leanness: the Event and its
// text take at most three allocations, whatever unknown fields the body
// carries. Reading the JSON takes none: the jsontext decoders are pooled.
func TestDecodeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	withExtras := body(t, set("traceparent", `"00-abc-01"`), set("Extension", `{"a":[1,{"b":null}]}`),
		set("data.email", `"sam@example.com"`), set("data.ROLES", `[1,2]`))
	tests := map[string]struct {
		header map[string][]string
		body   []byte
	}{
		"structured":                  {nil, benchBody},
		"structured with extras":      {benchHeader, withExtras},
		"binary":                      {binaryHeader(nil), []byte(binaryBody)},
		"binary, headers in any case": {map[string][]string{"CE-SPECVERSION": {"1.0"}, "Ce-Id": {"x"}, "ce-source": {"s"}, "CE-TYPE": {"employee.enabled"}}, []byte(binaryBody)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := (handlers.Decoder{}).Decode("", tc.header, tc.body); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 3 {
				t.Errorf("Decode allocates %v times per event, want at most 3", allocs)
			}
		})
	}
}
