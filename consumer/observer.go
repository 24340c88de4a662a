package consumer

import (
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// Observer is told what the pipeline does, for metrics. The metrics
// package implements it; nil means none.
type Observer interface {
	// EventReceived: a message was delivered (redeliveries included).
	EventReceived()
	// EventFinished: an event's outcome was stored. latency is from the
	// event's time to the outcome, valid when hasTime.
	EventFinished(action handlers.Action, result outcome.Result, reason outcome.Reason, latency time.Duration, hasTime bool)
	// Retry: an attempt failed transiently and the lane waits wait.
	Retry(class string, wait time.Duration, retryAfter bool)
	// BreakerState: 0 closed, 1 half-open, 2 open.
	BreakerState(state int)
}

type nopObserver struct{}

func (nopObserver) EventReceived() {}
func (nopObserver) EventFinished(handlers.Action, outcome.Result, outcome.Reason, time.Duration, bool) {
}
func (nopObserver) Retry(string, time.Duration, bool) {}
func (nopObserver) BreakerState(int)                  {}
