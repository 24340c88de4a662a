package reconcile

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
)

func i64(v int64) *int64 { return &v }
func iptr(v int) *int    { return &v }

func TestReadSource(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in     string
		format Format
		want   []Desired
	}{
		"csv": {
			in: "userId,deptId,role,status\n1001,42,1,0\n1002,43,5,1\n",
			want: []Desired{
				{UserID: "1001", DeptID: i64(42), Role: iptr(1), Status: iptr(0), Line: 2},
				{UserID: "1002", DeptID: i64(43), Role: iptr(5), Status: iptr(1), Line: 3},
			},
		},
		"csv columns in any order and case, extra columns, BOM, CRLF": {
			in: "\xef\xbb\xbfName,STATUS,UserID,email,DeptId\r\nSam,disabled,1001,sam@example.com,42\r\n",
			want: []Desired{
				{UserID: "1001", DeptID: i64(42), Status: iptr(1), Line: 2},
			},
		},
		"csv empty cells and missing columns are not managed": {
			in: "userId,deptId\n1001,\n1002, 7\n",
			want: []Desired{
				{UserID: "1001", Line: 2},
				{UserID: "1002", DeptID: i64(7), Line: 3},
			},
		},
		"csv blank lines are skipped, quoted cells read": {
			in: "userId,role\n\n\"1001\",\"0\"\n\n1002,2\n",
			want: []Desired{
				{UserID: "1001", Role: iptr(0), Line: 3},
				{UserID: "1002", Role: iptr(2), Line: 5},
			},
		},
		"header only": {in: "userId,deptId,role,status\n"},
		"empty":       {in: ""},
		"jsonl, a 64-bit deptId as a number read exactly": {
			in: `{"userId":"1001","deptId":1319678187126486147}` + "\n",
			want: []Desired{
				{UserID: "1001", DeptID: i64(1319678187126486147), Line: 1},
			},
		},
		"jsonl": {
			in: `{"userId":"1001","deptId":"1319678187126486147","role":1,"status":0}` + "\n" +
				`{"userId":"1002","deptId":43,"name":"ignored","status":"enabled"}` + "\n",
			want: []Desired{
				{UserID: "1001", DeptID: i64(1319678187126486147), Role: iptr(1), Status: iptr(0), Line: 1},
				{UserID: "1002", DeptID: i64(43), Status: iptr(0), Line: 2},
			},
		},
		"jsonl null members and blank lines": {
			in: "\n  {\"userId\":\"1001\",\"deptId\":null,\"role\":null}\n\n",
			want: []Desired{
				{UserID: "1001", Line: 2},
			},
		},
		"format forced to csv": {
			in:     "userId\n1001\n",
			format: FormatCSV,
			want:   []Desired{{UserID: "1001", Line: 2}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadSource(strings.NewReader(tc.in), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReadSource (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadSourceBadRows(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in   string
		want []LineError // every bad row, in order
	}{
		"csv bad values name line and field": {
			in: "userId,deptId,role,status\n" +
				"1001,42,1,0\n" +
				"abc,42,1,0\n" +
				"1003,-5,1,0\n" +
				"1004,42,4,0\n" +
				"1005,42,1,2\n" +
				",42,1,0\n",
			want: []LineError{
				{Line: 3, Field: "userId"}, {Line: 4, Field: "deptId"}, {Line: 5, Field: "role"},
				{Line: 6, Field: "status"}, {Line: 7, Field: "userId"},
			},
		},
		"csv user listed twice": {
			in:   "userId\n1001\n1002\n1001\n",
			want: []LineError{{Line: 4, Field: "userId"}},
		},
		"csv without a userId column": {
			in:   "id,deptId\n1001,42\n",
			want: []LineError{{Line: 1}},
		},
		"csv broken quote": {
			in:   "userId,role\n1001,1\n\"1002,1\n",
			want: []LineError{{Line: 3}},
		},
		"jsonl bad rows": {
			in: `{"userId":"1001"}` + "\n" +
				`{"userId":1002}` + "\n" +
				`not json` + "\n" +
				`{"userId":"1004","deptId":12345678901234567890}` + "\n" +
				`{"userId":"1005","deptId":-3}` + "\n" +
				`{"userId":"1006","role":"x"}` + "\n" +
				`{"deptId":"1"}` + "\n" +
				`[1,2]` + "\n" +
				`{"userId":"1009","status":true}` + "\n" +
				`{"userId":"1001"}` + "\n",
			want: []LineError{
				{Line: 2, Field: "userId"}, {Line: 3}, {Line: 4, Field: "deptId"}, {Line: 5, Field: "deptId"},
				{Line: 6, Field: "role"}, {Line: 7, Field: "userId"}, {Line: 8}, {Line: 9, Field: "status"},
				{Line: 10, Field: "userId"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadSource(strings.NewReader(tc.in), FormatAuto)
			if err == nil {
				t.Fatalf("no error; read %+v", got)
			}
			if got != nil {
				t.Errorf("a bad source still returned %d rows", len(got))
			}
			var les []LineError
			for _, e := range unjoin(err) {
				var le *LineError
				if errors.As(e, &le) {
					les = append(les, LineError{Line: le.Line, Field: le.Field})
				}
			}
			if diff := cmp.Diff(tc.want, les); diff != "" {
				t.Errorf("bad rows (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !strings.Contains(err.Error(), "nothing was compared") {
				t.Errorf("error does not say nothing was compared: %v", err)
			}
		})
	}
}

func TestReadSourceCapsErrors(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("userId\n")
	for range 30 {
		b.WriteString("x\n")
	}
	_, err := ReadSource(strings.NewReader(b.String()), FormatCSV)
	if err == nil {
		t.Fatal("no error")
	}
	n := 0
	for _, e := range unjoin(err) {
		var le *LineError
		if errors.As(e, &le) {
			n++
		}
	}
	if n != maxLineErrors || !strings.Contains(err.Error(), "and 10 more bad rows") {
		t.Errorf("%d line errors, want %d and a count of the rest: %v", n, maxLineErrors, err)
	}
}

// unjoin returns the errors joined inside err's wrapping.
func unjoin(err error) []error {
	for err != nil {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
		err = errors.Unwrap(err)
	}
	return nil
}

func TestParseFormatAndFormatOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Format{"": FormatAuto, "auto": FormatAuto, "CSV": FormatCSV, "jsonl": FormatJSONL, "ndjson": FormatJSONL} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) accepted")
	}
	for in, want := range map[string]Format{"export.csv": FormatCSV, "x.JSONL": FormatJSONL, "a.ndjson": FormatJSONL, "-": FormatAuto, "export.txt": FormatAuto} {
		if got := FormatOf(in); got != want {
			t.Errorf("FormatOf(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDesiredFromRecord(t *testing.T) {
	t.Parallel()
	rec := func(r outcome.Record) []byte {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		key   string
		value []byte
		want  Desired
		kind  recordKind
	}{
		"present with every field": {
			key:   "u.1001",
			value: rec(outcome.Record{Seq: 7, AppliedSeq: 7, State: handlers.State{Exists: true, DeptID: i64(42), Role: iptr(1), Status: iptr(0)}, At: at}),
			want:  Desired{UserID: "1001", DeptID: i64(42), Role: iptr(1), Status: iptr(0), Seq: 7},
		},
		"present, only status known (a user kdsync only disabled)": {
			key:   "u.1002",
			value: rec(outcome.Record{Seq: 9, AppliedSeq: 9, State: handlers.State{Exists: true, Status: iptr(kdapi.StatusDisabled)}}),
			want:  Desired{UserID: "1002", Status: iptr(1), Seq: 9},
		},
		"hard-deleted": {
			key:   "u.1003",
			value: rec(outcome.Record{Seq: 12, AppliedSeq: 11, State: handlers.State{}}),
			want:  Desired{UserID: "1003", Absent: true, Seq: 12},
			kind:  recordDeleted,
		},
		"nothing applied (only dead letters)": {
			key:   "u.1004",
			value: rec(outcome.Record{Seq: 3}),
			kind:  recordUnknown,
		},
		"hashed key": {
			key:   "h.0123456789abcdef0123456789abcdef",
			value: rec(outcome.Record{Seq: 3, AppliedSeq: 3, State: handlers.State{Exists: true}}),
			kind:  recordUnreadable,
		},
		"not digits": {
			key:   "u.abc",
			value: rec(outcome.Record{Seq: 3, AppliedSeq: 3, State: handlers.State{Exists: true}}),
			kind:  recordUnreadable,
		},
		"not JSON": {key: "u.1005", value: []byte("{"), kind: recordUnreadable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, kind := desiredFromRecord(tc.key, tc.value)
			if kind != tc.kind {
				t.Fatalf("kind %v, want %v", kind, tc.kind)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("desired (-want +got):\n%s", diff)
			}
		})
	}
}
