package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// stage is how far an event has got.
type stage uint8

const (
	stageNew    stage = iota // not yet decoded
	stageApply               // decoded, KooDrive calls to make
	stageFinish              // outcome decided, to be stored and acked
)

// item is one delivered message held by a lane, with the state of its
// work. Only the worker running the lane touches the work state.
type item struct {
	msg       jetstream.Msg
	src       *source // the partition it came from; nil without partitions
	seq       uint64
	delivered uint64
	received  time.Time
	// lastProgress is when InProgress was last sent (or the receipt);
	// guarded by Consumer.mu.
	lastProgress time.Time

	stage stage
	ev    *handlers.Event
	out   outcome.Outcome
	wm    *watermark
	state *handlers.State // the state an applied event leads to
	calls []string
	bo    backoff.BackOff // retries of KooDrive calls, made at the first failure
	ra    *retryAfter
	last  error         // the last KooDrive failure
	infra time.Duration // wait before retrying a NATS step (watermark, outcome)
	// guard: admitted past the mass-deprovisioning guard; hold to forget
	// once finished.
	guardOK, guardHold bool
	body               []byte // the encoded outcome, once decided
	parkState                 // park.go, budget.go
}

// laneState says where a lane is.
type laneState uint8

const (
	laneIdle    laneState = iota // no worker, not queued (empty, or stopping)
	laneReady                    // in the ready queue
	laneRunning                  // a worker is on it
	laneParked                   // waiting: a retry's backoff, the breaker, or an orphan
)

// lane holds one user's events, sorted by stream sequence. A worker works
// the head; the others wait behind it.
type lane struct {
	key   string
	queue []*item // guarded by Consumer.mu
	state laneState
	// orphan is true while parked for an older event of an earlier run;
	// orphanSeen once the head has waited for one.
	orphan     bool
	orphanSeen bool
	timer      *time.Timer
}

// watermark is the cached KV record of one user.
type watermark struct {
	rec outcome.Record
	rev uint64 // KV revision; 0 when the key does not exist
}

// dispatch is Consume's handler: it never blocks. It puts the message into
// its user's lane and schedules the lane when it is idle.
func (c *Consumer) dispatch(msg jetstream.Msg) { c.dispatchFrom(nil, msg) }

// dispatchFrom is dispatch for a message of source src (nil: the only one).
func (c *Consumer) dispatchFrom(src *source, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack or order.
		c.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	c.obs.EventReceived()
	now := time.Now()
	c.lastDispatch.Store(now.UnixNano())
	it := &item{msg: msg, src: src, seq: md.Sequence.Stream, delivered: md.NumDelivered, received: now, lastProgress: now}
	key := laneKey(msg.Subject())

	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.lanes[key]
	if !ok {
		l = &lane{key: key}
		c.lanes[key] = l
	}
	i := sort.Search(len(l.queue), func(i int) bool { return l.queue[i].seq >= it.seq })
	if i < len(l.queue) && l.queue[i].seq == it.seq {
		// A redelivery of an event held already: that one will be
		// acknowledged (any delivery's ack settles the sequence).
		return
	}
	l.queue = slices.Insert(l.queue, i, it)
	c.inflight++
	switch {
	case l.state == laneIdle && c.stopping.Err() == nil:
		c.schedule(l)
	case l.state == laneParked && l.orphan:
		// An event arrived while the head waited for an older one: look
		// again.
		l.timer.Stop()
		c.schedule(l)
	}
}

// schedule queues l for a worker. Called with c.mu held.
func (c *Consumer) schedule(l *lane) {
	l.state, l.orphan = laneReady, false
	select {
	case c.queue <- l:
	default:
		// The queue holds every lane at most once and is sized for all of
		// them; this is a safety net, not a path.
		go func() { c.queue <- l }()
	}
}

// park lets l wait d before a worker looks at it again. Called with c.mu
// held.
func (c *Consumer) park(l *lane, d time.Duration, orphan bool) {
	l.state, l.orphan = laneParked, orphan
	l.timer = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if l.state == laneParked && c.stopping.Err() == nil {
			c.schedule(l)
		}
	})
}

