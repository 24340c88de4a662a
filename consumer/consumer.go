// Package consumer runs kdsync's pipeline: a durable JetStream pull consumer
// whose events are applied to KooDrive in per-user lanes.
//
// Ordering rule: events of one user (the last token of the subject) are
// applied strictly in stream order. Each user has a lane that works its
// events one at a time, in stream-sequence order; a lane that retries blocks
// only its own user, and no later event of that user overtakes it. Lanes of
// different users run in parallel; Options.Concurrency bounds how many
// KooDrive calls are under way at once.
//
// Across redeliveries and restarts order is kept by two means. A KV bucket
// holds, per user, the stream sequence of the last finished event (the
// watermark, written with compare-and-set before the ack): anything at or
// below it is a duplicate and is skipped without calling KooDrive. The
// records most recently used are cached within Options.StateCache (least
// recently used evicted first); an evicted record is read again at its
// user's next event, so memory stays bounded however many users there
// are, and the bucket, not the cache, is what decides. And at
// start the consumer reads the range of messages delivered but not yet
// acknowledged by an earlier run: a user with such an orphan waits until it
// comes back, so a newer event never runs ahead of an older one that a crash
// left unacknowledged.
//
// Every event ends in exactly one outcome, stored before the ack: applied,
// skipped or deadlettered. Transient KooDrive failures are retried with
// exponential backoff for Options.RetryBudget and are never dead-lettered
// before it runs out; when KooDrive fails for everyone a circuit breaker
// stops pulling and probes at a slow rate.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// Applier applies one event to KooDrive: a *handlers.Handler, or a
// decorator of one (handlers.Shadow). known is the user's state as the
// user's record has it, nil when no event of the user was applied yet.
type Applier interface {
	Apply(ctx context.Context, ev *handlers.Event, known *handlers.State) (handlers.Result, error)
}

