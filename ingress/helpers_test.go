package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
)

// Credentials of the test ingress.
const (
	testToken   = "test-token-0123456789abcdef"
	testToken2  = "second-token-0123456789abcdef"
	testSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the spec's example secret
	testSecret2 = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"
)

// env is an ingress in front of an embedded JetStream server.
type env struct {
	t   testing.TB
	ns  *harness.NATS
	nc  *nats.Conn
	js  jetstream.JetStream
	h   *Handler
	srv *httptest.Server
	reg *prometheus.Registry
}

func newEnv(t testing.TB, modify func(*Options)) *env {
	t.Helper()
	ns, nc, js := harness.NewJetStream(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "IDENTITY", Subjects: []string{"identity.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o := Options{
		Conn:           nc,
		Tokens:         []kdapi.Secret{testToken, testToken2},
		Secrets:        []kdapi.Secret{testSecret, testSecret2},
		Registerer:     reg,
		PublishTimeout: time.Second,
		RetryAfter:     2 * time.Second,
	}
	if modify != nil {
		modify(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, ns: ns, nc: nc, js: js, h: h, srv: srv, reg: reg}
}

// event is a structured CloudEvent for tests.
type event struct {
	SpecVersion string         `json:"specversion"`
	ID          string         `json:"id"`
	Source      string         `json:"source"`
	Type        string         `json:"type"`
	Subject     string         `json:"subject,omitempty"`
	Time        string         `json:"time,omitempty"`
	Data        map[string]any `json:"data"`
}

func newEvent(id string, action handlers.Action, user string) event {
	return event{
		SpecVersion: "1.0", ID: id, Source: "hris/test", Type: handlers.TypePrefix + string(action),
		Subject: user, Time: "2026-11-23T10:00:00.123Z",
		Data: map[string]any{"userId": user, "deptId": "1243693141656107521", "role": 1},
	}
}

func (e event) json() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return b
}

// request is an HTTP request to the ingress.
type request struct {
	header http.Header
	body   []byte
}

func structured(ev event) request {
	return request{header: http.Header{"Content-Type": {mediaStructured}}, body: ev.json()}
}

func batchOf(evs ...event) request {
	raws := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		raws[i] = e.json()
	}
	b, _ := json.Marshal(raws)
	return request{header: http.Header{"Content-Type": {mediaBatch}}, body: b}
}

func binary(ev event) request {
	h := http.Header{
		"Content-Type":   {"application/json"},
		"Ce-Specversion": {ev.SpecVersion},
		"Ce-Id":          {ev.ID},
		"Ce-Source":      {ev.Source},
		"Ce-Type":        {ev.Type},
	}
	if ev.Subject != "" {
		h.Set("Ce-Subject", ev.Subject)
	}
	if ev.Time != "" {
		h.Set("Ce-Time", ev.Time)
	}
	b, _ := json.Marshal(ev.Data)
	return request{header: h, body: b}
}

func (r request) bearer(token string) request {
	r.header = r.header.Clone()
	r.header.Set("Authorization", "Bearer "+token)
	return r
}

// signed signs r with secret as a Standard Webhooks sender does.
func (r request) signed(secret, id string, at time.Time) request {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		panic(err)
	}
	sig, err := wh.Sign(id, at, r.body)
	if err != nil {
		panic(err)
	}
	r.header = r.header.Clone()
	r.header.Set("Webhook-Id", id)
	r.header.Set("Webhook-Timestamp", fmt.Sprint(at.Unix()))
	r.header.Set("Webhook-Signature", sig)
	return r
}

// response is an answer, decoded.
type response struct {
	status int
	header http.Header
	body   []byte
	// problem or result, as found in the body.
	problem problem
	result  eventResult
	batch   struct {
		Detail  string        `json:"detail"`
		Results []eventResult `json:"results"`
	}
}

func (e *env) post(r request) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.srv.URL+"/events", bytes.NewReader(r.body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header = r.header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, body: body}
	switch resp.Header.Get("Content-Type") {
	case "application/problem+json":
		if err := json.Unmarshal(body, &out.problem); err != nil {
			e.t.Fatalf("problem body %s: %v", body, err)
		}
		out.batch.Results = out.problem.Results
	case "application/json":
		_ = json.Unmarshal(body, &out.result)
		_ = json.Unmarshal(body, &out.batch)
	}
	return out
}

// stored returns the stream's messages in order.
func (e *env) stored() []*jetstream.RawStreamMsg {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, "IDENTITY")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// mustDecode checks that the consumer's decoder accepts a stored message.
func mustDecode(t *testing.T, m *jetstream.RawStreamMsg) *handlers.Event {
	t.Helper()
	ev, err := handlers.Decoder{}.Decode(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatalf("the consumer would refuse stored message %s: %v", m.Subject, err)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.Key() {
		t.Errorf("Nats-Msg-Id = %q, want the event's key %q (source %q, id %q)", got, ev.Key(), ev.Source, ev.ID)
	}
	return ev
}

// storedID is the event id of a stored message, "" when it does not
// decode.
func storedID(m *jetstream.RawStreamMsg) string {
	ev, err := handlers.Decoder{}.Decode(m.Subject, m.Header, m.Data)
	if err != nil {
		return ""
	}
	return ev.ID
}
