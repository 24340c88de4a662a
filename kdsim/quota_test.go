package kdsim_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kdsync/kdsync/kdsim"
)

// TestQuota: past the quota of a one-second window requests are refused
// 429 with the seconds left in the window; the next window accepts again;
// the admin API changes the quota while the server runs.
func TestQuota(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	f := newFixture(t, kdsim.Options{Token: testToken, Now: clk.Now, Faults: kdsim.Faults{Quota: 3}})
	get := func() reply { return f.bearer(t, http.MethodGet, "/users/count", nil) }
	for range 3 {
		get().expect(t, 200, "0", "success")
	}
	clk.Advance(400 * time.Millisecond)
	rp := get()
	rp.expect(t, 429, kdsim.CodeTooManyRequests, "quota")
	if ra := rp.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1", ra)
	}
	clk.Advance(600 * time.Millisecond) // the next window
	get().expect(t, 200, "0", "success")

	var faults kdsim.Faults
	if st := f.admin(t, http.MethodPut, "quota?rate=1", "", &faults); st != 200 || faults.Quota != 1 {
		t.Fatalf("PUT quota?rate=1: %d, %+v", st, faults)
	}
	get().expect(t, 429, kdsim.CodeTooManyRequests, "quota")
	if st := f.admin(t, http.MethodPut, "quota?rate=0", "", &faults); st != 200 || faults.Quota != 0 {
		t.Fatalf("PUT quota?rate=0: %d, %+v", st, faults)
	}
	get().expect(t, 200, "0", "success")
	if st := f.admin(t, http.MethodPut, "quota?rate=-1", "", nil); st != 400 {
		t.Errorf("PUT quota?rate=-1: %d, want 400", st)
	}
	if n := f.srv.Stats().Faults["quota429"]; n != 2 {
		t.Errorf("quota429 = %d, want 2", n)
	}
}

// TestMaxConcurrent: with a cap of 2 and a latency, of 6 requests sent at
// once 2 are handled and the rest are refused 429 with Retry-After: 1.
func TestMaxConcurrent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Token: testToken})
	if err := f.srv.SetQuota(0, 2); err != nil {
		t.Fatal(err)
	}
	// The handled ones wait until all six have been decided.
	if err := f.srv.SetFaults(kdsim.Faults{MaxConcurrent: 2, Latency: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rp := f.bearer(t, http.MethodGet, "/users/count", nil)
			if rp.status == 429 && rp.header.Get("Retry-After") != "1" {
				t.Errorf("429 with Retry-After %q, want 1", rp.header.Get("Retry-After"))
			}
			mu.Lock()
			got[rp.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got[200] != 2 || got[429] != 4 {
		t.Errorf("answers %v, want 2 × 200 and 4 × 429", got)
	}
}
