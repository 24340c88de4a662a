package consumer

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultStateCache is Options.StateCache's default: a budget that keeps
// kdsync's peak RSS within 64 MiB whatever the number of users (see
// docs/performance.md, "Flat in the number of users").
const DefaultStateCache = "4MiB"

// CacheSize bounds the cache of per-user records (watermarks): by entries,
// or by the memory the entries take (an estimate, see stateEntryBytes).
// The zero CacheSize is no cache: every event reads its user's record from
// the KV bucket.
type CacheSize struct {
	Entries int
	Bytes   int64
}

// Bounds of a CacheSize.
const (
	maxCacheEntries = 50_000_000
	maxCacheBytes   = 64 << 30
)

// ParseCacheSize reads a state cache size: a number of entries ("20000"),
// or a memory budget with a unit KiB, MiB or GiB ("8MiB"); "0" is no
// cache.
func ParseCacheSize(s string) (CacheSize, error) {
	t := strings.TrimSpace(s)
	unit := int64(0)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, unit = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return CacheSize{}, fmt.Errorf("state cache %q: want a number of entries (20000) or a size in KiB, MiB or GiB (8MiB); 0 for none", s)
	}
	if unit == 0 {
		if n > maxCacheEntries {
			return CacheSize{}, fmt.Errorf("state cache %q: at most %d entries", s, maxCacheEntries)
		}
		return CacheSize{Entries: int(n)}, nil
	}
	if n > maxCacheBytes/unit {
		return CacheSize{}, fmt.Errorf("state cache %q: at most %d GiB", s, maxCacheBytes>>30)
	}
	return CacheSize{Bytes: n * unit}, nil
}

// String formats c as ParseCacheSize reads it.
func (c CacheSize) String() string {
	switch {
	case c.Bytes > 0 && c.Bytes%(1<<20) == 0:
		return strconv.FormatInt(c.Bytes>>20, 10) + "MiB"
	case c.Bytes > 0 && c.Bytes%(1<<10) == 0:
		return strconv.FormatInt(c.Bytes>>10, 10) + "KiB"
	case c.Bytes > 0:
		return strconv.FormatInt(c.Bytes, 10) + "B"
	}
	return strconv.Itoa(c.Entries)
}

// stateEntryBytes is the memory one cached record takes besides the
// strings it holds (its user key and the ids of its recent events): the
// watermark and its state's fields, the LRU's list element and its map
// slot. Measured by BenchmarkStateCacheMemory (heap per entry, the key and
// ids counted separately), rounded up.
const stateEntryBytes = 288

// entryBytes estimates what caching wm under key costs.
func entryBytes(key string, wm *watermark) int64 {
	n := stateEntryBytes + len(key)
	for _, id := range wm.rec.Recent {
		n += 16 + len(id) // the string header in the slice, its bytes
	}
	return int64(n)
}

// stateCache keeps recently used per-user records within a budget,
// evicting the least recently used. A record evicted is read again from
// the KV bucket when its user's next event comes: the bucket, written with
// compare-and-set, is the truth; the cache only saves reads. Safe for
// concurrent use.
type stateCache struct {
	size CacheSize

	mu    sync.Mutex
	lru   *simplelru.LRU[string, cachedState] // nil: no cache
	bytes int64

	hits, misses, evictions, reads, writes atomic.Uint64
}

type cachedState struct {
	wm   *watermark
	size int64
}

func newStateCache(size CacheSize) *stateCache {
	c := &stateCache{size: size}
	if size.Entries == 0 && size.Bytes == 0 {
		return c
	}
	limit := size.Entries
	if limit == 0 {
		limit = math.MaxInt // bounded by bytes
	}
	c.lru, _ = simplelru.NewLRU(limit, func(_ string, v cachedState) { c.bytes -= v.size }) // limit > 0
	return c
}

// get returns user's cached record, counting a hit or a miss.
func (c *stateCache) get(user string) (*watermark, bool) {
	if c.lru == nil {
		c.misses.Add(1)
		return nil, false
	}
	c.mu.Lock()
	v, ok := c.lru.Get(user)
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
		return v.wm, true
	}
	c.misses.Add(1)
	return nil, false
}

// put caches wm as user's record, or accounts again for a record changed
// in place, and evicts the least recently used records past the budget.
func (c *stateCache) put(user string, wm *watermark) {
	if c.lru == nil {
		return
	}
	size := entryBytes(user, wm)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(user); ok {
		c.bytes -= old.size
	}
	if c.lru.Add(user, cachedState{wm: wm, size: size}) {
		c.evictions.Add(1)
	}
	c.bytes += size
	for c.size.Bytes > 0 && c.bytes > c.size.Bytes && c.lru.Len() > 1 {
		c.lru.RemoveOldest()
		c.evictions.Add(1)
	}
}

// forget drops user's record, so that the next event reads it again.
func (c *stateCache) forget(user string) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	c.lru.Remove(user)
	c.mu.Unlock()
}

// purge drops every record (another instance may have moved them).
func (c *stateCache) purge() {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	c.lru.Purge()
	c.bytes = 0
	c.mu.Unlock()
}

// StateStats are the figures of the per-user records: the cache and the
// KV bucket reads and writes behind it.
type StateStats struct {
	// Cached records and their estimated memory.
	Cached      int
	CachedBytes int64
	// Hits and Misses of the cache; Evictions of records past its budget.
	Hits, Misses, Evictions uint64
	// Reads and Writes of records in the KV bucket.
	Reads, Writes uint64
}

func (c *stateCache) stats() StateStats {
	s := StateStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(),
		Reads: c.reads.Load(), Writes: c.writes.Load(),
	}
	if c.lru != nil {
		c.mu.Lock()
		s.Cached, s.CachedBytes = c.lru.Len(), c.bytes
		c.mu.Unlock()
	}
	return s
}
