package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kdsync/kdsync/internal/harness"
)

// quotaStep changes the simulator's quota at a time after kdsync starts.
type quotaStep struct {
	at   time.Duration
	rate float64
}

// parseQuotaSteps parses "20s=300,40s=1000".
func parseQuotaSteps(s string) ([]quotaStep, error) {
	var out []quotaStep
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		at, r, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want <after>=<requests/s>, e.g. 20s=300", part)
		}
		d, err := time.ParseDuration(strings.TrimSpace(at))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q: %q is not a duration", part, at)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q: %q is not a rate", part, r)
		}
		if len(out) > 0 && d <= out[len(out)-1].at {
			return nil, fmt.Errorf("%q: steps must be in time order", part)
		}
		out = append(out, quotaStep{at: d, rate: v})
	}
	return out, nil
}

// Second is one second of a run as the simulator and kdsync saw it.
type Second struct {
	// OK counts requests the simulator accepted, Throttled those it
	// refused for the quota or the concurrency cap.
	OK        int64   `json:"ok"`
	Throttled int64   `json:"throttled"`
	Quota     float64 `json:"quota,omitempty"`
	// Limit and Rate are kdsync's concurrency limit and self-imposed rate
	// (0: none) at the end of the second; Breaker its breaker state.
	Limit   float64 `json:"limit"`
	Rate    float64 `json:"rate"`
	Breaker float64 `json:"breaker"`
}

// quotaWatch samples the simulator and kdsync's metrics every second and
// applies the quota steps.
type quotaWatch struct {
	sim     *harness.Sim
	metrics string // kdsync's /metrics URL
	steps   []quotaStep

	mu      sync.Mutex
	seconds []Second
}

func (w *quotaWatch) run(ctx context.Context, start time.Time) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	quota := w.sim.Faults().Quota
	prev := w.sim.Stats()
	steps := w.steps
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := w.sim.Stats()
		thr := st.Faults["quota429"] - prev.Faults["quota429"]
		s := Second{OK: st.Requests - prev.Requests - thr, Throttled: thr, Quota: quota}
		prev = st
		m := scrape(ctx, w.metrics)
		s.Limit, s.Rate, s.Breaker = m["kdsync_concurrency_limit"], m["kdsync_koodrive_rate_limit"], m["kdsync_breaker_state"]
		w.mu.Lock()
		w.seconds = append(w.seconds, s)
		w.mu.Unlock()
		for len(steps) > 0 && time.Since(start) >= steps[0].at {
			if err := w.sim.SetQuota(steps[0].rate, w.sim.Faults().MaxConcurrent); err == nil {
				quota = steps[0].rate
			}
			steps = steps[1:]
		}
	}
}

func (w *quotaWatch) timeline() []Second {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Second(nil), w.seconds...)
}

// scrape reads kdsync's unlabelled gauges; an empty map when it cannot.
func scrape(ctx context.Context, url string) map[string]float64 {
	out := map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "kdsync_") || strings.Contains(line, "{") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// summarizeQuota fills the report's quota figures from the timeline: the
// share of the quota used after warm, the 429 share, whether the breaker
// opened, and how long kdsync took to follow each step.
func summarizeQuota(r *Report, secs []Second, steps []quotaStep, warm int) {
	var ok, thr int64
	var used, avail float64
	for i, s := range secs {
		ok += s.OK
		thr += s.Throttled
		if s.Breaker >= 2 {
			r.BreakerOpened = true
		}
		// The last second is partial (the run ended in it).
		if i >= warm && i < len(secs)-1 && s.Quota > 0 {
			used += float64(s.OK)
			avail += s.Quota
		}
	}
	if ok+thr > 0 {
		r.Throttled429Share = float64(thr) / float64(ok+thr)
	}
	if avail > 0 {
		r.QuotaUsed = used / avail
	}
	for _, st := range steps {
		i := int(st.at / time.Second)
		follow := -1.0
		for j := i + 1; j < len(secs)-1; j++ {
			s := secs[j]
			if s.Quota != st.rate {
				continue
			}
			// Followed: the second uses 85% of the new quota with no more
			// than 5% of its requests refused.
			if float64(s.OK) >= 0.85*st.rate && float64(s.Throttled) <= 0.05*float64(s.OK+s.Throttled) {
				follow = float64(j - i)
				break
			}
		}
		r.FollowSec = append(r.FollowSec, follow)
	}
	r.Timeline = secs
}
