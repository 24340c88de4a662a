package guard_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/internal/harness"
)

func TestParseLimit(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		in      string
		want    guard.Limit
		str     string // the String of the result
		wantErr string // part of the error; empty: none
	}{
		"empty is off":        {in: "", str: "off"},
		"zero is off":         {in: "0", str: "off"},
		"off":                 {in: "off", str: "off"},
		"50 per 10 minutes":   {in: "50/10m", want: guard.Limit{N: 50, Window: 10 * time.Minute}, str: "50/10m0s"},
		"1 per second":        {in: "1/1s", want: guard.Limit{N: 1, Window: time.Second}, str: "1/1s"},
		"compound duration":   {in: "200/1h30m", want: guard.Limit{N: 200, Window: 90 * time.Minute}, str: "200/1h30m0s"},
		"no window":           {in: "50", wantErr: "want N/duration"},
		"no count":            {in: "/10m", wantErr: "not a positive count"},
		"zero count":          {in: "0/10m", wantErr: "not a positive count"},
		"negative count":      {in: "-5/10m", wantErr: "not a positive count"},
		"count not a number":  {in: "fifty/10m", wantErr: "not a positive count"},
		"empty window":        {in: "50/", wantErr: "not a positive duration"},
		"window without unit": {in: "50/10", wantErr: "not a positive duration"},
		"zero window":         {in: "50/0s", wantErr: "not a positive duration"},
		"negative window":     {in: "50/-1m", wantErr: "not a positive duration"},
		"two slashes":         {in: "50/10m/1h", wantErr: "not a positive duration"},
		"spaces":              {in: " 50/10m", wantErr: "not a positive count"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := guard.ParseLimit(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
					t.Fatalf("ParseLimit(%q) = %v, %v; want an error naming the input and %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseLimit(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			// String reads back as the same limit.
			if again, err := guard.ParseLimit(got.String()); err != nil || again != got {
				t.Errorf("ParseLimit(%q) = %v, %v; want %v", got.String(), again, err, got)
			}
		})
	}
}

// clock is a settable time for the window tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

var t0 = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)

// newStore opens a fresh guard bucket on js, its clock set to t0.
func newStore(t *testing.T, js jetstream.JetStream, bucket string) (*guard.Store, *clock) {
	t.Helper()
	st, err := guard.Open(t.Context(), js, bucket, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: t0}
	st.SetClock(c.Now)
	return st, c
}

func hold(seq uint64) guard.Hold {
	u := fmt.Sprint(1000 + seq)
	return guard.Hold{Seq: seq, EventID: "ev-" + u, UserID: u, Action: "disabled", Subject: "identity.employee.disabled." + u}
}

