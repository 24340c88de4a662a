package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// step takes it as far as it can go now: decode and check it, make its
// KooDrive calls, store its outcome and ack it. It returns done when the
// event is finished (acked), or a wait after which the lane comes back to
// it (a retry's backoff, the breaker, NATS away). On shutdown it returns
// neither, and the event is Nak'd with the rest of its lane. This is the
// one place that decides an event's fate.
func (c *Consumer) step(l *lane, it *item) (wait time.Duration, done bool) {
	if it.stage != stageFinish && it.stage != stagePark {
		var stop bool
		wait, stop = c.decide(l, it)
		if stop || wait > 0 {
			return wait, false
		}
	}
	if it.stage == stagePark {
		return c.parkStep(l, it) // park.go: no outcome yet
	}
	if err := c.finish(l, it); err != nil {
		if c.hard.Err() != nil {
			return 0, false
		}
		c.log.Warn("storing the outcome failed; retrying", "seq", it.seq, "err", err)
		return it.nextInfraWait(), false
	}
	if it.parked {
		c.drainNext(l, it) // park.go: the user's next parked event
	}
	return 0, true
}

// decide runs the event up to its outcome. stop is true on shutdown.
func (c *Consumer) decide(l *lane, it *item) (wait time.Duration, stop bool) {
	defer func() {
		if p := recover(); p != nil {
			stack := strings.SplitN(string(debug.Stack()), "\n", 8)
			c.log.Error("panic while working an event; dead-lettering it", "seq", it.seq, "panic", p, "stack", strings.Join(stack, "|"))
			if it.out.Attempts > 0 && (it.failed == nil || it.failed.Total() < it.out.Attempts) {
				// The panic was in the attempt under way.
				it.failedAttempt(string(outcome.ClassPanic), fmt.Sprint(p))
			}
			it.deadLetter(outcome.ClassPanic, fmt.Sprintf("panic: %v", p))
			wait, stop = 0, false
		}
	}()
	if it.stage == stageNew {
		if c.stopping.Err() != nil {
			return 0, true
		}
		wm, err := c.loadWatermark(c.stopping, l.key)
		if err != nil {
			if c.stopping.Err() != nil {
				return 0, true
			}
			// While running, a lane never lets go of an event: a Nak would
			// let the user's newer events overtake it.
			c.log.Warn("reading the watermark failed; retrying", "user", l.key, "seq", it.seq, "err", err)
			return it.nextInfraWait(), false
		}
		it.infra = 0
		it.wm = wm
		if c.parkBehind(it) {
			return 0, false // park.go: the user has parked events
		}
		c.classify(it)
	}
	if it.stage == stageApply && c.guard != nil && !it.guardOK && it.ev.Deprovisions() {
		if wait := c.guardCheck(it); wait > 0 || it.stage != stageApply {
			return wait, false
		}
	}
	if it.stage == stageApply {
		return c.attempt(it)
	}
	return 0, false
}

// guardCheck asks the guard about a deprovisioning event. It parks the
// event while it is held; it moves the event on when admitted or
// rejected. It returns a wait only when the guard cannot be asked.
func (c *Consumer) guardCheck(it *item) time.Duration {
	ctx, cancel := context.WithTimeout(c.stopping, 10*time.Second)
	defer cancel()
	v, released, err := c.guard.Check(ctx, c.opts.DeprovisionLimit, guard.Hold{
		Seq: it.seq, EventID: it.ev.ID, UserID: it.ev.UserID, Action: string(it.ev.Action), Subject: it.msg.Subject(),
	})
	if err != nil {
		c.log.Warn("the deprovisioning guard could not be asked; retrying", "seq", it.seq, "err", err)
		return it.nextInfraWait()
	}
	switch v {
	case guard.Wait:
		// Parked (park.go) and acknowledged: it leaves the ack window,
		// and the user's later events are parked behind it.
		if !it.parked {
			c.log.Warn("deprovisioning held by the mass-deprovisioning guard and parked; an operator releases or rejects it (kdsync guard)",
				"event", it.ev.ID, "user", it.ev.UserID, "action", it.ev.Action, "seq", it.seq, "limit", c.opts.DeprovisionLimit.String())
		}
		it.stage = stagePark
		return 0
	case guard.Rejected:
		it.out.Result, it.out.Reason = outcome.Skipped, outcome.SkipGuardRejected
		it.out.Note = "rejected by an operator at the mass-deprovisioning guard"
		it.guardHold = true
		it.stage = stageFinish
	default:
		it.guardOK = true
		if released {
			it.out.Note = "released by an operator at the mass-deprovisioning guard"
			it.guardHold = true
		}
	}
	return 0
}

