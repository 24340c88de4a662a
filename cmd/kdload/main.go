// Command kdload measures kdsync end to end: it starts an embedded NATS
// server and the KooDrive simulator (or uses given ones), publishes a
// history of identity events for many users (all ahead of time, or at a
// fixed rate), runs kdsync as its own process, waits for every outcome,
// and reports throughput, event-to-effect latency, kdsync's CPU time and
// peak memory, retries, and the checker's verdict.
//
//	go run ./cmd/kdload -events 100000 -users 20000
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/peterbourgon/ff/v3"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/workload"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Report is kdload's result, printed as one JSON object.
type Report struct {
	Events        int     `json:"events"`
	Users         int     `json:"users"`
	Mode          string  `json:"mode"` // backlog or rate
	Rate          float64 `json:"rateTarget,omitempty"`
	Concurrency   int     `json:"concurrency"`
	SimLatencyMs  float64 `json:"simLatencyMs"`
	SimErrorRate  float64 `json:"simErrorRate"`
	Seconds       float64 `json:"seconds"`
	EventsPerSec  float64 `json:"eventsPerSec"`
	LatencyP50Ms  float64 `json:"latencyP50Ms"`
	LatencyP90Ms  float64 `json:"latencyP90Ms"`
	LatencyP99Ms  float64 `json:"latencyP99Ms"`
	LatencyMaxMs  float64 `json:"latencyMaxMs"`
	CPUSeconds    float64 `json:"kdsyncCpuSeconds"`
	CPUPerEventUs float64 `json:"kdsyncCpuPerEventUs"`
	PeakRSSMiB    float64 `json:"kdsyncPeakRssMiB"`
	Retries       int     `json:"retries"`
	SimRequests   int64   `json:"simRequests"`
	Lost          int     `json:"lost"`
	Duplicated    int     `json:"duplicated"`
	Reordered     int     `json:"reordered"`
	Verdict       string  `json:"verdict"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kdload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.Int("events", 100000, "events to publish")
	users := fs.Int("users", 20000, "users the events are spread over")
	rate := fs.Float64("rate", 0, "publish at this many events/s while kdsync runs (0: publish everything first, a backlog)")
	concurrency := fs.Int("concurrency", 64, "kdsync's KDSYNC_CONCURRENCY")
	latency := fs.Duration("sim-latency", 0, "simulator latency per request")
	errRate := fs.Float64("sim-error-rate", 0, "share of simulator requests answered 429/500/503")
	bin := fs.String("kdsync", "", "kdsync binary (default: built from ./cmd/kdsync into a temporary folder)")
	seed := fs.Uint64("seed", 1, "seed of the event history and of the simulator's faults")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	extraEnv := fs.String("kdsync-env", "", "extra KEY=VALUE settings for kdsync, comma-separated")
	keep := fs.String("keep-log", "", "write kdsync's log to this file")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("KDLOAD")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	r, err := load(ctx, loadOptions{
		events: *events, users: *users, rate: *rate, concurrency: *concurrency,
		latency: *latency, errRate: *errRate, bin: *bin, seed: *seed, extraEnv: *extraEnv, keepLog: *keep,
	}, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "kdload: %v\n", err)
		return 1
	}
	printTable(stdout, r)
	enc := json.NewEncoder(stdout)
	_ = enc.Encode(r)
	if r.Verdict != "clean" {
		return 1
	}
	return 0
}

type loadOptions struct {
	events, users, concurrency int
	rate, errRate              float64
	latency                    time.Duration
	bin, extraEnv, keepLog     string
	seed                       uint64
}

func load(ctx context.Context, o loadOptions, progress io.Writer) (*Report, error) {
	if o.users < 1 || o.events < o.users {
		return nil, fmt.Errorf("need at least one user and at least as many events (%d) as users (%d)", o.events, o.users)
	}
	dir, err := os.MkdirTemp("", "kdload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "kdsync")
		fmt.Fprintln(progress, "building kdsync ...")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kdsync")
		cmd.Stdout, cmd.Stderr = progress, progress
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build kdsync (run kdload from the repository root, or pass -kdsync): %w", err)
		}
	}
	ns, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		return nil, err
	}
	defer ns.Stop()
	faults := kdsim.Faults{Latency: o.latency}
	if o.errRate > 0 {
		faults.ErrorRate, faults.ErrorStatuses, faults.RetryAfter = o.errRate, []int{429, 500, 503}, time.Millisecond
	}
	sim, err := harness.StartSim(kdsim.Options{Faults: faults, Seed: o.seed})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	defer nc.Close()

	perUser := (o.events + o.users - 1) / o.users
	evs, err := workload.Generate(workload.Options{Users: o.users, EventsPerUser: perUser, Departments: sim.Departments(), Seed: o.seed})
	if err != nil {
		return nil, err
	}
	evs = trimPerUser(evs, o.events)
	r := &Report{Events: len(evs), Users: o.users, Concurrency: o.concurrency, Mode: "backlog",
		SimLatencyMs: float64(o.latency) / float64(time.Millisecond), SimErrorRate: o.errRate}
	if o.rate > 0 {
		r.Mode, r.Rate = "rate", o.rate
	}
	if o.rate == 0 {
		start := time.Now()
		if err := harness.Publish(ctx, nc, "IDENTITY", restamp(evs, time.Now())); err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "published %d events for %d users in %s\n", len(evs), o.users, time.Since(start).Round(time.Millisecond))
	}

	logW := io.Discard
	if o.keepLog != "" {
		f, err := os.Create(o.keepLog)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		logW = f
	}
	cmd := exec.Command(bin, "run")
	cmd.Env = append(os.Environ(),
		"KDSYNC_NATS_URL="+ns.URL(),
		"KDSYNC_API_BASE_URL="+sim.URL,
		"KDSYNC_APP_ID="+harness.AppID,
		"KDSYNC_APP_SECRET="+harness.AppSecret.Reveal(),
		"KDSYNC_API_USER_ID="+harness.APIUserID,
		"KDSYNC_HTTP_ADDR=127.0.0.1:0",
		"KDSYNC_CONCURRENCY="+strconv.Itoa(o.concurrency),
		"KDSYNC_RETRY_INITIAL=20ms",
		"KDSYNC_LOG_LEVEL=warn",
	)
	for _, kv := range strings.Split(o.extraEnv, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logW, logW

	outcomes, err := collect(ctx, nc, len(evs))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	peak := &peakRSS{pid: cmd.Process.Pid}
	go peak.watch(ctx)
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	if o.rate > 0 {
		go func() { _ = publishAtRate(ctx, nc, evs, o.rate) }()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for outcomes.count() < len(evs) {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d outcomes: %w", outcomes.count(), len(evs), ctx.Err())
		case <-outcomes.more:
		case <-tick.C:
			n := outcomes.count()
			el := time.Since(start).Seconds()
			fmt.Fprintf(progress, "\r%6.1fs  %7d/%d outcomes  %7.0f events/s", el, n, len(evs), float64(n)/el)
		}
	}
	elapsed := time.Since(start)
	fmt.Fprintln(progress)
	cpu, _ := cpuSeconds(cmd.Process.Pid)
	peak.sample()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	stopped = true

	all := outcomes.all()
	var lat []float64
	for _, out := range all {
		r.Retries += max(out.Attempts-1, 0)
		if out.LatencyMs != nil {
			lat = append(lat, *out.LatencyMs)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	r.Seconds = elapsed.Seconds()
	r.EventsPerSec = float64(len(evs)) / elapsed.Seconds()
	r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyP99Ms, r.LatencyMaxMs = pct(0.50), pct(0.90), pct(0.99), pct(1)
	r.CPUSeconds = cpu
	r.CPUPerEventUs = cpu / float64(len(evs)) * 1e6
	r.PeakRSSMiB = float64(peak.max()) / (1 << 20)
	r.SimRequests = sim.Stats().Requests
	rep := checker.Check(checker.Input{
		Events:   harness.CheckerEvents(evs),
		Effects:  sim.Effects(harness.UserIDs(evs)),
		Outcomes: all,
		Final:    sim.Final(),
	})
	r.Lost, r.Duplicated, r.Reordered = len(rep.Lost), len(rep.Duplicated), len(rep.Reordered)
	r.Verdict = "clean"
	if !rep.OK() {
		r.Verdict = rep.String()
	}
	return r, nil
}

// trimPerUser keeps the first n events, which keeps each user's prefix.
func trimPerUser(evs []workload.Event, n int) []workload.Event {
	if len(evs) > n {
		return evs[:n]
	}
	return evs
}

// restamp sets every event's time to at, so latency counts from publish.
func restamp(evs []workload.Event, at time.Time) []workload.Event {
	out := make([]workload.Event, len(evs))
	for i, e := range evs {
		out[i], _ = workload.Encode(e.Event, "identity.employee.", "hris/kdload", at)
	}
	return out
}

// publishAtRate publishes evs at rate events/s, stamping each as it goes.
func publishAtRate(ctx context.Context, nc *nats.Conn, evs []workload.Event, rate float64) error {
	start := time.Now()
	const batch = 10
	for i := 0; i < len(evs); i += batch {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		end := min(i+batch, len(evs))
		if err := harness.Publish(ctx, nc, "IDENTITY", restamp(evs[i:end], time.Now())); err != nil {
			return err
		}
	}
	return nil
}

// outcomeSet collects outcomes from a core subscription (cheap, and enough
// here: the load tool reads them while kdsync runs).
type outcomeSet struct {
	ch   chan consumer.Outcome
	more chan struct{}
	got  map[string]consumer.Outcome
	n    int
	mu   chan struct{}
}

func collect(ctx context.Context, nc *nats.Conn, want int) (*outcomeSet, error) {
	s := &outcomeSet{more: make(chan struct{}, 1), got: make(map[string]consumer.Outcome, want), mu: make(chan struct{}, 1)}
	s.mu <- struct{}{}
	sub, err := nc.Subscribe("kdsync.outcome.>", func(m *nats.Msg) {
		var o consumer.Outcome
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

func (s *outcomeSet) all() []consumer.Outcome {
	<-s.mu
	defer func() { s.mu <- struct{}{} }()
	out := make([]consumer.Outcome, 0, len(s.got))
	for _, o := range s.got {
		out = append(out, o)
	}
	return out
}

// cpuSeconds reads a process's user+system CPU time from /proc.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// peakRSS tracks the process's high-water mark (VmHWM).
type peakRSS struct {
	pid  int
	peak chan int64
}

func (p *peakRSS) watch(ctx context.Context) {
	for {
		p.sample()
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *peakRSS) sample() {
	if p.peak == nil {
		p.peak = make(chan int64, 1)
		p.peak <- 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			cur := <-p.peak
			p.peak <- max(cur, kb*1024)
		}
	}
}

func (p *peakRSS) max() int64 {
	if p.peak == nil {
		return 0
	}
	v := <-p.peak
	p.peak <- v
	return v
}

func printTable(w io.Writer, r *Report) {
	fmt.Fprintf(w, "events %d  users %d  mode %s  concurrency %d  sim latency %.0fms  sim errors %.0f%%\n",
		r.Events, r.Users, r.Mode, r.Concurrency, r.SimLatencyMs, r.SimErrorRate*100)
	fmt.Fprintf(w, "throughput      %.0f events/s (%.2fs)\n", r.EventsPerSec, r.Seconds)
	fmt.Fprintf(w, "latency         p50 %.1fms  p90 %.1fms  p99 %.1fms  max %.1fms\n", r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyP99Ms, r.LatencyMaxMs)
	fmt.Fprintf(w, "kdsync          %.2f CPU s (%.1f µs/event), peak RSS %.1f MiB\n", r.CPUSeconds, r.CPUPerEventUs, r.PeakRSSMiB)
	fmt.Fprintf(w, "retries %d  simulator requests %d  checker: %s\n", r.Retries, r.SimRequests, r.Verdict)
}
