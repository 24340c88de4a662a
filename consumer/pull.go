package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pull consumes from the sources this instance should work until ctx
// ends, pausing while the breaker is open. Without partitions that is the
// one consumer; with them, the partitions this instance owns among the
// live instances (each pinned to one instance at a time by the server).
func (c *Consumer) pull(ctx context.Context) error {
	tick := time.NewTicker(min(time.Second, c.opts.Heartbeat))
	defer tick.Stop()
	running := map[*source]jetstream.ConsumeContext{}
	stopAll := func() {
		for s, cc := range running {
			c.stopPulling(cc)
			delete(running, s)
		}
	}
	closed := make(chan *source, len(c.sources))
	for {
		want := c.owned()
		for s, cc := range running {
			switch {
			case !want[s]:
				// Membership moved it: stop, then hand it over.
				c.stopPulling(cc)
				delete(running, s)
				c.release(ctx, s)
			case s.group != "" && !s.held():
				// The lease was lost (not renewed in time): stop; the
				// instance that took it works it.
				c.stopPulling(cc)
				delete(running, s)
				c.dropPartition(s)
			}
		}
		for _, s := range c.sources {
			if !want[s] && running[s] == nil && s.group != "" && s.held() {
				c.release(ctx, s) // leased, never pulled (or paused): let go
			}
			if !want[s] || running[s] != nil {
				continue
			}
			if s.group != "" && !s.held() && !c.acquire(ctx, s) {
				continue // its earlier holder has not let go yet
			}
			cc, err := c.consume(s)
			if err != nil {
				c.log.Error("consume failed; retrying", "consumer", s.name, "err", err)
				continue
			}
			running[s] = cc
			go func(s *source, cc jetstream.ConsumeContext) {
				<-cc.Closed()
				closed <- s
			}(s, cc)
		}
		select {
		case <-ctx.Done():
			stopAll()
			return nil
		case <-c.breaker.opened():
			c.log.Warn("KooDrive is failing for everyone: pulling paused, probing", "probe_every", c.opts.BreakerProbe)
			stopAll()
			if !c.pausedForBreaker(ctx, tick.C) {
				return nil
			}
			c.log.Info("KooDrive answers again: pulling resumed")
			c.wakeParked()
		case s := <-closed:
			cc := running[s]
			if cc == nil {
				continue // stopped on purpose
			}
			select {
			case <-cc.Closed():
			default:
				continue // an older context of the same source
			}
			delete(running, s)
			if ctx.Err() != nil {
				continue
			}
			c.log.Warn("consume stopped; rebinding the consumer", "consumer", s.name)
			if err := c.bind(ctx, s); err != nil {
				c.log.Error("rebinding the consumer failed", "consumer", s.name, "err", err)
			}
		case <-tick.C:
			if c.parts.n == 0 {
				if cc := running[c.sources[0]]; cc != nil && c.stalled(ctx) {
					c.log.Warn("no event arrived while the stream holds pending ones; restarting the pull", "idle", stallAfter)
					c.stopPulling(cc)
					delete(running, c.sources[0])
				}
			}
		}
	}
}

// pausedForBreaker waits while the breaker is open, still handing over
// the partitions membership moves away meanwhile, so that a joining
// instance is not kept waiting for the outage's end. It returns false when
// ctx ends.
func (c *Consumer) pausedForBreaker(ctx context.Context, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-c.breaker.closed():
			return true
		case <-tick:
			want := c.owned()
			for _, s := range c.sources {
				if !want[s] && s.group != "" && s.held() {
					c.release(ctx, s)
				}
			}
		}
	}
}

func (c *Consumer) consume(s *source) (jetstream.ConsumeContext, error) {
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(c.opts.PullBatch),
		jetstream.PullExpiry(pullExpiry),
		// Idle heartbeats every second: a pull the server no longer holds
		// (seen at high concurrency, nats-io/nats.go#1622) is noticed and
		// re-issued within ~2s instead of two 5s heartbeats.
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(cc jetstream.ConsumeContext, err error) {
			c.log.Warn("consume error", "consumer", s.name, "err", err)
			// A deleted consumer shows as ErrConsumerDeleted, or only as
			// pulls nobody answers; Consume then retries forever. Ask the
			// server, and if the consumer is gone end this Consume: the
			// pull loop rebinds (recreates) it.
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
				errors.Is(err, nats.ErrNoResponders) {
				if s.checking.CompareAndSwap(false, true) {
					go c.checkDeleted(s, cc)
				}
			}
		}),
	}
	if s.group != "" {
		opts = append(opts, jetstream.PullPriorityGroup(s.group))
	}
	cc, err := s.consumer().Consume(func(m jetstream.Msg) { c.receive(s, m) }, opts...)
	if err != nil {
		return nil, fmt.Errorf("consumer: consume %s: %w", s.name, err)
	}
	return cc, nil
}

// receive is a source's message handler. A partition newly pinned to this
// instance is scanned for its earlier holder's unacknowledged events before
// its first message is dispatched.
func (c *Consumer) receive(s *source, m jetstream.Msg) {
	if s.group != "" {
		pin := m.Headers().Get("Nats-Pin-Id")
		s.mu.Lock()
		fresh := pin != s.pin
		s.pin = pin
		s.mu.Unlock()
		if fresh {
			c.log.Info("partition pinned to this instance", "consumer", s.name, "pin", pin)
			// Another instance may have moved these users' watermarks.
			c.states.purge()
			ctx, cancel := context.WithTimeout(c.stopping, 30*time.Second)
			if err := c.scanOrphans(ctx, s); err != nil {
				c.log.Warn("scanning a newly pinned partition failed; its users wait for the ack wait instead", "consumer", s.name, "err", err)
			}
			cancel()
		}
	}
	c.dispatchFrom(s, m)
}

// owned is the set of sources this instance should pull from.
func (c *Consumer) owned() map[*source]bool {
	out := map[*source]bool{}
	if c.parts.n == 0 {
		out[c.sources[0]] = true
		return out
	}
	c.mu.Lock()
	members := c.members
	c.mu.Unlock()
	me := slices.Index(members, c.opts.InstanceID)
	if me < 0 {
		members = append(slices.Clone(members), c.opts.InstanceID)
		slices.Sort(members)
		me = slices.Index(members, c.opts.InstanceID)
	}
	for _, s := range c.sources {
		if s.part%len(members) == me {
			out[s] = true
		}
	}
	return out
}

// pullExpiry bounds one pull request; shorter than the library's 30s so
// that a lost pull heals sooner.
const pullExpiry = 10 * time.Second

// pullHeartbeat is the server's idle heartbeat on a pull; two missed ones
// make nats.go pull again.
const pullHeartbeat = time.Second

// stopPulling drains the consume context: pulls end and what was buffered
// still reaches dispatch, so nothing delivered is left unheld.
func (c *Consumer) stopPulling(cc jetstream.ConsumeContext) {
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(10 * time.Second):
		c.log.Warn("draining the pull took over 10s; stopping it")
		cc.Stop()
	}
}
