package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// flakyUsers fails its first n calls as an overloaded KooDrive would (503,
// with a message on two lines), then passes calls to the real client.
type flakyUsers struct {
	handlers.Users
	mu sync.Mutex
	n  int
}

func (f *flakyUsers) fail(method, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return nil
	}
	f.n--
	return &kdapi.APIError{HTTPStatus: 503, Method: method, Path: path, Msg: "overloaded\nretry later", Class: kdapi.ClassRetryable}
}

func (f *flakyUsers) CreateUser(ctx context.Context, body kdapi.CreateUserRequest) error {
	if err := f.fail("POST", "/koodrive/ose/v1/users"); err != nil {
		return err
	}
	return f.Users.CreateUser(ctx, body)
}

func (f *flakyUsers) UpdateUser(ctx context.Context, userID string, body kdapi.UpdateUserRequest) error {
	if err := f.fail("PUT", "/koodrive/ose/v1/users/"+userID); err != nil {
		return err
	}
	return f.Users.UpdateUser(ctx, userID, body)
}

func (f *flakyUsers) GetUser(ctx context.Context, userID string) (*kdapi.User, error) {
	if err := f.fail("GET", "/koodrive/ose/v1/users/"+userID); err != nil {
		return nil, err
	}
	return f.Users.GetUser(ctx, userID)
}

func (f *flakyUsers) DeleteUser(ctx context.Context, userID string) error {
	if err := f.fail("DELETE", "/koodrive/ose/v1/users/"+userID); err != nil {
		return err
	}
	return f.Users.DeleteUser(ctx, userID)
}

// TestDeadLetterAttemptLog: an event that fails three times transiently
// and then for good is dead-lettered with its four attempts and their
// errors in Kdsync-Attempt-Log, on one header line.
func TestDeadLetterAttemptLog(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	opts := e.options()
	opts.Handler = &handlers.Handler{Users: &flakyUsers{Users: e.kd, n: 3}}
	stop := e.run(opts)
	defer stop()
	o := e.collect()
	js := e.js()
	ctx := t.Context()
	// A hire into a department KooDrive does not have: refused for good
	// once KooDrive answers.
	const user = "1008600000000000888"
	body := `{"specversion":"1.0","id":"al-1","source":"t","type":"employee.hired","data":{"userId":"` + user + `","deptId":"42","role":1}}`
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "identity.employee.hired." + user, Data: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(o, 1, 30*time.Second)
	out := o.All()[0]
	if out.Sequence != ack.Sequence || out.Result != outcome.Deadlettered || out.Reason != outcome.Reason(kdapi.ClassPermanent.String()) || out.Attempts != 4 {
		t.Fatalf("outcome %s/%s after %d attempts (%s), want deadlettered/permanent after 4", out.Result, out.Reason, out.Attempts, out.Error)
	}

	dlq, err := js.Stream(ctx, "KDSYNC_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	// The outcome and the dead letter are published together: the
	// outcome may be seen first.
	var m *jetstream.RawStreamMsg
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, err = dlq.GetLastMsgForSubject(ctx, "kdsync.dlq.>")
		if err == nil || !errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	// Contract v1.1: the dead letter's and the outcome's subjects name the user.
	if want := "kdsync.dlq.permanent.hired." + user; m.Subject != want {
		t.Errorf("dead letter on %s, want %s", m.Subject, want)
	}
	outs, err := js.Stream(ctx, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	if om, err := outs.GetLastMsgForSubject(ctx, "kdsync.outcome.deadlettered.hired."+user); err != nil {
		t.Errorf("no outcome on kdsync.outcome.deadlettered.hired.%s: %v", user, err)
	} else if om.Header.Get(jetstream.MsgIDHeader) != outcome.MsgID("IDENTITY", ack.Sequence) {
		t.Errorf("outcome %s is another event's", om.Header.Get(jetstream.MsgIDHeader))
	}
	if got := m.Header.Get(outcome.HdrAttempts); got != "4" {
		t.Errorf("%s: %q, want 4", outcome.HdrAttempts, got)
	}
	v := m.Header.Get(outcome.HdrAttemptLog)
	if strings.ContainsAny(v, "\r\n") || len(m.Header.Values(outcome.HdrAttemptLog)) != 1 {
		t.Fatalf("%s not one line: %q", outcome.HdrAttemptLog, m.Header.Values(outcome.HdrAttemptLog))
	}
	log, err := outcome.ParseAttemptLog(v)
	if err != nil {
		t.Fatalf("%s %q: %v", outcome.HdrAttemptLog, v, err)
	}
	want := []struct {
		class, err string
	}{
		{"retryable", "HTTP 503"},
		{"retryable", "HTTP 503"},
		{"retryable", "HTTP 503"},
		{"permanent", out.Error},
	}
	if len(log) != len(want) {
		t.Fatalf("%d attempts logged, want %d: %s", len(log), len(want), v)
	}
	for i, a := range log {
		if a.N != i+1 || a.Class != want[i].class || !strings.Contains(a.Error, want[i].err) || a.At.IsZero() {
			t.Errorf("attempt %d: %+v, want n %d, class %s, error with %q", i, a, i+1, want[i].class, want[i].err)
		}
		if i > 0 && a.At.Before(log[i-1].At) {
			t.Errorf("attempt %d at %s, before the one before it", a.N, a.At)
		}
	}
	if !strings.Contains(log[0].Error, "overloaded retry later") {
		t.Errorf("a multi-line error not kept on one line: %q", log[0].Error)
	}
	t.Logf("%s: %s", outcome.HdrAttemptLog, v)
}
