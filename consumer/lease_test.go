//go:build unix

package consumer

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/natsembed"
)

// leaseInstance is a Consumer set up (streams, buckets, partition
// consumers) but not running: the test drives its leases by hand.
func leaseInstance(t *testing.T, url, id string) *Consumer {
	return leaseInstanceGrace(t, url, id, 300*time.Millisecond)
}

// leaseInstanceGrace is leaseInstance with a lapsed lease's grace.
func leaseInstanceGrace(t *testing.T, url, id string, grace time.Duration) *Consumer {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := New(Options{
		Conn: nc, Manage: true, Partitions: 2, InstanceID: id,
		Heartbeat: 100 * time.Millisecond, PinnedTTL: time.Second, LapseGrace: grace,
		Handler: &handlers.Handler{Users: benchUsers{}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := c.setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLeaseFence: one holder at a time; a lease not renewed fences its
// holder's calls before another instance can take it; a renewal keeps it;
// a release hands it over at once.
func TestLeaseFence(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx := t.Context()
	a := leaseInstance(t, srv.URL(), "a")
	b := leaseInstance(t, srv.URL(), "b")
	pa, pb := a.sources[0], b.sources[0] // the same partition, seen by each

	if leased(pa) {
		t.Fatal("a partition never leased reads as leased")
	}
	if a.Leads() {
		t.Fatal("a leads without partition 0's lease")
	}
	if n := len(a.JetStreamConsumers()); n != 0 {
		t.Fatalf("a reports %d consumers for lag while holding no lease", n)
	}
	if !a.acquire(ctx, pa) {
		t.Fatal("a could not take a free lease")
	}
	if b.acquire(ctx, pb) {
		t.Fatal("b took a lease a holds")
	}
	if !a.Leads() || b.Leads() {
		t.Fatalf("leads: a %v, b %v; want a only", a.Leads(), b.Leads())
	}
	if n := len(a.JetStreamConsumers()); n != 1 {
		t.Fatalf("a reports %d consumers for lag; want the 1 it holds", n)
	}
	call, unfence := fenced(context.Background(), pa)
	defer unfence()

	// Renewed every heartbeat for a while: the fence holds.
	for range 5 {
		time.Sleep(a.opts.Heartbeat)
		a.renewLeases(ctx)
	}
	if call.Err() != nil || !leased(pa) {
		t.Fatal("the fence fell while the lease was renewed")
	}
	if b.acquire(ctx, pb) {
		t.Fatal("b took a renewed lease")
	}

	// a stops renewing (a pause, a cut): its fence falls first, then the
	// server expires the lease and b takes it. b tries all along: every
	// try while a's fence is up must fail.
	upTries := 0
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b never took the lapsed lease (%d tries while a's fence was up)", upTries)
		}
		up := call.Err() == nil
		if b.acquire(ctx, pb) {
			if call.Err() == nil || leased(pa) {
				t.Fatalf("b took the lease while a's fence was up (after %d refused tries)", upTries)
			}
			break
		}
		if up {
			upTries++
		}
	}
	if upTries == 0 {
		t.Fatal("b never tried while a's fence was up: the probe proved nothing")
	}
	t.Logf("b refused %d times while a's fence was up, then took the lease after it fell", upTries)
	if !leased(pb) || !b.Leads() || a.Leads() {
		t.Fatalf("after the takeover: b leased %v, b leads %v, a leads %v", leased(pb), b.Leads(), a.Leads())
	}

	// a's next renewal finds the lease gone: it lets go for good.
	a.renewLeases(ctx)
	if pa.held() {
		t.Fatal("a still holds a lease b took")
	}

	// b releases: a can take it at once.
	b.release(ctx, pb)
	if leased(pb) || pb.held() {
		t.Fatal("b still leased after releasing")
	}
	if !a.acquire(ctx, pa) {
		t.Fatal("a could not take a released lease")
	}
}

// TestLapsedLeaseWaitsForOldCalls: the lease of a holder that stopped
// renewing it (a crash) outlives the holder's fence by the lapse grace,
// so that a request the holder sent before its fence fell lands before
// the next holder's first call; a lease handed over is taken at once.
func TestLapsedLeaseWaitsForOldCalls(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx := t.Context()
	const grace = 1500 * time.Millisecond
	a := leaseInstanceGrace(t, srv.URL(), "a", grace)
	b := leaseInstanceGrace(t, srv.URL(), "b", grace)
	pa, pb := a.sources[0], b.sources[0]
	if !b.acquire(ctx, pb) {
		t.Fatal("b could not take a lease never taken")
	}
	b.release(ctx, pb)
	if !a.acquire(ctx, pa) {
		t.Fatal("a could not take a lease handed over: no grace after a release")
	}
	call, unfence := fenced(context.Background(), pa)
	defer unfence()

	// a stops renewing. b tries all along; it must be refused until the
	// grace has run from the fall of a's fence.
	var fell time.Time
	refused := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b never took the lapsed lease (refused %d times after a's fence fell)", refused)
		}
		if fell.IsZero() && call.Err() != nil {
			fell = time.Now()
		}
		if !b.acquire(ctx, pb) {
			if !fell.IsZero() {
				refused++
			}
			continue
		}
		if fell.IsZero() {
			t.Fatal("b took the lease while a's fence was up")
		}
		if waited := time.Since(fell); waited < grace {
			t.Fatalf("b took the lapsed lease %v after a's fence fell, within the grace of %v", waited, grace)
		}
		t.Logf("b took the lapsed lease %v after a's fence fell (grace %v), refused %d times meanwhile", time.Since(fell).Round(time.Millisecond), grace, refused)
		break
	}
}
