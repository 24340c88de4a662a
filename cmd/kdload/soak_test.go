package main

import (
	"math"
	"slices"
	"testing"
)

// TestTrendAcrossLives: with kdsync killed between lives, the slope of
// one life says little; the medians of each life and the slope over the
// whole run say whether memory grows from one life to the next.
func TestTrendAcrossLives(t *testing.T) {
	lives := func(levels ...float64) []sample {
		var out []sample
		at := 0.0
		for pid, base := range levels {
			for i := range 10 {
				// Each life warms up by 5 MiB, then holds.
				out = append(out, sample{at: at, pid: pid + 1, rss: base + math.Min(float64(i), 5)})
				at += 10
			}
		}
		return out
	}
	rss := func(s sample) float64 { return s.rss }
	for name, tc := range map[string]struct {
		levels      []float64
		wantMedians []float64
		growing     bool
	}{
		"flat across lives":    {levels: []float64{30, 30, 30}, wantMedians: []float64{35, 35, 35}},
		"growing across lives": {levels: []float64{30, 40, 50}, wantMedians: []float64{35, 45, 55}, growing: true},
	} {
		t.Run(name, func(t *testing.T) {
			tr := trend(lives(tc.levels...), rss)
			if !slices.Equal(tr.LifeMedians, tc.wantMedians) {
				t.Errorf("life medians %v, want %v", tr.LifeMedians, tc.wantMedians)
			}
			// 10 MiB more per 100 s life is 360 MiB/h; a flat run's
			// sawtooth stays well under a tenth of that.
			if tc.growing && tr.AllPerHour < 300 || !tc.growing && math.Abs(tr.AllPerHour) > 36 {
				t.Errorf("slope over the run %+.1f MiB/h, growing %v", tr.AllPerHour, tc.growing)
			}
		})
	}
}
