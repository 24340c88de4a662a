//go:build unix

package consumer

// Benchmarks of the consumer's hot path without NATS or HTTP: the lane
// dispatcher, the whole per-event step on fakes (a JetStream whose
// publishes are acknowledged at once, a KV bucket that holds nothing, a
// KooDrive that accepts everything), and the small pieces each event goes
// through: lane key, KV key, the watermark record, the outcome's JSON and
// message id. Decoding and KooDrive request building and signing have
// their own benchmarks in handlers and kdapi.
//
//	go test ./consumer/ -run='^$' -bench=. -benchmem

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
)

// benchMsg is a delivered JetStream message. Metadata allocates a fresh
// copy on each call, as the real one does (which parses the reply
// subject as well).
type benchMsg struct {
	subject string
	header  nats.Header
	data    []byte
	seq     uint64
	done    func()
}

func (m *benchMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md := &jetstream.MsgMetadata{NumDelivered: 1, Stream: "IDENTITY", Consumer: "kdsync"}
	md.Sequence.Stream, md.Sequence.Consumer = m.seq, m.seq
	return md, nil
}
func (m *benchMsg) Data() []byte                     { return m.data }
func (m *benchMsg) Headers() nats.Header             { return m.header }
func (m *benchMsg) Subject() string                  { return m.subject }
func (m *benchMsg) Reply() string                    { return "" }
func (m *benchMsg) Ack() error                       { m.finished(); return nil }
func (m *benchMsg) DoubleAck(context.Context) error  { m.finished(); return nil }
func (m *benchMsg) Nak() error                       { return nil }
func (m *benchMsg) NakWithDelay(time.Duration) error { return nil }
func (m *benchMsg) InProgress() error                { return nil }
func (m *benchMsg) Term() error                      { m.finished(); return nil }
func (m *benchMsg) TermWithReason(string) error      { m.finished(); return nil }
func (m *benchMsg) finished()                        { m.done() }

// benchJS acknowledges every asynchronous publish at once, with a rising
// sequence. Everything else of jetstream.JetStream is left nil: the step
// does not reach it.
type benchJS struct {
	jetstream.JetStream
	mu  sync.Mutex
	seq uint64
}

type benchFuture struct {
	ok  chan *jetstream.PubAck
	msg *nats.Msg
}

func (f *benchFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *benchFuture) Err() <-chan error            { return nil }
func (f *benchFuture) Msg() *nats.Msg               { return f.msg }

func (js *benchJS) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	js.mu.Lock()
	js.seq++
	seq := js.seq
	js.mu.Unlock()
	f := &benchFuture{ok: make(chan *jetstream.PubAck, 1), msg: m}
	f.ok <- &jetstream.PubAck{Stream: "S", Sequence: seq}
	return f, nil
}

// benchKV holds no keys: every user's watermark starts afresh.
type benchKV struct{ jetstream.KeyValue }

