package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// consumerState describes kdsync's durable consumer as the server sees
// it, to tell a stalled pull (waiting pulls 0 while events are pending and
// few are unacknowledged) from a busy kdsync.
func consumerState(ctx context.Context, nc *nats.Conn) string {
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, outcome.DefaultStream, outcome.DefaultDurable)
	if err != nil {
		return err.Error()
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("consumer kdsync: pending %d, unacknowledged %d (max %d), waiting pulls %d (max %d), redelivered %d",
		info.NumPending, info.NumAckPending, info.Config.MaxAckPending, info.NumWaiting, info.Config.MaxWaiting, info.NumRedelivered)
}

// trimPerUser keeps the first n events, which keeps each user's prefix.
func trimPerUser(evs []workload.Event, n int) []workload.Event {
	if len(evs) > n {
		return evs[:n]
	}
	return evs
}

// restamp sets every event's time to at, so latency counts from publish.
func restamp(evs []workload.Event, at time.Time) []workload.Event {
	out := make([]workload.Event, len(evs))
	for i, e := range evs {
		out[i], _ = workload.Encode(e.Intent, "identity.employee.", "hris/kdload", at)
	}
	return out
}

// publishAtRate publishes evs at rate events/s, stamping each as it goes.
func publishAtRate(ctx context.Context, nc *nats.Conn, evs []workload.Event, rate float64) error {
	start := time.Now()
	const batch = 10
	for i := 0; i < len(evs); i += batch {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		end := min(i+batch, len(evs))
		if err := harness.Publish(ctx, nc, outcome.DefaultStream, restamp(evs[i:end], time.Now())); err != nil {
			return err
		}
	}
	return nil
}