// classify decodes it and decides what the watermark says of it.
func (c *Consumer) classify(it *item) {
	it.out = outcome.Outcome{
		Subject:   it.msg.Subject(),
		Stream:    c.opts.Stream,
		Sequence:  it.seq,
		Delivered: it.delivered,
		Action:    handlers.Unknown,
		Instance:  c.opts.InstanceID,
	}
	ev, derr := c.opts.Decoder.Decode(it.msg.Subject(), it.msg.Headers(), it.msg.Data())
	if ev != nil {
		it.ev = ev
		it.out.EventID, it.out.Source, it.out.UserID, it.out.Action = ev.ID, ev.Source, ev.UserID, ev.Action
		it.out.TraceID = handlers.TraceID(ev.ID)
	} else {
		var ie *handlers.InputError
		if errors.As(derr, &ie) {
			// The envelope named the event although something else is
			// wrong: the dead letter keeps its identity.
			it.out.EventID, it.out.Source = ie.EventID, ie.Source
		}
		if a, u, ok := handlers.ParseSubject(it.msg.Subject()); ok {
			if act, ok := handlers.ParseAction(a); ok {
				it.out.Action = act
			}
			it.out.UserID = u
		}
	}
	h := it.msg.Headers()
	replay := h.Get(outcome.HdrReplayOf) != ""
	switch {
	case it.seq <= it.wm.rec.Seq || ev != nil && !replay && seen(&it.wm.rec, ev):
		// Already finished: a redelivery, or the same event (source and
		// id) again (a replay of a dead letter carries its id on purpose).
		it.out.Result, it.out.Reason = outcome.Skipped, outcome.SkipDuplicate
		it.stage = stageFinish
	case replay && derr == nil && h.Get(outcome.HdrReplayForce) != "true" && staleReplay(&it.wm.rec, h.Get(outcome.HdrOriginalSeq)):
		// A replayed dead letter older than what was applied since for
		// this user would revert newer state.
		it.out.Result, it.out.Reason = outcome.Skipped, outcome.SkipStale
		it.out.Note = fmt.Sprintf("replay of sequence %s; sequence %d was applied since (replay with -force to apply anyway)",
			h.Get(outcome.HdrOriginalSeq), it.wm.rec.AppliedSeq)
		it.stage = stageFinish
	case derr != nil:
		reason := outcome.ReasonBadInput
		var ie *handlers.InputError
		if errors.As(derr, &ie) {
			reason = outcome.Reason(ie.Reason)
		}
		it.deadLetter(reason, derr.Error())
	default:
		it.stage = stageApply
	}
}

