package consumer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/internal/harness"
)

// TestDrain: when Drain returns, the connection is closed and what it
// published before is stored (nats.Conn.Drain alone returns at once).
func TestDrain(t *testing.T) {
	ns, _, js := harness.NewJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "D", Subjects: []string{"d.>"}})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		if err := nc.Publish("d.x", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := consumer.Drain(nc, 10*time.Second); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if !nc.IsClosed() {
		t.Fatal("Drain returned with the connection not closed")
	}
	// Stored messages become visible at once; allow the server a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A second Drain of a closed connection is not an error.
	if err := consumer.Drain(nc, time.Second); err != nil {
		t.Fatalf("Drain of a closed connection: %v", err)
	}
}
