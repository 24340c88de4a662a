package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/outcome"
)

// Parking keeps events held by the mass-deprovisioning guard out of
// JetStream's ack window, so that a mass offboarding larger than the window
// never stops the other users.
//
// A deprovisioning event the guard holds is copied into the parking stream
// (Options.ParkStream, subject <ParkPrefix>.<KVKey(user)>, Nats-Msg-Id
// <stream>:<sequence>), its user's Record notes it (Record.Parked, written
// with compare-and-set) and only then is it acknowledged. While
// Record.Parked is above the user's watermark every later event of that
// user is parked behind it the same way, in stream order: the lane reads
// the Record anyway, so this costs nothing on the hot path, and it holds
// across restarts, partition handovers and several instances, since the
// Record is what every holder of the user reads.
//
// Once an operator decides (kdsync guard release|reject) the user's parked
// events are drained through the user's lane, one at a time, in order:
// each is decoded, guard-checked and applied (or skipped, or
// dead-lettered) exactly as if it had just been delivered, and its one
// outcome carries its original stream and sequence. Progress is the
// watermark itself: a parked event at or below it is finished, so a drain
// killed midway starts again where it stopped. A rejected event is skipped
// (guard_rejected) and the user's later parked events are applied after
// it; a later deprovisioning among them is checked by the guard afresh (and
// held again past the limit). When the watermark reaches Record.Parked the
// user's events flow again.
//
// A loop (parkLoop) notices the decisions: every parkPoll it lists the
// guard's holds and the parked users, and hands every parked user of this
// instance's partitions whose first hold is no longer pending (or who has
// none: a drain interrupted by a crash) to its lane.

// stagePark: the event is to be parked (or is parked already) rather than
// finished; no outcome yet.
const stagePark stage = 100

// parkPoll is how often the parked users' holds are looked at.
const parkPoll = 2 * time.Second

// Headers of a parked copy: where the original is.
const (
	hdrParkSubject   = "Kdsync-Parked-Subject"
	hdrParkStream    = "Kdsync-Parked-Stream"
	hdrParkSeq       = "Kdsync-Parked-Sequence"
	hdrParkDelivered = "Kdsync-Parked-Delivered"
	hdrParkMsgID     = "Kdsync-Parked-Msg-Id"
)

// parkState is an item's parking and retry-budget state (lanes.go embeds
// it in item).
type parkState struct {
	// parked: the item came from the parking stream (a drain), at
	// parkSeq there.
	parked  bool
	parkSeq uint64
	// firstAttempt is when this delivery's first attempt started;
	// retrySince when the event's first attempt did (an earlier delivery's,
	// from the Record); retrySaved once the Record holds it (budget.go).
	firstAttempt, retrySince time.Time
	// failed records the failed attempts for the dead letter; nil until
	// an attempt fails, so that the success path allocates nothing.
	failed     *outcome.AttemptLog
	retrySaved bool
}

// ParkToken is the token of the parking subject of the user an event's
// subject names: <ParkPrefix>.<token>.
func ParkToken(subject string) string { return outcome.KVKey(laneKey(subject)) }

func (c *Consumer) parkSubject(user string) string {
	return c.opts.ParkPrefix + "." + outcome.KVKey(user)
}

