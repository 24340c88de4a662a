package metrics

import "time"

// Stats are the consumer's lane figures, as SetStats reads them; the
// service fills them from the consumer's own (metrics reads no consumer
// type, only the outcome contract).
type Stats struct {
	Lanes     int // users with events held
	InFlight  int // events held, unacknowledged
	Oldest    time.Duration
	GuardHeld int // deprovisioning events held for an operator
	// Parked is how many events are parked, out of the ack window.
	Parked int
	// State: the per-user records' cache and KV reads and writes.
	State StateStats
}

// StateStats are the figures of the per-user records' cache and of the
// state bucket's reads and writes.
type StateStats struct {
	// Cached records and their estimated memory.
	Cached      int
	CachedBytes int64
	// Hits and Misses of the cache; Evictions of records past its budget.
	Hits, Misses, Evictions uint64
	// Reads and Writes of records in the KV bucket.
	Reads, Writes uint64
}
