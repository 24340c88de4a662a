package outcome

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
)

func sampleRecord() Record {
	dept, role, status := int64(1243693141656107521), 1, 0
	r := Record{
		Seq: 123456, AppliedSeq: 123450, Parked: 7, RetrySeq: 123457,
		RetrySince: time.Date(2026, 12, 7, 20, 1, 2, 345678900, time.UTC),
		State:      handlers.State{Exists: true, DeptID: &dept, Role: &role, Status: &status},
		At:         time.Date(2026, 12, 7, 20, 1, 3, 0, time.UTC),
	}
	for range 8 {
		r.Recent = append(r.Recent, "ce1-0123456789abcdef0123456789abcdef")
	}
	return r
}

// TestDecodeRecord: what encoding/json writes reads back whole; names
// match without case and the last of a repeated name wins, as
// encoding/json reads them (records written by any version read as they
// always did); a record that does not decode is the zero record.
func TestDecodeRecord(t *testing.T) {
	want := sampleRecord()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRecord(b)
	if err != nil {
		t.Fatalf("DecodeRecord(%s): %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeRecord(%s) =\n%+v, want\n%+v", b, got, want)
	}
	for name, tc := range map[string]struct {
		in   string
		want uint64
	}{
		"name in capitals": {`{"SEQ":5}`, 5},
		"repeated name":    {`{"seq":5,"seq":6}`, 6},
		"unknown name":     {`{"seq":5,"future":{"x":1}}`, 5},
	} {
		r, err := DecodeRecord([]byte(tc.in))
		if err != nil || r.Seq != tc.want {
			t.Errorf("%s: DecodeRecord(%s) = seq %d, %v; want %d", name, tc.in, r.Seq, err, tc.want)
		}
	}
	if r, err := DecodeRecord([]byte(`{"seq":"x"}`)); err == nil || !reflect.DeepEqual(r, Record{}) {
		t.Errorf(`DecodeRecord({"seq":"x"}) = %+v, %v; want the zero record and an error`, r, err)
	}
}

// BenchmarkDecodeRecord reads a full record (eight recent event keys, a
// state), as the consumer does for each event whose user is not cached.
func BenchmarkDecodeRecord(b *testing.B) {
	in, _ := json.Marshal(sampleRecord())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRecord(in); err != nil {
			b.Fatal(err)
		}
	}
}
