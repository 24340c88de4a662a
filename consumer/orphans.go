package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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