// Options configure a Consumer. Zero values take the defaults below.
type Options struct {
	// Conn is the NATS connection; the caller owns it (see Connect).
	Conn *nats.Conn

	Stream         string   // default IDENTITY
	StreamSubjects []string // subjects of a stream kdsync creates; default identity.>
	Consumer       string   // durable name; default kdsync
	Filter         string   // default identity.employee.>
	// Manage creates or updates the stream, consumer, outcome and DLQ
	// streams and KV bucket. When false they must exist and are bound as
	// they are.
	Manage bool
	// Replicas for the streams and bucket kdsync creates; default 1.
	Replicas int
	// MaxMsgSize of a stream kdsync creates; default 1 MiB.
	MaxMsgSize int32

	OutcomeStream string // default KDSYNC_OUTCOMES
	OutcomePrefix string // default kdsync.outcome
	DLQStream     string // default KDSYNC_DLQ
	DLQPrefix     string // default kdsync.dlq
	StateBucket   string // default KDSYNC_STATE
	// OutcomeMaxAge bounds how long outcomes are kept; default 7 days.
	OutcomeMaxAge time.Duration
	// DedupWindow of the outcome stream, within which a redelivered event's
	// second outcome is dropped; default 1h.
	DedupWindow time.Duration

	// Concurrency bounds KooDrive calls under way at once; default 64.
	// It is the number of workers, each stepping one event at a time.
	Concurrency int
	// Workers, when set, says how many of them may step at once now (at
	// most Concurrency): the service ties it to the throttle's limit, so
	// that events are not taken up (decoded, their records read, held)
	// faster than KooDrive calls can be made for them. It is called
	// often; it must be cheap.
	Workers func() int
	// MaxAckPending bounds events held unacknowledged; default 1024.
	MaxAckPending int
	// PullBatch is the pull batch size; default MaxAckPending. One pull
	// request then covers the whole ack window: with many small ones
	// (128 against 1024) the server was seen to drop one now and then
	// at a few thousand events/s, so that nothing arrived until two
	// missed heartbeats had the pull re-issued (about 2 s each time,
	// docs/performance.md).
	PullBatch int
	// AckWait is the server's redelivery timer; in-progress signals keep
	// events being worked alive. Default 30s.
	AckWait time.Duration

	// RetryBudget is how long an event's transient failures are retried
	// before it is dead-lettered; default 6h.
	RetryBudget time.Duration
	// RetryInitial and RetryMax shape the exponential backoff; defaults
	// 200ms and 1m.
	RetryInitial time.Duration
	RetryMax     time.Duration

	// BreakerMinRequests and BreakerFailureRatio trip the breaker: over the
	// last BreakerWindow, at least that many attempts of which at least
	// that share failed transiently. Defaults 20, 0.5, 30s.
	BreakerMinRequests  uint32
	BreakerFailureRatio float64
	BreakerWindow       time.Duration
	// BreakerProbe is how often an open breaker lets one attempt through;
	// default 5s.
	BreakerProbe time.Duration

	// ShutdownTimeout bounds the graceful stop; default 20s.
	ShutdownTimeout time.Duration

	// StateCache bounds the cache of per-user records read from the
	// state bucket: a number of entries ("20000"), or a memory budget
	// ("4MiB"); "0" reads the record of every event. The least recently
	// used records are evicted past it. Default DefaultStateCache.
	StateCache string

	// Partitions splits the stream by user into this many partitions, each
	// a durable consumer <Consumer>-p<i> pinned to one instance at a time,
	// so that several instances share the work and per-user order holds.
	// 0 (the default) means one consumer and one instance.
	Partitions int
	// PartitionSource is the subject pattern partitioned on, its last two
	// tokens the action and the user; default identity.employee.*.*.
	PartitionSource string
	// PriorityGroup of the pinned partition consumers; default kdsync.
	PriorityGroup string
	// PinnedTTL is how soon a silent instance loses its partitions;
	// default 10s.
	PinnedTTL time.Duration
	// InstanceID names this instance among those sharing the stream;
	// default host name plus a random suffix.
	InstanceID string
	// Heartbeat is how often an instance renews its membership; default 2s.
	Heartbeat time.Duration
	// LapseGrace is how much longer a partition's lease outlives the
	// fence of a holder that stopped renewing it (a crash, a hang, a cut):
	// the longest a KooDrive call that holder sent before its fence fell
	// may still be applied, so that it lands before the next holder's
	// first call for the same user (lease.go). A lease handed over is
	// taken at once. Default 10s, KooDrive's default call timeout.
	LapseGrace time.Duration
	// MembersBucket is the KV bucket of live instances; default
	// KDSYNC_MEMBERS.
	MembersBucket string

	Handler Applier
	Decoder handlers.Decoder
	// DeprovisionLimit, when set (N > 0), is the mass-deprovisioning
	// guard: past N disables and deletes per window, further ones are held
	// until an operator releases or rejects them (kdsync guard).
	DeprovisionLimit guard.Limit
	// GuardBucket is the guard's KV bucket; default KDSYNC_GUARD.
	GuardBucket string
	// ParkStream keeps the events the guard holds, and the later events
	// of their users, out of the ack window until an operator decides
	// (see park.go); subjects <ParkPrefix>.<user key>. Defaults
	// KDSYNC_PARKED and kdsync.parked.
	ParkStream string
	ParkPrefix string
	// NoDLQ: dead letters are told by their outcomes only, not copied
	// into the DLQ stream (which need not exist when binding). Shadow mode
	// sets it: the DLQ is the active instances', and a replay from it
	// writes.
	NoDLQ bool

	// Injected dependencies.
	Logger   *slog.Logger
	Observer Observer
}

