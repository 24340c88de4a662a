package consumer

import "sync"

// gate bounds the workers stepping at once to a size that may change
// while they run (Options.Workers). A worker holds a place from before it
// takes a lane until its step ends; the others wait. Growth of the size is
// passed on from waiter to waiter: each one that gets a place wakes the
// next while places remain.
type gate struct {
	size func() int // nil: no bound

	mu     sync.Mutex
	cond   sync.Cond
	busy   int
	closed bool
}

func newGate(size func() int) *gate {
	g := &gate{size: size}
	g.cond.L = &g.mu
	return g
}

// enter waits for a place; false once the gate is closed.
func (g *gate) enter() bool {
	if g.size == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.closed && g.busy >= max(g.size(), 1) {
		g.cond.Wait()
	}
	if g.closed {
		return false
	}
	g.busy++
	if g.busy < g.size() {
		g.cond.Signal()
	}
	return true
}

// leave gives a place back.
func (g *gate) leave() {
	if g.size == nil {
		return
	}
	g.mu.Lock()
	g.busy--
	g.mu.Unlock()
	g.cond.Signal()
}

// close lets every waiter go, for shutdown.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cond.Broadcast()
}