// TestCheckWindow feeds deprovisions at given times through Check: below
// the limit they are admitted and counted, at it they are held, and once
// one is held every later one is held too (the guard has tripped) even
// after the window has moved on.
func TestCheckWindow(t *testing.T) {
	t.Parallel()
	_, _, js := harness.NewJetStream(t)
	const A, W = guard.Admit, guard.Wait
	type step struct {
		at   time.Duration // after t0
		want guard.Verdict
	}
	for name, tc := range map[string]struct {
		limit       guard.Limit
		steps       []step
		wantCounted int // at the last step's time
	}{
		"below the limit": {limit: guard.Limit{N: 3, Window: 10 * time.Minute},
			steps:       []step{{0, A}, {time.Minute, A}, {2 * time.Minute, A}},
			wantCounted: 3},
		"at the limit, held": {limit: guard.Limit{N: 2, Window: 10 * time.Minute},
			steps:       []step{{0, A}, {0, A}, {0, W}},
			wantCounted: 2},
		"the window slides": {limit: guard.Limit{N: 2, Window: 10 * time.Minute},
			steps:       []step{{0, A}, {6 * time.Minute, A}, {10 * time.Minute, A}, {16 * time.Minute, A}},
			wantCounted: 2},
		"exactly one window later": {limit: guard.Limit{N: 1, Window: time.Minute},
			steps:       []step{{0, A}, {time.Minute, A}, {2*time.Minute - time.Nanosecond, W}},
			wantCounted: 1},
		"tripped stays tripped": {limit: guard.Limit{N: 1, Window: time.Minute},
			steps:       []step{{0, A}, {time.Second, W}, {time.Hour, W}, {2 * time.Hour, W}},
			wantCounted: 0},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st, c := newStore(t, js, "G_"+slug(name))
			var held []uint64
			for i, s := range tc.steps {
				seq := uint64(i + 1)
				c.Set(t0.Add(s.at))
				v, released, err := st.Check(t.Context(), tc.limit, hold(seq))
				if err != nil || v != s.want || released {
					t.Fatalf("step %d at +%s: Check = %v, %v, %v; want %v", i, s.at, v, released, err, s.want)
				}
				if v == W {
					held = append(held, seq)
				}
			}
			n, err := st.Counted(t.Context(), tc.limit)
			if err != nil || n != tc.wantCounted {
				t.Errorf("Counted = %d, %v; want %d", n, err, tc.wantCounted)
			}
			got, err := st.Held(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, h := range got {
				if h.Decision != guard.Pending {
					t.Errorf("hold %d: decision %q, want pending", h.Seq, h.Decision)
				}
				seqs = append(seqs, h.Seq)
			}
			if !slices.Equal(seqs, held) {
				t.Errorf("Held = %v, want %v", seqs, held)
			}
		})
	}
}

