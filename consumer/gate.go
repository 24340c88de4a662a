package consumer

import "sync"

// gate bounds the workers stepping at once to a size that may change
// while they run (Options.Workers). A worker holds a place from before it
// takes a lane until its step ends; the others wait. Growth of the size is
// passed on from waiter to waiter: each one that gets a place wakes the
// next while places remain. Workers are started as the size first needs
// them, up to max, rather than all at once: at 0 ms of KooDrive latency
// the limit stays near 64, and 512 idle workers cost ~1.5 MiB of peak RSS
// for nothing.
type gate struct {
	size func() int // nil: no bound

	mu      sync.Mutex
	cond    sync.Cond
	busy    int
	closed  bool
	started int    // workers started so far
	max     int    // at most
	spawn   func() // starts one more worker; nil: none
}

func newGate(size func() int) *gate {
	g := &gate{size: size}
	g.cond.L = &g.mu
	return g
}

// start starts the workers the size needs now (all max of them without a
// size), with spawn starting one more later as the size grows.
func (g *gate) start(max int, spawn func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.max, g.spawn = max, spawn
	n := max
	if g.size != nil {
		n = min(max, g.size()+1)
	}
	for g.started < n {
		g.started++
		spawn()
	}
}

// growLocked starts one more worker when the size has outgrown those
// started. Called with g.mu held, by a worker (so that a WaitGroup
// counting the workers is above zero).
func (g *gate) growLocked() {
	if g.spawn != nil && !g.closed && g.started < min(g.max, g.size()+1) {
		g.started++
		g.spawn()
	}
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
	g.growLocked()
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