func (o *Options) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Stream, outcome.DefaultStream)
	def(&o.Consumer, outcome.DefaultDurable)
	def(&o.Filter, "identity.employee.>")
	def(&o.OutcomeStream, outcome.DefaultOutcomeStream)
	def(&o.OutcomePrefix, outcome.DefaultOutcomePrefix)
	def(&o.DLQStream, outcome.DefaultDLQStream)
	def(&o.DLQPrefix, outcome.DefaultDLQPrefix)
	def(&o.StateBucket, outcome.DefaultStateBucket)
	def(&o.PartitionSource, "identity.employee.*.*")
	def(&o.PriorityGroup, "kdsync")
	def(&o.MembersBucket, outcome.DefaultMembersBucket)
	def(&o.GuardBucket, outcome.DefaultGuardBucket)
	def(&o.ParkStream, outcome.DefaultParkStream)
	def(&o.ParkPrefix, outcome.DefaultParkPrefix)
	def(&o.StateCache, DefaultStateCache)
	if o.InstanceID == "" {
		o.InstanceID = defaultInstanceID()
	}
	if len(o.StreamSubjects) == 0 {
		o.StreamSubjects = []string{"identity.>"}
	}
	defD := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defD(&o.OutcomeMaxAge, 7*24*time.Hour)
	defD(&o.DedupWindow, time.Hour)
	defD(&o.AckWait, 30*time.Second)
	defD(&o.RetryBudget, 6*time.Hour)
	defD(&o.RetryInitial, 200*time.Millisecond)
	defD(&o.RetryMax, time.Minute)
	defD(&o.BreakerWindow, 30*time.Second)
	defD(&o.BreakerProbe, 5*time.Second)
	defD(&o.ShutdownTimeout, 20*time.Second)
	defD(&o.PinnedTTL, 10*time.Second)
	defD(&o.Heartbeat, 2*time.Second)
	defD(&o.LapseGrace, 10*time.Second)
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MaxMsgSize == 0 {
		o.MaxMsgSize = 1 << 20
	}
	if o.Concurrency == 0 {
		o.Concurrency = 64
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 1024
	}
	if o.PullBatch == 0 {
		o.PullBatch = o.MaxAckPending
	}
	if o.BreakerMinRequests == 0 {
		o.BreakerMinRequests = 20
	}
	if o.BreakerFailureRatio == 0 {
		o.BreakerFailureRatio = 0.5
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

// Check reports every problem with o's settings, with New's defaults
// filled in, needing neither a connection nor a handler: kdsync run calls
// it before it dials NATS, so a bad setting fails at once.
func (o Options) Check() error {
	o.setDefaults()
	if err := errors.Join(o.settingErrors()...); err != nil {
		return fmt.Errorf("consumer: invalid options: %w", err)
	}
	return nil
}

func (o *Options) validate() error {
	var errs []error
	if o.Conn == nil {
		errs = append(errs, errors.New("a NATS connection (Options.Conn) is required"))
	}
	if o.Handler == nil {
		errs = append(errs, errors.New("a handler (Options.Handler) is required"))
	}
	errs = append(errs, o.settingErrors()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consumer: invalid options: %w", err)
	}
	return nil
}

// settingErrors checks the settings that need no connection.
func (o *Options) settingErrors() []error {
	var errs []error
	if o.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", o.Concurrency))
	}
	if o.MaxAckPending < o.Concurrency {
		errs = append(errs, fmt.Errorf("max ack pending %d: must be at least the concurrency %d", o.MaxAckPending, o.Concurrency))
	}
	if o.PullBatch < 1 {
		errs = append(errs, fmt.Errorf("pull batch %d: must be at least 1", o.PullBatch))
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: must be 1 to 5", o.Replicas))
	}
	for name, d := range map[string]time.Duration{
		"ack wait": o.AckWait, "retry budget": o.RetryBudget, "retry initial": o.RetryInitial,
		"retry max": o.RetryMax, "breaker window": o.BreakerWindow, "breaker probe": o.BreakerProbe,
		"shutdown timeout": o.ShutdownTimeout, "dedup window": o.DedupWindow, "outcome max age": o.OutcomeMaxAge,
		"lapse grace": o.LapseGrace,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must not be negative", name, d))
		}
	}
	if o.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack wait %s: must be at least 1s", o.AckWait))
	}
	if o.Partitions < 0 || o.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("partitions %d: must be 0 to 1024", o.Partitions))
	}
	if _, err := newPartitioning(*o); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseCacheSize(o.StateCache); err != nil {
		errs = append(errs, err)
	}
	if o.BreakerFailureRatio <= 0 || o.BreakerFailureRatio > 1 {
		errs = append(errs, fmt.Errorf("breaker failure ratio %g: must be in (0, 1]", o.BreakerFailureRatio))
	}
	return errs
}

// Consumer is kdsync's pipeline. Create it with New, run it with Run.
type Consumer struct {
	opts    Options
	log     *slog.Logger
	obs     Observer
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	parts   partitioning
	sources []*source // set by setup, read-only after

	membersKV jetstream.KeyValue
	guard     *guard.Store // nil without a deprovision limit
	guardHeld atomic.Int64 // held events pending a decision, of this instance's partitions
	parking   jetstream.Stream
	gate      *gate        // the workers stepping at once
	parkedN   atomic.Int64 // events parked, of this instance's partitions

	queue   chan *lane // lanes waiting for a worker
	breaker *breaker

	mu       sync.Mutex
	lanes    map[string]*lane
	orphans  map[string]orphans // per user, sequences left unacked by an earlier holder
	members  []string           // live instances, sorted
	states   *stateCache        // per-user records; safe without mu
	inflight int
	ready    bool
	// lastDispatch is when a message last arrived (UnixNano).
	lastDispatch atomic.Int64

	workers sync.WaitGroup
	// stopping is cancelled when shutdown starts: backoff sleeps and
	// breaker waits end, no new event starts.
	stopping context.Context
	stop     context.CancelFunc
	// hard is cancelled when the shutdown deadline passes: calls under way
	// are abandoned.
	hard     context.Context
	hardStop context.CancelFunc
}

