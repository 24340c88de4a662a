package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"

	"github.com/kdsync/kdsync/outcome"
)

// outcomeSet collects outcomes from a core subscription (cheap, and enough
// here: the load tool reads them while kdsync runs).
type outcomeSet struct {
	more chan struct{}
	got  map[string]outcome.Outcome
	n    int
	mu   chan struct{}
}

func collect(ctx context.Context, nc *nats.Conn, want int) (*outcomeSet, error) {
	s := &outcomeSet{more: make(chan struct{}, 1), got: make(map[string]outcome.Outcome, want), mu: make(chan struct{}, 1)}
	s.mu <- struct{}{}
	sub, err := nc.Subscribe("kdsync.outcome.>", func(m *nats.Msg) {
		var o outcome.Outcome
		if json.Unmarshal(m.Data, &o) != nil {
			return
		}
		<-s.mu
		s.got[o.EventID] = o
		s.n = len(s.got)
		s.mu <- struct{}{}
		select {
		case s.more <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	go func() { <-ctx.Done(); _ = sub.Unsubscribe() }()
	return s, nil
}

func (s *outcomeSet) count() int {
	<-s.mu
	defer func() { s.mu <- struct{}{} }()
	return s.n
}

func (s *outcomeSet) all() []outcome.Outcome {
	<-s.mu
	defer func() { s.mu <- struct{}{} }()
	out := make([]outcome.Outcome, 0, len(s.got))
	for _, o := range s.got {
		out = append(out, o)
	}
	return out
}

func printTable(w io.Writer, r *Report) {
	fmt.Fprintf(w, "events %d  users %d  mode %s  concurrency %d  sim latency %.0fms  sim errors %.0f%%\n",
		r.Events, r.Users, r.Mode, r.Concurrency, r.SimLatencyMs, r.SimErrorRate*100)
	fmt.Fprintf(w, "throughput      %.0f events/s (%.2fs)\n", r.EventsPerSec, r.Seconds)
	fmt.Fprintf(w, "latency         p50 %.1fms  p90 %.1fms  p99 %.1fms  max %.1fms\n", r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyP99Ms, r.LatencyMaxMs)
	fmt.Fprintf(w, "kdsync          %.2f CPU s (%.1f µs/event), peak RSS %.1f MiB, first outcome after %.2fs\n", r.CPUSeconds, r.CPUPerEventUs, r.PeakRSSMiB, r.StartSec)
	fmt.Fprintf(w, "kdsync RSS      %.1f / %.1f / %.1f / %.1f MiB at 25/50/75/100%% of the outcomes\n",
		r.RSSQuartersMiB[0], r.RSSQuartersMiB[1], r.RSSQuartersMiB[2], r.RSSQuartersMiB[3])
	fmt.Fprintf(w, "per event       %.2f state reads, %.2f state writes (%.2f stored by the server), cache hits %.0f%% (cache %s, %.0f evictions); NATS messages %.2f in + %.2f out\n",
		r.StateReadsPerEvent, r.StateWritesPerEvent, r.KVWritesPerEvent, 100*r.StateHitShare, r.StateCache, r.StateEvictions, r.NATSInPerEvent, r.NATSOutPerEvent)
	fmt.Fprintf(w, "NATS+sim+load   %.2f CPU s (%.1f µs/event)%s\n", r.LoadCPUSeconds, r.LoadCPUPerEventUs, formatShares(r.LoadCPUShares))
	fmt.Fprintf(w, "machine         %d CPUs, others used %.0f%% of them during the run (stolen by the hypervisor %.0f%%), load average %.2f → %.2f\n",
		r.CPUs, r.OtherCPUShare*100, r.StealShare*100, r.LoadAvg[0], r.LoadAvg[1])
	fmt.Fprintf(w, "retries %d  simulator requests %d  stalls %d (%.0fs)  checker: %s\n", r.Retries, r.SimRequests, r.Stalls, r.StalledSec, r.Verdict)
	if r.SimQuota > 0 || r.SimMaxConcurrent > 0 {
		fmt.Fprintf(w, "quota           %g/s %s (max concurrent %d): used %.1f%% after the warm-up, 429s %.2f%% of requests, breaker opened %v, followed steps in %v s\n",
			r.SimQuota, r.SimQuotaSteps, r.SimMaxConcurrent, r.QuotaUsed*100, r.Throttled429Share*100, r.BreakerOpened, r.FollowSec)
	}
}
