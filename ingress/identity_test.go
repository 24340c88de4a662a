package ingress

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kdsync/kdsync/handlers"
)

// TestIdentityIsSourceAndID checks that events are told apart by source
// and id together: the same id from two sources is two events; the same
// event sent again (in any content mode) is stored once; another event
// under a key already used is refused with 409, not dropped unseen.
func TestIdentityIsSourceAndID(t *testing.T) {
	e := newEnv(t, nil)
	hire := newEvent("42", handlers.Hired, "1001")
	other := hire
	other.Source, other.Type, other.Data = "idp/okta", handlers.TypePrefix+"disabled", map[string]any{"userId": "1001"}

	for _, r := range []request{structured(hire), structured(other)} {
		if resp := e.post(r.bearer(testToken)); resp.status != http.StatusAccepted || resp.result.Duplicate {
			t.Fatalf("status %d %s, want 202 stored (a new event)", resp.status, resp.body)
		}
	}
	// The hire again, as a retry would send it, in each content mode.
	for _, r := range []request{structured(hire), binary(hire), batchOf(hire)} {
		resp := e.post(r.bearer(testToken))
		res := resp.result
		if len(resp.batch.Results) == 1 {
			res = resp.batch.Results[0]
		}
		if resp.status != http.StatusAccepted || !res.Duplicate || !strings.Contains(res.Detail, "stored earlier") {
			t.Errorf("resent hire: %d %s, want 202 duplicate", resp.status, resp.body)
		}
	}
	// Another event under the hire's source and id.
	changed := hire
	changed.Data = map[string]any{"userId": "1001", "deptId": "1243693141656107521", "role": 3}
	resp := e.post(structured(changed).bearer(testToken))
	if resp.status != http.StatusConflict || resp.problem.Type != typeConflict || !strings.Contains(resp.problem.Detail, "data.role") {
		t.Errorf("same key, other content: %d %s; want 409 %s naming data.role", resp.status, resp.body, typeConflict)
	}
	mixed := e.post(batchOf(changed, newEvent("43", handlers.Hired, "1002")).bearer(testToken))
	if mixed.status != http.StatusMultiStatus || len(mixed.batch.Results) != 2 ||
		mixed.batch.Results[0].Status != http.StatusConflict || mixed.batch.Results[1].Status != http.StatusAccepted {
		t.Errorf("batch with a conflict: %d %s; want 207 with 409 and 202", mixed.status, mixed.body)
	}
	if got := testutil.ToFloat64(e.h.m.events.WithLabelValues(resultConflict)); got != 2 {
		t.Errorf("conflicts counted %v, want 2", got)
	}
	if got := testutil.ToFloat64(e.h.m.events.WithLabelValues(resultDuplicate)); got != 3 {
		t.Errorf("duplicates counted %v, want 3", got)
	}

	stored := e.stored()
	if len(stored) != 3 {
		t.Fatalf("%d messages stored, want 3 (hire, okta's 42, 43)", len(stored))
	}
	keys := map[string]bool{}
	for _, m := range stored {
		ev := mustDecode(t, m) // checks Nats-Msg-Id = the event's key
		keys[ev.Source+" "+ev.ID] = true
	}
	for _, k := range []string{"hris/test 42", "idp/okta 42", "hris/test 43"} {
		if !keys[k] {
			t.Errorf("event %s not stored; stored %v", k, keys)
		}
	}
}

// TestIdentityLoneSurrogate checks that ids differing only in a lone
// surrogate are refused rather than read as one id.
func TestIdentityLoneSurrogate(t *testing.T) {
	e := newEnv(t, nil)
	for _, id := range []string{`\ud800`, `\udfff`} {
		body := strings.Replace(string(newEvent("X", handlers.Hired, "1001").json()), `"id":"X"`, `"id":"a`+id+`"`, 1)
		resp := e.post(request{header: structured(event{}).header, body: []byte(body)}.bearer(testToken))
		if resp.status != http.StatusBadRequest || len(resp.problem.Errors) != 1 ||
			resp.problem.Errors[0].Reason != string(handlers.ReasonInvalidUTF8) || resp.problem.Errors[0].Field != "id" {
			t.Errorf("id with %s: %d %s; want 400 invalid_utf8 id", id, resp.status, resp.body)
		}
	}
	if n := len(e.stored()); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

// TestExtensionAttributesPassThrough checks that binary-mode attributes
// kdsync does not read are stored, not judged, while those it reads are
// still checked.
func TestExtensionAttributesPassThrough(t *testing.T) {
	e := newEnv(t, nil)
	r := binary(newEvent("ext-1", handlers.Hired, "1001")).bearer(testToken)
	r.header.Set("Ce-Fte", "50% FTE")
	r.header.Set("Ce-Site", "caf%C3%A9")
	r.header.Set("Ce-Bad", "%FF%00")
	if resp := e.post(r); resp.status != http.StatusAccepted {
		t.Fatalf("binary event with extensions: %d %s, want 202", resp.status, resp.body)
	}
	stored := e.stored()
	if len(stored) != 1 {
		t.Fatalf("%d messages stored, want 1", len(stored))
	}
	h := stored[0].Header
	for k, want := range map[string]string{"ce-fte": "50% FTE", "ce-site": "café", "ce-bad": "%FF%00"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s stored as %q, want %q", k, got, want)
		}
	}
	r = binary(newEvent("ext-2", handlers.Hired, "1001")).bearer(testToken)
	r.header.Set("Ce-Source", "50% FTE")
	if resp := e.post(r); resp.status != http.StatusBadRequest || !strings.Contains(string(resp.body), "ce-source") {
		t.Errorf("malformed percent-encoding in ce-source: %d %s, want 400 naming ce-source", resp.status, resp.body)
	}
}

// TestNumbersReadExactly checks that a 64-bit department id sent as a
// JSON number is stored and read exactly, and refused only with
// StrictNumbers.
func TestNumbersReadExactly(t *testing.T) {
	ev := newEvent("n-1", handlers.Hired, "1001")
	ev.Data["deptId"] = 1319678187126486147 // an int64, encoded by encoding/json as its digits
	e := newEnv(t, nil)
	if resp := e.post(structured(ev).bearer(testToken)); resp.status != http.StatusAccepted {
		t.Fatalf("deptId as a number: %d %s, want 202", resp.status, resp.body)
	}
	got := mustDecode(t, e.stored()[0])
	if got.DeptID == nil || *got.DeptID != 1319678187126486147 {
		t.Errorf("deptId read as %v, want 1319678187126486147", got.DeptID)
	}
	strict := newEnv(t, func(o *Options) { o.Decoder.StrictNumbers = true })
	resp := strict.post(structured(ev).bearer(testToken))
	if resp.status != http.StatusBadRequest || resp.problem.Errors[0].Field != "data.deptId" {
		t.Errorf("strict: %d %s, want 400 data.deptId", resp.status, resp.body)
	}
	// A refused event of a batch is still named by its id.
	resp = strict.post(batchOf(ev).bearer(testToken))
	if resp.status != http.StatusBadRequest || len(resp.batch.Results) != 1 || resp.batch.Results[0].ID != "n-1" {
		t.Errorf("strict batch: %d %s, want 400 naming event n-1", resp.status, resp.body)
	}
}