// attempt makes one try at the event's KooDrive calls.
func (c *Consumer) attempt(it *item) (wait time.Duration, stop bool) {
	if c.stopping.Err() != nil {
		return 0, true
	}
	done, err := c.breaker.cb.Allow()
	if err != nil {
		// KooDrive fails for everyone: wait for the probe's verdict.
		return min(c.opts.BreakerProbe, time.Second), false
	}
	it.out.Attempts++
	if it.firstAttempt.IsZero() {
		it.firstAttempt = time.Now()
	}
	// With partitions the call runs under the lease's fence: abandoned
	// when this instance may no longer work the partition.
	ctx, unfence := fenced(c.hard, it.src)
	defer unfence()
	var known *handlers.State
	if it.wm.rec.AppliedSeq > 0 {
		known = &it.wm.rec.State
	}
	res, err := c.opts.Handler.Apply(ctx, it.ev, known)
	done(err)
	it.out.Plan, it.out.Diff = res.Plan, res.Diff
	it.calls = append(it.calls, res.Calls...)
	it.out.Note = res.Note
	var f handlers.Failure
	if err != nil {
		f = handlers.Classify(err)
	}
	switch {
	case err == nil && res.Noop:
		it.out.Result, it.out.Reason = outcome.Skipped, outcome.SkipNoop
		it.stage = stageFinish
	case err == nil:
		it.out.Result = outcome.Applied
		it.state = &res.State
		it.stage = stageFinish
	case c.hard.Err() != nil:
		return 0, true
	case ctx.Err() != nil || !leased(it.src):
		// Fenced out (the lease lapsed or went): the lane returns the
		// event to the stream, or tries again once the lease is renewed.
		it.failedAttempt(classFenced, err.Error())
		return fencedRetry, false
	case !f.Retryable:
		it.failedAttempt(f.Class.String(), err.Error())
		it.deadLetter(outcome.Reason(f.Class), err.Error())
	default:
		it.failedAttempt(f.Class.String(), err.Error())
		it.last = err
		if it.bo == nil {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval = c.opts.RetryInitial
			b.MaxInterval = c.opts.RetryMax
			b.Multiplier = 2
			b.RandomizationFactor = 0.5
			b.MaxElapsedTime = 0 // the budget is counted from the first attempt: retryLeft
			it.ra = &retryAfter{BackOff: b, limit: c.opts.RetryMax}
			it.bo = backoff.WithContext(it.ra, c.stopping)
			it.bo.Reset()
		}
		it.ra.next = f.RetryAfter
		d := it.ra.throttledWait(f.Throttled, c.opts.RetryInitial)
		if d == 0 {
			d = it.bo.NextBackOff()
		}
		left := c.retryLeft(it) // budget.go
		if d == backoff.Stop || left <= 0 {
			if c.stopping.Err() != nil {
				return 0, true
			}
			it.deadLetter(outcome.ClassBudgetExhausted, fmt.Sprintf("retry budget of %s spent since the first attempt at %s (%d attempts in this delivery); last error: %v",
				c.opts.RetryBudget, it.retrySince.UTC().Format(time.RFC3339), it.out.Attempts, err))
			return 0, false
		}
		d = min(d, left)
		c.obs.Retry(f.Class.String(), d, it.ra.used)
		c.log.Debug("retrying event", "event", it.ev.ID, "seq", it.seq, "attempt", it.out.Attempts, "wait", d, "err", err)
		return d, false
	}
	return 0, false
}

// fencedRetry is how soon a lane looks again at an event whose call was
// abandoned on its partition's fence.
const fencedRetry = 10 * time.Millisecond

// deadLetter decides a dead-letter outcome.
func (it *item) deadLetter(reason outcome.Reason, msg string) {
	it.out.Result, it.out.Reason, it.out.Error = outcome.Deadlettered, reason, msg
	it.stage = stageFinish
}

// classFenced marks, in the attempt log, an attempt abandoned on its
// partition's fence.
const classFenced = "fenced"

// failedAttempt records the failure of attempt it.out.Attempts for the
// dead letter's attempt log (HdrAttemptLog). The log is made at the first
// failure: an event applied at once allocates nothing for it.
func (it *item) failedAttempt(class, msg string) {
	if it.failed == nil {
		it.failed = &outcome.AttemptLog{}
	}
	it.failed.Add(outcome.Attempt{N: it.out.Attempts, At: time.Now().UTC(), Class: class, Error: msg})
}

// nextInfraWait backs off retries of NATS steps: 100ms doubling to 5s.
func (it *item) nextInfraWait() time.Duration {
	it.infra = min(max(2*it.infra, 100*time.Millisecond), 5*time.Second)
	return it.infra
}

