package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
)

// setup creates or binds the streams, the KV bucket and the consumer.
func (c *Consumer) setup(ctx context.Context) error {
	o := c.opts
	if o.Manage {
		if err := c.ensureStream(ctx, jetstream.StreamConfig{
			Name:        o.Stream,
			Subjects:    o.StreamSubjects,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxMsgSize:  o.MaxMsgSize,
			Duplicates:  2 * time.Minute,
			Retention:   jetstream.LimitsPolicy,
			Description: "identity events for kdsync",
		}); err != nil {
			return err
		}
		if err := c.ensureStream(ctx, jetstream.StreamConfig{
			Name:        o.OutcomeStream,
			Subjects:    []string{o.OutcomePrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.OutcomeMaxAge,
			Duplicates:  o.DedupWindow,
			Retention:   jetstream.LimitsPolicy,
			Description: "kdsync: one outcome per identity event",
		}); err != nil {
			return err
		}
		if err := c.ensureStream(ctx, jetstream.StreamConfig{
			Name:        o.DLQStream,
			Subjects:    []string{o.DLQPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DedupWindow,
			Retention:   jetstream.LimitsPolicy,
			Description: "kdsync: dead-lettered identity events, unchanged, with reason headers",
		}); err != nil {
			return err
		}
		kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      o.StateBucket,
			Description: "kdsync: per-user watermark and last applied state",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
		})
		if err != nil {
			return fmt.Errorf("consumer: state bucket %s: %w", o.StateBucket, err)
		}
		c.kv = kv
	} else {
		kv, err := c.js.KeyValue(ctx, o.StateBucket)
		if err != nil {
			return fmt.Errorf("consumer: bind state bucket %s: %w", o.StateBucket, err)
		}
		c.kv = kv
	}
	cons, err := c.bindConsumer(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cons = cons
	c.mu.Unlock()
	return nil
}

func (c *Consumer) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.opts.Consumer,
		Description:   "kdsync: identity events to KooDrive",
		FilterSubject: c.opts.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.opts.AckWait,
		MaxAckPending: c.opts.MaxAckPending,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      0, // as the stream
	}
}

func (c *Consumer) bindConsumer(ctx context.Context) (jetstream.Consumer, error) {
	if c.opts.Manage {
		cons, err := c.js.CreateOrUpdateConsumer(ctx, c.opts.Stream, c.consumerConfig())
		if err != nil {
			return nil, fmt.Errorf("consumer: create consumer %s on %s: %w", c.opts.Consumer, c.opts.Stream, err)
		}
		return cons, nil
	}
	cons, err := c.js.Consumer(ctx, c.opts.Stream, c.opts.Consumer)
	if err != nil {
		return nil, fmt.Errorf("consumer: bind consumer %s on %s: %w", c.opts.Consumer, c.opts.Stream, err)
	}
	return cons, nil
}

// ensureStream creates cfg's stream, or uses an existing one as it is,
// warning where its settings differ from kdsync's.
func (c *Consumer) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	s, err := c.js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := c.js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("consumer: create stream %s: %w", cfg.Name, err)
		}
		c.log.Info("stream created", "stream", cfg.Name, "subjects", cfg.Subjects)
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer: look up stream %s: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	var diffs []string
	for _, subj := range cfg.Subjects {
		if !slices.Contains(have.Subjects, subj) {
			diffs = append(diffs, fmt.Sprintf("subjects %v lack %s", have.Subjects, subj))
		}
	}
	if have.Storage != cfg.Storage {
		diffs = append(diffs, "storage "+have.Storage.String())
	}
	if have.Replicas != cfg.Replicas {
		diffs = append(diffs, fmt.Sprintf("replicas %d", have.Replicas))
	}
	if len(diffs) > 0 {
		c.log.Warn("stream exists with other settings; using it as it is", "stream", cfg.Name, "differences", diffs)
	}
	return nil
}

// scanOrphans reads the messages an earlier run had received but not
// acknowledged (between the consumer's ack floor and its delivered
// sequence) and notes, per user, those above the user's watermark. Such a
// user's newer events wait until these come back (see the package doc).
func (c *Consumer) scanOrphans(ctx context.Context) error {
	info, err := c.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer: consumer info: %w", err)
	}
	floor, delivered := info.AckFloor.Stream, info.Delivered.Stream
	if delivered <= floor {
		return nil
	}
	start := time.Now()
	oc, err := c.js.OrderedConsumer(ctx, c.opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{c.opts.Filter},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    floor + 1,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("consumer: scan unacknowledged range: %w", err)
	}
	pending := make(map[string][]uint64)
	n := 0
