package consumer_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// TestEvictedRecordsKeepOrderAndDedup runs kdsync with a state cache of
// two records over 60 users, so that nearly every event finds its user's
// record evicted and reads it again from the KV bucket. Effects stay in
// order and once per event, each record folds all of its user's events,
// and after eviction the same events again (new stream messages with the
// same ids) are skipped without a KooDrive call; so is every event
// redelivered to a kdsync started afresh with its durable consumer
// deleted, its records all read from the bucket.
func TestEvictedRecordsKeepOrderAndDedup(t *testing.T) {
	e := newEnv(t, kdsim.Faults{Latency: time.Millisecond, Jitter: 2 * time.Millisecond})
	const users = 60
	evs := e.generate(users, 4, 18)
	e.publish(evs)
	opts := e.options()
	opts.StateCache = "2"
	c, stop := start(t, opts)
	o := e.collect()
	e.wait(o, len(evs), 60*time.Second)
	e.check(evs, o, false)

	st := c.Stats().State
	t.Logf("state after the first pass: %+v", st)
	if st.Cached > 2 {
		t.Errorf("%d records cached, budget 2", st.Cached)
	}
	if st.Reads <= users || st.Evictions == 0 {
		t.Fatalf("reads %d, evictions %d: the records were not evicted and read again (want more reads than %d users)", st.Reads, st.Evictions, users)
	}
	if st.Writes != uint64(len(evs)) {
		t.Errorf("%d record writes for %d events; want exactly one each", st.Writes, len(evs))
	}

	// Each user's record holds the last event's sequence and the state
	// all its events folded to: what KooDrive holds.
	kv, err := e.js().KeyValue(context.Background(), "KDSYNC_STATE")
	if err != nil {
		t.Fatal(err)
	}
	last := lastSeqs(t, e.js(), len(evs))
	final := e.sim.Final()
	for user, seq := range last {
		entry, err := kv.Get(context.Background(), outcome.KVKey(user))
		if err != nil {
			t.Fatalf("record of %s: %v", user, err)
		}
		var r outcome.Record
		if err := json.Unmarshal(entry.Value(), &r); err != nil {
			t.Fatal(err)
		}
		want, ok := final[user]
		if r.Seq != seq || !ok || !r.State.Exists || r.State.DeptID == nil || r.State.Role == nil || r.State.Status == nil ||
			*r.State.DeptID != want.DeptID || *r.State.Role != want.Role || *r.State.Status != want.Status {
			t.Errorf("record of %s: seq %d, state %s; want seq %d and KooDrive's %+v", user, r.Seq, stateString(r), seq, want)
		}
	}
	requests := e.sim.Stats().Requests

	// The same events again, as new stream messages (new Nats-Msg-Ids):
	// duplicates by their ids, found in records read afresh.
	again := make([]workload.Event, len(evs))
	for i, ev := range evs {
		again[i] = ev
		again[i].ID = ev.ID + "-again" // the message id only; the body keeps the event's id
	}
	e.publish(again)
	waitOutcomes(t, o, 2*len(evs), 60*time.Second)
	dups := 0
	for _, out := range o.All() {
		if out.Sequence > uint64(len(evs)) {
			if out.Result != outcome.Skipped || out.Reason != outcome.SkipDuplicate {
				t.Errorf("event %s again (seq %d): %s/%s, want skipped/duplicate", out.EventID, out.Sequence, out.Result, out.Reason)
			}
			dups++
		}
	}
	if dups != len(evs) {
		t.Fatalf("%d outcomes for the %d events published again", dups, len(evs))
	}

	// Everything redelivered: kdsync stopped, its durable consumer
	// deleted, and a kdsync started afresh (its cache empty, of two
	// records again) is handed the whole stream again.
	stop()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	if err := e.js().DeleteConsumer(dctx, "IDENTITY", "kdsync"); err != nil {
		t.Fatalf("delete consumer: %v", err)
	}
	c2, _ := start(t, opts)
	waitAcked(t, e.js(), uint64(2*len(evs)), 90*time.Second)
	if got := e.sim.Stats().Requests; got != requests {
		t.Fatalf("KooDrive got %d requests after the first pass; want none (every event again is a duplicate)", got-requests)
	}
	if st := c2.Stats().State; st.Hits+st.Misses < uint64(2*len(evs)) || st.Reads == 0 || st.Writes != 0 || st.Cached > 2 {
		t.Fatalf("after the redelivery: %+v; want all %d events looked up, records read, none written", st, 2*len(evs))
	}
}

// start runs a consumer until the returned stop is called (or the test
// ends); a run that ended in an error fails the test.
func start(t *testing.T, opts consumer.Options) (*consumer.Consumer, func()) {
	t.Helper()
	c, err := consumer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// waitOutcomes waits until o holds n outcomes (not distinct events: the
// events published again carry the same ids).
func waitOutcomes(t *testing.T, o *harness.Outcomes, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		got := len(o.All())
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d outcomes within %s", got, n, d)
		}
	}
}

// lastSeqs maps each user to the stream sequence of its last event among
// the first n messages.
func lastSeqs(t *testing.T, js jetstream.JetStream, n int) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev struct {
			Data struct {
				UserID string `json:"userId"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Data.UserID == "" {
			t.Fatalf("message %d: %v %q", seq, err, m.Data)
		}
		out[ev.Data.UserID] = seq
	}
	return out
}

// waitAcked waits until kdsync's durable consumer exists and has
// acknowledged every message up to seq.
func waitAcked(t *testing.T, js jetstream.JetStream, seq uint64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err := consumerInfo(ctx, js)
		cancel()
		if err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages up to %d not all acknowledged within %s: %+v %v", seq, d, info, err)
		}
	}
}

func consumerInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, "IDENTITY", "kdsync")
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

func stateString(r outcome.Record) string {
	b, _ := json.Marshal(r.State)
	return string(b)
}
