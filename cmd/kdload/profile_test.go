package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"
)

// burn spends about d of CPU time.
func burn(d time.Duration) {
	start := selfCPU()
	b := []byte("kdload")
	for selfCPU()-start < d {
		for range 1000 {
			s := sha256.Sum256(b)
			b = s[:]
		}
	}
}

func TestComponentShares(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		t.Skipf("CPU profiler busy: %v", err)
	}
	pprof.Do(context.Background(), pprof.Labels("component", "sim"), func(context.Context) { burn(300 * time.Millisecond) })
	pprof.Do(context.Background(), pprof.Labels("stream", "IDENTITY"), func(context.Context) { burn(300 * time.Millisecond) })
	pprof.StopCPUProfile()
	if _, err := f.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	shares, err := componentShares(path)
	if err != nil {
		t.Fatal(err)
	}
	// Each burn is half the CPU time; sampling at 100 Hz leaves room.
	if shares["sim"] < 0.25 || shares["nats"] < 0.25 {
		t.Errorf("shares %v: want about half sim, half nats", shares)
	}
	if got := formatShares(map[string]float64{"sim": 0.5, "nats": 0.3, "load": 0.2}); got != ": sim 50%, nats 30%, load 20%" {
		t.Errorf("formatShares: %q", got)
	}
}

func TestCellSize(t *testing.T) {
	for _, c := range []struct {
		lat           time.Duration
		conc          int
		events, users int
	}{
		{0, 256, 50000, 10000},                     // capped at -sweep-max-events
		{100 * time.Millisecond, 1, 500, 500},      // raised to -sweep-min-events, one event per user
		{20 * time.Millisecond, 16, 11600, 2320},   // 16 / 20.7ms × 15s
		{5 * time.Millisecond, 16, 42100, 8420},    // 16 / 5.7ms × 15s
		{100 * time.Millisecond, 16, 2400, 1000},   // at least 1,000 users
		{100 * time.Millisecond, 64, 9500, 1900},   // 64 / 100.7ms × 15s
		{20 * time.Millisecond, 256, 50000, 10000}, // the rate cap, then the max
	} {
		ev, us := cellSize(c.lat, c.conc, 15, 500, 50000)
		if ev != c.events || us != c.users {
			t.Errorf("cellSize(%s, %d) = %d events, %d users; want %d, %d", c.lat, c.conc, ev, us, c.events, c.users)
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	if p := medianPath("docs/perf/scaling.tsv"); p != "docs/perf/scaling.median.tsv" {
		t.Errorf("medianPath = %q", p)
	}
}
