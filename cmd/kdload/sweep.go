package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
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
	// maxOther: a run during which other processes used more of the
	// machine than this is recorded as disturbed and run again (twice at
	// most); medians leave disturbed runs out when a cell has others.
	maxOther float64
	// waitIdle bounds the wait for a quiet machine before each run.
	waitIdle time.Duration
	// timeout bounds each run.
	timeout time.Duration
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
	"otherCpuShare", "loadAvg1m", "verdict", "disturbed", "stalledSec",
}

func sweepRow(r *Report, disturbed bool) []string {
	f := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	verdict := r.Verdict
	if verdict != "clean" {
		verdict = "unclean"
	}
	return []string{
		f(r.SimLatencyMs, 0), strconv.Itoa(r.Concurrency), strconv.Itoa(r.Events), strconv.Itoa(r.Users),
		f(r.EventsPerSec, 0), f(r.Seconds, 2), f(r.StartSec, 2),
		f(r.LatencyP50Ms, 1), f(r.LatencyP99Ms, 1), f(r.CPUPerEventUs, 1), f(r.LoadCPUPerEventUs, 1), f(r.PeakRSSMiB, 1),
		f(r.OtherCPUShare, 3), f(r.LoadAvg[0], 2), verdict, strconv.FormatBool(disturbed), f(r.StalledSec, 0),
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
	for rep := range sw.repeat {
		for _, lat := range sw.latencies {
			for _, conc := range sw.concurrencies {
				o := base
				o.latency, o.concurrency = lat, conc
				o.events, o.users = cellSize(lat, conc, sw.seconds, sw.minEvents, sw.maxEvents)
				o.cpuProfile, o.kdsyncProfile = "", ""
				for try := 0; try < 3; try++ {
					if sw.waitIdle > 0 {
						waitIdle(ctx, sw.waitIdle, progress)
					}
					fmt.Fprintf(progress, "run %d/%d: latency %s, concurrency %d, %d events over %d users\n",
						rep+1, sw.repeat, lat, conc, o.events, o.users)
					rctx, cancel := context.WithTimeout(ctx, cmp.Or(sw.timeout, 24*time.Hour))
					r, err := load(rctx, o, progress)
					cancel()
					if err != nil {
						return fmt.Errorf("latency %s, concurrency %d: %w", lat, conc, err)
					}
					disturbed := sw.maxOther > 0 && r.OtherCPUShare > sw.maxOther
					row := strings.Join(sweepRow(r, disturbed), "\t")
					fmt.Fprintln(stdout, row)
					fmt.Fprintln(raw, row)
					if !disturbed {
						break
					}
				}
			}
		}
	}
	if sw.out == "" {
		return nil
	}
	if c, ok := raw.(io.Closer); ok {
		_ = c.Close()
	}
	rows, err := readSweep(sw.out)
	if err != nil {
		return err
	}
	return writeMedians(medianPath(sw.out), sw, rows)
}

// sweepRun is one row of a sweep's TSV file.
type sweepRun struct {
	latencyMs                        float64
	concurrency, events, users       int
	eventsPerSec, kdsyncCPUUs, p99Ms float64
	disturbed                        bool
}

// readSweep reads every run of a sweep's TSV file (this sweep's and any
// earlier ones appended to it).
func readSweep(path string) ([]sweepRun, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cols map[string]int
	var out []sweepRun
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if cols == nil {
			cols = map[string]int{}
			for i, name := range fields {
				cols[name] = i
			}
			continue
		}
		get := func(name string) string {
			if i, ok := cols[name]; ok && i < len(fields) {
				return fields[i]
			}
			return ""
		}
		num := func(name string) float64 { v, _ := strconv.ParseFloat(get(name), 64); return v }
		out = append(out, sweepRun{
			latencyMs: num("latencyMs"), concurrency: int(num("concurrency")), events: int(num("events")), users: int(num("users")),
			eventsPerSec: num("eventsPerSec"), kdsyncCPUUs: num("kdsyncCpuUsPerEvent"), p99Ms: num("p99Ms"),
			disturbed: get("disturbed") == "true" || get("verdict") != "clean",
		})
	}
	return out, sc.Err()
}

// waitIdle waits, up to limit, until the machine was less than 15% busy
// over 3 seconds and the 1-minute load average is below 2.
func waitIdle(ctx context.Context, limit time.Duration, progress io.Writer) {
	deadline := time.Now().Add(limit)
	for {
		b0, _, err := machineBusy()
		if err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
		b1, _, _ := machineBusy()
		busy := (b1 - b0) / (3 * float64(runtime.NumCPU()))
		la := loadAvg()
		if busy < 0.15 && la < 2 {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(progress, "machine still busy (%.0f%%, load average %.2f) after %s; running anyway\n", busy*100, la, limit)
			return
		}
	}
}

// medianPath is scaling.tsv → scaling.median.tsv.
func medianPath(out string) string {
	if i := strings.LastIndexByte(out, '.'); i > strings.LastIndexByte(out, '/') {
		return out[:i] + ".median" + out[i:]
	}
	return out + ".median"
}

// writeMedians writes, per latency of the sweep, a block of rows (one per
// concurrency) with the median throughput of all undisturbed runs of the
// cell in rows (all of them when none is), the blocks separated by two
// blank lines (gnuplot's "index").
func writeMedians(path string, sw sweepOptions, rows []sweepRun) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintln(f, "# kdload -sweep: medians of the undisturbed runs of each cell; one block per simulator latency (gnuplot index)")
	fmt.Fprintln(f, "# latencyMs\tconcurrency\tevents\tusers\teventsPerSec\tminEventsPerSec\tmaxEventsPerSec\tkdsyncCpuUsPerEvent\tp99Ms\truns")
	for i, lat := range sw.latencies {
		if i > 0 {
			fmt.Fprint(f, "\n\n")
		}
		ms := float64(lat) / float64(time.Millisecond)
		for _, conc := range sw.concurrencies {
			var good, all []sweepRun
			for _, r := range rows {
				if math.Abs(r.latencyMs-ms) < 0.5 && r.concurrency == conc {
					all = append(all, r)
					if !r.disturbed {
						good = append(good, r)
					}
				}
			}
			if len(good) == 0 {
				good = all
			}
			if len(good) == 0 {
				continue
			}
			eps := make([]float64, len(good))
			cpu := make([]float64, len(good))
			p99 := make([]float64, len(good))
			for j, r := range good {
				eps[j], cpu[j], p99[j] = r.eventsPerSec, r.kdsyncCPUUs, r.p99Ms
			}
			fmt.Fprintf(f, "%g\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%d\n",
				ms, conc, good[0].events, good[0].users,
				median(eps), slices.Min(eps), slices.Max(eps), median(cpu), median(p99), len(good))
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
