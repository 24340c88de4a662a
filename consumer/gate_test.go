package consumer

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGateFollowsItsSize: no more workers step at once than the size
// says; a larger size lets more in without anyone leaving; close lets
// every waiter go.
func TestGateFollowsItsSize(t *testing.T) {
	var size atomic.Int64
	size.Store(3)
	g := newGate(func() int { return int(size.Load()) })
	var in, top atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	entered := make(chan bool, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := g.enter()
			entered <- ok
			if !ok {
				return
			}
			n := in.Add(1)
			for {
				t := top.Load()
				if n <= t || top.CompareAndSwap(t, n) {
					break
				}
			}
			<-release
			in.Add(-1)
			g.leave()
		}()
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for in.Load() != int64(want) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := in.Load(); got != int64(want) {
			t.Fatalf("%d inside, want %d", got, want)
		}
	}
	waitFor(3)
	// Nobody leaves, the size grows: the waiters pass it on.
	size.Store(7)
	g.mu.Lock()
	g.cond.Signal()
	g.mu.Unlock()
	waitFor(7)
	if top.Load() > 7 {
		t.Fatalf("%d inside at once, more than the size 7", top.Load())
	}
	g.close()
	close(release)
	wg.Wait()
	close(entered)
	var refused int
	for ok := range entered {
		if !ok {
			refused++
		}
	}
	if refused != 13 {
		t.Errorf("%d refused at close, want the 13 still waiting", refused)
	}
}

// TestGateStartsWorkersAsNeeded: workers are started for the size, not
// all up to the most, and more as the size grows and steps end.
func TestGateStartsWorkersAsNeeded(t *testing.T) {
	var size atomic.Int64
	size.Store(3)
	g := newGate(func() int { return int(size.Load()) })
	spawned := 0
	g.start(10, func() { spawned++ })
	if spawned != 4 {
		t.Fatalf("%d workers started for a size of 3, want 4 (the size and one waiting)", spawned)
	}
	for range 3 {
		if !g.enter() {
			t.Fatal("enter refused")
		}
	}
	size.Store(20)
	for range 3 {
		g.leave()
	}
	if spawned != 7 {
		t.Errorf("%d workers after three steps ended under a size of 20, want 7 (one more each)", spawned)
	}
	for range 10 {
		g.enter()
		g.leave()
	}
	if spawned != 10 {
		t.Errorf("%d workers, want the most, 10", spawned)
	}
	size.Store(30)
	g.max = 12
	g.enter()
	g.close()
	g.leave() // a step that ends after the close starts no one
	if spawned != 10 {
		t.Errorf("%d workers after the close, want 10", spawned)
	}

	all := 0
	newGate(nil).start(10, func() { all++ })
	if all != 10 {
		t.Errorf("without a size %d workers started, want all 10", all)
	}
}
