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

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// errShutdown ends an event's work when the consumer stops; the event is
// Nak'd, not finished.
var errShutdown = errors.New("consumer: shutting down")

// process works one event to its outcome, or Naks it on shutdown. It is the
// one place that decides the ack.
func (c *Consumer) process(l *lane, it *item) {
	out := Outcome{
		Subject:   it.msg.Subject(),
		Stream:    c.opts.Stream,
		Sequence:  it.seq,
		Delivered: it.delivered,
		Action:    handlers.Unknown,
	}
	var ev *handlers.Event
	var state *handlers.State
	var wm *watermark
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				stack := strings.SplitN(string(debug.Stack()), "\n", 8)
				c.log.Error("panic while working an event; dead-lettering it", "seq", it.seq, "panic", p, "stack", strings.Join(stack, "|"))
				out.Result, out.Reason, out.Error = Deadlettered, ClassPanic, fmt.Sprintf("panic: %v", p)
				err = nil
			}
		}()
		wm, err = c.watermarkRetrying(l.key, it.seq)
		if err != nil {
			return err
		}
		var derr error
		ev, derr = c.opts.Decoder.Decode(it.msg.Subject(), it.msg.Headers(), it.msg.Data())
		if ev != nil {
			out.EventID, out.UserID, out.Action = ev.ID, ev.UserID, ev.Action
			out.TraceID = kdapi.TraceID(ev.ID)
		} else if a, u, ok := handlers.ParseSubject(it.msg.Subject()); ok {
			if act, ok := handlers.ParseAction(a); ok {
				out.Action = act
			}
			out.UserID = u
		}
		if it.seq <= wm.rec.Seq || ev != nil && wm.rec.seen(ev.ID) {
			// Already finished: a redelivery, or the same event id published
			// again.
			out.Result, out.Reason = Skipped, SkipDuplicate
			return nil
		}
		if derr != nil {
			var ie *handlers.InputError
			out.Result, out.Error = Deadlettered, derr.Error()
			out.Reason = "bad_input"
			if errors.As(derr, &ie) {
				out.Reason = string(ie.Reason)
			}
			return nil
		}
		res, aerr := c.apply(it, ev, &out)
		out.Calls, out.Note = res.Calls, res.Note
		switch {
		case errors.Is(aerr, errShutdown):
			return aerr
		case aerr != nil:
			out.Result, out.Error = Deadlettered, aerr.Error()
			if out.Reason == "" {
				out.Reason = classOf(aerr)
			}
		case res.Noop:
			out.Result, out.Reason = Skipped, SkipNoop
		default:
			out.Result = Applied
			state = &res.State
		}
		return nil
	}()
	if err != nil {
		// Only on shutdown: the event and the lane behind it come back in
		// order. While running, a lane never lets go of an event (a Nak
		// would let the user's newer events overtake it).
		c.nakRest(l, it)
		c.mu.Lock()
		c.inflight++ // runLane decrements for the current item
		c.mu.Unlock()
		return
	}
	c.finish(l, it, ev, &out, wm, state)
}