// setupParking creates (when managing) or binds the parking stream. With
// the guard on it is required; with the guard off an existing one is bound
// so that events parked before are still drained.
func (c *Consumer) setupParking(ctx context.Context) error {
	o := c.opts
	if o.DeprovisionLimit.N > 0 && o.Manage {
		if err := c.ensureStream(ctx, jetstream.StreamConfig{
			Name:        o.ParkStream,
			Subjects:    []string{o.ParkPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DedupWindow,
			Retention:   jetstream.LimitsPolicy,
			Description: "kdsync: events held by the mass-deprovisioning guard, and the later events of their users, until an operator decides",
		}); err != nil {
			return err
		}
	}
	s, err := c.js.Stream(ctx, o.ParkStream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && o.DeprovisionLimit.N == 0:
		return nil
	case err != nil:
		return fmt.Errorf("consumer: parking stream %s (the guard parks held events there; create it, or let kdsync manage it): %w", o.ParkStream, err)
	}
	c.parking = s
	return nil
}

// parkBehind decides, once the Record is read, whether a delivered event
// goes to the parking stream because its user has parked events: then it
// is parked behind them (or, parked already, only acknowledged). A
// drained event at or below the watermark is finished already. It reports
// whether it set stagePark.
func (c *Consumer) parkBehind(it *item) bool {
	r := &it.wm.rec
	switch {
	case it.parked:
		if it.seq > r.Seq {
			return false // drained: decided as if just delivered
		}
	case !parked(r) || it.seq <= r.Seq:
		return false
	case c.parking == nil:
		c.log.Error("the user's record says events are parked but there is no parking stream; applying", "seq", it.seq, "parked", r.Parked)
		return false
	}
	it.stage = stagePark
	return true
}

// parkStep finishes an item of stagePark without an outcome: a delivered
// event is copied to the parking stream, noted in its user's Record and
// acknowledged; a drained one held again stays where it is; a drained one
// finished before is dropped and the drain goes on.
func (c *Consumer) parkStep(l *lane, it *item) (wait time.Duration, done bool) {
	if it.parked {
		if it.seq <= it.wm.rec.Seq {
			c.drainNext(l, it)
		}
		return 0, true
	}
	if c.parking == nil {
		// The guard held it but nothing can park it: cannot happen (the
		// guard needs the parking stream); keep it in the lane.
		return guardRecheck, false
	}
	ctx, cancel := context.WithTimeout(c.hard, 10*time.Second)
	defer cancel()
	if it.seq > it.wm.rec.Parked {
		if err := c.parkCopy(ctx, l.key, it); err != nil {
			if c.hard.Err() != nil {
				return 0, false
			}
			c.log.Warn("parking an event failed; retrying", "user", l.key, "seq", it.seq, "err", err)
			return it.nextInfraWait(), false
		}
	}
	if err := it.msg.Ack(); err != nil {
		// The Record says it is parked: a redelivery is acknowledged only.
		c.log.Debug("ack of a parked event failed; a redelivery will be acknowledged", "seq", it.seq, "err", err)
	}
	c.log.Debug("event parked", "user", l.key, "seq", it.seq)
	return 0, true
}

// guardRecheck is how long a held event waits in its lane when it cannot
// be parked.
const guardRecheck = 2 * time.Second

// parkCopy stores the parked copy of it, then notes it in the Record.
func (c *Consumer) parkCopy(ctx context.Context, user string, it *item) error {
	h := nats.Header{}
	for k, v := range it.msg.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = slices.Clone(v)
	}
	if id := it.msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		h.Set(hdrParkMsgID, id)
	}
	h.Set(hdrParkSubject, it.msg.Subject())
	h.Set(hdrParkStream, c.opts.Stream)
	h.Set(hdrParkSeq, strconv.FormatUint(it.seq, 10))
	h.Set(hdrParkDelivered, strconv.FormatUint(it.delivered, 10))
	h.Set(jetstream.MsgIDHeader, outcome.MsgID(c.opts.Stream, it.seq))
	m := &nats.Msg{Subject: c.parkSubject(user), Header: h, Data: it.msg.Data()}
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	wm := it.wm
	for range 3 {
		if wm.rec.Parked >= it.seq || wm.rec.Seq >= it.seq {
			return nil
		}
		next := wm.rec
		next.Parked = it.seq
		next.At = time.Now().UTC()
		rev, err := c.putRecord(ctx, user, wm, next)
		if err == nil {
			wm.rec, wm.rev = next, rev
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("write the record of %s: %w", user, err)
		}
		if err := c.reloadWatermark(ctx, user, wm); err != nil {
			return err
		}
	}
	return fmt.Errorf("write the record of %s: compare-and-set kept failing", user)
}

// drainNext is called in the lane once the drained event it is finished
// (or found finished before): it drops its parked copy and queues the
// user's next parked event, or, when none is left, lets the user's events
// flow again. What fails here is picked up by the park loop.
func (c *Consumer) drainNext(l *lane, it *item) {
	ctx, cancel := context.WithTimeout(c.hard, 10*time.Second)
	defer cancel()
	if err := c.parking.DeleteMsg(ctx, it.parkSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		c.log.Debug("dropping a drained parked copy failed; it is dropped later", "seq", it.seq, "err", err)
	}
	wm := it.wm
	if !parked(&wm.rec) {
		if err := c.parking.Purge(ctx, jetstream.WithPurgeSubject(c.parkSubject(l.key))); err != nil {
			c.log.Debug("clearing a user's parked copies failed; they are dropped later", "user", l.key, "err", err)
		}
		c.log.Info("the user's parked events are all finished; their events flow again", "user", l.key, "seq", wm.rec.Seq)
		return
	}
	head, err := c.parkedHead(ctx, l.key, wm.rec.Seq)
	if err != nil {
		c.log.Warn("reading the user's next parked event failed; the park loop comes back to it", "user", l.key, "err", err)
		return
	}
	if head == nil {
		c.unblock(ctx, l.key, wm)
		return
	}
	c.enqueue(l.key, head)
}

