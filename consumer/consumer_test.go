package consumer_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/workload"
)

// env is one end-to-end setup: embedded NATS, the simulator, a client.
type env struct {
	t    *testing.T
	nats *harness.NATS
	sim  *harness.Sim
	nc   *nats.Conn
	kd   *kdapi.Client
	// ambiguous declares, for check, the faults of the test that may make
	// a write happen twice; the zero value allows no duplicate.
	ambiguous checker.Ambiguity
}

func newEnv(t *testing.T, faults kdsim.Faults) *env {
	t.Helper()
	h := harness.NewEnv(t, kdsim.Options{Faults: faults})
	return &env{t: t, nats: h.NATS, sim: h.Sim, nc: h.NC, kd: h.KD}
}

func (e *env) js() jetstream.JetStream {
	e.t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		e.t.Fatal(err)
	}
	return js
}

func (e *env) options() consumer.Options {
	return consumer.Options{
		Conn:          e.nc,
		Manage:        true,
		Concurrency:   16,
		MaxAckPending: 256,
		PullBatch:     64,
		AckWait:       3 * time.Second,
		RetryInitial:  10 * time.Millisecond,
		RetryMax:      200 * time.Millisecond,
		BreakerProbe:  200 * time.Millisecond,
		Handler:       &handlers.Handler{Users: e.kd},
		Logger:        harness.Logger(slog.LevelWarn),
	}
}

// run starts a consumer and returns a function that stops it and waits.
func (e *env) run(opts consumer.Options) (stop func()) {
	e.t.Helper()
	return harness.RunConsumer(e.t, opts)
}

func (e *env) generate(users, perUser int, seed uint64) []workload.Event {
	e.t.Helper()
	evs, err := workload.Generate(workload.Options{Users: users, EventsPerUser: perUser, Departments: e.sim.Departments(), Seed: seed})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func (e *env) publish(evs []workload.Event) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := harness.Publish(ctx, e.nc, "IDENTITY", evs); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) collect() *harness.Outcomes {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := harness.CollectOutcomes(ctx, e.nc, "KDSYNC_OUTCOMES")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(o.Stop)
	return o
}

// wait waits until n events have outcomes. It fails at once when kdsync's
// durable consumer has acknowledged everything it was given while outcomes
// are missing: an event acknowledged without its outcome never gets one.
func (e *env) wait(o *harness.Outcomes, n int, d time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	js := e.js()
	for {
		wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := o.WaitFor(wctx, n)
		wcancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			e.t.Fatal(err)
		}
		if e.ackedWithoutOutcome(ctx, js, o, n) {
			e.t.Fatalf("every event is acknowledged, yet %d of %d outcomes are missing", n-o.Distinct(), n)
		}
	}
}

// ackedWithoutOutcome reports whether outcomes are missing for good: the
// stream holds at least n events, kdsync's durable consumer has nothing
// pending or unacknowledged, the collector has read every stored outcome,
// and fewer than n events have one. False when that cannot be told
// (another consumer name, work under way).
func (e *env) ackedWithoutOutcome(ctx context.Context, js jetstream.JetStream, o *harness.Outcomes, n int) bool {
	// The events first: all of them are then acknowledged (below), so
	// their outcomes are stored if kdsync keeps its promise.
	stream, err := js.Stream(ctx, "IDENTITY")
	if err != nil {
		return false
	}
	ii, err := stream.Info(ctx)
	if err != nil || ii.State.Msgs < uint64(n) {
		return false
	}
	c, err := js.Consumer(ctx, "IDENTITY", "kdsync")
	if err != nil {
		return false
	}
	ci, err := c.Info(ctx)
	if err != nil || ci.NumPending != 0 || ci.NumAckPending != 0 {
		return false
	}
	// Events held by the guard are parked and acknowledged before their
	// outcomes: while any are parked, missing outcomes may still come.
	if ps, err := js.Stream(ctx, "KDSYNC_PARKED"); err == nil {
		if pi, err := ps.Info(ctx); err != nil || pi.State.Msgs > 0 {
			return false
		}
	}
	s, err := js.Stream(ctx, "KDSYNC_OUTCOMES")
	if err != nil {
		return false
	}
	si, err := s.Info(ctx)
	if err != nil || uint64(len(o.All())) < si.State.Msgs {
		return false
	}
	return o.Distinct() < n
}

func (e *env) check(evs []workload.Event, o *harness.Outcomes, hardDelete bool) *checker.Report {
	e.t.Helper()
	// Give late duplicates a moment to show.
	time.Sleep(200 * time.Millisecond)
	r := checker.Check(checker.Input{
		Events:     harness.CheckerEvents(evs),
		Effects:    e.sim.Effects(harness.UserIDs(evs)),
		Outcomes:   o.All(),
		Final:      e.sim.Final(),
		HardDelete: hardDelete,
		Ambiguous:  e.ambiguous,
	})
	e.t.Log(r)
	if !r.OK() {
		e.t.Fatalf("checker: %s", r)
	}
	return r
}

func TestOrderUnderConcurrencyWithFaults(t *testing.T) {
	e := newEnv(t, kdsim.Faults{
		Latency:            time.Millisecond,
		Jitter:             2 * time.Millisecond,
		ErrorRate:          0.05,
		ErrorStatuses:      []int{429, 500, 503},
		RetryAfter:         time.Millisecond,
		FailAfterWriteRate: 0.03,
	})
	e.ambiguous.FailAfterWrite = true
	evs := e.generate(200, 5, 42)
	e.publish(evs)
	stop := e.run(e.options())
	o := e.collect()
	e.wait(o, len(evs), 60*time.Second)
	stop()
	r := e.check(evs, o, false)
	// Each write answered 500 after it was applied is retried: the
	// checker must see those repeats (and found each explained).
	if len(r.Duplicated) == 0 {
		t.Fatalf("no duplicated effects despite %d fail-after-write faults", e.sim.Stats().Faults["failAfterWrite"])
	}
	st := e.sim.Stats()
	if st.Faults["failAfterWrite"] == 0 || st.Faults["error503"]+st.Faults["error500"]+st.Faults["error429"] == 0 {
		t.Fatalf("faults were not injected: %+v", st.Faults)
	}
}
