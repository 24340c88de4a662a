package consumer_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// TestRestartMidBatch stops the consumer while events are under way and
// starts a new one: what the first left is redelivered and applied once,
// in order.
func TestRestartMidBatch(t *testing.T) {
	e := newEnv(t, kdsim.Faults{Latency: 2 * time.Millisecond, Jitter: 3 * time.Millisecond})
	evs := e.generate(100, 6, 7)
	e.publish(evs)
	var o *harness.Outcomes
	for round := range 3 {
		stop := e.run(e.options())
		if o == nil {
			o = e.collect()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		want := (round + 1) * len(evs) / 4
		if err := o.WaitFor(ctx, want); err != nil {
			t.Fatal(err)
		}
		cancel()
		stop()
		t.Logf("round %d: stopped after %d outcomes", round, o.Distinct())
	}
	stop := e.run(e.options())
	e.wait(o, len(evs), 60*time.Second)
	stop()
	e.check(evs, o, false)
}

// TestServerRestartSameStore restarts the NATS server on its store while
// the consumer works; the client reconnects and nothing is lost.
func TestServerRestartSameStore(t *testing.T) {
	e := newEnv(t, kdsim.Faults{Latency: time.Millisecond, Jitter: 2 * time.Millisecond})
	evs := e.generate(100, 5, 11)
	e.publish(evs)
	stop := e.run(e.options())
	o := e.collect()
	e.wait(o, len(evs)/3, 30*time.Second)
	if err := e.nats.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("server restarted after %d outcomes", o.Distinct())
	e.wait(o, len(evs), 90*time.Second)
	stop()
	e.check(evs, o, false)
}

// TestShutdownDuringRetry stops the consumer while KooDrive is down and
// events are retrying: they are Nak'd, not dead-lettered, and applied in
// order by the next run once KooDrive is back.
func TestShutdownDuringRetry(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	evs := e.generate(20, 4, 3)
	if err := e.sim.StartOutage(time.Hour); err != nil {
		t.Fatal(err)
	}
	e.publish(evs)
	opts := e.options()
	retries := &retryWatch{}
	opts.Observer = retries
	stop := e.run(opts)
	o := e.collect()
	// Let the lanes fail a few times: 40 calls refused, and at least as
	// many retries scheduled as there are users, so that "no outcome"
	// below follows retries, not a consumer that never tried.
	users := len(harness.UserIDs(evs))
	deadline := time.Now().Add(30 * time.Second)
	for e.sim.Stats().Faults["outage"] < 40 || retries.count() < users {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s of outage: %d calls refused, %d retries scheduled; want 40 and %d", e.sim.Stats().Faults["outage"], retries.count(), users)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if n := o.Distinct(); n != 0 {
		t.Fatalf("%d outcomes after %d retries while KooDrive was down; want none (retries, not dead letters)", n, retries.count())
	}
	e.sim.StopOutage()
	stop = e.run(e.options())
	e.wait(o, len(evs), 60*time.Second)
	stop()
	r := e.check(evs, o, false)
	if r.Events != len(evs) {
		t.Fatalf("checked %d events", r.Events)
	}
}

// retryWatch counts the retries the consumer schedules.
type retryWatch struct {
	mu sync.Mutex
	n  int
}

func (*retryWatch) EventReceived() {}
func (*retryWatch) EventFinished(handlers.Action, outcome.Result, outcome.Reason, time.Duration, bool) {
}
func (r *retryWatch) Retry(string, time.Duration, bool) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
}
func (*retryWatch) BreakerState(int) {}

func (r *retryWatch) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// TestBreakerOpensAndCloses takes KooDrive down for a while: the breaker
// opens (few calls during the outage), then closes and everything is
// applied.
func TestBreakerOpensAndCloses(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	evs := e.generate(200, 2, 5)
	if err := e.sim.StartOutage(time.Hour); err != nil {
		t.Fatal(err)
	}
	states := &breakerWatch{}
	opts := e.options()
	opts.Observer = states
	e.publish(evs)
	stop := e.run(opts)
	o := e.collect()
	// Keep KooDrive down until the breaker has opened and probed a while.
	deadline := time.Now().Add(30 * time.Second)
	for !states.seen(2) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	before := e.sim.Stats().Faults["outage"]
	time.Sleep(2 * time.Second)
	during := e.sim.Stats().Faults["outage"] - before
	e.sim.StopOutage()
	e.wait(o, len(evs), 60*time.Second)
	stop()
	e.check(evs, o, false)
	seen := states.all()
	if len(seen) < 2 || seen[0] != 2 || seen[len(seen)-1] != 0 {
		t.Fatalf("breaker states %v; want open (2) first and closed (0) last", seen)
	}
	// With the breaker open, 2s of outage cost about one probe per 200ms,
	// not 200 users retrying every 10-200ms.
	if during > 40 {
		t.Fatalf("%d calls in 2s with the breaker open; it did not hold them back", during)
	}
	t.Logf("calls in 2s of outage with the breaker open: %d", during)
}