// wakeParked sends every lane waiting on a retry's backoff to the workers
// at once: KooDrive answers again (the breaker closed).
func (c *Consumer) wakeParked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lanes {
		if l.state == laneParked && !l.orphan && l.timer.Stop() {
			c.schedule(l)
			n++
		}
	}
	if n > 0 {
		c.log.Info("retrying waiting events now that KooDrive answers", "users", n)
	}
}

// worker works ready lanes, one step at a time, until shutdown, while
// the gate lets it.
func (c *Consumer) worker() {
	defer c.workers.Done()
	for c.gate.enter() {
		select {
		case <-c.stopping.Done():
			c.gate.leave()
			return
		case l := <-c.queue:
			c.work(l)
		}
		c.gate.leave()
	}
}

// work takes one step on l's head event, then requeues, parks or removes
// the lane.
func (c *Consumer) work(l *lane) {
	c.mu.Lock()
	if c.stopping.Err() != nil {
		l.state = laneIdle
		c.mu.Unlock()
		return
	}
	if len(l.queue) == 0 {
		c.forgetLane(l)
		l.state = laneIdle
		c.mu.Unlock()
		return
	}
	it := l.queue[0]
	if it.src != nil {
		// Counted before the lease is checked: a release waits for the
		// steps it did not fence out.
		it.src.lease.busy.Add(1)
		defer it.src.lease.busy.Add(-1)
	}
	if it.stage != stageFinish && !leased(it.src) {
		if it.src.held() {
			// The fence fell but the lease may yet be renewed: wait,
			// keeping the user's events here and in order. (Returning
			// them now would let a newer event pulled meanwhile overtake
			// them.)
			c.park(l, fenceWait, false)
			c.mu.Unlock()
			return
		}
		// The partition's lease is gone: another instance works these
		// events, or this one after taking the lease again and scanning
		// for them. Return them to the stream, in order, so that this
		// instance applies nothing more of the partition.
		rest := l.queue
		l.queue = nil
		c.inflight -= len(rest)
		l.state = laneIdle
		c.forgetLane(l)
		c.mu.Unlock()
		c.nakInOrder(rest)
		c.log.Info("events of a partition handed over returned to the stream", "user", l.key, "events", len(rest))
		return
	}
	if it.stage == stageNew {
		wait, overdue := c.orphanWait(l.key, it.seq)
		if wait > 0 && l.orphanSeen {
			// Still waiting after a second: perhaps the earlier holder
			// finished the orphans (another instance, before handing the
			// partition over). Ask the watermark; and for an orphan overdue,
			// whether it is still in the stream at all.
			c.mu.Unlock()
			c.forgetWatermark(l.key)
			wm, err := c.loadWatermark(c.stopping, l.key)
			gone := overdue > 0 && c.deleted(overdue)
			c.mu.Lock()
			if err == nil {
				c.pruneOrphans(l.key, wm.rec.Seq)
			}
			c.settleOverdue(l.key, overdue, gone)
			wait, _ = c.orphanWait(l.key, it.seq)
		}
		if wait > 0 {
			l.orphanSeen = true
			c.park(l, wait, true)
			c.mu.Unlock()
			return
		}
		l.orphanSeen = false
	}
	l.state = laneRunning
	c.mu.Unlock()

	wait, done := c.step(l, it)

	c.mu.Lock()
	defer c.mu.Unlock()
	if done {
		if i := slices.Index(l.queue, it); i >= 0 {
			l.queue = slices.Delete(l.queue, i, i+1)
		}
		c.inflight--
	}
	switch {
	case c.stopping.Err() != nil:
		l.state = laneIdle // shutdown Naks what is left, in order
	case wait > 0:
		c.park(l, wait, false)
	case len(l.queue) > 0:
		c.schedule(l)
	default:
		l.state = laneIdle
		c.forgetLane(l)
	}
}

// forgetLane removes l from the lanes. Called with c.mu held.
func (c *Consumer) forgetLane(l *lane) {
	if c.lanes[l.key] == l {
		delete(c.lanes, l.key)
	}
}

