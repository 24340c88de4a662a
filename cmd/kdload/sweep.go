package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sweepOptions describe a grid of backlog runs: each simulator latency
// with each concurrency.
type sweepOptions struct {
	latencies            []time.Duration
	concurrencies        []int
	seconds              float64
	minEvents, maxEvents int
	repeat               int
	out                  string
}

// cellSize sizes a cell's backlog to last about seconds at the rate
// expected of it: concurrency calls under way, each taking the latency
// plus about 0.7ms of kdsync, NATS and the simulator, and at most about
// 7,500 events/s (what this machine does at latency 0). Users are a fifth
// of the events (kdload's default shape), but at least 1,000 (or one
// event each when there are fewer events) so that every concurrency has
// enough distinct users to run in parallel.
func cellSize(lat time.Duration, conc int, seconds float64, minEv, maxEv int) (events, users int) {
	perCall := lat.Seconds() + 0.0007
	rate := math.Min(float64(conc)/perCall, 7500)
	events = int(math.Round(rate*seconds/100)) * 100
	events = min(max(events, minEv), maxEv)
	users = max(events/5, min(events, 1000))
	return events, users
}

var sweepHeader = []string{
	"latencyMs", "concurrency", "events", "users", "eventsPerSec", "seconds", "kdsyncStartSec",
	"p50Ms", "p99Ms", "kdsyncCpuUsPerEvent", "loadCpuUsPerEvent", "peakRssMiB",
	"otherCpuShare", "loadAvg1m", "verdict",
}

func sweepRow(r *Report) []string {
	f := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	verdict := r.Verdict
	if verdict != "clean" {
		verdict = "unclean"
	}
	return []string{
		f(r.SimLatencyMs, 0), strconv.Itoa(r.Concurrency), strconv.Itoa(r.Events), strconv.Itoa(r.Users),
		f(r.EventsPerSec, 0), f(r.Seconds, 2), f(r.StartSec, 2),
		f(r.LatencyP50Ms, 1), f(r.LatencyP99Ms, 1), f(r.CPUPerEventUs, 1), f(r.LoadCPUPerEventUs, 1), f(r.PeakRSSMiB, 1),
		f(r.OtherCPUShare, 3), f(r.LoadAvg[0], 2), verdict,
	}
}

func runSweep(ctx context.Context, base loadOptions, sw sweepOptions, stdout, progress io.Writer) error {
	if sw.repeat < 1 {
		sw.repeat = 1
	}
	var raw io.Writer = io.Discard
	if sw.out != "" {
		fresh := false
		if _, err := os.Stat(sw.out); os.IsNotExist(err) {
			fresh = true
		}
		f, err := os.OpenFile(sw.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		raw = f
		if fresh {
			fmt.Fprintf(f, "# kdload -sweep: one backlog run per row (simulator latency × kdsync concurrency)\n")
			fmt.Fprintln(f, strings.Join(sweepHeader, "\t"))
		}
	}
	fmt.Fprintln(stdout, strings.Join(sweepHeader, "\t"))
	runs := map[[2]int][]*Report{}
	for rep := range sw.repeat {
		for _, lat := range sw.latencies {
			for _, conc := range sw.concurrencies {
				o := base
				o.latency, o.concurrency = lat, conc
				o.events, o.users = cellSize(lat, conc, sw.seconds, sw.minEvents, sw.maxEvents)
				o.cpuProfile, o.kdsyncProfile = "", ""
				fmt.Fprintf(progress, "run %d/%d: latency %s, concurrency %d, %d events over %d users\n",
					rep+1, sw.repeat, lat, conc, o.events, o.users)
				r, err := load(ctx, o, progress)
				if err != nil {
					return fmt.Errorf("latency %s, concurrency %d: %w", lat, conc, err)
				}
				row := strings.Join(sweepRow(r), "\t")
				fmt.Fprintln(stdout, row)
				fmt.Fprintln(raw, row)
				k := [2]int{int(lat / time.Microsecond), conc}
				runs[k] = append(runs[k], r)
			}
		}
	}
	if sw.out == "" {
		return nil
	}
	return writeMedians(medianPath(sw.out), sw, runs)
}

// medianPath is scaling.tsv → scaling.median.tsv.
func medianPath(out string) string {
	if i := strings.LastIndexByte(out, '.'); i > strings.LastIndexByte(out, '/') {
		return out[:i] + ".median" + out[i:]
	}
	return out + ".median"
}

// writeMedians writes, per latency, a block of rows (one per
// concurrency) with the median throughput of its runs, the blocks
// separated by two blank lines (gnuplot's "index").
func writeMedians(path string, sw sweepOptions, runs map[[2]int][]*Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "# kdload -sweep medians of %d run(s) per cell; one block per simulator latency (gnuplot index)\n", sw.repeat)
	for i, lat := range sw.latencies {
		if i > 0 {
			fmt.Fprint(f, "\n\n")
		}
		fmt.Fprintln(f, "latencyMs\tconcurrency\tevents\tusers\teventsPerSec\tminEventsPerSec\tmaxEventsPerSec\tkdsyncCpuUsPerEvent\tp99Ms\truns")
		for _, conc := range sw.concurrencies {
			rs := runs[[2]int{int(lat / time.Microsecond), conc}]
			if len(rs) == 0 {
				continue
			}
			eps := make([]float64, len(rs))
			cpu := make([]float64, len(rs))
			p99 := make([]float64, len(rs))
			for j, r := range rs {
				eps[j], cpu[j], p99[j] = r.EventsPerSec, r.CPUPerEventUs, r.LatencyP99Ms
			}
			fmt.Fprintf(f, "%.0f\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%d\n",
				float64(lat)/float64(time.Millisecond), conc, rs[0].Events, rs[0].Users,
				median(eps), slices.Min(eps), slices.Max(eps), median(cpu), median(p99), len(rs))
		}
	}
	return f.Close()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "0" {
			out = append(out, 0)
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no latency in %q", s)
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no concurrency in %q", s)
	}
	return out, nil
}
