package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/mapping"
)

const testToken = "scim-test-token-0123456789abcdef"

// issueMapping is the issue's example, word for word.
const issueMapping = `scope: 'user.userType != "Contractor"'
userId: 'user.externalId'
deptId: 'departments[enterprise.department]'
role: '"KooDrive Admins" in groups ? 3 : 1'
status: 'user.active ? 0 : 1'
departments:
  Engineering: "1319678187126486147"
  Sales: "1243693141656107521"
`

const (
	engineering = "1319678187126486147"
	sales       = "1243693141656107521"
)

type fixture struct {
	t   testing.TB
	ns  *harness.NATS
	nc  *nats.Conn
	js  jetstream.JetStream
	srv *Server
	url string
}

// newFixture serves SCIM with the given mapping over an embedded JetStream
// server that has the identity, dead-letter and outcome streams.
func newFixture(t testing.TB, mappingSrc string) *fixture {
	t.Helper()
	ns, nc, js := harness.NewJetStream(t)
	ctx := t.Context()
	for name, subj := range map[string]string{"IDENTITY": "identity.>", "KDSYNC_DLQ": "kdsync.dlq.>", "KDSYNC_OUTCOMES": "kdsync.outcome.>"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Duplicates: 2 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := mapping.Parse("test.yaml", []byte(mappingSrc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Options{Conn: nc, Tokens: []kdapi.Secret{"another-token-0123456789", testToken}, Mapping: m,
		Timeout: 3 * time.Second, Logger: harness.Logger(slog.LevelError)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &fixture{t: t, ns: ns, nc: nc, js: js, srv: s, url: hs.URL + Prefix}
}

// do sends a request with the test token; body is a string (sent as it
// is) or a value (sent as JSON). Headers come in name, value pairs.
func (f *fixture) do(method, path string, body any, headers ...string) (int, map[string]any, http.Header) {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.url+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if rd != nil {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	var out map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			f.t.Fatalf("%s %s: answer is not JSON: %v\n%s", method, path, err, b)
		}
	}
	return resp.StatusCode, out, resp.Header
}

// must is do, failing the test unless the status is want.
func (f *fixture) must(want int, method, path string, body any, headers ...string) map[string]any {
	f.t.Helper()
	code, out, _ := f.do(method, path, body, headers...)
	if code != want {
		f.t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

// published reads every message of stream, decoded as identity events
// with the consumer's decoder (failing the test for one it refuses).
func (f *fixture) published(stream string) []*handlers.Event {
	f.t.Helper()
	var out []*handlers.Event
	for _, m := range f.raw(stream) {
		ev, err := handlers.Decoder{}.Decode(m.Subject, m.Header, m.Data)
		if err != nil {
			f.t.Fatalf("message %d on %s: %v", m.Sequence, m.Subject, err)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), ev.Key(); got != want {
			f.t.Errorf("Nats-Msg-Id %q, want the event's key %q", got, want)
		}
		out = append(out, ev)
	}
	return out
}

func (f *fixture) raw(stream string) []*jetstream.RawStreamMsg {
	f.t.Helper()
	ctx := f.t.Context()
	st, err := f.js.Stream(ctx, stream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// keys lists the bucket's keys.
func (f *fixture) keys() []string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), 5*time.Second)
	defer cancel()
	kl, err := f.srv.st.kv.ListKeys(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for k := range kl.Keys() {
		out = append(out, k)
	}
	return out
}

// summary prints events as "action userId deptId role status".
func summary(evs []*handlers.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		s := string(e.Action) + " " + e.UserID
		if e.DeptID != nil {
			s += " dept=" + itoa64(*e.DeptID)
		}
		if e.Role != nil {
			s += " role=" + itoa(*e.Role)
		}
		if e.Status != nil {
			s += " status=" + itoa(*e.Status)
		}
		out[i] = s
	}
	return out
}

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// user is a SCIM User as Entra ID sends it on create.
func entraUser(userName, externalID, dept string, active string) map[string]any {
	return map[string]any{
		"schemas":    []string{userSchema, enterpriseSchema},
		"externalId": externalID, "userName": userName, "active": active, "displayName": userName,
		"emails":         []any{map[string]any{"primary": "True", "type": "work", "value": userName}},
		enterpriseSchema: map[string]any{"department": dept},
	}
}
