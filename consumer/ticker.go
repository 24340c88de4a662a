package consumer

import (
	"context"
	"time"
)

// progressTicker sends InProgress for every held event older than a third
// of AckWait, so that the server never redelivers an event kdsync is still
// working, retrying, or holding behind an older one of the same user.
type progressTicker struct {
	c     *Consumer
	every time.Duration
	done  chan struct{}
}

func newTicker(c *Consumer) *progressTicker {
	return &progressTicker{c: c, every: c.opts.AckWait / 3, done: make(chan struct{})}
}

func (t *progressTicker) run(ctx context.Context) {
	defer close(t.done)
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.tick(now)
		}
	}
}

// tick collects the due items under the lock and signals outside it.
func (t *progressTicker) tick(now time.Time) {
	c := t.c
	var due []*item
	c.mu.Lock()
	for _, l := range c.lanes {
		for _, it := range l.queue {
			if now.Sub(it.lastProgress) >= t.every {
				it.lastProgress = now
				due = append(due, it)
			}
		}
	}
	c.mu.Unlock()
	for _, it := range due {
		if err := it.msg.InProgress(); err != nil {
			c.log.Debug("in-progress signal failed", "seq", it.seq, "err", err)
		}
	}
}

// stopWait waits for run to return.
func (t *progressTicker) stopWait() { <-t.done }
