package consumer

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Partition leases fence the work of a partition to one instance at a time.
//
// Membership says which instance should work a partition; the lease says
// which one may. A lease is a key p.<partition> in the members bucket,
// created by its holder and renewed with every heartbeat; the bucket's TTL
// expires it when its holder stops renewing. An instance pulls a
// partition only while it holds its lease, and its KooDrive calls for the
// partition run under the lease's fence: a context cancelled when the
// lease is released or lost, or two heartbeats after its last renewal. So
// an old holder's call never starts, and one under way is abandoned,
// before a new holder can take the lease.
//
// Abandoned is not undone: a request sent before the fence fell may still
// wait at KooDrive, which would apply it after the new holder's first call
// for the same user (out of order, or twice). So the lease outlives the
// fence by a heartbeat and Options.LapseGrace (KooDrive's call timeout):
// the bucket's TTL is three heartbeats and the grace, and the lease of a
// holder that stopped renewing it is taken only once such a request has
// had the time to land. A lease handed over is deleted, and taken at
// once.
//
// A holder that should no longer work a partition stops pulling it,
// cancels the fence, lets the partition's steps under way end, returns
// its held events of the partition to the stream (Nak, in order) and only
// then deletes the lease and unpins the consumer: the new holder, waiting
// to create the lease, starts after the old one has stopped.

// Leads reports whether this instance is the one to run work that must
// run on one instance only (periodic reconciliation): always without
// partitions, else while it holds partition 0's lease.
func (c *Consumer) Leads() bool {
	if c.parts.n == 0 {
		return true
	}
	c.mu.Lock()
	srcs := c.sources
	c.mu.Unlock()
	return len(srcs) > 0 && leased(srcs[0])
}

// fenceWait is how long a lane waits, keeping its events, while its
// partition's fence is down but the lease still held.
const fenceWait = 50 * time.Millisecond

// leaseKey is the members-bucket key of partition p's lease.
func leaseKey(p int) string { return "p." + strconv.Itoa(p) }

// lease is a source's lease state. rev and the fence are guarded by
// source.mu; busy counts the partition's steps under way.
type lease struct {
	rev     uint64 // KV revision of our lease; 0: not held
	failing bool   // renewals failing (logged once)
	fence   context.Context
	cancel  context.CancelFunc
	timer   *time.Timer
	busy    atomic.Int32
	// live mirrors fence.Err() == nil for lock-free reads; false for a
	// partition never leased.
	live atomic.Bool
}

// leaseValidity is how long a lease renewed at start may be used: a
// heartbeat and the lapse grace less than the bucket's TTL, so that the
// holder stops, and its last calls land, before the server lets another
// instance take it.
func (c *Consumer) leaseValidity() time.Duration { return 2 * c.opts.Heartbeat }

// leased reports whether this instance may work s now. Without partitions
// it always may.
func leased(s *source) bool { return s == nil || s.group == "" || s.lease.live.Load() }

// held reports whether this instance holds s's lease (it may be between a
// lapse of its fence and a renewal).
func (s *source) held() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease.rev != 0
}

// setLease records a lease at rev, usable until start plus the validity,
// and arms (or re-arms) the fence. Called with s.mu held.
func (c *Consumer) setLease(s *source, rev uint64, start time.Time) {
	l := &s.lease
	l.rev = rev
	left := time.Until(start.Add(c.leaseValidity()))
	if l.fence == nil || l.fence.Err() != nil {
		l.fence, l.cancel = context.WithCancel(context.Background())
		cancel := l.cancel
		fence := l.fence
		l.timer = time.AfterFunc(left, func() {
			s.mu.Lock()
			if s.lease.fence == fence {
				s.lease.live.Store(false) // before the cancel: a fallen fence never reads leased
			}
			s.mu.Unlock()
			cancel()
		})
		l.live.Store(left > 0)
		return
	}
	l.timer.Reset(left)
}

// fenceOff cancels s's fence: calls under way for the partition are
// abandoned and no new step starts. Called with s.mu held.
func (s *source) fenceOff() {
	l := &s.lease
	l.live.Store(false)
	if l.cancel != nil {
		l.timer.Stop()
		l.cancel()
	}
}

// fenced returns ctx cancelled also when s's fence is; stop releases it.
func fenced(ctx context.Context, s *source) (context.Context, func()) {
	if s == nil || s.group == "" {
		return ctx, func() {}
	}
	s.mu.Lock()
	fence := s.lease.fence
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	if fence == nil {
		cancel() // never leased: no call may run
		return ctx, cancel
	}
	stop := context.AfterFunc(fence, cancel)
	return ctx, func() { stop(); cancel() }
}

// acquire tries to take s's lease: it succeeds when no other instance
// holds it.
func (c *Consumer) acquire(ctx context.Context, s *source) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	rev, err := c.membersKV.Create(ctx, leaseKey(s.part), []byte(c.opts.InstanceID))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			holder := "?"
			if e, gerr := c.membersKV.Get(ctx, leaseKey(s.part)); gerr == nil {
				holder = string(e.Value())
			}
			c.log.Debug("partition still leased to another instance; waiting", "consumer", s.name, "holder", holder)
		} else {
			c.log.Warn("taking a partition's lease failed", "consumer", s.name, "err", err)
		}
		return false
	}
	s.mu.Lock()
	c.setLease(s, rev, start)
	// Its first message counts as a new pin, also when the server kept
	// this instance's pin: events this instance returned to the stream
	// when it lost the lease are scanned for and awaited, and the
	// watermarks another holder may have moved are read afresh.
	s.pin = ""
	s.mu.Unlock()
	c.log.Info("partition leased", "consumer", s.name)
	return true
}