scan:
	for {
		batch, err := oc.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("consumer: scan unacknowledged range: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > delivered {
				break scan
			}
			n++
			user := laneKey(m.Subject())
			pending[user] = append(pending[user], md.Sequence.Stream)
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages) {
			return fmt.Errorf("consumer: scan unacknowledged range: %w", batch.Error())
		}
		if got == 0 {
			break
		}
	}
	orphans := make(map[string][]uint64)
	for user, seqs := range pending {
		wm, err := c.loadWatermark(ctx, user)
		if err != nil {
			return err
		}
		for _, s := range seqs {
			if s > wm.rec.Seq {
				orphans[user] = append(orphans[user], s)
			}
		}
	}
	total := 0
	for _, s := range orphans {
		total += len(s)
	}
	c.mu.Lock()
	c.orphans = orphans
	// Orphans come back when their AckWait runs out; past twice that (and
	// a margin) they are taken as gone (acknowledged, or removed from the
	// stream) and no longer hold their users.
	c.orphanBy = time.Now().Add(2*c.opts.AckWait + 5*time.Second)
	c.mu.Unlock()
	c.log.Info("scanned events left unacknowledged by an earlier run",
		"ack_floor", floor, "delivered", delivered, "scanned", n, "users_held", len(orphans),
		"events_awaited", total, "took", time.Since(start))
	return nil
}

// pull consumes until ctx ends, pausing while the breaker is open. A
// watchdog restarts the pull when the server holds pending events but none
// has arrived for stallAfter while kdsync holds nothing: a stuck pull would
// otherwise wait for its expiry.
func (c *Consumer) pull(ctx context.Context) error {
	watch := time.NewTicker(stallAfter / 2)
	defer watch.Stop()
	for {
		cc, err := c.consume()
		if err != nil {
			return err
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				c.stopPulling(cc)
				return nil
			case <-c.breaker.opened():
				c.log.Warn("KooDrive is failing for everyone: pulling paused, probing", "probe_every", c.opts.BreakerProbe)
				c.stopPulling(cc)
				select {
				case <-ctx.Done():
					return nil
				case <-c.breaker.closed():
					c.log.Info("KooDrive answers again: pulling resumed")
					c.wakeParked()
				}
				break wait
			case <-cc.Closed():
				// Consume stopped itself (consumer deleted, or a terminal
				// error): recreate or rebind, then go on.
				if ctx.Err() != nil {
					return nil
				}
				c.log.Warn("consume stopped; rebinding the consumer")
				if err := c.rebind(ctx); err != nil {
					return err
				}
				break wait
			case <-watch.C:
				if c.stalled(ctx) {
					c.log.Warn("no event arrived while the stream holds pending ones; restarting the pull", "idle", stallAfter)
					c.stopPulling(cc)
					break wait
				}
			}
		}
	}
}

// stallAfter is how long the pull may stay idle while events are pending.
const stallAfter = 10 * time.Second

// stalled reports whether nothing arrived for stallAfter, nothing is held,
// and the server says events are pending.
func (c *Consumer) stalled(ctx context.Context) bool {
	if time.Since(time.Unix(0, c.lastDispatch.Load())) < stallAfter {
		return false
	}
	c.mu.Lock()
	held := c.inflight
	c.mu.Unlock()
	if held > 0 {
		return false
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := c.JetStreamConsumer().Info(ictx)
	return err == nil && info.NumPending > 0
}

func (c *Consumer) consume() (jetstream.ConsumeContext, error) {
	cons := c.JetStreamConsumer()
	cc, err := cons.Consume(c.dispatch,
		jetstream.PullMaxMessages(c.opts.PullBatch),
		jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				c.log.Error("consumer deleted on the server", "err", err)
				return
			}
			c.log.Warn("consume error", "err", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("consumer: consume: %w", err)
	}
	return cc, nil
}

// pullExpiry bounds one pull request; shorter than the library's 30s so
// that a lost pull heals sooner.
const pullExpiry = 10 * time.Second

// rebind recreates (when managing) or binds the consumer, retrying with
// backoff until ctx ends.
func (c *Consumer) rebind(ctx context.Context) error {
	wait := time.Second
	for {
		cons, err := c.bindConsumer(ctx)
		if err == nil {
			c.mu.Lock()
			c.cons = cons
			c.mu.Unlock()
			return nil
		}
		c.log.Error("rebinding the consumer failed", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

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

// laneKey is the ordering key of a subject: its user id token, or the whole
// subject (prefixed so it cannot collide with a user) when it has none.
func laneKey(subject string) string {
	if _, user, ok := handlers.ParseSubject(subject); ok {
		return user
	}
	return "!" + subject
}
