package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kdsync/kdsync/handlers"
)

// signingTransport signs each request as a Standard Webhooks sender does,
// so that the CloudEvents SDK's client can send signed webhooks.
type signingTransport struct {
	secret string
}

func (s *signingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r.Body); err != nil {
			return nil, err
		}
		body = buf.Bytes()
	}
	id := "msg_" + uuid.NewString()
	req := request{header: r.Header, body: body}.signed(s.secret, id, time.Now())
	r = r.Clone(r.Context())
	r.Header = req.header
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Body = readCloser{bytes.NewReader(body)}
	}
	return http.DefaultTransport.RoundTrip(r)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestCloudEventsSDKClient sends events with the CloudEvents SDK's HTTP
// client in both modes and with both credentials, and checks what lands in
// the stream is what the consumer accepts.
func TestCloudEventsSDKClient(t *testing.T) {
	e := newEnv(t, nil)
	cases := map[string]struct {
		structured bool
		opts       []cehttp.Option
	}{
		"structured bearer": {structured: true, opts: []cehttp.Option{cehttp.WithHeader("Authorization", "Bearer "+testToken)}},
		"binary bearer":     {opts: []cehttp.Option{cehttp.WithHeader("Authorization", "Bearer "+testToken2)}},
		"structured signed": {structured: true, opts: []cehttp.Option{cehttp.WithRoundTripper(&signingTransport{secret: testSecret})}},
		"binary signed":     {opts: []cehttp.Option{cehttp.WithRoundTripper(&signingTransport{secret: testSecret2})}},
	}
	user := 1008600000029937600
	for name, tc := range cases {
		user++
		uid := fmt.Sprint(user)
		t.Run(name, func(t *testing.T) {
			p, err := cloudevents.NewHTTP(append([]cehttp.Option{cloudevents.WithTarget(e.srv.URL + "/events")}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			c, err := cloudevents.NewClient(p)
			if err != nil {
				t.Fatal(err)
			}
			ev := cloudevents.NewEvent()
			ev.SetID("sdk-" + strings.ReplaceAll(name, " ", "-"))
			ev.SetSource("hris/sdk")
			ev.SetType("employee.hired")
			ev.SetSubject(uid)
			ev.SetTime(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
			if err := ev.SetData(cloudevents.ApplicationJSON, map[string]any{"userId": uid, "deptId": "42", "role": 1, "name": "Zoë"}); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tc.structured {
				ctx = cloudevents.WithEncodingStructured(ctx)
			} else {
				ctx = cloudevents.WithEncodingBinary(ctx)
			}
			res := c.Send(ctx, ev)
			var hr *cehttp.Result
			if !cloudevents.ResultAs(res, &hr) || hr.StatusCode != http.StatusAccepted {
				t.Fatalf("send: %v, want 202", res)
			}
			var found *jetstream.RawStreamMsg
			for _, m := range e.stored() {
				if storedID(m) == ev.ID() {
					found = m
				}
			}
			if found == nil {
				t.Fatalf("event %s not in the stream", ev.ID())
			}
			if want := "identity.employee.hired." + uid; found.Subject != want {
				t.Errorf("subject %s, want %s", found.Subject, want)
			}
			got := mustDecode(t, found)
			if got.Binary == tc.structured {
				t.Errorf("stored in binary mode = %v, want %v", got.Binary, !tc.structured)
			}
			if got.UserID != uid || got.Name != "Zoë" || got.DeptID == nil || *got.DeptID != 42 || got.Source != "hris/sdk" {
				t.Errorf("decoded %+v", got)
			}
		})
	}
}

// TestCloudEventsSDKBatch posts a batch made of the SDK's own events (its
// JSON encoding, the batch media type: its HTTP client sends one event a
// request) and checks each event's fate and what is stored.
func TestCloudEventsSDKBatch(t *testing.T) {
	e := newEnv(t, nil)
	var evs []cloudevents.Event
	for i, typ := range []string{"employee.hired", "employee.changed", "employee.disabled"} {
		uid := fmt.Sprint(1008600000029938000 + i)
		ev := cloudevents.NewEvent()
		ev.SetID(fmt.Sprintf("sdk-batch-%d", i))
		ev.SetSource("hris/sdk")
		ev.SetType(typ)
		ev.SetSubject(uid)
		ev.SetTime(time.Date(2026, 11, 23, 10, 0, i, 0, time.UTC))
		data := map[string]any{"userId": uid}
		if typ != "employee.disabled" {
			data["deptId"], data["role"] = "42", 1
		}
		if err := ev.SetData(cloudevents.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	body, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	r := e.post(request{header: http.Header{"Content-Type": {"application/cloudevents-batch+json"},
		"Authorization": {"Bearer " + testToken}}, body: body})
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", r.status, r.body)
	}
	if len(r.batch.Results) != len(evs) {
		t.Fatalf("%d results for %d events: %s", len(r.batch.Results), len(evs), r.body)
	}
	stored := map[string]*jetstream.RawStreamMsg{}
	for _, m := range e.stored() {
		stored[storedID(m)] = m
	}
	for i, ev := range evs {
		if res := r.batch.Results[i]; res.ID != ev.ID() || res.Status != http.StatusAccepted || res.Sequence == 0 {
			t.Errorf("result %d: %+v, want %s accepted and stored", i, res, ev.ID())
		}
		m := stored[ev.ID()]
		if m == nil {
			t.Fatalf("%s not in the stream", ev.ID())
		}
		got := mustDecode(t, m)
		if got.Type != ev.Type() || "employee."+string(got.Action) != ev.Type() || got.UserID != ev.Subject() || got.Source != "hris/sdk" {
			t.Errorf("%s decoded as %+v", ev.ID(), got)
		}
	}
}

// TestModesAndCredentials sends each content mode with each credential as
// plain requests.
func TestModesAndCredentials(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now()
	n := 0
	next := func(action handlers.Action) event {
		n++
		return newEvent(fmt.Sprintf("ev-%d", n), action, fmt.Sprintf("10086%05d", n))
	}
	type mk func() request
	modes := map[string]mk{
		"structured": func() request { return structured(next(handlers.Hired)) },
		"binary":     func() request { return binary(next(handlers.Changed)) },
		"batch":      func() request { return batchOf(next(handlers.Hired), next(handlers.Disabled), next(handlers.Enabled)) },
	}
	creds := map[string]func(request, int) request{
		"bearer":         func(r request, _ int) request { return r.bearer(testToken) },
		"second bearer":  func(r request, _ int) request { return r.bearer(testToken2) },
		"signature":      func(r request, i int) request { return r.signed(testSecret, fmt.Sprintf("msg_%d", i), now) },
		"rotated secret": func(r request, i int) request { return r.signed(testSecret2, fmt.Sprintf("msg_%d", i), now) },
	}
	i := 0
	for mname, make := range modes {
		for cname, cred := range creds {
			i++
			t.Run(mname+" "+cname, func(t *testing.T) {
				before := len(e.stored())
				r := cred(make(), i)
				resp := e.post(r)
				if resp.status != http.StatusAccepted {
					t.Fatalf("status %d: %s", resp.status, resp.body)
				}
				msgs := e.stored()[before:]
				want := 1
				if mname == "batch" {
					want = 3
					if len(resp.batch.Results) != 3 {
						t.Fatalf("batch answer lists %d results: %s", len(resp.batch.Results), resp.body)
					}
				} else if resp.result.Sequence != msgs[0].Sequence || resp.result.Stream != "IDENTITY" {
					t.Errorf("answer %+v does not name the stored message (seq %d)", resp.result, msgs[0].Sequence)
				}
				if len(msgs) != want {
					t.Fatalf("%d messages stored, want %d", len(msgs), want)
				}
				for _, m := range msgs {
					ev := mustDecode(t, m)
					if ev.Binary != (mname == "binary") {
						t.Errorf("%s stored with binary = %v", mname, ev.Binary)
					}
				}
				if mname != "binary" {
					// Structured events are stored byte for byte.
					var raws []json.RawMessage
					if mname == "batch" {
						_ = json.Unmarshal(r.body, &raws)
					} else {
						raws = []json.RawMessage{r.body}
					}
					for k, m := range msgs {
						if !bytes.Equal(m.Data, raws[k]) {
							t.Errorf("stored body %s, sent %s", m.Data, raws[k])
						}
					}
				}
			})
		}
	}
	if got := testutil.ToFloat64(e.h.m.requests.WithLabelValues("batch", "202")); got != 4 {
		t.Errorf("kdsync_ingress_requests_total{mode=batch,code=202} = %v, want 4", got)
	}
	if got := testutil.ToFloat64(e.h.m.events.WithLabelValues(resultAccepted)); got != 4+4+12 {
		t.Errorf("kdsync_ingress_events_total{result=accepted} = %v, want 20", got)
	}
}

func TestAuthentication(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
	ev := newEvent("auth-1", handlers.Hired, "1008600000000001")
	good := structured(ev)
	tampered := good.signed(testSecret, "msg_tampered", now)
	tampered.body = bytes.Replace(tampered.body, []byte(`"role":1`), []byte(`"role":2`), 1)
	noTimestamp := good.signed(testSecret, "msg_nots", now)
	noTimestamp.header.Del("Webhook-Timestamp")
	badTimestamp := good.signed(testSecret, "msg_badts", now)
	badTimestamp.header.Set("Webhook-Timestamp", "yesterday")
	cases := map[string]struct {
		req       request
		status    int
		reason    string
		challenge bool
	}{
		"no credentials":          {good, 401, authMissing, true},
		"wrong token":             {good.bearer("not-the-token-0123456789"), 401, authBadToken, true},
		"token prefix only":       {good.bearer(testToken[:10]), 401, authBadToken, true},
		"basic scheme":            {request{header: http.Header{"Content-Type": {mediaStructured}, "Authorization": {"Basic " + testToken}}, body: good.body}, 401, authBadToken, true},
		"unknown secret":          {good.signed("whsec_"+"c29tZW9uZS1lbHNlcy1zZWNyZXQtMDEyMzQ1Ng==", "msg_1", now), 401, authBadSignature, true},
		"tampered body":           {tampered, 401, authBadSignature, true},
		"missing timestamp":       {noTimestamp, 401, authBadSignature, true},
		"timestamp not a number":  {badTimestamp, 401, authBadTimestamp, true},
		"expired timestamp":       {good.signed(testSecret, "msg_old", now.Add(-5*time.Minute-time.Second)), 401, authBadTimestamp, true},
		"timestamp in the future": {good.signed(testSecret, "msg_future", now.Add(5*time.Minute+time.Second)), 401, authBadTimestamp, true},
		"timestamp at tolerance":  {good.signed(testSecret, "msg_edge", now.Add(-5*time.Minute)), 202, "", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := testutil.ToFloat64(e.h.m.auth.WithLabelValues(tc.reason))
			resp := e.post(tc.req)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			if tc.status == 202 {
				return
			}
			if resp.problem.Type != typeUnauthorized || resp.problem.Status != 401 || resp.problem.Detail == "" {
				t.Errorf("problem %+v", resp.problem)
			}
			if got := resp.header.Get("WWW-Authenticate"); (got != "") != tc.challenge {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if got := testutil.ToFloat64(e.h.m.auth.WithLabelValues(tc.reason)); got != before+1 {
				t.Errorf("auth failures{%s} = %v, want %v", tc.reason, got, before+1)
			}
			if strings.Contains(string(resp.body), testToken) {
				t.Error("the answer repeats a token")
			}
		})
	}
	if n := len(e.stored()); n != 1 {
		t.Errorf("%d events stored, want only the one sent with valid credentials", n)
	}
}

// TestReplayedWebhook sends the same signed request twice: the second is
// refused while the signature is valid, and after a 503 the retry is taken.
func TestReplayedWebhook(t *testing.T) {
	now := time.Now()
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
	r := structured(newEvent("replay-1", handlers.Hired, "1008600000000002")).signed(testSecret, "msg_replay", now)
	if resp := e.post(r); resp.status != 202 {
		t.Fatalf("first: %d %s", resp.status, resp.body)
	}
	resp := e.post(r)
	if resp.status != http.StatusConflict || resp.problem.Type != typeReplayed {
		t.Fatalf("replay: %d %s", resp.status, resp.body)
	}
	// Signed with the other secret, same id: still the same webhook.
	if resp := e.post(structured(newEvent("replay-2", handlers.Hired, "1008600000000002")).signed(testSecret2, "msg_replay", now)); resp.status != http.StatusConflict {
		t.Fatalf("same id, other body: %d %s", resp.status, resp.body)
	}
	// A new id is a new webhook (its event is a duplicate in the stream).
	if resp := e.post(r.signed(testSecret, "msg_replay_2", now)); resp.status != 202 || !resp.result.Duplicate {
		t.Fatalf("new id: %d %s", resp.status, resp.body)
	}
	if got := testutil.ToFloat64(e.h.m.auth.WithLabelValues(authReplayed)); got != 2 {
		t.Errorf("auth failures{replayed} = %v, want 2", got)
	}
	// Past the tolerance the id is forgotten, and the timestamp refused.
	now = now.Add(6 * time.Minute)
	if resp := e.post(r); resp.status != 401 {
		t.Fatalf("after the window: %d %s", resp.status, resp.body)
	}

	// A request answered 503 leaves its id free for the retry.
	e.ns.Stop()
	waitFor(t, func() bool { return !e.nc.IsConnected() })
	r2 := structured(newEvent("replay-3", handlers.Hired, "1008600000000003")).signed(testSecret, "msg_retry", now)
	if resp := e.post(r2); resp.status != 503 {
		t.Fatalf("NATS down: %d %s", resp.status, resp.body)
	}
	if err := e.ns.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e.nc.IsConnected)
	if resp := e.post(r2); resp.status != 202 {
		t.Fatalf("retry after 503: %d %s", resp.status, resp.body)
	}
}

func TestSizeLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxBytes = 4096
		o.MaxBatch = 2
		o.Decoder = handlers.Decoder{MaxSize: 1024}
	})
	big := newEvent("big-1", handlers.Hired, "1008600000000004")
	big.Data["name"] = strings.Repeat("x", 2000)
	huge := newEvent("huge-1", handlers.Hired, "1008600000000004")
	huge.Data["name"] = strings.Repeat("x", 5000)
	small := newEvent("small-1", handlers.Hired, "1008600000000005")

	t.Run("body over the limit", func(t *testing.T) {
		resp := e.post(structured(huge).bearer(testToken))
		if resp.status != 413 || resp.problem.Type != typeTooLarge {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
	})
	t.Run("body over the limit, chunked", func(t *testing.T) {
		r := structured(huge).bearer(testToken)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/events", struct{ *bytes.Reader }{bytes.NewReader(r.body)})
		req.Header = r.header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if req.ContentLength != -1 && req.ContentLength != 0 {
			t.Fatalf("request has a length (%d): not chunked", req.ContentLength)
		}
		if resp.StatusCode != 413 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("event over the decoder limit", func(t *testing.T) {
		resp := e.post(structured(big).bearer(testToken))
		if resp.status != 413 || len(resp.problem.Errors) != 1 || resp.problem.Errors[0].Reason != string(handlers.ReasonTooLarge) {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
	})
	t.Run("one event of a batch over the decoder limit", func(t *testing.T) {
		resp := e.post(batchOf(small, big).bearer(testToken))
		if resp.status != http.StatusMultiStatus {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
		res := resp.batch.Results
		if len(res) != 2 || res[0].Status != 202 || res[1].Status != 413 || res[1].ID != "big-1" {
			t.Fatalf("results %+v", res)
		}
	})
	t.Run("batch over the event limit", func(t *testing.T) {
		resp := e.post(batchOf(small, small, small).bearer(testToken))
		if resp.status != 413 || resp.problem.Type != typeTooLarge || !strings.Contains(resp.problem.Detail, "3 events") {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
	})
	if got := testutil.ToFloat64(e.h.m.events.WithLabelValues(string(handlers.ReasonTooLarge))); got != 3 {
		t.Errorf("events{too_large} = %v, want 3", got)
	}
	if n := len(e.stored()); n != 1 {
		t.Errorf("%d stored, want 1", n)
	}
}

func TestContentTypes(t *testing.T) {
	e := newEnv(t, nil)
	ev := newEvent("ct-1", handlers.Hired, "1008600000000006")
	plain := request{header: http.Header{"Content-Type": {"application/json"}}, body: ev.json()}
	text := binary(ev)
	text.header.Set("Content-Type", "text/plain")
	xml := request{header: http.Header{"Content-Type": {"application/cloudevents+xml"}}, body: []byte("<event/>")}
	cases := map[string]struct {
		req    request
		status int
		field  string
	}{
		"json without ce headers":    {plain, 415, "content-type"},
		"no content type":            {request{header: http.Header{}, body: ev.json()}, 415, "content-type"},
		"xml structured":             {xml, 415, "content-type"},
		"binary with text/plain":     {text, 415, "content-type"},
		"structured with parameters": {request{header: http.Header{"Content-Type": {"Application/CloudEvents+JSON; charset=utf-8"}}, body: ev.json()}, 202, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resp := e.post(tc.req.bearer(testToken))
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			if tc.status == 202 {
				return
			}
			if resp.problem.Type != typeUnsupportedMedia || len(resp.problem.Errors) == 0 || resp.problem.Errors[0].Field != tc.field {
				t.Errorf("problem %+v", resp.problem)
			}
		})
	}
	t.Run("GET is not allowed", func(t *testing.T) {
		resp, err := http.Get(e.srv.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// TestInvalidEvents checks that every refusal names the field, in the
// problem's errors, with a pointer into the body where there is one.
func TestInvalidEvents(t *testing.T) {
	e := newEnv(t, nil)
	user := "1008600000000007"
	mod := func(f func(*event)) event {
		ev := newEvent("bad-1", handlers.Changed, user)
		f(&ev)
		return ev
	}
	binMissingID := binary(newEvent("bad-2", handlers.Changed, user))
	binMissingID.header.Del("Ce-Id")
	binBadEscape := binary(newEvent("bad-3", handlers.Changed, user))
	binBadEscape.header.Set("Ce-Source", "hris%zz")
	cases := map[string]struct {
		req     request
		reason  handlers.Reason
		field   string
		pointer string
	}{
		"role out of range":   {structured(mod(func(e *event) { e.Data["role"] = 7 })), handlers.ReasonInvalidField, "data.role", "#/data/role"},
		"no user":             {structured(mod(func(e *event) { delete(e.Data, "userId") })), handlers.ReasonMissingField, "data.userId", "#/data/userId"},
		"no id":               {structured(mod(func(e *event) { e.ID = "" })), handlers.ReasonMissingField, "id", "#/id"},
		"unknown type":        {structured(mod(func(e *event) { e.Type = "employee.promoted" })), handlers.ReasonUnknownType, "type", "#/type"},
		"subject mismatch":    {structured(mod(func(e *event) { e.Subject = "42" })), handlers.ReasonMismatch, "subject", "#/subject"},
		"spec version":        {structured(mod(func(e *event) { e.SpecVersion = "0.3" })), handlers.ReasonSpecVersion, "specversion", "#/specversion"},
		"id with newline":     {structured(mod(func(e *event) { e.ID = "a\nb" })), handlers.ReasonInvalidField, "id", "#/id"},
		"not json":            {request{header: http.Header{"Content-Type": {mediaStructured}}, body: []byte("{nope")}, handlers.ReasonMalformed, "", ""},
		"binary dept invalid": {binary(mod(func(e *event) { e.Data["deptId"] = "x1" })), handlers.ReasonInvalidField, "data.deptId", "#/deptId"},
		"binary no ce-id":     {binMissingID, handlers.ReasonMissingField, "ce-id", ""},
		"binary bad escape":   {binBadEscape, handlers.ReasonInvalidField, "ce-source", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resp := e.post(tc.req.bearer(testToken))
			if resp.status != 400 {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			if resp.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("content type %q", resp.header.Get("Content-Type"))
			}
			p := resp.problem
			if p.Type != typeInvalidEvent || p.Title == "" || p.Status != 400 || p.Detail == "" || len(p.Errors) != 1 {
				t.Fatalf("problem %s", resp.body)
			}
			fe := p.Errors[0]
			if fe.Reason != string(tc.reason) || fe.Field != tc.field || fe.Pointer != tc.pointer || fe.Detail == "" {
				t.Errorf("error %+v, want reason %s field %q pointer %q", fe, tc.reason, tc.field, tc.pointer)
			}
		})
	}
	if n := len(e.stored()); n != 0 {
		t.Errorf("%d invalid events stored", n)
	}
}

func TestBatches(t *testing.T) {
	e := newEnv(t, nil)
	good := func(i int) event {
		return newEvent(fmt.Sprintf("batch-%d", i), handlers.Hired, fmt.Sprintf("100860000001%04d", i))
	}
	bad := good(99)
	bad.Data["role"] = 4
	t.Run("partly invalid: 207", func(t *testing.T) {
		resp := e.post(batchOf(good(1), bad, good(2)).bearer(testToken))
		if resp.status != http.StatusMultiStatus {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
		res := resp.batch.Results
		if len(res) != 3 || res[0].Status != 202 || res[2].Status != 202 || res[1].Status != 400 {
			t.Fatalf("results %s", resp.body)
		}
		if *res[1].Index != 1 || res[1].ID != "batch-99" || len(res[1].Errors) != 1 || res[1].Errors[0].Pointer != "#/1/data/role" {
			t.Errorf("refused result %+v", res[1])
		}
		if res[0].Sequence == 0 || res[0].Subject != "identity.employee.hired.1008600000010001" {
			t.Errorf("stored result %+v", res[0])
		}
	})
	t.Run("all invalid: 400", func(t *testing.T) {
		resp := e.post(batchOf(bad, bad).bearer(testToken))
		if resp.status != 400 || resp.problem.Type != typeInvalidBatch || len(resp.problem.Errors) != 2 || len(resp.problem.Results) != 2 {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
	})
	for name, body := range map[string]string{"not an array": `{"id":"x"}`, "empty": `[]`, "null": `null`, "truncated": `[{"id":"x"}`} {
		t.Run(name, func(t *testing.T) {
			resp := e.post(request{header: http.Header{"Content-Type": {mediaBatch}}, body: []byte(body)}.bearer(testToken))
			if resp.status != 400 || resp.problem.Type != typeInvalidBatch {
				t.Fatalf("%d %s", resp.status, resp.body)
			}
		})
	}
	t.Run("resent batch is stored once", func(t *testing.T) {
		r := batchOf(good(3), good(4)).bearer(testToken)
		first := e.post(r)
		again := e.post(r)
		if first.status != 202 || again.status != 202 {
			t.Fatalf("%d, %d", first.status, again.status)
		}
		for _, res := range again.batch.Results {
			if !res.Duplicate {
				t.Errorf("resent event not reported as duplicate: %+v", res)
			}
		}
	})
	if n := len(e.stored()); n != 4 {
		t.Errorf("%d stored, want 4", n)
	}
}

// TestNATSOutage sends webhooks in every content mode while the NATS
// server is stopped and started again on the same store: while it is down
// the answer is 503 with Retry-After; every event answered 202 is in the
// stream afterwards, and so is every event of the requests answered 503
// once the sender resends them: a sender that retries on 503 loses
// nothing.
func TestNATSOutage(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PublishTimeout = 300 * time.Millisecond })
	// sent is a request and the ids of its events.
	type sent struct {
		mode string
		r    request
		ids  []string
	}
	var (
		mu        sync.Mutex
		accepted  []string
		refused   []sent
		refusedBy = map[string]int{} // by content mode
		statuses  = map[int]int{}
	)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("outage-%d-%d", w, i)
				ev := newEvent(id, handlers.Changed, fmt.Sprintf("20086%d%06d", w, i))
				s := sent{mode: "structured", ids: []string{id}}
				switch (w + i) % 4 {
				case 0:
					s.r = structured(ev).bearer(testToken)
				case 1:
					s.r = structured(ev).signed(testSecret, "msg_"+id, time.Now())
				case 2:
					s.mode, s.r = "binary", binary(ev).bearer(testToken)
				case 3:
					ev2 := newEvent(id+"-b", handlers.Disabled, fmt.Sprintf("30086%d%06d", w, i))
					s.mode, s.r, s.ids = "batch", batchOf(ev, ev2).signed(testSecret2, "msg_"+id, time.Now()), []string{id, id + "-b"}
				}
				resp := e.post(s.r)
				mu.Lock()
				statuses[resp.status]++
				switch resp.status {
				case 202:
					accepted = append(accepted, s.ids...)
				case 503:
					refused = append(refused, s)
					refusedBy[s.mode]++
					if resp.header.Get("Retry-After") != "2" || resp.problem.Type != typeUnavailable {
						t.Errorf("503 without Retry-After 2 or problem: %v %s", resp.header, resp.body)
					}
				default:
					t.Errorf("unexpected status %d: %s", resp.status, resp.body)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	e.ns.Stop()
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(refused) >= 20 && refusedBy["binary"] > 0 && refusedBy["batch"] > 0
	})
	if err := e.ns.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e.nc.IsConnected)
	mu.Lock()
	afterRestart := len(accepted)
	mu.Unlock()
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) > afterRestart+20
	})
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("took too long")
	}
	t.Logf("answers: %v; refused by mode: %v", statuses, refusedBy)

	// The sender resends what was answered 503, as it was (signed ones
	// with the same webhook-id): now each is stored.
	var resent []string
	for _, s := range refused {
		resp := e.post(s.r)
		if resp.status != 202 {
			t.Errorf("resent %s request %v: %d %s, want 202", s.mode, s.ids, resp.status, resp.body)
			continue
		}
		resent = append(resent, s.ids...)
	}

	inStream := map[string]bool{}
	for _, m := range e.stored() {
		inStream[storedID(m)] = true
	}
	missing := 0
	for _, id := range accepted {
		if !inStream[id] {
			missing++
			t.Errorf("event %s was answered 202 but is not in the stream", id)
		}
	}
	for _, id := range resent {
		if !inStream[id] {
			t.Errorf("event %s was answered 503, then 202 when resent, but is not in the stream", id)
		}
	}
	if missing == 0 && len(accepted) < 40 {
		t.Errorf("only %d events accepted; the test proves little", len(accepted))
	}
	for md, n := range refusedBy {
		if got := testutil.ToFloat64(e.h.m.requests.WithLabelValues(md, "503")); got != float64(n) {
			t.Errorf("requests{%s,503} = %v, want %d", md, got, n)
		}
	}
}

func TestReadyAndStream(t *testing.T) {
	e := newEnv(t, nil)
	if !e.h.Ready() {
		t.Fatal("not ready while connected")
	}
	name, err := e.h.CheckStream(t.Context())
	if err != nil || name != "IDENTITY" {
		t.Fatalf("CheckStream = %q, %v", name, err)
	}
	e2 := newEnv(t, func(o *Options) { o.SubjectPrefix = "hr.people" })
	if _, err := e2.h.CheckStream(t.Context()); err == nil {
		t.Fatal("CheckStream found a stream for hr.people")
	}
	// Without a stream for the subject, events are not stored: 503.
	resp := e2.post(structured(newEvent("nostream-1", handlers.Hired, "1008600000000008")).bearer(testToken))
	if resp.status != 503 || resp.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", resp.status, resp.body)
	}
	e.ns.Stop()
	waitFor(t, func() bool { return !e.h.Ready() })
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t, nil)
	cases := map[string]func(*Options){
		"no credentials":       func(o *Options) { o.Tokens, o.Secrets = nil, nil },
		"short token":          func(o *Options) { o.Tokens = append(o.Tokens, "short") },
		"secret without whsec": func(o *Options) { o.Secrets = append(o.Secrets, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") },
		"secret not base64":    func(o *Options) { o.Secrets = append(o.Secrets, "whsec_***") },
		"secret too short":     func(o *Options) { o.Secrets = append(o.Secrets, "whsec_c2hvcnQ=") },
		"wildcard prefix":      func(o *Options) { o.SubjectPrefix = "identity.*" },
		"no connection":        func(o *Options) { o.Conn = nil },
		"tiny body limit":      func(o *Options) { o.MaxBytes = 10 },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			o := e.h.opts
			// Validation comes before registration, so the registry
			// already holding the metrics cannot hide the error tested.
			f(&o)
			if _, err := New(o); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	o := e.h.opts
	o.Tokens, o.Secrets, o.AllowUnauthenticated = nil, nil, true
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "registering") {
		t.Fatalf("second registration on the same registry: %v", err)
	}
}

// TestSpecExampleSignature checks the verification against the example
// in the Standard Webhooks specification.
func TestSpecExampleSignature(t *testing.T) {
	at := time.Unix(1614265330, 0)
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return at.Add(time.Minute) } })
	h := http.Header{}
	h.Set("Webhook-Id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("Webhook-Timestamp", "1614265330")
	h.Set("Webhook-Signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)
	if _, p := e.h.verifySignature(h, body); p != nil {
		t.Fatalf("the spec's example is refused: %+v", p)
	}
	h.Set("Webhook-Id", "msg_p5jXN8AQM9LWM0D4loKWxJel")
	if _, p := e.h.verifySignature(h, body); p == nil || p.authReason != authBadSignature {
		t.Fatalf("another id verified: %+v", p)
	}
	// Several signatures, one good: accepted (a sender mid-rotation).
	h.Set("Webhook-Id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("Webhook-Signature", "v1,AAAA v1a,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	e.h.replays = newReplayCache(10)
	if _, p := e.h.verifySignature(h, body); p != nil {
		t.Fatalf("list of signatures refused: %+v", p)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