// unblock lets a user's events flow when the Record says events are parked
// but the parking stream holds none of them (removed by hand).
func (c *Consumer) unblock(ctx context.Context, user string, wm *watermark) {
	c.log.Error("the user's record says events are parked but the parking stream holds none; their events flow again",
		"user", user, "seq", wm.rec.Seq, "parked", wm.rec.Parked)
	next := wm.rec
	next.Parked = 0
	if rev, err := c.putRecord(ctx, user, wm, next); err == nil {
		wm.rec, wm.rev = next, rev
	} else {
		c.forgetWatermark(user)
	}
}

// parkedHead returns the user's first parked event above the watermark
// seq, as a drain item; nil when there is none. Copies at or below it
// (finished, their copies not yet dropped) are dropped on the way.
func (c *Consumer) parkedHead(ctx context.Context, user string, seq uint64) (*item, error) {
	subj := c.parkSubject(user)
	from := uint64(1)
	for {
		m, err := c.parking.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subj, err)
		}
		it, _, err := c.parkedItem(m)
		if err != nil {
			return nil, err
		}
		if it.seq > seq {
			return it, nil
		}
		if err := c.parking.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("drop a finished parked copy: %w", err)
		}
		from = m.Sequence + 1
	}
}

// parkedItem makes a drain item of a parked copy; it returns the user's
// lane key too.
func (c *Consumer) parkedItem(m *jetstream.RawStreamMsg) (*item, string, error) {
	subject := m.Header.Get(hdrParkSubject)
	seq, err := strconv.ParseUint(m.Header.Get(hdrParkSeq), 10, 64)
	if subject == "" || err != nil {
		return nil, "", fmt.Errorf("parked copy %d of %s: no original subject or sequence", m.Sequence, m.Subject)
	}
	delivered, _ := strconv.ParseUint(m.Header.Get(hdrParkDelivered), 10, 64)
	h := nats.Header{}
	for k, v := range m.Header {
		if strings.HasPrefix(k, "Kdsync-Parked-") || k == jetstream.MsgIDHeader {
			continue
		}
		h[k] = v
	}
	if id := m.Header.Get(hdrParkMsgID); id != "" {
		h.Set(jetstream.MsgIDHeader, id)
	}
	pm := &parkedMsg{subject: subject, header: h, data: m.Data, md: jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Stream: seq},
		NumDelivered: delivered,
		Stream:       m.Header.Get(hdrParkStream),
		Timestamp:    m.Time,
	}}
	now := time.Now()
	it := &item{msg: pm, src: c.sourceOf(subject), seq: seq, delivered: delivered, received: now, lastProgress: now}
	it.parked, it.parkSeq = true, m.Sequence
	return it, laneKey(subject), nil
}

// sourceOf is the source a subject of the stream comes from: with
// partitions, the partition its subject names.
func (c *Consumer) sourceOf(subject string) *source {
	if len(c.sources) == 0 {
		return nil
	}
	if c.parts.n == 0 {
		return c.sources[0]
	}
	toks := strings.SplitN(subject, ".", 4)
	if len(toks) < 3 || toks[1] != "part" {
		return nil
	}
	p, err := strconv.Atoi(toks[2])
	if err != nil || p < 0 || p >= len(c.sources) {
		return nil
	}
	return c.sources[p]
}

// enqueue puts a drain item into its user's lane, in stream order, unless
// the lane has that sequence already; it schedules an idle lane.
func (c *Consumer) enqueue(key string, it *item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.lanes[key]
	if !ok {
		l = &lane{key: key}
		c.lanes[key] = l
	}
	i := sort.Search(len(l.queue), func(i int) bool { return l.queue[i].seq >= it.seq })
	if i < len(l.queue) && l.queue[i].seq == it.seq {
		return
	}
	l.queue = slices.Insert(l.queue, i, it)
	c.inflight++
	if l.state == laneIdle && c.stopping.Err() == nil {
		c.schedule(l)
	}
}

