package consumer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
)

// partitioning describes how the stream is split by user when several
// instances share the work. With n == 0 there is one consumer.
type partitioning struct {
	n      int
	source []string // tokens of the source pattern, e.g. identity employee * *
}

// transform maps identity.employee.<action>.<user> to
// identity.part.<p>.employee.<action>.<user>, p a hash of the user token.
// The last two tokens stay action and user, so decoding is unchanged.
func (p partitioning) transform() *jetstream.SubjectTransformConfig {
	if p.n == 0 {
		return nil
	}
	dst := []string{p.source[0], "part", fmt.Sprintf("{{partition(%d,%d)}}", p.n, p.wildcards())}
	w := 0
	for _, t := range p.source[1:] {
		if t == "*" {
			w++
			t = fmt.Sprintf("{{wildcard(%d)}}", w)
		}
		dst = append(dst, t)
	}
	return &jetstream.SubjectTransformConfig{Source: strings.Join(p.source, "."), Destination: strings.Join(dst, ".")}
}

func (p partitioning) wildcards() int {
	n := 0
	for _, t := range p.source {
		if t == "*" {
			n++
		}
	}
	return n
}

// filter is the filter subject of partition i.
func (p partitioning) filter(i int) string {
	toks := []string{p.source[0], "part", strconv.Itoa(i)}
	for _, t := range p.source[1:] {
		if t == "*" {
			break
		}
		toks = append(toks, t)
	}
	return strings.Join(append(toks, ">"), ".")
}

func newPartitioning(o Options) (partitioning, error) {
	if o.Partitions == 0 {
		return partitioning{}, nil
	}
	toks := strings.Split(o.PartitionSource, ".")
	if len(toks) < 3 || toks[len(toks)-1] != "*" || toks[len(toks)-2] != "*" || toks[0] == "*" {
		return partitioning{}, fmt.Errorf("partition source %q: want <prefix>.*.* (action and user last)", o.PartitionSource)
	}
	return partitioning{n: o.Partitions, source: toks}, nil
}

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

// scanOrphans reads the messages a consumer's earlier holder had received
// but not acknowledged (between its ack floor and its delivered sequence)
// and notes, per user, those above the user's watermark. Such a user's
// newer events wait until these come back or are acknowledged (see the
// package doc). It runs at start, and whenever a partition is newly pinned
// to this instance.
func (c *Consumer) scanOrphans(ctx context.Context, s *source) error {
	info, err := s.consumer().Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer: consumer info of %s: %w", s.name, err)
	}
	floor, delivered := info.AckFloor.Stream, info.Delivered.Stream
	if delivered <= floor {
		return nil
	}
	start := time.Now()
	oc, err := c.js.OrderedConsumer(ctx, c.opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.filter},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    floor + 1,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("consumer: scan unacknowledged range of %s: %w", s.name, err)
	}
	pending := make(map[string][]uint64)
	n := 0
scan:
	for {
		batch, err := oc.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("consumer: scan unacknowledged range of %s: %w", s.name, err)
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
			return fmt.Errorf("consumer: scan unacknowledged range of %s: %w", s.name, batch.Error())
		}
		if got == 0 {
			break
		}
	}
	by := time.Now().Add(2*c.opts.AckWait + 5*time.Second)
	users, total := 0, 0
	for user, seqs := range pending {
		c.forgetWatermark(user)
		wm, err := c.loadWatermark(ctx, user)
		if err != nil {
			return err
		}
		var keep []uint64
		for _, seq := range seqs {
			if seq > wm.rec.Seq {
				keep = append(keep, seq)
			}
		}
		if len(keep) == 0 {
			continue
		}
		users++
		total += len(keep)
		c.mu.Lock()
		o := c.orphans[user]
		o.seqs = append(o.seqs, keep...)
		slices.Sort(o.seqs)
		o.seqs = slices.Compact(o.seqs)
		o.by = by
		c.orphans[user] = o
		c.mu.Unlock()
	}
	c.log.Info("scanned events left unacknowledged by an earlier holder", "consumer", s.name,
		"ack_floor", floor, "delivered", delivered, "scanned", n, "users_held", users,
		"events_awaited", total, "took", time.Since(start))
	return nil
}

// orphans are one user's events left unacknowledged by an earlier holder.
type orphans struct {
	seqs []uint64
	by   time.Time // after this they are taken as gone
}

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

// beat renews this instance's membership and leases every heartbeat until
// ctx ends. It runs apart from the pull loop, which may wait on a handover.
func (c *Consumer) beat(ctx context.Context) {
	if c.membersKV == nil {
		return
	}
	tk := time.NewTicker(c.opts.Heartbeat)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		c.renewLeases(ctx)
		c.heartbeat(ctx)
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

// heartbeat records this instance in the members bucket and reads who is
// alive: keys expire when an instance stops beating.
func (c *Consumer) heartbeat(ctx context.Context) {
	if c.membersKV == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.membersKV.Put(ctx, "m."+c.opts.InstanceID, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		c.log.Warn("membership heartbeat failed", "err", err)
		return
	}
	lister, err := c.membersKV.ListKeys(ctx)
	if err != nil {
		c.log.Warn("reading members failed", "err", err)
		return
	}
	var ids []string
	for k := range lister.Keys() {
		if id, ok := strings.CutPrefix(k, "m."); ok {
			ids = append(ids, id) // the rest are partition leases
		}
	}
	slices.Sort(ids)
	c.mu.Lock()
	changed := !slices.Equal(ids, c.members)
	c.members = ids
	c.mu.Unlock()
	if changed {
		c.log.Info("instances sharing the stream", "members", ids, "me", c.opts.InstanceID)
	}
}

// leave removes this instance from the members bucket at shutdown, so
// that the others take its partitions at once.
func (c *Consumer) leave() {
	if c.membersKV == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.membersKV.Delete(ctx, "m."+c.opts.InstanceID)
}

// defaultInstanceID is the host name and a random suffix.
func defaultInstanceID() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "kdsync"
	}
	return h + "-" + strings.ToLower(rand.Text()[:6])
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
	info, err := c.sources[0].consumer().Info(ictx)
	return err == nil && info.NumPending > 0
}

// laneKey is the ordering key of a subject: its user id token, or the whole
// subject (prefixed so it cannot collide with a user) when it has none.
func laneKey(subject string) string {
	if _, user, ok := handlers.ParseSubject(subject); ok {
		return user
	}
	return "!" + subject
}
