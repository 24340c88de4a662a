package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/outcome"
)

func TestParseCacheSize(t *testing.T) {
	for in, want := range map[string]CacheSize{
		"0":        {},
		"20000":    {Entries: 20000},
		" 7 ":      {Entries: 7},
		"4MiB":     {Bytes: 4 << 20},
		"512 KiB":  {Bytes: 512 << 10},
		"1GiB":     {Bytes: 1 << 30},
		"0MiB":     {},
		"50000000": {Entries: 50_000_000},
	} {
		got, err := ParseCacheSize(in)
		if err != nil || got != want {
			t.Errorf("ParseCacheSize(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "4MB", "4 mib", "1.5MiB", "MiB", "50000001", "65GiB", "lots"} {
		if got, err := ParseCacheSize(in); err == nil {
			t.Errorf("ParseCacheSize(%q) = %+v, want an error", in, got)
		}
	}
	for _, s := range []string{"0", "20000", "4MiB", "512KiB"} {
		c, err := ParseCacheSize(s)
		if err != nil {
			t.Fatal(err)
		}
		if c.String() != s {
			t.Errorf("%q reads back as %q", s, c.String())
		}
	}
}

func TestOptionsCheckStateCache(t *testing.T) {
	if err := (Options{StateCache: "4MB"}).Check(); err == nil {
		t.Error("a state cache of 4MB (not MiB) passed Check")
	}
	for _, s := range []string{"", "0", "100", "16MiB"} {
		if err := (Options{StateCache: s}).Check(); err != nil {
			t.Errorf("state cache %q: %v", s, err)
		}
	}
}

func rec(seq uint64, ids ...string) *watermark {
	return &watermark{rec: outcome.Record{Seq: seq, Recent: ids}, rev: seq}
}

func keys(c *stateCache) []string { return c.lru.Keys() }

// TestStateCacheEntries: past its entries the least recently used record
// goes, one at a time, and a read counts as a use.
func TestStateCacheEntries(t *testing.T) {
	c := newStateCache(CacheSize{Entries: 3})
	for i := range 3 {
		c.put("u"+strconv.Itoa(i), rec(uint64(i)))
	}
	if _, ok := c.get("u0"); !ok { // u0 is now the most recent
		t.Fatal("u0 missing before the cache was full")
	}
	c.put("u3", rec(3)) // evicts u1, the least recently used
	if got, want := fmt.Sprint(keys(c)), "[u2 u0 u3]"; got != want {
		t.Fatalf("cached, oldest first: %s, want %s", got, want)
	}
	if _, ok := c.get("u1"); ok {
		t.Fatal("u1 still cached after eviction")
	}
	c.put("u0", rec(10)) // an update, not a new entry: nothing evicted
	wm, ok := c.get("u0")
	if !ok || wm.rec.Seq != 10 {
		t.Fatalf("u0 = %+v, %v; want the updated record", wm, ok)
	}
	st := c.stats()
	if st.Cached != 3 || st.Evictions != 1 || st.Hits != 2 || st.Misses != 1 {
		t.Fatalf("stats %+v; want 3 cached, 1 eviction, 2 hits, 1 miss", st)
	}
	c.forget("u0")
	c.purge()
	if st := c.stats(); st.Cached != 0 || st.CachedBytes != 0 || st.Evictions != 1 {
		t.Fatalf("after forget and purge: %+v; want empty, forgetting is no eviction", st)
	}
}

// TestStateCacheBytes: a memory budget holds whatever the number of users,
// counts records that grew in place again, and evicts the oldest first.
func TestStateCacheBytes(t *testing.T) {
	one := entryBytes("u00000", rec(1))
	c := newStateCache(CacheSize{Bytes: 10 * one})
	for i := range 1000 {
		c.put(fmt.Sprintf("u%05d", i), rec(uint64(i)))
		if st := c.stats(); st.CachedBytes > 10*one {
			t.Fatalf("after %d users: %d bytes cached, budget %d", i+1, st.CachedBytes, 10*one)
		}
	}
	st := c.stats()
	if st.Cached != 10 || st.Evictions != 990 {
		t.Fatalf("stats %+v; want the 10 most recent and 990 evictions", st)
	}
	if got := keys(c)[0]; got != "u00990" {
		t.Fatalf("oldest cached %s, want u00990", got)
	}
	// The newest record grows (its recent event ids) in place and is put
	// again: the cache makes room by evicting the oldest.
	wm, _ := c.get("u00999")
	wm.rec.Recent = []string{"a-rather-long-event-identifier-0001", "a-rather-long-event-identifier-0002"}
	c.put("u00999", wm)
	st = c.stats()
	if st.CachedBytes > 10*one || st.Cached != 9 || keys(c)[0] != "u00991" {
		t.Fatalf("after growth: %+v, oldest %s; want within %d bytes, 9 cached from u00991", st, keys(c)[0], 10*one)
	}
	// A record larger than the whole budget is still kept alone: the
	// event under way needs it.
	big := rec(5000, string(make([]byte, 20*one)))
	c.put("big", big)
	if st := c.stats(); st.Cached != 1 {
		t.Fatalf("after an oversized record: %+v; want it alone", st)
	}
}

// TestStateCacheNone: size 0 caches nothing; every get is a miss.
func TestStateCacheNone(t *testing.T) {
	c := newStateCache(CacheSize{})
	c.put("u", rec(1))
	if _, ok := c.get("u"); ok {
		t.Fatal("a record was cached without a cache")
	}
	c.forget("u")
	c.purge()
	if st := c.stats(); st.Misses != 1 || st.Cached != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkStateCacheMemory prints the heap one cached record takes
// (bytes/entry), its user key and event ids not counted, which is what
// stateEntryBytes estimates; and the estimate's ratio to it.
func BenchmarkStateCacheMemory(b *testing.B) {
	const n = 100_000
	users := make([]string, n)
	ids := make([]string, n)
	for i := range n {
		users[i] = strconv.Itoa(1008600000000000000 + i)
		ids[i] = fmt.Sprintf("1-%d-0", i)
	}
	var perEntry, estimate float64
	for b.Loop() {
		c := newStateCache(CacheSize{Entries: n})
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		var est int64
		for i := range n {
			d, r, s := int64(7), 1, 0
			wm := &watermark{rev: uint64(i), rec: outcome.Record{Seq: uint64(i), AppliedSeq: uint64(i), Recent: []string{ids[i]}}}
			wm.rec.State.Exists, wm.rec.State.DeptID, wm.rec.State.Role, wm.rec.State.Status = true, &d, &r, &s
			c.put(users[i], wm)
			est += entryBytes(users[i], wm)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		// The keys and ids exist before the cache; count them as the
		// estimate does.
		strs := int64(0)
		for i := range n {
			strs += int64(len(users[i]) + 16 + len(ids[i]))
		}
		perEntry = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)+strs) / n
		estimate = float64(est) / n
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perEntry, "bytes/entry")
	b.ReportMetric(estimate/perEntry, "estimate/actual")
}

// BenchmarkStateRead prints what reading a per-user record from the state
// bucket costs, the alternative to keeping it cached: cpu-ns/op is the CPU
// of this process per read, the embedded NATS server's included (as in
// production, where the server runs elsewhere, the two halves are paid on
// two machines). Records of 100,000 users; a read of an existing record at
// random, and of a user without one (a hire).
func BenchmarkStateRead(b *testing.B) {
	ns, err := natsembed.Start(natsembed.Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Stop()
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "BENCH_STATE", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	const users = 100_000
	d, r, s := int64(1243693141656107521), 1, 0
	rec := outcome.Record{Seq: 1, AppliedSeq: 1, Recent: []string{"1-12345-0"}, State: handlers.State{Exists: true, DeptID: &d, Role: &r, Status: &s}}
	val := marshalRecord(&rec)
	futs := make([]jetstream.PubAckFuture, 0, 2000)
	for i := range users {
		f, err := js.PublishAsync("$KV.BENCH_STATE."+outcome.KVKey(strconv.Itoa(1008600000000000000+i)), val)
		if err != nil {
			b.Fatal(err)
		}
		if futs = append(futs, f); len(futs) == cap(futs) || i == users-1 {
			for _, f := range futs {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			futs = futs[:0]
		}
	}
	for _, kind := range []string{"existing", "missing"} {
		b.Run(kind, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			cpu0 := cpuTime()
			for b.Loop() {
				u := 1008600000000000000 + rng.IntN(users)
				if kind == "missing" {
					u += users
				}
				_, err := kv.Get(ctx, outcome.KVKey(strconv.Itoa(u)))
				if err != nil && (kind == "existing" || !errors.Is(err, jetstream.ErrKeyNotFound)) {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