// startParkLoop runs parkLoop until ctx ends; the channel closes when it
// has returned.
func (c *Consumer) startParkLoop(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c.parking == nil {
			return
		}
		tk := time.NewTicker(parkPoll)
		defer tk.Stop()
		for {
			c.parkTick(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	return done
}

// parkTick hands to their lanes the parked users of this instance whose
// first hold is decided (or who have none left), and updates the held and
// parked counts.
func (c *Consumer) parkTick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var holds []guard.Hold
	if c.guard != nil {
		var err error
		if holds, err = c.guard.Held(ctx); err != nil {
			if ctx.Err() == nil {
				c.log.Warn("listing the guard's holds failed; trying again", "err", err)
			}
			return
		}
	}
	first := make(map[string]guard.Hold, len(holds))
	pending := 0
	for _, h := range holds {
		if h.Decision == guard.Pending && c.mine(h.Subject) {
			pending++
		}
		if _, ok := first[ParkToken(h.Subject)]; !ok {
			first[ParkToken(h.Subject)] = h // holds are in stream order
		}
	}
	c.guardHeld.Store(int64(pending))
	info, err := c.parking.Info(ctx, jetstream.WithSubjectFilter(c.opts.ParkPrefix+".>"))
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("reading the parking stream failed; trying again", "err", err)
		}
		return
	}
	var parked int64
	for subj, n := range info.State.Subjects {
		h, ok := first[strings.TrimPrefix(subj, c.opts.ParkPrefix+".")]
		if ok && !c.mine(h.Subject) {
			continue
		}
		parked += int64(n)
		if ok && h.Decision == guard.Pending {
			continue // waits for an operator
		}
		if ctx.Err() != nil {
			return
		}
		c.kick(ctx, subj)
	}
	c.parkedN.Store(parked)
}

// mine reports whether this instance works the user of an event's
// subject now.
func (c *Consumer) mine(subject string) bool {
	s := c.sourceOf(subject)
	return s != nil && leased(s) || s == nil && c.parts.n == 0
}

// kick hands a parked user to its lane: its first parked copy becomes a
// drain item, unless the lane is busy (it gets there by itself) or another
// instance works the user.
func (c *Consumer) kick(ctx context.Context, subj string) {
	m, err := c.parking.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) && ctx.Err() == nil {
			c.log.Warn("reading a parked event failed", "subject", subj, "err", err)
		}
		return
	}
	it, key, err := c.parkedItem(m)
	if err != nil {
		c.log.Error("unreadable parked copy left as it is", "err", err)
		return
	}
	if !c.mine(it.msg.Subject()) {
		return
	}
	c.mu.Lock()
	l := c.lanes[key]
	busy := l != nil && len(l.queue) > 0
	c.mu.Unlock()
	if !busy {
		c.enqueue(key, it)
	}
}

// parkedMsg is a parked copy standing for its original in a lane: it has
// the original's subject, headers, body and sequence; acknowledging it
// does nothing (the original was acknowledged when it was parked).
type parkedMsg struct {
	subject string
	header  nats.Header
	data    []byte
	md      jetstream.MsgMetadata
}

var _ jetstream.Msg = (*parkedMsg)(nil)

func (m *parkedMsg) Metadata() (*jetstream.MsgMetadata, error) { md := m.md; return &md, nil }
func (m *parkedMsg) Data() []byte                              { return m.data }
func (m *parkedMsg) Headers() nats.Header                      { return m.header }
func (m *parkedMsg) Subject() string                           { return m.subject }
func (m *parkedMsg) Reply() string                             { return "" }
func (m *parkedMsg) Ack() error                                { return nil }
func (m *parkedMsg) DoubleAck(context.Context) error           { return nil }
func (m *parkedMsg) Nak() error                                { return nil }
func (m *parkedMsg) NakWithDelay(time.Duration) error          { return nil }
func (m *parkedMsg) InProgress() error                         { return nil }
func (m *parkedMsg) Term() error                               { return nil }
func (m *parkedMsg) TermWithReason(string) error               { return nil }