// finish stores the outcome (and the dead letter), advances the watermark,
// then acks. The outcome's times are fixed at the first try.
func (c *Consumer) finish(l *lane, it *item) error {
	out := &it.out
	if it.body == nil {
		now := time.Now()
		out.Time = now.UTC()
		out.Calls = it.calls
		out.ProcessingMs = float64(now.Sub(it.received).Microseconds()) / 1000
		if it.ev != nil && !it.ev.Time.IsZero() {
			ms := float64(now.Sub(it.ev.Time).Microseconds()) / 1000
			out.LatencyMs = &ms
		}
		it.body, _ = json.Marshal(out)
		if out.Result == outcome.Deadlettered {
			c.log.Warn("event dead-lettered", "event", out.EventID, "user", out.UserID, "action", out.Action,
				"seq", it.seq, "reason", out.Reason, "err", out.Error, "attempts", out.Attempts)
		}
	}
	outMsg := &nats.Msg{
		Subject: outcome.Subject(c.opts.OutcomePrefix, out.Result, out.Action, out.UserID),
		Header:  nats.Header{jetstream.MsgIDHeader: {outcome.MsgID(c.opts.Stream, it.seq)}},
		Data:    it.body,
	}
	var dlq *nats.Msg
	if out.Result == outcome.Deadlettered && !c.opts.NoDLQ {
		dlq = c.deadLetterMsg(it, out)
	}
	// A duplicate leaves the record as it is; everything else advances it.
	advance := it.wm != nil && !(out.Result == outcome.Skipped && out.Reason == outcome.SkipDuplicate)
	if err := c.store(l.key, it, it.ev, outMsg, dlq, it.wm, it.state, advance); err != nil {
		return err
	}
	if it.guardHold {
		if err := c.guard.Finish(c.hard, it.seq); err != nil {
			c.log.Warn("forgetting a decided guard hold failed; it stays listed", "seq", it.seq, "err", err)
		}
	}
	var err error
	if out.Result == outcome.Deadlettered {
		err = it.msg.TermWithReason(string(out.Reason))
	} else {
		err = it.msg.Ack()
	}
	if err != nil {
		// The outcome and watermark are stored: a redelivery is skipped as
		// a duplicate and its outcome dropped by the outcome stream.
		c.log.Debug("ack failed; a redelivery will be skipped", "seq", it.seq, "err", err)
	}
	var latency time.Duration
	if out.LatencyMs != nil {
		latency = time.Duration(*out.LatencyMs * float64(time.Millisecond))
	}
	c.obs.EventFinished(out.Action, out.Result, out.Reason, latency, out.LatencyMs != nil)
	return nil
}

// retryAfter is a BackOff that waits at least the server's Retry-After
// when the last failure carried one, up to limit (KDSYNC_RETRY_MAX): a
// server asking for an hour is asked again after the limit, not ignored
// for an hour.
type retryAfter struct {
	backoff.BackOff
	limit time.Duration
	next  time.Duration
	used  bool
}

func (r *retryAfter) NextBackOff() time.Duration {
	d := r.BackOff.NextBackOff()
	r.used = false
	if d == backoff.Stop {
		return d
	}
	if r.next > d {
		d, r.used = min(r.next, max(r.limit, d)), true
	}
	r.next = 0
	return d
}

// store publishes the outcome, the dead letter and the watermark
// asynchronously and waits for all three acknowledgements. The watermark
// is a compare-and-set write to the KV bucket's subject (expected last
// sequence = the revision read); when another writer got there first it
// falls back to advance, which re-reads and retries.
func (c *Consumer) store(user string, it *item, ev *handlers.Event, outMsg, dlq *nats.Msg, wm *watermark, state *handlers.State, advance bool) error {
	ctx, cancel := context.WithTimeout(c.hard, 10*time.Second)
	defer cancel()
	futs := make([]jetstream.PubAckFuture, 0, 2)
	for _, m := range []*nats.Msg{outMsg, dlq} {
		if m == nil {
			continue
		}
		f, err := c.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		futs = append(futs, f)
	}
	var next outcome.Record
	var kvFut jetstream.PubAckFuture
	if advance {
		next = nextRecord(wm.rec, it.seq, ev, state, time.Now().UTC())
		m := &nats.Msg{Subject: c.kvSubject(user), Data: marshalRecord(&next)}
		c.states.writes.Add(1)
		f, err := c.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(wm.rev))
		if err != nil {
			return fmt.Errorf("write watermark of %s: %w", user, err)
		}
		kvFut = f
	}
	for _, f := range futs {
		if err := awaitPub(ctx, f); err != nil {
			return err
		}
	}
	if kvFut != nil {
		select {
		case ack := <-kvFut.Ok():
			wm.rec, wm.rev = next, ack.Sequence
			c.states.put(user, wm) // its size changed; and the latest is worth keeping
		case err := <-kvFut.Err():
			if !isWrongSequence(err) {
				return fmt.Errorf("write watermark of %s: %w", user, err)
			}
			// Another writer (an earlier holder of this user) moved it.
			return c.advance(ctx, user, it.seq, ev, wm, state)
		case <-ctx.Done():
			return fmt.Errorf("write watermark of %s: %w", user, ctx.Err())
		}
	}
	return nil
}

