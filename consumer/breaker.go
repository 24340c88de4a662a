package consumer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/sony/gobreaker/v2"

	"github.com/kdsync/kdsync/handlers"
)

// breaker trips when KooDrive fails for everyone. While it is open, lanes
// wait and one probe attempt goes through every BreakerProbe; the pull loop
// stops pulling until it closes.
type breaker struct {
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	probe time.Duration

	mu       sync.Mutex
	openCh   chan struct{} // closed when the breaker opens
	closedCh chan struct{} // closed when it closes again
}

func newBreaker(o Options, log *slog.Logger, obs Observer) *breaker {
	b := &breaker{probe: o.BreakerProbe, openCh: make(chan struct{}), closedCh: make(chan struct{})}
	close(b.closedCh)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         "koodrive",
		MaxRequests:  1,
		Interval:     o.BreakerWindow,
		BucketPeriod: o.BreakerWindow / 10,
		Timeout:      o.BreakerProbe,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.Requests >= o.BreakerMinRequests &&
				float64(n.TotalFailures) >= o.BreakerFailureRatio*float64(n.Requests)
		},
		// Only transient failures count against KooDrive: a refused bad
		// request is KooDrive working. Throttling (429) is KooDrive
		// working too, at a pace it sets: it counts neither way, and the
		// pacer (throttle) slows down instead.
		IsSuccessful: func(err error) bool { return err == nil || !handlers.Classify(err).Retryable },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) || handlers.Classify(err).Throttled },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			log.Info("breaker state changed", "from", from.String(), "to", to.String())
			obs.BreakerState(int(to))
			b.mu.Lock()
			defer b.mu.Unlock()
			switch to {
			case gobreaker.StateOpen:
				select {
				case <-b.openCh:
				default:
					close(b.openCh)
					b.closedCh = make(chan struct{})
				}
			case gobreaker.StateClosed:
				select {
				case <-b.closedCh:
				default:
					close(b.closedCh)
					b.openCh = make(chan struct{})
				}
			}
		},
	})
	return b
}

// opened returns a channel closed once the breaker is open.
func (b *breaker) opened() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openCh
}

// closed returns a channel closed once the breaker is closed.
func (b *breaker) closed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closedCh
}

// throttledWait is the wait after a 429 (throttled, handlers.Failure): its Retry-After (at least
// initial, at most the limit), without growing the exponential backoff,
// so that throttling makes an event wait as long as KooDrive asks and no
// longer, and spends its retry budget (wall time) no faster than time
// passes. It returns 0 for any other failure, and when the budget would be
// spent by the wait (NextBackOff then says so).
func (r *retryAfter) throttledWait(throttled bool, initial time.Duration) time.Duration {
	if !throttled {
		return 0
	}
	b, ok := r.BackOff.(*backoff.ExponentialBackOff)
	if !ok {
		return 0
	}
	d := min(max(r.next, initial), r.limit)
	if b.MaxElapsedTime != 0 && b.GetElapsedTime()+d > b.MaxElapsedTime {
		return 0
	}
	r.used = r.next > 0
	r.next = 0
	return d
}