type breakerWatch struct {
	mu     sync.Mutex
	states []int
}

func (*breakerWatch) EventReceived() {}
func (*breakerWatch) EventFinished(handlers.Action, outcome.Result, outcome.Reason, time.Duration, bool) {
}
func (*breakerWatch) Retry(string, time.Duration, bool) {}
func (b *breakerWatch) BreakerState(s int) {
	b.mu.Lock()
	b.states = append(b.states, s)
	b.mu.Unlock()
}

func (b *breakerWatch) all() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.states...)
}

func (b *breakerWatch) seen(s int) bool { return slices.Contains(b.all(), s) }

// TestBadInputDeadLettered sends every malformed class between good
// events: each bad one is dead-lettered with its reason, the DLQ holds the
// original unchanged, and the good ones flow.
func TestBadInputDeadLettered(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	good := e.generate(10, 3, 9)
	type bad struct {
		subject string
		body    string
		header  nats.Header
		reason  outcome.Reason
	}
	valid := func(id, typ, user string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"t","type":"` + typ + `","data":{"userId":"` + user + `","deptId":"1319678187126486147","role":1}}`
	}
	bads := []bad{
		{"identity.employee.hired.900", `{"specversion":"1.0",`, nil, "malformed_json"},
		{"identity.employee.hired.901", `[1,2]`, nil, "malformed_json"},
		{"identity.employee.fired.902", valid("b3", "employee.fired", "902"), nil, "unknown_type"},
		{"identity.employee.changed.903", valid("b4", "employee.hired", "903"), nil, "mismatch"},
		{"identity.employee.hired.904", valid("b5", "employee.hired", "999"), nil, "mismatch"},
		{"identity.employee.hired.905", `{"specversion":"1.0","id":"b6","source":"t","type":"employee.hired","data":{}}`, nil, "missing_field"},
		{"identity.employee.hired.906", `{"specversion":"1.0","id":"b7","source":"t","type":"employee.hired","data":{"userId":"906","role":4}}`, nil, "invalid_field"},
		{"identity.employee.hired.907", `{"specversion":"1.0","id":"b8","source":"t","type":"employee.hired","data":{"userId":"907","deptId":9223372036854775808}}`, nil, "invalid_field"},
		{"identity.employee.hired.908", "{\"specversion\":\"1.0\",\"id\":\"b9\xff\"}", nil, "invalid_utf8"},
		{"identity.employee.hired.909", `{"specversion":"1.0","id":"b10","source":"t","type":"employee.hired","data":{"userId":"909","pad":"` + strings.Repeat("x", 70<<10) + `"}}`, nil, "too_large"},
		// A valid hire into a department KooDrive does not have.
		{"identity.employee.hired.910", `{"specversion":"1.0","id":"b11","source":"t","type":"employee.hired","data":{"userId":"910","deptId":"42","role":1}}`, nats.Header{jetstream.MsgIDHeader: {"orig-910"}}, "permanent"},
		{"identity.employee.hired.911", `{"userId":"911","deptId":"1319678187126486147","role":1}`, nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"b12"}, "ce-source": {"t"}, "ce-type": {"employee.hired"}}, "applied"},
		{"identity.employee.hired.913", `{"specversion":"1.0","id":"b14","source":"t","type":"employee.hired","data":{"userId":"913","role":1}}`, nil, "missing_field"},
		{"identity.employee.changed.912", `{"specversion":"1.0","id":"b13","source":"t","type":"employee.changed","data":{"userId":"912","status":0}}`, nil, "not_found"},
	}

	e.publish(good[:len(good)/2])
	js := e.js()
	ctx := context.Background()
	for _, b := range bads {
		m := &nats.Msg{Subject: b.subject, Data: []byte(b.body), Header: b.header}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish %s: %v", b.subject, err)
		}
	}
	e.publish(good[len(good)/2:])

	stop := e.run(e.options())
	o := e.collect()
	// Outcomes of bad input without an id are keyed by the empty id:
	// count all outcomes instead.
	deadline := time.Now().Add(30 * time.Second)
	for len(o.All()) < len(good)+len(bads) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	all := o.All()
	if len(all) != len(good)+len(bads) {
		t.Fatalf("%d outcomes, want %d", len(all), len(good)+len(bads))
	}
	bySubject := map[string]outcome.Outcome{}
	for _, out := range all {
		bySubject[out.Subject] = out
	}
	for _, b := range bads {
		out, ok := bySubject[b.subject]
		if !ok {
			t.Errorf("%s: no outcome", b.subject)
			continue
		}
		if b.reason == "applied" {
			if out.Result != outcome.Applied {
				t.Errorf("%s: %s (%s), want applied", b.subject, out.Result, out.Error)
			}
			continue
		}
		if out.Result != outcome.Deadlettered || out.Reason != b.reason {
			t.Errorf("%s: %s/%s (%s), want deadlettered/%s", b.subject, out.Result, out.Reason, out.Error, b.reason)
		}
		if out.Error == "" {
			t.Errorf("%s: dead letter without an error message", b.subject)
		}
	}

	// The DLQ holds the originals, byte for byte, with reason headers.
	dlq, err := js.Stream(ctx, "KDSYNC_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(len(bads) - 1); info.State.Msgs != want { // all but the binary-mode hire
		t.Fatalf("DLQ holds %d messages, want %d", info.State.Msgs, want)
	}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		subj := m.Header.Get(outcome.HdrOriginalSubject)
		var orig string
		for _, b := range bads {
			if b.subject == subj {
				orig = b.body
			}
		}
		if string(m.Data) != orig {
			t.Errorf("DLQ copy of %s differs from the original", subj)
		}
		if m.Header.Get(outcome.HdrReason) == "" || m.Header.Get(outcome.HdrErrorClass) == "" || m.Header.Get(outcome.HdrOriginalSeq) == "" {
			t.Errorf("DLQ copy of %s lacks reason headers: %v", subj, m.Header)
		}
		if want := map[bool]string{true: "orig-910"}[strings.HasSuffix(subj, ".910")]; m.Header.Get(outcome.HdrOriginalMsgID) != want {
			t.Errorf("DLQ copy of %s: %s %q, want %q", subj, outcome.HdrOriginalMsgID, m.Header.Get(outcome.HdrOriginalMsgID), want)
		}
	}

	// The good events: applied and in order.
	var goodOut []outcome.Outcome
	for _, out := range all {
		if strings.HasSuffix(out.Subject, ".900") || out.UserID >= "900" && len(out.UserID) == 3 {
			continue
		}
		goodOut = append(goodOut, out)
	}
	r := checker.Check(checker.Input{
		Events:   checkerEvents(good),
		Effects:  e.sim.Effects(userIDs(good)),
		Outcomes: goodOut,
		Final:    filterFinal(e.sim.Final(), userIDs(good)),
	})
	if !r.OK() {
		t.Fatal(r)
	}
	raw, _ := json.Marshal(bySubject["identity.employee.hired.906"])
	t.Logf("a dead-letter outcome: %s", raw)
}

func checkerEvents(evs []workload.Event) []checker.Event {
	out := make([]checker.Event, len(evs))
	for i, e := range evs {
		out[i] = e.Intent
	}
	return out
}

func userIDs(evs []workload.Event) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range evs {
		if !seen[e.UserID] {
			seen[e.UserID] = true
			out = append(out, e.UserID)
		}
	}
	return out
}

func filterFinal(all map[string]checker.UserState, ids []string) map[string]checker.UserState {
	out := map[string]checker.UserState{}
	for _, id := range ids {
		if s, ok := all[id]; ok {
			out[id] = s
		}
	}
	return out
}

// TestReplayStaleAndForced replays a dead letter: older than what was
// applied since, it is skipped as stale; forced, it is applied; a replay
// of the last event is applied although its event id was seen.
func TestReplayStaleAndForced(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	js := e.js()
	ctx := context.Background()
	const user = "1008600000000000777"
	ev := func(id, action, extra string) (string, []byte) {
		return "identity.employee." + action + "." + user,
			[]byte(`{"specversion":"1.0","id":"` + id + `","source":"t","type":"employee.` + action + `","data":{"userId":"` + user + `"` + extra + `}}`)
	}
	pub := func(subject string, body []byte, h nats.Header) uint64 {
		t.Helper()
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: body, Header: h})
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	stop := e.run(e.options())
	o := e.collect()
	// A change before the hire dies (the user does not exist yet).
	s1, b1 := ev("r1", "changed", `,"deptId":"1319678187126486147"`)
	seq1 := pub(s1, b1, nil)
	s2, b2 := ev("r2", "hired", `,"deptId":"1319678187126486144","role":1`)
	pub(s2, b2, nil)
	s3, b3 := ev("r3", "changed", `,"deptId":"1319678187126486148"`)
	pub(s3, b3, nil)
	e.wait(o, 3, 30*time.Second)

	replay := func(force bool) outcome.Outcome {
		t.Helper()
		h := nats.Header{outcome.HdrReplayOf: {"KDSYNC_DLQ:1"}, outcome.HdrOriginalSeq: {strconv.FormatUint(seq1, 10)}}
		if force {
			h.Set(outcome.HdrReplayForce, "true")
		}
		seq := pub(s1, b1, h)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, out := range o.All() {
				if out.Sequence == seq {
					return out
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no outcome for the replay at %d", seq)
		return outcome.Outcome{}
	}
	if out := replay(false); out.Result != outcome.Skipped || out.Reason != outcome.SkipStale {
		t.Fatalf("stale replay: %s/%s (%s), want skipped/stale", out.Result, out.Reason, out.Error)
	}
	if u := e.sim.Final()[user]; u.DeptID != 1319678187126486148 {
		t.Fatalf("a stale replay changed the user: %+v", u)
	}
	if out := replay(true); out.Result != outcome.Applied {
		t.Fatalf("forced replay: %s/%s (%s), want applied", out.Result, out.Reason, out.Error)
	}
	stop()
	if u := e.sim.Final()[user]; u.DeptID != 1319678187126486147 {
		t.Fatalf("forced replay not applied: %+v", u)
	}
}

// TestOutcomeStoredBeforeAck: an event is acknowledged only once its
// outcome is stored. While the outcome stream refuses writes (full, with
// discard new), kdsync applies each user's head event and then holds it,
// retrying the outcome: nothing more is acknowledged; once the stream takes
// writes again everything finishes.
func TestOutcomeStoredBeforeAck(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	evs := e.generate(20, 3, 23)
	stop := e.run(e.options())
	defer stop()
	o := e.collect()
	e.publish(evs[:1])
	e.wait(o, 1, 30*time.Second)

	ctx := t.Context()
	js := e.js()
	outs, err := js.Stream(ctx, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := outs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open := info.Config
	full := open
	full.MaxMsgs, full.Discard = int64(info.State.Msgs), jetstream.DiscardNew
	if _, err := js.UpdateStream(ctx, full); err != nil {
		t.Fatalf("making the outcome stream refuse writes: %v", err)
	}

	e.publish(evs[1:])
	// Every user's hire is applied (its lane then holds it, the outcome
	// refused).
	users := harness.UserIDs(evs)
	deadline := time.Now().Add(30 * time.Second)
	for {
		applied := 0
		for _, u := range users {
			if rec, ok := e.sim.User(u); ok && len(rec.Ops) > 0 {
				applied++
			}
		}
		if applied == len(users) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d users' hires applied in 30s", applied, len(users))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// For a second, while the outcomes are refused, nothing but the first
	// event may be acknowledged.
	cons, err := js.Consumer(ctx, "IDENTITY", "kdsync")
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		acked := len(evs) - int(ci.NumPending) - ci.NumAckPending
		if acked > 1 {
			t.Fatalf("%d events acknowledged while their outcomes could not be stored (ack floor %d, %d pending ack)", acked, ci.AckFloor.Stream, ci.NumAckPending)
		}
	}
	if n := o.Distinct(); n != 1 {
		t.Fatalf("%d outcomes stored while the stream refused them", n)
	}

	if _, err := js.UpdateStream(ctx, open); err != nil {
		t.Fatalf("opening the outcome stream again: %v", err)
	}
	e.wait(o, len(evs), 60*time.Second)
	stop()
	e.check(evs, o, false)
}