// watermarkRetrying reads user's record, retrying while NATS is slow or
// away, until it succeeds or the consumer stops (errShutdown).
func (c *Consumer) watermarkRetrying(user string, seq uint64) (*watermark, error) {
	wait := 100 * time.Millisecond
	for {
		wm, err := c.loadWatermark(c.stopping, user)
		if err == nil {
			return wm, nil
		}
		if c.stopping.Err() != nil {
			return nil, errShutdown
		}
		c.log.Warn("reading the watermark failed; retrying", "user", user, "seq", seq, "err", err, "retry_in", wait)
		select {
		case <-c.stopping.Done():
			return nil, errShutdown
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// apply runs the handler with retries: transient failures back off
// exponentially (honouring Retry-After) until the retry budget is spent.
func (c *Consumer) apply(it *item, ev *handlers.Event, out *Outcome) (handlers.Result, error) {
	ctx := kdapi.WithTraceID(c.hard, ev.ID)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.opts.RetryInitial
	b.MaxInterval = c.opts.RetryMax
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxElapsedTime = c.opts.RetryBudget
	ra := &retryAfter{BackOff: b}
	var res handlers.Result
	var last error
	op := func() error {
		if c.stopping.Err() != nil {
			return backoff.Permanent(errShutdown)
		}
		done, err := c.breaker.acquire(c.stopping)
		if err != nil {
			return backoff.Permanent(errShutdown)
		}
		select {
		case c.sem <- struct{}{}:
		case <-c.stopping.Done():
			done(context.Canceled)
			return backoff.Permanent(errShutdown)
		}
		out.Attempts++
		r, err := c.opts.Handler.Apply(ctx, ev)
		<-c.sem
		done(err)
		res.Calls = append(res.Calls, r.Calls...)
		res.Note, res.Noop, res.State = r.Note, r.Noop, r.State
		if err == nil {
			return nil
		}
		last = err
		if c.hard.Err() != nil {
			return backoff.Permanent(errShutdown)
		}
		if !retryable(err) {
			return backoff.Permanent(err)
		}
		ra.next = kdapi.RetryAfterOf(err)
		return err
	}
	notify := func(err error, wait time.Duration) {
		c.obs.Retry(classOf(err), wait, ra.used)
		c.log.Debug("retrying event", "event", ev.ID, "seq", it.seq, "attempt", out.Attempts, "wait", wait, "err", err)
	}
	err := backoff.RetryNotify(op, backoff.WithContext(ra, c.stopping), notify)
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, errShutdown), errors.Is(err, context.Canceled) && c.stopping.Err() != nil:
		return res, errShutdown
	case retryable(err):
		out.Reason = ClassBudgetExhausted
		return res, fmt.Errorf("retry budget of %s spent after %d attempts; last error: %w", c.opts.RetryBudget, out.Attempts, last)
	}
	return res, err
}

// retryable reports whether err is worth another attempt: KooDrive
// unreachable, slow, throttling, failing, or refusing credentials (which
// fails every event alike and is left to the breaker and the operator).
func retryable(err error) bool {
	var ie *handlers.InputError
	if errors.As(err, &ie) {
		return false
	}
	class, _ := kdapi.ClassOf(err)
	return class == kdapi.ClassRetryable || class == kdapi.ClassAuth
}

func classOf(err error) string {
	var ie *handlers.InputError
	if errors.As(err, &ie) {
		return string(ie.Reason)
	}
	class, _ := kdapi.ClassOf(err)
	return class.String()
}

// retryAfter is a BackOff that waits at least the server's Retry-After
// when the last failure carried one.
type retryAfter struct {
	backoff.BackOff
	next time.Duration
	used bool
}

func (r *retryAfter) NextBackOff() time.Duration {
	d := r.BackOff.NextBackOff()
	r.used = false
	if d == backoff.Stop {
		return d
	}
	if r.next > d {
		d, r.used = r.next, true
	}
	r.next = 0
	return d
}

// finish stores the outcome (and the dead letter), advances the watermark,
// then acks. Until all are stored it retries; on shutdown it Naks instead.
func (c *Consumer) finish(l *lane, it *item, ev *handlers.Event, out *Outcome, wm *watermark, state *handlers.State) {
	now := time.Now()
	out.Time = now.UTC()
	out.ProcessingMs = float64(now.Sub(it.received).Microseconds()) / 1000
	if ev != nil && !ev.Time.IsZero() {
		ms := float64(now.Sub(ev.Time).Microseconds()) / 1000
		out.LatencyMs = &ms
	}
	body, _ := json.Marshal(out)
	outMsg := &nats.Msg{
		Subject: c.opts.OutcomePrefix + "." + string(out.Result) + "." + string(out.Action),
		Header:  nats.Header{jetstream.MsgIDHeader: {OutcomeMsgID(c.opts.Stream, it.seq)}},
		Data:    body,
	}
	var dlq *nats.Msg
	if out.Result == Deadlettered {
		dlq = c.deadLetter(it, out)
		c.log.Warn("event dead-lettered", "event", out.EventID, "user", out.UserID, "action", out.Action,
			"seq", it.seq, "reason", out.Reason, "err", out.Error, "attempts", out.Attempts)
	}
	// A duplicate leaves the record as it is; everything else advances it.
	advance := wm != nil && !(out.Result == Skipped && out.Reason != SkipNoop)
	wait := 100 * time.Millisecond
	for {
		err := c.store(l.key, it, ev, outMsg, dlq, wm, state, advance)
		if err == nil {
			break
		}
		c.log.Warn("storing the outcome failed; retrying", "seq", it.seq, "err", err, "retry_in", wait)
		select {
		case <-c.hard.Done():
			c.nakRest(l, it)
			c.mu.Lock()
			c.inflight++
			c.mu.Unlock()
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	var err error
	if out.Result == Deadlettered {
		err = it.msg.TermWithReason(out.Reason)
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
}

// store publishes the outcome and the dead letter asynchronously, writes
// the watermark meanwhile, and waits for both acks.
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
	if advance {
		if err := c.advance(ctx, user, it.seq, ev, wm, state); err != nil {
			return err
		}
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, ctx.Err())
		}
	}
	return nil
}

// advance writes user's watermark to seq with compare-and-set. When the
// revision is stale (another writer), it re-reads and retries unless the
// stored watermark is already at or past seq.
func (c *Consumer) advance(ctx context.Context, user string, seq uint64, ev *handlers.Event, wm *watermark, state *handlers.State) error {
	for range 3 {
		next := wm.rec
		next.Recent = append([]string(nil), wm.rec.Recent...)
		id := ""
		if ev != nil {
			id = ev.ID
		}
		next.advance(seq, id, state, time.Now().UTC())
		var rev uint64
		var err error
		if wm.rev == 0 {
			rev, err = c.kv.Create(ctx, KVKey(user), next.marshal())
		} else {
			rev, err = c.kv.Update(ctx, KVKey(user), next.marshal(), wm.rev)
		}
		if err == nil {
			wm.rec, wm.rev = next, rev
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

// deadLetter copies the original message for the DLQ stream, adding the
// reason headers.
func (c *Consumer) deadLetter(it *item, out *Outcome) *nats.Msg {
	h := nats.Header{}
	for k, v := range it.msg.Headers() {
		if k == jetstream.MsgIDHeader || strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	h.Set(HdrReason, clipHeader(out.Error))
	h.Set(HdrErrorClass, out.Reason)
	h.Set(HdrAttempts, strconv.Itoa(out.Attempts))
	h.Set(HdrOriginalSubject, it.msg.Subject())
	h.Set(HdrOriginalStream, c.opts.Stream)
	h.Set(HdrOriginalSeq, strconv.FormatUint(it.seq, 10))
	h.Set(HdrEventID, clipHeader(out.EventID))
	h.Set(HdrUserID, clipHeader(out.UserID))
	h.Set(HdrDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(jetstream.MsgIDHeader, OutcomeMsgID(c.opts.Stream, it.seq))
	reason := out.Reason
	if reason == "" {
		reason = "unknown"
	}
	return &nats.Msg{
		Subject: c.opts.DLQPrefix + "." + subjectToken(reason) + "." + string(out.Action),
		Header:  h,
		Data:    it.msg.Data(),
	}
}

// clipHeader keeps a header value short and on one line.
func clipHeader(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' {
			return '_'
		}
		return r
	}, s)
}
