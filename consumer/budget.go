package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/outcome"
)

// The retry budget (Options.RetryBudget) is counted from an event's first
// attempt, not from its current delivery: at the event's first retryable
// failure its user's Record notes the event (RetrySeq) and when its first
// attempt was made (RetrySince). A redelivery, a restart or another
// instance taking the partition over reads them back with the watermark,
// so the event is dead-lettered once the budget counted from that first
// attempt is spent. The note is void once the watermark passes the event
// (Record.next clears it).

// retryLeft returns how much of it's retry budget is left, counting from
// its first attempt: that of an earlier delivery when the Record names it,
// else this delivery's, which it then writes to the Record. A failed write
// is tried again at the next failure; meanwhile the budget counts from
// this delivery's first attempt.
func (c *Consumer) retryLeft(it *item) time.Duration {
	if it.retrySince.IsZero() {
		it.retrySince = it.firstAttempt
		if r := &it.wm.rec; r.RetrySeq == it.seq && !r.RetrySince.IsZero() && r.RetrySince.Before(it.retrySince) {
			it.retrySince, it.retrySaved = r.RetrySince, true
		}
	}
	if !it.retrySaved {
		if err := c.saveRetry(it); err != nil {
			c.log.Warn("noting the first attempt of an event being retried failed; trying again at its next failure",
				"seq", it.seq, "err", err)
		} else {
			it.retrySaved = true
		}
	}
	return c.opts.RetryBudget - time.Since(it.retrySince)
}

// saveRetry writes it's first attempt to its user's Record, with
// compare-and-set; on a conflict it reads the Record again and retries.
func (c *Consumer) saveRetry(it *item) error {
	user := laneKey(it.msg.Subject())
	ctx, cancel := context.WithTimeout(c.stopping, 5*time.Second)
	defer cancel()
	wm := it.wm
	for range 3 {
		if wm.rec.Seq >= it.seq {
			return nil // finished meanwhile by an earlier holder
		}
		next := wm.rec
		next.RetrySeq, next.RetrySince = it.seq, it.retrySince.UTC()
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

// putRecord writes rec as user's Record if it is still at wm's revision.
func (c *Consumer) putRecord(ctx context.Context, user string, wm *watermark, rec outcome.Record) (uint64, error) {
	if wm.rev == 0 {
		return c.kv.Create(ctx, outcome.KVKey(user), marshalRecord(&rec))
	}
	return c.kv.Update(ctx, outcome.KVKey(user), marshalRecord(&rec), wm.rev)
}

// reloadWatermark reads user's Record again into wm after another writer
// moved it.
func (c *Consumer) reloadWatermark(ctx context.Context, user string, wm *watermark) error {
	c.forgetWatermark(user)
	fresh, err := c.loadWatermark(ctx, user)
	if err != nil {
		return err
	}
	*wm = *fresh
	return nil
}
