// Command kdload measures kdsync end to end: it starts an embedded NATS
// server and the KooDrive simulator (or uses given ones), publishes a
// history of identity events for many users (all ahead of time, or at a
// fixed rate), runs kdsync as its own process, waits for every outcome,
// and reports throughput, event-to-effect latency, kdsync's CPU time and
// peak memory, retries, and the checker's verdict. It also reports its own
// CPU time (the NATS server, the simulator and the load tool share this
// process; -cpuprofile splits it by component), and how much of the
// machine other processes used meanwhile, so that a disturbed measurement
// shows.
//
//	go run ./cmd/kdload -events 100000 -users 20000
//	go run ./cmd/kdload -users 1000000 -rss-out rss-1m.tsv -timeout 2h   # 2.2M events, outside CI
//	go run ./cmd/kdload -kdsync-cpuprofile kdsync.prof -cpuprofile load.prof
//	go run ./cmd/kdload -sweep -sweep-repeat 3 -sweep-out docs/perf/scaling.tsv
//	go run ./cmd/kdload -soak 30m    # a fault every minute; slopes of RSS, goroutines, open files
package main

import (
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
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/peterbourgon/ff/v3"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
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
	// StartSec is from starting kdsync to its first outcome (process
	// start, connecting, binding): part of Seconds.
	StartSec float64 `json:"kdsyncStartSec"`
	// LoadCPUSeconds is the CPU time of this process (the embedded NATS
	// server, the simulator, and the load tool's publishing and outcome
	// collection) while kdsync ran; LoadCPUShares splits it by component
	// when -cpuprofile is given.
	LoadCPUSeconds    float64            `json:"loadCpuSeconds"`
	LoadCPUPerEventUs float64            `json:"loadCpuPerEventUs"`
	LoadCPUShares     map[string]float64 `json:"loadCpuShares,omitempty"`
	// OtherCPUShare is the share of the machine's CPU (all cores) used by
	// other processes while kdsync ran: other engineers' work disturbing
	// the measurement. LoadAvg is the 1-minute load average before the
	// run and at its end.
	OtherCPUShare float64 `json:"otherCpuShare"`
	// StealShare is the share of the machine's CPU the hypervisor gave to
	// other guests meanwhile (counted in OtherCPUShare too).
	StealShare float64    `json:"stealShare"`
	LoadAvg    [2]float64 `json:"loadAvg1m"`
	CPUs       int        `json:"cpus"`
	// Stalls counts the times no outcome arrived for two seconds or more
	// (with simulator latency under a second) while events remained;
	// StalledSec is their total length, to a second.
	Stalls      int     `json:"stalls"`
	StalledSec  float64 `json:"stalledSec"`
	Retries     int     `json:"retries"`
	SimRequests int64   `json:"simRequests"`
	Lost        int     `json:"lost"`
	Duplicated  int     `json:"duplicated"`
	Reordered   int     `json:"reordered"`
	Verdict     string  `json:"verdict"`

	// With a simulator quota (-sim-quota): the quota and its steps, the
	// share of requests refused 429, the share of the quota used after
	// -warm-up, whether kdsync's breaker opened, and per step the seconds
	// until kdsync followed it (-1: never); per second, the timeline.
	SimQuota          float64   `json:"simQuota,omitempty"`
	SimQuotaSteps     string    `json:"simQuotaSteps,omitempty"`
	SimMaxConcurrent  int       `json:"simMaxConcurrent,omitempty"`
	Throttled429Share float64   `json:"throttled429Share"`
	QuotaUsed         float64   `json:"quotaUsed,omitempty"`
	BreakerOpened     bool      `json:"breakerOpened"`
	FollowSec         []float64 `json:"followSec,omitempty"`
	Timeline          []Second  `json:"timeline,omitempty"`
	// StateCache is kdsync's KDSYNC_STATE_CACHE ("default" when unset).
	StateCache string `json:"stateCache"`
	// RSSQuartersMiB is kdsync's resident memory when a quarter, half,
	// three quarters and all of the outcomes were in (-rss-out has every
	// second's).
	RSSQuartersMiB [4]float64 `json:"kdsyncRssQuartersMiB"`
	// Per event: kdsync's reads and writes of per-user records in the KV
	// bucket (its kdsync_state_* counters), the share of events whose
	// record was cached, and the writes as the server counts them (the
	// bucket stream's last sequence).
	StateReadsPerEvent  float64 `json:"stateReadsPerEvent"`
	StateWritesPerEvent float64 `json:"stateWritesPerEvent"`
	StateHitShare       float64 `json:"stateCacheHitShare"`
	StateEvictions      float64 `json:"stateCacheEvictions"`
	KVWritesPerEvent    float64 `json:"kvStreamWritesPerEvent"`
	// NATSInPerEvent and NATSOutPerEvent are the messages kdsync's
	// connection sent to and received from the server, per event.
	NATSInPerEvent  float64 `json:"natsMsgsInPerEvent"`
	NATSOutPerEvent float64 `json:"natsMsgsOutPerEvent"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kdload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.Int("events", 0, "events to publish (0: 2.2 per user, a hire and one or two changes each: -users 1000000 publishes 2.2M)")
	users := fs.Int("users", 20000, "users the events are spread over")
	rssOut := fs.String("rss-out", "", "write kdsync's RSS every second (seconds, outcomes, MiB) to this TSV file")
	rate := fs.Float64("rate", 0, "publish at this many events/s while kdsync runs (0: publish everything first, a backlog)")
	concurrency := fs.Int("concurrency", 0, "kdsync's KDSYNC_CONCURRENCY (0: kdsync's default)")
	quota := fs.Float64("sim-quota", 0, "simulator quota: requests/s accepted, the others answered 429 with Retry-After (0: none)")
	quotaSteps := fs.String("sim-quota-steps", "", "change the quota while kdsync runs, e.g. 20s=300,40s=1000 (times from kdsync's start)")
	maxConc := fs.Int("sim-max-concurrent", 0, "simulator cap on requests in progress, the others answered 429 (0: none)")
	warmUp := fs.Duration("warm-up", 5*time.Second, "with -sim-quota, the quota used is counted from this long after kdsync's start")
	latency := fs.Duration("sim-latency", 0, "simulator latency per request")
	errRate := fs.Float64("sim-error-rate", 0, "share of simulator requests answered 429/500/503")
	bin := fs.String("kdsync", "", "kdsync binary (default: built from ./cmd/kdsync into a temporary folder)")
	seed := fs.Uint64("seed", 1, "seed of the event history and of the simulator's faults")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long (with -sweep: each run)")
	extraEnv := fs.String("kdsync-env", "", "extra KEY=VALUE settings for kdsync, comma-separated")
	keep := fs.String("keep-log", "", "write kdsync's log to this file")
	cpuProf := fs.String("cpuprofile", "", "write a CPU profile of this process (NATS server, simulator, load tool; samples labelled component=nats|sim|load) while kdsync runs to this file")
	kdProf := fs.String("kdsync-cpuprofile", "", "write a CPU profile of kdsync while it runs to this file (sets KDSYNC_PPROF and KDSYNC_HTTP_ADDR; merges 2s profiles with go tool pprof)")
	sweep := fs.Bool("sweep", false, "measure a grid of -sweep-latency × -sweep-concurrency, each cell a fresh backlog run; -events and -users are ignored")
	sweepLat := fs.String("sweep-latency", "0,5ms,20ms,100ms", "simulator latencies of the sweep, comma-separated")
	sweepConc := fs.String("sweep-concurrency", "1,16,64,256", "kdsync concurrencies of the sweep, comma-separated")
	sweepSec := fs.Float64("sweep-seconds", 15, "size each cell's backlog to take about this long (from the expected rate, within -sweep-min-events and -sweep-max-events)")
	sweepMin := fs.Int("sweep-min-events", 500, "fewest events per cell")
	sweepMax := fs.Int("sweep-max-events", 50000, "most events per cell")
	sweepRepeat := fs.Int("sweep-repeat", 1, "runs per cell (the median file takes the median of each)")
	sweepOut := fs.String("sweep-out", "", "append one TSV row per run to this file and write the medians to its .median.tsv sibling")
	sweepOther := fs.Float64("sweep-max-other", 0.10, "a run during which other processes used more than this share of the machine is marked disturbed and run again (at most twice)")
	sweepWait := fs.Duration("sweep-wait-idle", 10*time.Minute, "before each run, wait up to this long for the machine to be quiet (under 15% busy over 3s, load average under 2); 0: do not wait")
	soakFor := fs.Duration("soak", 0, "soak: run this long under a steady stream of events with a fault every -soak-every (kdsync SIGKILL, NATS restart, KooDrive outage, throttling, a guard hold released later), sampling kdsync's RSS, goroutines and open files; the checker at the end")
	soakEvery := fs.Duration("soak-every", time.Minute, "soak: time between faults")
	soakRate := fs.Float64("soak-rate", 50, "soak: events published per second")
	soakUsers := fs.Int("soak-users", 2000, "soak: users the events are spread over")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("KDLOAD")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *events == 0 {
		*events = *users * 11 / 5
	}
	o := loadOptions{
		rssOut: *rssOut,
		events: *events, users: *users, rate: *rate, concurrency: *concurrency,
		latency: *latency, errRate: *errRate, bin: *bin, seed: *seed, extraEnv: *extraEnv, keepLog: *keep,
		cpuProfile: *cpuProf, kdsyncProfile: *kdProf,
		quota: *quota, maxConc: *maxConc, warmUp: *warmUp,
	}
	steps, err := parseQuotaSteps(*quotaSteps)
	if err != nil {
		fmt.Fprintf(stderr, "kdload: -sim-quota-steps: %v\n", err)
		return 2
	}
	o.quotaSteps = steps
	if *soakFor > 0 {
		r, err := soak(ctx, soakOptions{duration: *soakFor, every: *soakEvery, rate: *soakRate, users: *soakUsers,
			bin: *bin, keepLog: *keep, seed: *seed}, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "kdload: %v\n", err)
			return 1
		}
		printSoak(stdout, r)
		_ = json.NewEncoder(stdout).Encode(r)
		if r.Verdict != "clean" {
			return 1
		}
		return 0
	}
	if *sweep {
		sw := sweepOptions{seconds: *sweepSec, minEvents: *sweepMin, maxEvents: *sweepMax, repeat: *sweepRepeat, out: *sweepOut,
			maxOther: *sweepOther, waitIdle: *sweepWait, timeout: *timeout}
		var err error
		if sw.latencies, err = parseDurations(*sweepLat); err != nil {
			fmt.Fprintf(stderr, "kdload: -sweep-latency: %v\n", err)
			return 2
		}
		if sw.concurrencies, err = parseInts(*sweepConc); err != nil {
			fmt.Fprintf(stderr, "kdload: -sweep-concurrency: %v\n", err)
			return 2
		}
		if err := runSweep(ctx, o, sw, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "kdload: %v\n", err)
			return 1
		}
		return 0
	}
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	r, err := load(ctx, o, stderr)
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
	cpuProfile, kdsyncProfile  string
	rssOut                     string
	seed                       uint64
	quota                      float64
	quotaSteps                 []quotaStep
	maxConc                    int
	warmUp                     time.Duration
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
	// Goroutines inherit their creator's profiler labels: the server's and
	// the simulator's goroutines (their connections' too) carry their
	// component, everything else of this process "load".
	lctx := pprof.WithLabels(ctx, pprof.Labels("component", "load"))
	pprof.SetGoroutineLabels(lctx)
	defer pprof.SetGoroutineLabels(ctx)
	var ns *natsembed.Server
	pprof.Do(lctx, pprof.Labels("component", "nats"), func(context.Context) {
		ns, err = natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "js")})
	})
	if err != nil {
		return nil, err
	}
	defer ns.Stop()
	faults := kdsim.Faults{Latency: o.latency, Quota: o.quota, MaxConcurrent: o.maxConc}
	if o.errRate > 0 {
		faults.ErrorRate, faults.ErrorStatuses, faults.RetryAfter = o.errRate, []int{429, 500, 503}, time.Millisecond
	}
	var sim *harness.Sim
	pprof.Do(lctx, pprof.Labels("component", "sim"), func(context.Context) {
		sim, err = harness.StartSim(kdsim.Options{Faults: faults, Seed: o.seed})
	})
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
		SimLatencyMs: float64(o.latency) / float64(time.Millisecond), SimErrorRate: o.errRate, StateCache: "default"}
	if o.rate > 0 {
		r.Mode, r.Rate = "rate", o.rate
	}
	if o.rate == 0 {
		start := time.Now()
		if err := harness.Publish(ctx, nc, outcome.DefaultStream, restamp(evs, time.Now())); err != nil {
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
	var kdAddr string
	cmd.Env = append(os.Environ(),
		"KDSYNC_NATS_URL="+ns.URL(),
		"KDSYNC_API_BASE_URL="+sim.URL,
		"KDSYNC_APP_ID="+harness.AppID,
		"KDSYNC_APP_SECRET="+harness.AppSecret.Reveal(),
		"KDSYNC_API_USER_ID="+harness.APIUserID,
		"KDSYNC_HTTP_ADDR=127.0.0.1:0",
		"KDSYNC_RETRY_INITIAL=20ms",
		"KDSYNC_LOG_LEVEL=warn",
	)
	if o.concurrency > 0 {
		cmd.Env = append(cmd.Env, "KDSYNC_CONCURRENCY="+strconv.Itoa(o.concurrency))
	}
	// kdsync's metrics are read while it runs (a simulator quota) and at
	// the end (its state reads and writes).
	port, err := natsembed.FreePort()
	if err != nil {
		return nil, err
	}
	kdAddr = "127.0.0.1:" + strconv.Itoa(port)
	// The per-second timeline (accepted and refused calls, kdsync's
	// concurrency limit and pace) is kept for every run.
	watch := &quotaWatch{sim: sim, metrics: "http://" + kdAddr + "/metrics", steps: o.quotaSteps}
	if o.quota > 0 || o.maxConc > 0 {
		r.SimQuota, r.SimMaxConcurrent = o.quota, o.maxConc
		for _, st := range o.quotaSteps {
			r.SimQuotaSteps += fmt.Sprintf("%s=%g,", st.at, st.rate)
		}
		r.SimQuotaSteps = strings.TrimSuffix(r.SimQuotaSteps, ",")
	}
	for _, kv := range strings.Split(o.extraEnv, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			cmd.Env = append(cmd.Env, kv)
			if v, ok := strings.CutPrefix(kv, "KDSYNC_STATE_CACHE="); ok {
				r.StateCache = v
			}
		}
	}
	// Last, so that they win over -kdsync-env.
	cmd.Env = append(cmd.Env, "KDSYNC_HTTP_ADDR="+kdAddr)
	if o.kdsyncProfile != "" {
		cmd.Env = append(cmd.Env, "KDSYNC_PPROF=true")
	}
	cmd.Stdout, cmd.Stderr = logW, logW

	outcomes, err := collect(ctx, nc, len(evs))
	if err != nil {
		return nil, err
	}
	r.CPUs = runtime.NumCPU()
	r.LoadAvg[0] = loadAvg()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	profiling := o.cpuProfile != ""
	defer func() {
		if profiling {
			pprof.StopCPUProfile()
		}
	}()
	self0 := selfCPU()
	busy0, steal0, _ := machineBusy()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watch.run(wctx, start)
	var kdProfile *chunkedProfile
	if o.kdsyncProfile != "" {
		kdProfile = profileKdsync(ctx, kdAddr, o.kdsyncProfile, progress)
	}
	peak := newPeakRSS(cmd.Process.Pid)
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
	var rss []rssPoint
	var first time.Duration
	lastN, stalled := 0, 0
	for outcomes.count() < len(evs) {
		if first == 0 && outcomes.count() > 0 {
			first = time.Since(start)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d outcomes: %w", outcomes.count(), len(evs), ctx.Err())
		case <-outcomes.more:
		case <-tick.C:
			n := outcomes.count()
			el := time.Since(start).Seconds()
			cur, _ := rssNow(cmd.Process.Pid)
			rss = append(rss, rssPoint{Sec: el, Outcomes: n, RSSMiB: float64(cur) / (1 << 20)})
			fmt.Fprintf(progress, "\r%6.1fs  %7d/%d outcomes  %7.0f events/s  RSS %5.1f MiB", el, n, len(evs), float64(n)/el, float64(cur)/(1<<20))
			if n > 0 && n == lastN && o.latency < time.Second {
				stalled++
				if stalled == 2 {
					// Nothing finished for two seconds: say what the
					// server holds for kdsync.
					r.Stalls++
					fmt.Fprintf(progress, "\nno outcome for 2s: %s\n", consumerState(ctx, nc))
				}
			} else {
				if stalled >= 2 {
					r.StalledSec += float64(stalled)
				}
				stalled = 0
			}
			lastN = n
		}
	}
	if stalled >= 2 {
		r.StalledSec += float64(stalled)
	}
	elapsed := time.Since(start)
	stopWatch()
	fmt.Fprintln(progress)
	cpu, _ := cpuSeconds(cmd.Process.Pid)
	self := selfCPU() - self0
	busy1, steal1, _ := machineBusy()
	r.LoadAvg[1] = loadAvg()
	if profiling {
		pprof.StopCPUProfile()
		profiling = false
		if shares, err := componentShares(o.cpuProfile); err == nil {
			r.LoadCPUShares = shares
		} else {
			fmt.Fprintf(progress, "reading the CPU profile: %v\n", err)
		}
	}
	peak.sample()
	if cur, err := rssNow(cmd.Process.Pid); err == nil {
		rss = append(rss, rssPoint{Sec: elapsed.Seconds(), Outcomes: len(evs), RSSMiB: float64(cur) / (1 << 20)})
	}
	n := float64(len(evs))
	if st, err := scrapeState(ctx, kdAddr); err == nil {
		r.StateReadsPerEvent = st["kdsync_state_reads_total"] / n
		r.StateWritesPerEvent = st["kdsync_state_writes_total"] / n
		r.StateEvictions = st["kdsync_state_cache_evictions_total"]
		if looked := st["kdsync_state_cache_hits_total"] + st["kdsync_state_cache_misses_total"]; looked > 0 {
			r.StateHitShare = st["kdsync_state_cache_hits_total"] / looked
		}
	} else {
		fmt.Fprintf(progress, "reading kdsync's metrics: %v\n", err)
	}
	if w, err := kvWrites(ctx, nc, outcome.DefaultStateBucket); err == nil {
		r.KVWritesPerEvent = float64(w) / n
	} else {
		fmt.Fprintf(progress, "reading the state bucket: %v\n", err)
	}
	if in, out, err := connMsgs(ns.Server, "kdsync"); err == nil {
		r.NATSInPerEvent, r.NATSOutPerEvent = float64(in)/n, float64(out)/n
	} else {
		fmt.Fprintf(progress, "reading the server's connections: %v\n", err)
	}
	if kdProfile != nil {
		if err := kdProfile.finish(); err != nil {
			fmt.Fprintf(progress, "kdsync's CPU profile: %v\n", err)
		}
	}
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
	r.RSSQuartersMiB = rssQuarters(rss, len(evs))
	if o.rssOut != "" {
		if err := writeRSS(o.rssOut, r, rss); err != nil {
			fmt.Fprintf(progress, "writing %s: %v\n", o.rssOut, err)
		}
	}
	r.StartSec = first.Seconds()
	r.LoadCPUSeconds = self.Seconds()
	r.LoadCPUPerEventUs = self.Seconds() / float64(len(evs)) * 1e6
	if busy1 > busy0 && r.CPUs > 0 {
		other := busy1 - busy0 - cpu - self.Seconds()
		r.OtherCPUShare = max(other, 0) / (elapsed.Seconds() * float64(r.CPUs))
		r.StealShare = (steal1 - steal0) / (elapsed.Seconds() * float64(r.CPUs))
	}
	r.SimRequests = sim.Stats().Requests
	summarizeQuota(r, watch.timeline(), o.quotaSteps, int(o.warmUp/time.Second))
	// The faults kdload injects (429/500/503 before the write) are not
	// ambiguous: no duplicated write is explained, and any makes the
	// verdict unclean.
	rep := checker.Check(checker.Input{
		Events:    harness.CheckerEvents(evs),
		Effects:   sim.Effects(harness.UserIDs(evs)),
		Outcomes:  all,
		Final:     sim.Final(),
		Ambiguous: checker.Ambiguity{},
	})
	r.Lost, r.Duplicated, r.Reordered = len(rep.Lost), len(rep.Duplicated), len(rep.Reordered)
	r.Verdict = "clean"
	if !rep.OK() {
		r.Verdict = rep.String()
	}
	return r, nil
}
