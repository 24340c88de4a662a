package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// item is one delivered message held by a lane.
type item struct {
	msg       jetstream.Msg
	seq       uint64
	delivered uint64
	received  time.Time
	// lastProgress is when InProgress was last sent (or the receipt).
	lastProgress time.Time
}

// lane holds one user's events, sorted by stream sequence, and works them
// one at a time.
type lane struct {
	key     string
	queue   []*item // sorted by seq; guarded by Consumer.mu
	current *item   // being worked; guarded by Consumer.mu
	wake    chan struct{}
}

// watermark is the cached KV record of one user.
type watermark struct {
	rec Record
	rev uint64 // KV revision; 0 when the key does not exist
}

// dispatch is Consume's handler: it never blocks on KooDrive. It puts the
// message into its user's lane and starts the lane when it is idle.
func (c *Consumer) dispatch(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack or order.
		c.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	c.obs.EventReceived()
	now := time.Now()
	c.lastDispatch.Store(now.UnixNano())
	it := &item{msg: msg, seq: md.Sequence.Stream, delivered: md.NumDelivered, received: now, lastProgress: now}
	key := laneKey(msg.Subject())

	c.mu.Lock()
	l, ok := c.lanes[key]
	if !ok {
		l = &lane{key: key, wake: make(chan struct{}, 1)}
		c.lanes[key] = l
	}
	if l.current != nil && l.current.seq == it.seq {
		// A redelivery of the event under way: that one will be acked.
		c.mu.Unlock()
		return
	}
	i := sort.Search(len(l.queue), func(i int) bool { return l.queue[i].seq >= it.seq })
	switch {
	case i < len(l.queue) && l.queue[i].seq == it.seq:
		l.queue[i] = it // a redelivery: keep the newest handle
	default:
		l.queue = append(l.queue, nil)
		copy(l.queue[i+1:], l.queue[i:])
		l.queue[i] = it
		c.inflight++
	}
	c.mu.Unlock()
	if !ok {
		c.laneWG.Add(1)
		go c.runLane(l)
		return
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// runLane works a lane until it is empty, then removes it.
func (c *Consumer) runLane(l *lane) {
	defer c.laneWG.Done()
	for {
		it, wait := c.nextItem(l)
		if it == nil && wait == 0 {
			return
		}
		if it == nil {
			// The head must wait for an older orphan to come back.
			t := time.NewTimer(wait)
			select {
			case <-l.wake:
			case <-t.C:
			case <-c.stopping.Done():
			}
			t.Stop()
			continue
		}
		if c.stopping.Err() != nil {
			c.nakRest(l, it)
			continue
		}
		c.process(l, it)
		c.mu.Lock()
		l.current = nil
		c.inflight--
		c.mu.Unlock()
	}
}

// nextItem takes the lane's head when it may run. It returns (nil, d>0)
// when the head waits for an orphan, and (nil, 0) after removing an empty
// lane.
func (c *Consumer) nextItem(l *lane) (*item, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(l.queue) == 0 {
		delete(c.lanes, l.key)
		return nil, 0
	}
	head := l.queue[0]
	if c.stopping.Err() == nil {
		if wait := c.orphanWait(l.key, head.seq); wait > 0 {
			return nil, wait
		}
	}
	l.queue = l.queue[1:]
	l.current = head
	return head, 0
}

// orphanWait says how long an event at seq of user must wait for older
// unacknowledged events of an earlier run. Called with c.mu held.
func (c *Consumer) orphanWait(user string, seq uint64) time.Duration {
	os := c.orphans[user]
	if len(os) == 0 {
		return 0
	}
	// Drop orphans that have arrived (they are at or below seq now that the
	// head is seq and the queue is sorted: an arrived orphan is the head).
	for len(os) > 0 && os[0] == seq {
		os = os[1:]
	}
	if len(os) == 0 {
		delete(c.orphans, user)
		return 0
	}
	c.orphans[user] = os
	if os[0] > seq {
		return 0
	}
	left := time.Until(c.orphanBy)
	if left <= 0 {
		c.log.Warn("events left unacknowledged by an earlier run did not come back; releasing the user",
			"user", user, "sequences", os)
		delete(c.orphans, user)
		return 0
	}
	return min(left, time.Second)
}

// nakRest Naks it and everything queued behind it, in order, so that the
// user's events come back in order after a restart.
func (c *Consumer) nakRest(l *lane, it *item) {
	c.mu.Lock()
	rest := append([]*item{it}, l.queue...)
	l.queue = nil
	l.current = nil
	c.inflight -= len(rest)
	c.mu.Unlock()
	for _, r := range rest {
		if err := r.msg.Nak(); err != nil {
			c.log.Debug("nak failed; the event comes back after its ack wait", "seq", r.seq, "err", err)
		}
	}
}

// loadWatermark returns user's cached record, reading it from KV the first
// time.
func (c *Consumer) loadWatermark(ctx context.Context, user string) (*watermark, error) {
	c.mu.Lock()
	wm, ok := c.wm[user]
	c.mu.Unlock()
	if ok {
		return wm, nil
	}
	wm = &watermark{}
	e, err := c.kv.Get(ctx, KVKey(user))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("read watermark of %s: %w", user, err)
	default:
		if err := json.Unmarshal(e.Value(), &wm.rec); err != nil {
			c.log.Warn("unreadable watermark record; starting afresh", "user", user, "err", err)
		}
		wm.rev = e.Revision()
	}
	c.mu.Lock()
	if len(c.wm) >= maxCachedWatermarks {
		clear(c.wm) // crude bound: records are re-read on demand
	}
	c.wm[user] = wm
	c.mu.Unlock()
	return wm, nil
}

const maxCachedWatermarks = 200_000

// forgetWatermark drops a cached record, so that it is read again.
func (c *Consumer) forgetWatermark(user string) {
	c.mu.Lock()
	delete(c.wm, user)
	c.mu.Unlock()
}
