package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// source is one durable consumer kdsync pulls from: the only one, or one
// partition's.
type source struct {
	name   string
	filter string
	part   int
	group  string // priority group; empty without partitions

	mu   sync.Mutex
	cons jetstream.Consumer
	pin  string // Nats-Pin-Id of the last message: a new one means a new pin

	lease lease // partitions only

	// checking is set while a consume error is being checked for a
	// deleted consumer.
	checking atomic.Bool
}

func (s *source) consumer() jetstream.Consumer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cons
}

// bindSources creates (when managing) or binds every consumer.
func (c *Consumer) bindSources(ctx context.Context) error {
	var srcs []*source
	if c.parts.n == 0 {
		srcs = []*source{{name: c.opts.Consumer, filter: c.opts.Filter}}
	} else {
		for i := range c.parts.n {
			srcs = append(srcs, &source{
				name:   fmt.Sprintf("%s-p%d", c.opts.Consumer, i),
				filter: c.parts.filter(i),
				part:   i,
				group:  c.opts.PriorityGroup,
			})
		}
	}
	for _, s := range srcs {
		if err := c.bind(ctx, s); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.sources = srcs
	c.mu.Unlock()
	return nil
}

func (c *Consumer) bind(ctx context.Context, s *source) error {
	var cons jetstream.Consumer
	var err error
	if c.opts.Manage {
		cfg := jetstream.ConsumerConfig{
			Durable:       s.name,
			Description:   "kdsync: identity events to KooDrive",
			FilterSubject: s.filter,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.opts.AckWait,
			MaxAckPending: c.opts.MaxAckPending,
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}
		if s.group != "" {
			cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
			cfg.PriorityGroups = []string{s.group}
			cfg.PinnedTTL = c.opts.PinnedTTL
		}
		cons, err = c.js.CreateOrUpdateConsumer(ctx, c.opts.Stream, cfg)
	} else {
		cons, err = c.js.Consumer(ctx, c.opts.Stream, s.name)
	}
	if err != nil {
		return fmt.Errorf("consumer: bind consumer %s on %s: %w", s.name, c.opts.Stream, err)
	}
	s.mu.Lock()
	s.cons = cons
	s.mu.Unlock()
	return nil
}

// checkDeleted stops cc when s's consumer no longer exists on the server,
// so that the pull loop recreates it (when managing) and pulls again.
func (c *Consumer) checkDeleted(s *source, cc jetstream.ConsumeContext) {
	defer s.checking.Store(false)
	ctx, cancel := context.WithTimeout(c.stopping, 5*time.Second)
	defer cancel()
	_, err := c.js.Consumer(ctx, c.opts.Stream, s.name)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return // there, or the server cannot tell now: Consume retries
	}
	if !c.opts.Manage {
		c.log.Error("the durable consumer was deleted on the server and kdsync does not manage it: recreate it", "consumer", s.name)
		return
	}
	c.log.Error("the durable consumer was deleted on the server; recreating it", "consumer", s.name)
	cc.Stop()
}

// unpin gives up this instance's pin on a partition it no longer owns, so
// that the owner waiting for it is pinned at once rather than after the
// pinned TTL.
func (c *Consumer) unpin(ctx context.Context, s *source) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.js.Stream(ctx, c.opts.Stream)
	if err == nil {
		err = st.UnpinConsumer(ctx, s.name, s.group)
	}
	if err != nil {
		c.log.Warn("unpinning a partition handed over failed; the new owner gets it after the pinned TTL", "consumer", s.name, "err", err)
		return
	}
	s.mu.Lock()
	s.pin = ""
	s.mu.Unlock()
	c.log.Info("partition handed over", "consumer", s.name)
}