// orphanWait says how long an event at seq of user must wait for older
// unacknowledged events of an earlier holder. overdue is the oldest orphan
// when it is past its expected return (its holder may still be working on
// it, or it may be gone from the stream). Called with c.mu held.
func (c *Consumer) orphanWait(user string, seq uint64) (wait time.Duration, overdue uint64) {
	o, ok := c.orphans[user]
	if !ok {
		return 0, 0
	}
	// An orphan that has come back is the head now (the queue is sorted).
	for len(o.seqs) > 0 && o.seqs[0] == seq {
		o.seqs = o.seqs[1:]
	}
	if len(o.seqs) == 0 {
		delete(c.orphans, user)
		return 0, 0
	}
	c.orphans[user] = o
	if o.seqs[0] > seq {
		return 0, 0
	}
	if time.Until(o.by) <= 0 {
		overdue = o.seqs[0]
	}
	return time.Second, overdue
}

// settleOverdue drops an overdue orphan that is gone from the stream, or
// gives one still there another ack wait: an event is never released
// while an older one of its user may still be applied. Called with c.mu
// held.
func (c *Consumer) settleOverdue(user string, seq uint64, gone bool) {
	o, ok := c.orphans[user]
	if seq == 0 || !ok || len(o.seqs) == 0 || o.seqs[0] != seq {
		return
	}
	if gone {
		c.log.Warn("an event left unacknowledged by an earlier holder is no longer in the stream; releasing its user",
			"user", user, "seq", seq)
		o.seqs = o.seqs[1:]
	} else {
		c.log.Info("still waiting for an older event held by an earlier holder", "user", user, "seq", seq)
		o.by = time.Now().Add(c.opts.AckWait)
	}
	if len(o.seqs) == 0 {
		delete(c.orphans, user)
		return
	}
	c.orphans[user] = o
}

// deleted reports whether the message at seq is gone from the stream.
func (c *Consumer) deleted(seq uint64) bool {
	ctx, cancel := context.WithTimeout(c.stopping, 5*time.Second)
	defer cancel()
	st, err := c.js.Stream(ctx, c.opts.Stream)
	if err != nil {
		return false
	}
	_, err = st.GetMsg(ctx, seq)
	return errors.Is(err, jetstream.ErrMsgNotFound)
}

// pruneOrphans drops user's orphans at or below the watermark: their
// earlier holder finished them after all. Called with c.mu held.
func (c *Consumer) pruneOrphans(user string, wm uint64) {
	o, ok := c.orphans[user]
	if !ok {
		return
	}
	i := 0
	for i < len(o.seqs) && o.seqs[i] <= wm {
		i++
	}
	o.seqs = o.seqs[i:]
	if len(o.seqs) == 0 {
		delete(c.orphans, user)
		return
	}
	c.orphans[user] = o
}

// nakAll returns every held event to the stream, each lane in order, at
// shutdown: the user's events come back in order after a restart.
func (c *Consumer) nakAll() {
	c.mu.Lock()
	var rest []*item
	for key, l := range c.lanes {
		if l.timer != nil {
			l.timer.Stop()
		}
		rest = append(rest, l.queue...)
		l.queue = nil
		delete(c.lanes, key)
	}
	c.inflight = 0
	c.mu.Unlock()
	c.nakInOrder(rest)
	if len(rest) > 0 {
		c.log.Info("events under way returned to the stream", "events", len(rest))
	}
}

// loadWatermark returns user's record, from the cache or else read from
// the KV bucket (and then cached).
func (c *Consumer) loadWatermark(ctx context.Context, user string) (*watermark, error) {
	if wm, ok := c.states.get(user); ok {
		return wm, nil
	}
	wm := &watermark{}
	c.states.reads.Add(1)
	e, err := c.kv.Get(ctx, outcome.KVKey(user))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("read watermark of %s: %w", user, err)
	default:
		rec, err := outcome.DecodeRecord(e.Value())
		if err != nil {
			c.log.Warn("unreadable watermark record; starting afresh", "user", user, "err", err)
		}
		wm.rec = rec
		wm.rev = e.Revision()
	}
	c.states.put(user, wm)
	return wm, nil
}

// forgetWatermark drops a cached record, so that it is read again.
func (c *Consumer) forgetWatermark(user string) {
	c.states.forget(user)
}