// renewLeases renews every lease this instance holds. A lease found taken
// or gone is dropped: its fence cancelled, its partition no longer pulled.
func (c *Consumer) renewLeases(ctx context.Context) {
	for _, s := range c.sources {
		s.mu.Lock()
		rev := s.lease.rev
		s.mu.Unlock()
		if rev == 0 {
			continue
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, c.opts.Heartbeat)
		next, err := c.membersKV.Update(rctx, leaseKey(s.part), []byte(c.opts.InstanceID), rev)
		cancel()
		s.mu.Lock()
		switch {
		case s.lease.rev != rev:
			// Released meanwhile.
		case err == nil:
			c.setLease(s, next, start)
			s.lease.failing = false
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			// Expired and taken, or expired: either way no longer ours.
			s.fenceOff()
			s.lease.rev = 0
			c.log.Warn("a partition's lease lapsed; another instance may hold it now", "consumer", s.name)
		case !s.lease.failing:
			// Left to the fence: it lapses unless a renewal succeeds in
			// time. Said once per run of failures.
			s.lease.failing = true
			c.log.Warn("renewing a partition's lease failed; its calls stop if it lapses", "consumer", s.name, "err", err)
		}
		s.mu.Unlock()
	}
}

// release hands s over: the fence is cancelled, the partition's steps
// under way end, its held events go back to the stream in order, then the
// lease is deleted and the consumer unpinned, so that the instance waiting
// for it starts at once.
func (c *Consumer) release(ctx context.Context, s *source) {
	s.mu.Lock()
	rev := s.lease.rev
	// Not renewed any more, and the lanes return the partition's events
	// from here on.
	s.lease.rev = 0
	s.fenceOff()
	s.mu.Unlock()
	if rev == 0 {
		return // lost already: the pin may be another instance's now
	}
	deadline := time.Now().Add(c.opts.ShutdownTimeout)
	for s.lease.busy.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.lease.busy.Load(); n > 0 {
		// Calls abandoned on the fence should end at once; a step stuck
		// in NATS leaves the lease to lapse instead.
		c.log.Warn("steps of a partition handed over did not end; its lease is left to lapse", "consumer", s.name, "steps", n)
		return
	}
	c.dropPartition(s)
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := c.membersKV.Delete(dctx, leaseKey(s.part), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// A renewal under way when the release began moved the revision:
		// still ours if it still names this instance.
		if e, gerr := c.membersKV.Get(dctx, leaseKey(s.part)); gerr == nil && string(e.Value()) == c.opts.InstanceID {
			err = c.membersKV.Delete(dctx, leaseKey(s.part), jetstream.LastRevision(e.Revision()))
		}
	}
	if err != nil {
		c.log.Warn("deleting a partition's lease failed; it lapses after the members TTL", "consumer", s.name, "err", err)
	}
	c.unpin(dctx, s)
}

// dropPartition takes the events of s out of the parked lanes (all but
// those whose outcome is decided: their effect is done, they finish here)
// and Naks them in stream order, so that the partition's next holder gets
// them at once rather than after a retry's backoff. Lanes ready or running
// drop theirs when a worker next looks at them.
func (c *Consumer) dropPartition(s *source) {
	var rest []*item
	c.mu.Lock()
	for key, l := range c.lanes {
		if l.state != laneParked || len(l.queue) == 0 || l.queue[0].src != s {
			continue // a lane ready or running: its worker drops the events
		}
		kept := l.queue[:0]
		for _, it := range l.queue {
			if it.stage == stageFinish {
				kept = append(kept, it)
			} else {
				rest = append(rest, it)
			}
		}
		clear(l.queue[len(kept):])
		l.queue = kept
		if len(kept) == 0 {
			l.timer.Stop() // a timer that fired already finds the lane idle
			l.state = laneIdle
			delete(c.lanes, key)
		}
	}
	c.inflight -= len(rest)
	c.mu.Unlock()
	c.nakInOrder(rest)
	if len(rest) > 0 {
		c.log.Info("events of a partition handed over returned to the stream", "consumer", s.name, "events", len(rest))
	}
}

// nakInOrder returns items to the stream, oldest first.
func (c *Consumer) nakInOrder(items []*item) {
	sort.Slice(items, func(i, j int) bool { return items[i].seq < items[j].seq })
	for _, it := range items {
		if err := it.msg.Nak(); err != nil {
			c.log.Debug("nak failed; the event comes back after its ack wait", "seq", it.seq, "err", err)
		}
	}
}

// releaseAll hands every partition over at shutdown, after the events
// under way were finished or returned.
func (c *Consumer) releaseAll() {
	if c.membersKV == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range slices.Clone(c.sources) {
		c.release(ctx, s)
	}
}
