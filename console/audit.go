package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Entry is one line of the audit log: who did what, when, to what, and how
// it ended.
type Entry struct {
	Time time.Time `json:"time"`
	// Who signed in (the name given at sign-in, or "bearer" for scripts),
	// with the address the request came from.
	Who    string `json:"who"`
	Remote string `json:"remote,omitempty"`
	// Action: login, login_failed, logout, sync, replay, release, reject,
	// refused (a state-changing request without a valid CSRF token, or in
	// read-only mode).
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	// Result: ok, or what went wrong.
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Audit actions.
const (
	AuditLogin       = "login"
	AuditLoginFailed = "login_failed"
	AuditLogout      = "logout"
	AuditSync        = "sync"
	AuditReplay      = "replay"
	AuditRelease     = "release"
	AuditReject      = "reject"
	AuditRefused     = "refused"
)

// audit is the audit stream.
type audit struct {
	js     jetstream.JetStream
	stream string
	prefix string
}

// ensure creates the audit stream when it does not exist.
func (a *audit) ensure(ctx context.Context, replicas int) error {
	_, err := a.js.Stream(ctx, a.stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("console: audit stream %s: %w", a.stream, err)
	}
	_, err = a.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        a.stream,
		Subjects:    []string{a.prefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Retention:   jetstream.LimitsPolicy,
		Description: "kdsync console: who did what, when",
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("console: create audit stream %s: %w", a.stream, err)
	}
	return nil
}

// record stores e on <prefix>.<action> and waits for the stream's
// acknowledgement.
func (a *audit) record(ctx context.Context, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := a.js.PublishMsg(ctx, &nats.Msg{Subject: a.prefix + "." + e.Action, Data: b}); err != nil {
		return fmt.Errorf("console: audit: %w", err)
	}
	return nil
}

// last returns the last n entries, newest first.
func (a *audit) last(ctx context.Context, n int) ([]Entry, error) {
	st, err := a.js.Stream(ctx, a.stream)
	if err != nil {
		return nil, fmt.Errorf("console: audit stream %s: %w", a.stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("console: audit stream %s: %w", a.stream, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	start := uint64(1)
	if info.State.LastSeq > uint64(n) {
		start = info.State.LastSeq - uint64(n) + 1
	}
	oc, err := a.js.OrderedConsumer(ctx, a.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
	})
	if err != nil {
		return nil, fmt.Errorf("console: read %s: %w", a.stream, err)
	}
	var out []Entry
	for {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := oc.Fetch(n, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("console: read %s: %w", a.stream, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			var e Entry
			if json.Unmarshal(m.Data(), &e) == nil {
				out = append(out, e)
			}
			if md, err := m.Metadata(); err != nil || md.NumPending == 0 {
				done = true
			}
		}
		cancel()
		if done || got == 0 {
			break
		}
	}
	slices.Reverse(out)
	return out, nil
}
