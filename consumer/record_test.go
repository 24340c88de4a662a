package consumer

import (
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// TestRecordSeen checks that the record tells events apart by source and
// id, keeps the last recentIDs of them, and still recognises the bare ids
// of records written before events had keys.
func TestRecordSeen(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	hris := &handlers.Event{ID: "42", Source: "hris/workday"}
	okta := &handlers.Event{ID: "42", Source: "idp/okta"}

	var r outcome.Record
	r = nextRecord(r, 1, hris, nil, at)
	if !seen(&r, hris) {
		t.Error("the event just finished is not seen")
	}
	if seen(&r, okta) {
		t.Error("the same id from another source is seen as the same event")
	}
	if r.Recent[0] != hris.Key() {
		t.Errorf("record keeps %q, want the event's key %q", r.Recent[0], hris.Key())
	}
	again := nextRecord(r, 2, hris, nil, at)
	if len(again.Recent) != 1 {
		t.Errorf("the same event twice is kept %d times", len(again.Recent))
	}
	for i := range recentIDs {
		r = nextRecord(r, uint64(3+i), &handlers.Event{ID: string(rune('a' + i)), Source: "s"}, nil, at)
	}
	if seen(&r, hris) || len(r.Recent) != recentIDs {
		t.Errorf("after %d more events the first is still seen (%d kept)", recentIDs, len(r.Recent))
	}

	legacy := outcome.Record{Seq: 9, Recent: []string{"42"}}
	if !seen(&legacy, hris) || !seen(&legacy, okta) {
		t.Error("a bare id of an older record is not matched")
	}
	if seen(&legacy, &handlers.Event{ID: "43", Source: "s"}) {
		t.Error("a bare id matches another id")
	}
	keyed := outcome.Record{Recent: []string{hris.Key()}}
	if seen(&keyed, &handlers.Event{ID: hris.Key(), Source: "x"}) {
		t.Error("an event whose id looks like a key matches a key entry")
	}
	if seen(&outcome.Record{}, nil) || seen(&outcome.Record{Recent: []string{""}}, &handlers.Event{Source: "s"}) {
		t.Error("an event without id is seen")
	}
}
