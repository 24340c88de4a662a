package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestStateFigures: the state cache's and the state bucket's figures come
// from the consumer's Stats at scrape, counters as counters.
func TestStateFigures(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	m.SetStats(func() Stats {
		return Stats{State: StateStats{Cached: 12, CachedBytes: 4096, Hits: 30, Misses: 12, Evictions: 2, Reads: 12, Writes: 42}}
	})
	fams := families(t, reg)
	for name, want := range map[string]struct {
		v   float64
		typ dto.MetricType
	}{
		"kdsync_state_cache_entries":         {12, dto.MetricType_GAUGE},
		"kdsync_state_cache_bytes":           {4096, dto.MetricType_GAUGE},
		"kdsync_state_cache_hits_total":      {30, dto.MetricType_COUNTER},
		"kdsync_state_cache_misses_total":    {12, dto.MetricType_COUNTER},
		"kdsync_state_cache_evictions_total": {2, dto.MetricType_COUNTER},
		"kdsync_state_reads_total":           {12, dto.MetricType_COUNTER},
		"kdsync_state_writes_total":          {42, dto.MetricType_COUNTER},
	} {
		if mf := fams[name]; mf == nil || mf.GetType() != want.typ {
			t.Errorf("%s: family %v, want a %v", name, mf, want.typ)
			continue
		}
		if got := value(t, reg, name); got != want.v {
			t.Errorf("%s = %v, want %v", name, got, want.v)
		}
	}
}
