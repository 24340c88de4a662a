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
