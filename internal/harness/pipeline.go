package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// Pipeline is an Env with the real consumer running in front of the
// simulator (default stream and bucket names) and its outcomes collected:
// the fixture of tests that act as an operator would, on a live kdsync.
type Pipeline struct {
	*Env
	T        testing.TB
	Outcomes *Outcomes
	// Stop stops the consumer (the test's end does it too).
	Stop func()
}

// PipelineOptions shape a Pipeline.
type PipelineOptions struct {
	// Limit is the mass-deprovisioning guard's limit; zero: no guard.
	Limit guard.Limit
	Sim   kdsim.Options
	// Observer, when set, is told about the consumer's work (metrics).
	Observer consumer.Observer
}

// NewPipeline starts a Pipeline for t.
func NewPipeline(t testing.TB, o PipelineOptions) *Pipeline {
	t.Helper()
	env := NewEnv(t, o.Sim)
	stop := RunConsumer(t, consumer.Options{
		Conn: env.NC, Manage: true, Concurrency: 4, AckWait: 3 * time.Second,
		RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Handler:          &handlers.Handler{Users: env.KD},
		DeprovisionLimit: o.Limit,
		Observer:         o.Observer,
		Logger:           Logger(slog.LevelError),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	outs, err := CollectOutcomes(ctx, env.NC, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(outs.Stop)
	return &Pipeline{Env: env, T: t, Outcomes: outs, Stop: stop}
}

// Publish sends a structured event of action for user with data (userId
// is added) and id, and returns its stream sequence.
func (p *Pipeline) Publish(id string, action handlers.Action, user string, data map[string]any) uint64 {
	p.T.Helper()
	if data == nil {
		data = map[string]any{}
	}
	data["userId"] = user
	body, err := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "hris/test",
		"type": handlers.TypePrefix + string(action), "subject": user, "time": time.Now().UTC().Format(time.RFC3339Nano), "data": data})
	if err != nil {
		p.T.Fatal(err)
	}
	ack, err := p.JS.PublishMsg(p.T.Context(), &nats.Msg{Subject: "identity.employee." + string(action) + "." + user,
		Header: nats.Header{jetstream.MsgIDHeader: {id}}, Data: body})
	if err != nil {
		p.T.Fatal(err)
	}
	return ack.Sequence
}

// WaitOutcome waits up to wait for the outcome of the event at seq of the
// identity stream.
func (p *Pipeline) WaitOutcome(seq uint64, wait time.Duration) outcome.Outcome {
	p.T.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, o := range p.Outcomes.All() {
			if o.Sequence == seq && o.Stream == outcome.DefaultStream {
				return o
			}
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("no outcome of #%d within %s", seq, wait)
		}
		p.Outcomes.waitMore(deadline)
	}
}

// WaitRecord waits up to wait for user's record in the state bucket to
// reach the event at seq. An outcome is stored beside the record, not
// after it: a reader that saw the outcome may still read the older record
// for a moment.
func (p *Pipeline) WaitRecord(user string, seq uint64, wait time.Duration) outcome.Record {
	p.T.Helper()
	kv, err := p.JS.KeyValue(p.T.Context(), outcome.DefaultStateBucket)
	if err != nil {
		p.T.Fatalf("state bucket: %v", err)
	}
	var rec outcome.Record
	p.WaitFunc(fmt.Sprintf("record of %s at #%d", user, seq), wait, func() bool {
		e, err := kv.Get(p.T.Context(), outcome.KVKey(user))
		if err != nil {
			return false
		}
		rec = outcome.Record{}
		return json.Unmarshal(e.Value(), &rec) == nil && rec.Seq >= seq
	})
	return rec
}

// WaitFunc waits up to wait for cond to hold, checking it each time an
// outcome arrives and every 50ms.
func (p *Pipeline) WaitFunc(what string, wait time.Duration, cond func() bool) {
	p.T.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			p.T.Fatalf("%s: not within %s", what, wait)
		}
		p.Outcomes.waitMore(time.Now().Add(50 * time.Millisecond))
	}
}

// waitMore waits for another outcome, until deadline at most (and 200ms
// at most).
func (o *Outcomes) waitMore(deadline time.Time) {
	t := time.NewTimer(min(max(time.Until(deadline), time.Millisecond), 200*time.Millisecond))
	defer t.Stop()
	select {
	case <-o.add:
	case <-t.C:
	}
}
