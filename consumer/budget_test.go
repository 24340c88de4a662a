package consumer_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// TestRetryBudgetSurvivesKill: KooDrive is down for longer than the retry
// budget. kdsync is killed (no Nak, no drain) while it retries an event,
// and comes back only after the budget counted from the event's first
// attempt has passed: the event is dead-lettered retry_budget_exhausted at
// its first failure after the restart, not after a whole budget more. The
// first attempt's time is in the user's Record.
func TestRetryBudgetSurvivesKill(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{{"kill", true}, {"stop", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, kdsim.Faults{ErrorRate: 1, ErrorStatuses: []int{503}, RetryAfter: time.Millisecond})
			const budget = 3 * time.Second
			evs := e.generate(1, 1, 7)
			user := evs[0].UserID
			opts := e.options()
			opts.RetryBudget = budget
			opts.AckWait = time.Second // a killed instance's event comes back soon
			first := e.startWith(opts)
			o := e.collect()
			e.publish(evs)

			// Wait for the Record to note the first attempt.
			kv, err := e.js().KeyValue(context.Background(), "KDSYNC_STATE")
			if err != nil {
				t.Fatal(err)
			}
			var rec outcome.Record
			waitFor(t, 20*time.Second, "the first attempt noted in the Record", func() bool {
				en, err := kv.Get(context.Background(), outcome.KVKey(user))
				if err != nil {
					return false
				}
				if err := json.Unmarshal(en.Value(), &rec); err != nil {
					t.Fatal(err)
				}
				return rec.RetrySeq > 0
			})
			if tc.kill {
				first.kill()
			} else {
				first.stop(t)
			}
			if n := o.Distinct(); n != 0 {
				t.Fatalf("%d outcomes before the budget was spent", n)
			}
			// Stay down until the budget counted from the first attempt is
			// spent.
			waitFor(t, 2*budget, "the budget to pass", func() bool { return time.Since(rec.RetrySince) > budget })
			stop := e.run(opts)
			e.wait(o, 1, 30*time.Second)
			stop()
			out := o.All()[0]
			if out.Result != outcome.Deadlettered || out.Reason != outcome.ClassBudgetExhausted {
				t.Fatalf("outcome %s/%s, want deadlettered/%s", out.Result, out.Reason, outcome.ClassBudgetExhausted)
			}
			if out.Attempts != 1 {
				t.Fatalf("%d attempts after the restart; want 1: the budget was spent before it", out.Attempts)
			}
			if out.Delivered < 2 {
				t.Fatalf("delivered %d times; want a redelivery", out.Delivered)
			}
			t.Logf("first attempt %s, dead-lettered %s after: %s", rec.RetrySince.Format(time.RFC3339Nano), out.Time.Sub(rec.RetrySince), out.Error)
		})
	}
}

// TestRetryBudgetResumesAfterRestart: restarted with budget left, the
// event is retried only for what is left, then dead-lettered; KooDrive
// recovering in time applies it and clears the note.
func TestRetryBudgetResumesAfterRestart(t *testing.T) {
	e := newEnv(t, kdsim.Faults{ErrorRate: 1, ErrorStatuses: []int{503}, RetryAfter: time.Millisecond})
	evs := e.generate(1, 1, 8)
	user := evs[0].UserID
	opts := e.options()
	opts.RetryBudget = time.Minute
	stop := e.run(opts)
	o := e.collect()
	e.publish(evs)
	kv, err := e.js().KeyValue(context.Background(), "KDSYNC_STATE")
	if err != nil {
		t.Fatal(err)
	}
	record := func() outcome.Record {
		var rec outcome.Record
		en, err := kv.Get(context.Background(), outcome.KVKey(user))
		if err != nil {
			return rec
		}
		if err := json.Unmarshal(en.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	waitFor(t, 20*time.Second, "the first attempt noted", func() bool { return record().RetrySeq > 0 })
	since := record().RetrySince
	stop()
	before := e.sim.Stats().Requests
	stop = e.run(opts)
	defer stop()
	// The restarted consumer keeps the first attempt's time.
	waitFor(t, 10*time.Second, "attempts after the restart", func() bool { return e.sim.Stats().Requests > before+2 })
	if got := record(); !got.RetrySince.Equal(since) {
		t.Fatalf("first attempt moved from %s to %s at the restart", since, got.RetrySince)
	}
	if err := e.sim.SetFaults(kdsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	e.wait(o, 1, 30*time.Second)
	if out := o.All()[0]; out.Result != outcome.Applied {
		t.Fatalf("outcome %s/%s, want applied", out.Result, out.Reason)
	}
	waitFor(t, 5*time.Second, "the note cleared", func() bool { r := record(); return r.Seq > 0 && r.RetrySeq == 0 })
}

// startWith starts an instance with opts on its own connection, so that
// it can be killed.
func (e *env) startWith(opts consumer.Options) *instance {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	opts.Conn = nc
	c, err := consumer.New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- c.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		nc.Close()
	})
	return in
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