func (benchKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

// benchUsers is a KooDrive that accepts everything at once.
type benchUsers struct{}

func (benchUsers) CreateUser(context.Context, kdapi.CreateUserRequest) error { return nil }
func (benchUsers) UpdateUser(context.Context, string, kdapi.UpdateUserRequest) error {
	return nil
}
func (benchUsers) GetUser(context.Context, string) (*kdapi.User, error) { return &kdapi.User{}, nil }
func (benchUsers) DeleteUser(context.Context, string) error             { return nil }

// benchEvents returns n structured CloudEvents over users users, shaped
// like kdload's (workload's encoding: a hire, then changes of department
// and role, disables and enables), interleaved at random across users,
// each user's in order, with stream sequences 1..n. (workload itself
// cannot be imported here: checker imports consumer.)
func benchEvents(b *testing.B, n, users int) []*benchMsg {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	at := time.Now().UTC().Format(time.RFC3339Nano)
	perUser := (n + users - 1) / users
	next := make([]int, users)
	live := make([]int, users)
	for i := range live {
		live[i] = i
	}
	out := make([]*benchMsg, 0, n)
	for len(out) < n && len(live) > 0 {
		k := rng.IntN(len(live))
		u := live[k]
		i := next[u]
		next[u]++
		if next[u] == perUser {
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		user := strconv.Itoa(1008600000000000000 + u)
		data := map[string]any{"userId": user}
		dept := strconv.Itoa(1319678187126486147 + rng.IntN(3))
		var action string
		switch i % 4 {
		case 0:
			action, data["deptId"], data["role"] = "hired", dept, 1
		case 1:
			action, data["deptId"], data["role"] = "changed", dept, 2
		case 2:
			action = "disabled"
		case 3:
			action = "enabled"
		}
		body, err := json.Marshal(map[string]any{
			"specversion": "1.0", "id": fmt.Sprintf("1-%d-%d", u, i), "source": "hris/bench",
			"type": handlers.TypePrefix + action, "subject": user, "time": at,
			"datacontenttype": "application/json", "data": data,
		})
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, &benchMsg{subject: "identity.employee." + action + "." + user, data: body, seq: uint64(len(out) + 1)})
	}
	return out
}

// benchConsumer is a Consumer wired to the fakes, not yet running.
func benchConsumer(b *testing.B, concurrency int) *Consumer {
	b.Helper()
	c, err := New(Options{
		Conn:          &nats.Conn{},
		Concurrency:   concurrency,
		MaxAckPending: 1024,
		Handler:       &handlers.Handler{Users: benchUsers{}},
		InstanceID:    "bench",
	})
	if err != nil {
		b.Fatal(err)
	}
	c.js = &benchJS{}
	c.kv = benchKV{}
	c.stopping, c.stop = context.WithCancel(context.Background())
	c.hard, c.hardStop = context.WithCancel(context.Background())
	b.Cleanup(func() { c.stop(); c.hardStop() })
	return c
}

// BenchmarkDispatch puts messages of many users into their lanes and
// queues the lanes, as Consume's handler does; nothing works them. Each
// round dispatches MaxAckPending (1024) messages over 205 users (kdload's
// five events per user), then empties the lanes. ns/op is per message.
func BenchmarkDispatch(b *testing.B) {
	const held = 1024
	msgs := benchEvents(b, held, 205)
	c := benchConsumer(b, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.dispatch(msgs[i])
		i++
		if i == held {
			b.StopTimer()
			i = 0
			for len(c.queue) > 0 {
				<-c.queue
			}
			clear(c.lanes)
			c.inflight = 0
			b.StartTimer()
		}
	}
}

// BenchmarkPipeline runs the whole per-event path inside kdsync: dispatch
// into lanes, the worker pool's scheduling, decode, watermark check,
// Handler.Apply on a KooDrive that answers at once (no HTTP), the
// outcome's JSON, the outcome and watermark publishes (acknowledged at
// once, no NATS) and the ack. At most MaxAckPending (1024) events are held
// at once, as the server would allow; 64 workers. ns/op is wall time per
// event with GOMAXPROCS cores working; cpu-ns/op is the process's CPU time
// per event (garbage collection included): what kdsync's own code costs
// per event, without network I/O, the HTTP client, signing and the NATS
// client (see kdapi's BenchmarkCreateUpdateRoundTrip for those).
func BenchmarkPipeline(b *testing.B) {
	for _, users := range []int{20000, 100} {
		b.Run("users="+strconv.Itoa(users), func(b *testing.B) {
			const n = 100000
			msgs := benchEvents(b, n, users)
			c := benchConsumer(b, 64)
			for range c.opts.Concurrency {
				c.workers.Add(1)
				go c.worker()
			}
			sem := make(chan struct{}, c.opts.MaxAckPending)
			var wg sync.WaitGroup
			release := func() { <-sem; wg.Done() }
			b.ReportAllocs()
			cpu0 := cpuTime()
			i := 0
			for b.Loop() {
				if i == n {
					// The same events again, over fresh watermarks.
					b.StopTimer()
					wg.Wait()
					i = 0
					c.states.purge()
					b.StartTimer()
				}
				sem <- struct{}{}
				wg.Add(1)
				m := msgs[i]
				c.dispatch(&benchMsg{subject: m.subject, data: m.data, seq: m.seq, done: release})
				i++
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			c.stop()
			c.workers.Wait()
		})
	}
}

// cpuTime is the process's user and system CPU time so far (the setup
// between rounds included, which is small beside 100,000 events).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkLaneKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if laneKey("identity.employee.changed.1008600000000004711") == "" {
			b.Fatal("empty")
		}
	}
}

func BenchmarkKVKey(b *testing.B) {
	for _, c := range []struct{ name, user string }{
		{"digits", "1008600000000004711"},
		{"hashed", "jane.doe@example.com"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = outcome.KVKey(c.user)
			}
		})
	}
}

// BenchmarkRecordNext is the watermark record written per event: next
// (the recent-ids ring, the merged state) and its JSON.
func BenchmarkRecordNext(b *testing.B) {
	dept, role, status := int64(1319678187126486147), 1, 0
	rec := outcome.Record{Seq: 41, AppliedSeq: 40, State: handlers.State{Exists: true, DeptID: &dept, Role: &role, Status: &status}}
	for i := range recentIDs {
		rec.Recent = append(rec.Recent, handlers.EventKey("hris/workday", "1-4711-"+strconv.Itoa(i)))
	}
	ev := &handlers.Event{ID: "1-4711-42", Source: "hris/workday"}
	state := handlers.State{Exists: true, Status: &status}
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		next := nextRecord(rec, 42, ev, &state, at)
		if len(marshalRecord(&next)) == 0 {
			b.Fatal("empty record")
		}
	}
}

// BenchmarkOutcome encodes an applied outcome and its message id, as
// finish does for every event.
func BenchmarkOutcome(b *testing.B) {
	lat := 12.345
	out := outcome.Outcome{
		EventID: "1-4711-3", UserID: "1008600000000004711", Action: handlers.Changed, Result: outcome.Applied,
		Calls: []string{"update"}, Attempts: 1, LatencyMs: &lat, ProcessingMs: 1.234,
		Subject: "identity.employee.changed.1008600000000004711", Stream: "IDENTITY", Sequence: 123456, Delivered: 1,
		TraceID: kdapi.TraceID("1-4711-3"), Instance: "kdsync-abc123", Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
	}
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = outcome.MsgID("IDENTITY", 123456)
		}
	})
	// TraceID is computed once for the outcome and once more for the
	// request's context (kdapi.WithTraceID).
	b.Run("traceid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = kdapi.TraceID("1-4711-3")
		}
	})
}
