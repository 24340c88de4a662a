package consumer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/kdsim"
)

// TestBindOnly: with Manage off kdsync creates nothing. Missing streams
// stop it at start with an error naming them (not a consumer that waits
// forever on its first outcome); once they exist it binds and applies.
func TestBindOnly(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	bind := e.options()
	bind.Manage = false

	c, err := consumer.New(bind)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "not managing streams") || !strings.Contains(err.Error(), "KDSYNC_OUTCOMES") ||
		!strings.Contains(err.Error(), "KDSYNC_DLQ") {
		t.Fatalf("Run without streams, not managing: %v; want an error naming KDSYNC_OUTCOMES and KDSYNC_DLQ", err)
	}

	// An operator (here: a managed instance, once) creates the streams,
	// the bucket and the consumer.
	// collect waits for the outcome stream, so the managed set-up is done
	// when it returns.
	managed := e.run(e.options())
	o := e.collect()
	// The durable consumer is bound last: once it exists, the bucket the
	// binding instance needs does too.
	js := e.js()
	waitFor(t, 30*time.Second, "the managed set-up", func() bool {
		_, err := js.Consumer(context.Background(), "IDENTITY", "kdsync")
		return err == nil
	})
	managed()

	evs := e.generate(50, 4, 7)
	stop := e.run(bind)
	e.publish(evs)
	e.wait(o, len(evs), 60*time.Second)
	stop()
	e.check(evs, o, false)
}

// TestConsumerDeletedMidRun: someone deletes kdsync's durable consumer
// while it works; kdsync recreates it and every event still gets exactly
// one effect and one outcome, in order per user.
func TestConsumerDeletedMidRun(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	evs := e.generate(200, 5, 11)
	half := len(evs) / 2
	stop := e.run(e.options())
	defer stop()
	o := e.collect()
	e.publish(evs[:half])
	e.wait(o, half, 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.js().DeleteConsumer(ctx, "IDENTITY", "kdsync"); err != nil {
		t.Fatalf("delete consumer: %v", err)
	}
	e.publish(evs[half:])
	e.wait(o, len(evs), 90*time.Second)
	if _, err := e.js().Consumer(ctx, "IDENTITY", "kdsync"); err != nil {
		t.Fatalf("the durable consumer was not recreated: %v", err)
	}
	e.check(evs, o, false)
}
