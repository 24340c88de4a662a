package service

import (
	"context"
	"time"

	"github.com/kdsync/kdsync/throttle"
)

// throttleOptions are the pacer's settings: the consumer's concurrency is
// the ceiling of calls in flight.
func (o *Options) throttleOptions() throttle.Options {
	return throttle.Options{Max: o.Consumer.Concurrency, Min: o.ConcurrencyMin, Rate: o.APIRate, MaxPause: o.Consumer.RetryMax}
}

// followShare splits the known quota by the partitions this instance
// holds, read every interval. A smaller share applies at once; a larger
// one once it has been read twice in a row, so that an instance taking a
// partition over raises its rate only after the one that gave it up has
// lowered its own.
func followShare(ctx context.Context, lim *throttle.Limiter, share func() (held, total int), every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	held, total := share()
	lim.SetShare(held, total)
	cur := frac(held, total)
	pending := -1.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h, n := share()
		f := frac(h, n)
		switch {
		case f <= cur:
			lim.SetShare(h, n)
			cur, pending = f, -1
		case f == pending:
			lim.SetShare(h, n)
			cur, pending = f, -1
		default:
			pending = f
		}
	}
}

func frac(held, total int) float64 {
	if total < 1 {
		return 1
	}
	return float64(held) / float64(total)
}