// New validates opts and returns a Consumer. It connects to nothing.
func New(opts Options) (*Consumer, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c := &Consumer{
		opts:  opts,
		log:   opts.Logger,
		obs:   opts.Observer,
		queue: make(chan *lane, opts.MaxAckPending+opts.Concurrency+64),
		gate:  newGate(opts.Workers),
		lanes: make(map[string]*lane),
	}
	size, _ := ParseCacheSize(opts.StateCache) // validated
	c.states = newStateCache(size)
	c.breaker = newBreaker(opts, c.log, c.obs)
	c.parts, _ = newPartitioning(opts) // validated
	c.orphans = make(map[string]orphans)
	return c, nil
}

// Ready reports whether the consumer is bound and not shutting down, for a
// readiness probe.
func (c *Consumer) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready && c.opts.Conn.IsConnected()
}

// Stats is a snapshot for gauges.
type Stats struct {
	Lanes     int // users with events held
	InFlight  int // events held, unacknowledged
	Oldest    time.Duration
	GuardHeld int // deprovisioning events held for an operator
	// Parked is how many events are parked (held ones and the later events
	// of their users), out of the ack window.
	Parked int
	// State: the per-user records' cache and KV reads and writes.
	State StateStats
}

// Stats returns the current lane figures.
func (c *Consumer) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Lanes: len(c.lanes), InFlight: c.inflight, GuardHeld: int(c.guardHeld.Load()), Parked: int(c.parkedN.Load()), State: c.states.stats()}
	now := time.Now()
	for _, l := range c.lanes {
		if len(l.queue) > 0 {
			if age := now.Sub(l.queue[0].received); age > s.Oldest {
				s.Oldest = age
			}
		}
	}
	return s
}

// JetStreamConsumers returns the bound consumers this instance works, for
// lag gauges from their Info: the only one, or with partitions those whose
// lease it holds (so that each instance reports its own share, and the
// instances' figures add up). None before Run binds them.
func (c *Consumer) JetStreamConsumers() []jetstream.Consumer {
	c.mu.Lock()
	srcs := c.sources
	c.mu.Unlock()
	if len(srcs) == 0 {
		return nil
	}
	out := make([]jetstream.Consumer, 0, len(srcs))
	for _, s := range srcs {
		if s.group == "" || s.held() {
			out = append(out, s.consumer())
		}
	}
	return out
}

// Run binds the streams and consumer, then works events until ctx is
// cancelled, then shuts down gracefully: it stops pulling, lets calls under
// way finish within ShutdownTimeout, and Naks what remains so it comes back
// in order. It returns nil after a clean shutdown.
func (c *Consumer) Run(ctx context.Context) error {
	js, err := jetstream.New(c.opts.Conn)
	if err != nil {
		return fmt.Errorf("consumer: jetstream: %w", err)
	}
	c.js = js
	if err := c.setup(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	if c.parts.n == 0 {
		if err := c.scanOrphans(ctx, c.sources[0]); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	c.stopping, c.stop = context.WithCancel(context.WithoutCancel(ctx))
	c.hard, c.hardStop = context.WithCancel(context.WithoutCancel(ctx))
	defer c.hardStop()

	tick := newTicker(c)
	go tick.run(c.stopping)
	parkDone := c.startParkLoop(c.stopping)
	// Workers bound the KooDrive calls under way: one call per worker.
	context.AfterFunc(c.stopping, c.gate.close)
	c.gate.start(c.opts.Concurrency, func() {
		c.workers.Add(1)
		go c.worker()
	})

	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
	c.log.Info("consumer started", "stream", c.opts.Stream, "consumer", c.opts.Consumer,
		"filter", c.opts.Filter, "concurrency", c.opts.Concurrency, "state_cache", c.opts.StateCache)

	if c.parts.n > 0 {
		// Membership first, so that the first share is computed among
		// the live instances; then heartbeats and lease renewals run until
		// the leases are released at the end of the shutdown.
		c.heartbeat(ctx)
		beatCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
		beating := make(chan struct{})
		go func() { defer close(beating); c.beat(beatCtx) }()
		defer func() {
			stopBeat()
			<-beating
			c.releaseAll()
			c.leave()
		}()
	}
	pullErr := c.pull(ctx)

	c.mu.Lock()
	c.ready = false
	c.mu.Unlock()
	c.log.Info("consumer stopping: no more pulls, finishing events under way", "timeout", c.opts.ShutdownTimeout)
	c.stop()
	done := make(chan struct{})
	go func() { c.workers.Wait(); close(done) }()
	timer := time.NewTimer(c.opts.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		c.log.Warn("shutdown deadline passed: abandoning calls under way; their events will be redelivered")
		c.hardStop()
		<-done
	}
	tick.stopWait()
	<-parkDone
	c.nakAll()
	c.log.Info("consumer stopped")
	return pullErr
}