func slug(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// TestDecide holds events, then an operator rejects one and releases the
// rest: each is answered accordingly, releasing clears the window, and
// the holds, once finished, are gone. A second Store on the same bucket
// (a restart, another instance) sees the same holds.
func TestDecide(t *testing.T) {
	t.Parallel()
	_, _, js := harness.NewJetStream(t)
	st, c := newStore(t, js, "KDSYNC_GUARD")
	l := guard.Limit{N: 2, Window: 10 * time.Minute}
	for seq := uint64(1); seq <= 5; seq++ {
		if _, _, err := st.Check(t.Context(), l, hold(seq)); err != nil {
			t.Fatal(err)
		}
	}
	// A restart: the holds are in the bucket, not in memory.
	st2, err := guard.Open(t.Context(), js, "KDSYNC_GUARD", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	st2.SetClock(c.Now)
	held, err := st2.Held(t.Context())
	if err != nil || len(held) != 3 || held[0].Seq != 3 || held[0].UserID != "1003" || !held[0].Since.Equal(t0) {
		t.Fatalf("after reopening, Held = %+v, %v; want 3, 4, 5 held since %s", held, err, t0)
	}
	// Asking again changes nothing.
	if v, _, err := st2.Check(t.Context(), l, hold(3)); err != nil || v != guard.Wait {
		t.Fatalf("held event asked again: %v, %v; want Wait", v, err)
	}

	if _, err := st2.Decide(t.Context(), nil, guard.Decision("approve"), "op"); err == nil {
		t.Error("Decide accepted the decision \"approve\"")
	}
	c.Set(t0.Add(time.Minute))
	done, err := st2.Decide(t.Context(), []uint64{4, 99}, guard.Reject, "op")
	if err != nil || len(done) != 1 || done[0].Seq != 4 || done[0].By != "op" || !done[0].At.Equal(t0.Add(time.Minute)) {
		t.Fatalf("reject 4 and 99: %+v, %v; want 4 rejected by op", done, err)
	}
	if n, err := st2.Counted(t.Context(), l); err != nil || n != 2 {
		t.Errorf("a rejection cleared the window: %d counted (%v), want 2", n, err)
	}
	done, err = st2.Decide(t.Context(), nil, guard.Release, "op")
	if err != nil || len(done) != 2 || done[0].Seq != 3 || done[1].Seq != 5 {
		t.Fatalf("release all: %+v, %v; want 3 and 5 (4 is decided)", done, err)
	}
	if n, err := st2.Counted(t.Context(), l); err != nil || n != 0 {
		t.Errorf("after a release %d counted (%v), want 0 (the window is cleared)", n, err)
	}
	// A second decision on a decided event does nothing.
	if done, err := st2.Decide(t.Context(), []uint64{4}, guard.Release, "op"); err != nil || len(done) != 0 {
		t.Errorf("releasing the rejected 4: %+v, %v; want nothing decided", done, err)
	}

	for seq, want := range map[uint64]struct {
		v        guard.Verdict
		released bool
	}{3: {guard.Admit, true}, 4: {guard.Rejected, false}, 5: {guard.Admit, true}} {
		v, released, err := st.Check(t.Context(), l, hold(seq))
		if err != nil || v != want.v || released != want.released {
			t.Errorf("Check(%d) after the decisions = %v, %v, %v; want %v, %v", seq, v, released, err, want.v, want.released)
		}
	}
	// While decided holds await Finish, new events are counted afresh.
	if v, _, err := st.Check(t.Context(), l, hold(6)); err != nil || v != guard.Admit {
		t.Errorf("a new event after the release: %v, %v; want Admit", v, err)
	}
	for _, seq := range []uint64{3, 4, 5, 5} { // finishing twice is harmless
		if err := st.Finish(t.Context(), seq); err != nil {
			t.Fatalf("Finish(%d): %v", seq, err)
		}
	}
	if held, err := st.Held(t.Context()); err != nil || len(held) != 0 {
		t.Errorf("after Finish, Held = %+v, %v; want none", held, err)
	}
}

// TestCheckConcurrent has several instances count into one window at once:
// exactly the limit is admitted, never more.
func TestCheckConcurrent(t *testing.T) {
	t.Parallel()
	_, _, js := harness.NewJetStream(t)
	const instances, perInstance, limit = 4, 8, 10
	l := guard.Limit{N: limit, Window: time.Hour}
	var admitted, waiting atomic.Int64
	var wg sync.WaitGroup
	for i := range instances {
		st, _ := newStore(t, js, "KDSYNC_GUARD")
		wg.Go(func() {
			for j := range perInstance {
				seq := uint64(i*perInstance + j + 1)
				for attempt := 1; ; attempt++ {
					v, _, err := st.Check(t.Context(), l, hold(seq))
					if err != nil && attempt < 20 {
						continue // the window kept changing: ask again, as the consumer does
					}
					if err != nil {
						t.Errorf("Check(%d): %v", seq, err)
						return
					}
					switch v {
					case guard.Admit:
						admitted.Add(1)
					case guard.Wait:
						waiting.Add(1)
					default:
						t.Errorf("Check(%d) = %v", seq, v)
					}
					break
				}
			}
		})
	}
	wg.Wait()
	if admitted.Load() != limit || waiting.Load() != instances*perInstance-limit {
		t.Errorf("%d admitted, %d held; want %d and %d", admitted.Load(), waiting.Load(), limit, instances*perInstance-limit)
	}
}

func TestOpenMissingBucket(t *testing.T) {
	t.Parallel()
	_, _, js := harness.NewJetStream(t)
	_, err := guard.Open(t.Context(), js, "KDSYNC_NO_SUCH_GUARD", 1, false)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("Open of a missing bucket without create: %v; want ErrBucketNotFound", err)
	}
}

func TestCommandValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		c     guard.Command
		valid bool
	}{
		"status":                {guard.Command{Verb: "status"}, true},
		"status with -all":      {guard.Command{Verb: "status", All: true}, false},
		"status with -seq":      {guard.Command{Verb: "status", Seqs: []uint64{3}}, false},
		"release some":          {guard.Command{Verb: "release", Seqs: []uint64{3, 4}}, true},
		"release all":           {guard.Command{Verb: "release", All: true}, true},
		"release names nothing": {guard.Command{Verb: "release"}, false},
		"reject some and all":   {guard.Command{Verb: "reject", Seqs: []uint64{3}, All: true}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.valid {
			t.Errorf("%s: %v", name, err)
		}
	}
}