func awaitPub(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", f.Msg().Subject, ctx.Err())
	}
}

// kvSubject is the subject of user's key in the state bucket.
func (c *Consumer) kvSubject(user string) string {
	return "$KV." + c.opts.StateBucket + "." + outcome.KVKey(user)
}

// advance writes user's watermark to seq with compare-and-set. When the
// revision is stale (another writer), it re-reads and retries unless the
// stored watermark is already at or past seq.
func (c *Consumer) advance(ctx context.Context, user string, seq uint64, ev *handlers.Event, wm *watermark, state *handlers.State) error {
	for range 3 {
		next := nextRecord(wm.rec, seq, ev, state, time.Now().UTC())
		var rev uint64
		var err error
		c.states.writes.Add(1)
		if wm.rev == 0 {
			rev, err = c.kv.Create(ctx, outcome.KVKey(user), marshalRecord(&next))
		} else {
			rev, err = c.kv.Update(ctx, outcome.KVKey(user), marshalRecord(&next), wm.rev)
		}
		if err == nil {
			wm.rec, wm.rev = next, rev
			c.states.put(user, wm)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("write watermark of %s: %w", user, err)
		}
		c.forgetWatermark(user)
		fresh, lerr := c.loadWatermark(ctx, user)
		if lerr != nil {
			return lerr
		}
		*wm = *fresh
		if wm.rec.Seq >= seq {
			return nil
		}
	}
	return fmt.Errorf("write watermark of %s: compare-and-set kept failing", user)
}

func isWrongSequence(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// deadLetterMsg copies the original message for the DLQ stream, adding the
// reason headers.
func (c *Consumer) deadLetterMsg(it *item, out *outcome.Outcome) *nats.Msg {
	h := nats.Header{}
	for k, v := range it.msg.Headers() {
		if k == jetstream.MsgIDHeader || strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	h.Set(outcome.HdrReason, outcome.ClipHeader(out.Error))
	h.Set(outcome.HdrErrorClass, string(out.Reason))
	h.Set(outcome.HdrAttempts, strconv.Itoa(out.Attempts))
	if it.failed != nil {
		h.Set(outcome.HdrAttemptLog, outcome.EncodeAttempts(it.failed.Attempts()))
	} else {
		h.Del(outcome.HdrAttemptLog) // a hand-made replay's, or none
	}
	if h.Get(outcome.HdrReplayOf) == "" || h.Get(outcome.HdrOriginalSeq) == "" {
		// A replay that dies again keeps pointing at the first original,
		// so that a later replay's staleness is judged against it.
		h.Set(outcome.HdrOriginalSubject, it.msg.Subject())
		h.Set(outcome.HdrOriginalStream, c.opts.Stream)
		h.Set(outcome.HdrOriginalSeq, strconv.FormatUint(it.seq, 10))
		if id := it.msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
			h.Set(outcome.HdrOriginalMsgID, outcome.ClipHeader(id))
		}
	}
	h.Set(outcome.HdrEventID, outcome.ClipHeader(out.EventID))
	if out.Source != "" {
		h.Set(outcome.HdrEventSource, outcome.ClipHeader(out.Source))
	}
	h.Set(outcome.HdrUserID, outcome.ClipHeader(out.UserID))
	h.Set(outcome.HdrDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(jetstream.MsgIDHeader, outcome.MsgID(c.opts.Stream, it.seq))
	return &nats.Msg{
		Subject: outcome.DeadLetterSubject(c.opts.DLQPrefix, out.Reason, out.Action, out.UserID),
		Header:  h,
		Data:    it.msg.Data(),
	}
}
