package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// soakOptions shape kdload -soak.
type soakOptions struct {
	duration, every time.Duration
	rate            float64
	users           int
	bin, keepLog    string
	seed            uint64
}

// SoakReport is kdload -soak's result, printed as one JSON object.
type SoakReport struct {
	Seconds   float64 `json:"seconds"`
	Events    int     `json:"events"`
	Users     int     `json:"users"`
	Faults    []Fault `json:"faults"`
	Samples   int     `json:"samples"`
	Restarts  int     `json:"kdsyncRestarts"`
	Held      int     `json:"guardHeld"`
	DrainSec  float64 `json:"drainSeconds"` // from the end of publishing to the last outcome
	RSS       Trend   `json:"rssMiB"`
	Goroutine Trend   `json:"goroutines"`
	OpenFiles Trend   `json:"openFiles"`
	Report    string  `json:"checker"`
	Verdict   string  `json:"verdict"`
}

// Fault is one fault injected, at At seconds into the run.
type Fault struct {
	At   float64 `json:"at"`
	Kind string  `json:"kind"`
}

// Trend is a figure sampled over the run: its first and last value, its
// range, and its least-squares slope per hour over the longest stretch
// one kdsync process lived (a SIGKILL starts a new process).
type Trend struct {
	First, Last, Min, Max float64
	PerHour               float64 `json:"perHour"`
	OverSec               float64 `json:"slopeOverSeconds"`
	// AllPerHour is the slope over every sample of the run, across
	// restarts; LifeMedians the median of each process's life, in order.
	// With a SIGKILL every few minutes no life is long: these say
	// whether the figure grows from one life to the next.
	AllPerHour  float64   `json:"allPerHour"`
	LifeMedians []float64 `json:"lifeMedians"`
}

type sample struct {
	at         float64 // seconds into the run
	pid        int
	rss        float64 // MiB
	goroutines float64
	files      float64
}

// soak runs kdsync as its own process under a steady stream of events
// for o.duration, injecting a fault every o.every in turn: kdsync
// SIGKILLed (and started again), NATS restarted, a KooDrive outage,
// throttling, and a burst of disables past the guard's limit released a
// little later. It samples kdsync's RSS, goroutines and open files, and
// at the end waits for every event's outcome and runs the checker.
func soak(ctx context.Context, o soakOptions, progress io.Writer) (*SoakReport, error) {
	dir, err := os.MkdirTemp("", "kdload-soak-")
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
	defer func() { ns.Stop() }()
	sim, err := harness.StartSim(kdsim.Options{Seed: o.seed})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}

	// The history: per user a hire, then moves and role changes (no
	// deprovisioning: the guard's window counts only the bursts), spread
	// over the run at o.rate.
	total := max(int(o.rate*o.duration.Seconds()), o.users)
	perUser := (total + o.users - 1) / o.users
	evs, err := steadyHistory(sim.Departments(), o.users, perUser, o.seed)
	if err != nil {
		return nil, err
	}

	port, err := natsembed.FreePort()
	if err != nil {
		return nil, err
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(port)
	logW := io.Discard
	if o.keepLog != "" {
		f, err := os.Create(o.keepLog)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		logW = f
	}
	const limit = 10
	k := &kdsyncProc{bin: bin, log: logW, env: []string{
		"KDSYNC_NATS_URL=" + ns.URL(),
		"KDSYNC_API_BASE_URL=" + sim.URL,
		"KDSYNC_APP_ID=" + harness.AppID,
		"KDSYNC_APP_SECRET=" + harness.AppSecret.Reveal(),
		"KDSYNC_API_USER_ID=" + harness.APIUserID,
		"KDSYNC_HTTP_ADDR=" + httpAddr,
		"KDSYNC_ACK_WAIT=5s",
		"KDSYNC_RETRY_INITIAL=50ms",
		"KDSYNC_RETRY_MAX=2s",
		"KDSYNC_BREAKER_PROBE=1s",
		"KDSYNC_DEPROVISION_LIMIT=" + strconv.Itoa(limit) + "/1h",
		"KDSYNC_LOG_LEVEL=warn",
	}}
	if err := k.start(); err != nil {
		return nil, err
	}
	defer k.stop()
	// kdsync creates the streams and the guard's bucket.
	var st *guard.Store
	for st == nil {
		if st, err = guard.Open(ctx, js, outcome.DefaultGuardBucket, 1, false); err != nil {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}

	r := &SoakReport{Users: o.users}
	start := time.Now()
	since := func() float64 { return time.Since(start).Seconds() }
	var samples []sample
	takeSample := func() {
		s := sample{at: since(), pid: k.pid()}
		s.rss, _ = procRSS(s.pid)
		s.files, _ = openFiles(s.pid)
		g, err := goroutines(ctx, httpAddr)
		if err != nil || s.rss == 0 {
			return // kdsync restarting
		}
		s.goroutines = g
		samples = append(samples, s)
	}

	// Publish at o.rate while faults come and go.
	pubCtx, stopPub := context.WithTimeout(ctx, o.duration)
	defer stopPub()
	type pubResult struct {
		sent []workload.Event
		err  error
	}
	pubDone := make(chan pubResult, 1)
	burstIn := make(chan []workload.Event, 8)
	go func() {
		sent, err := publishSteady(pubCtx, js, evs, o.rate, burstIn)
		pubDone <- pubResult{sent, err}
	}()

	kinds := []string{"kdsync-sigkill", "nats-restart", "koodrive-outage", "throttling", "guard-hold"}
	faultTick := time.NewTicker(o.every)
	defer faultTick.Stop()
	sampleTick := time.NewTicker(5 * time.Second)
	defer sampleTick.Stop()
	var releaseAt time.Time
	// Kills and NATS restarts may stop kdsync between a KooDrive write and
	// the watermark that records it: the checker is told, so that the one
	// repeat each may cause is explained (and any other is not).
	var interruptions []checker.Interruption
	nextFault := 0
	takeSample()
	for pubCtx.Err() == nil {
		select {
		case <-pubCtx.Done():
		case <-sampleTick.C:
			takeSample()
			fmt.Fprintf(progress, "%6.0fs  kdsync pid %d  rss %.1f MiB  faults %d\n", since(), k.pid(), lastRSS(samples), len(r.Faults))
		case <-faultTick.C:
			kind := kinds[nextFault%len(kinds)]
			nextFault++
			r.Faults = append(r.Faults, Fault{At: since(), Kind: kind})
			fmt.Fprintf(progress, "%6.0fs  fault: %s\n", since(), kind)
			switch kind {
			case "kdsync-sigkill", "nats-restart":
				interruptions = append(interruptions, checker.Interruption{What: kind, From: time.Now(), To: time.Now().Add(o.every)})
			}
			switch kind {
			case "kdsync-sigkill":
				k.kill()
				r.Restarts++
				if err := k.start(); err != nil {
					return nil, err
				}
			case "nats-restart":
				if err := ns.Restart(); err != nil {
					return nil, fmt.Errorf("restart NATS: %w", err)
				}
			case "koodrive-outage":
				if err := sim.StartOutage(o.every / 4); err != nil {
					return nil, err
				}
			case "throttling":
				if err := sim.SetFaults(kdsim.Faults{ErrorRates: map[int]float64{429: 0.3}, RetryAfter: time.Second}); err != nil {
					return nil, err
				}
				time.AfterFunc(o.every/3, func() { _ = sim.SetFaults(kdsim.Faults{}) })
			case "guard-hold":
				// Disables for 3×limit users: past the limit they are held
				// (with their users' later events parked behind), released
				// half a fault interval later.
				b := disables(evs, 3*limit, nextFault)
				fmt.Fprintf(progress, "%6.0fs  %d disables for the guard to hold past %d\n", since(), len(b), limit)
				burstIn <- b
				releaseAt = time.Now().Add(o.every / 2)
			}
		}
		if !releaseAt.IsZero() && time.Now().After(releaseAt) {
			if held, err := st.Decide(ctx, nil, guard.Release, "kdload"); err == nil {
				r.Held += len(held)
				releaseAt = time.Time{}
			}
		}
	}
	res := <-pubDone
	if res.err != nil && !errors.Is(res.err, context.DeadlineExceeded) {
		return nil, res.err
	}
	_ = sim.SetFaults(kdsim.Faults{})
	sim.StopOutage()
	// Release what is still held, and wait for every outcome.
	pubEnd := time.Now()
	all := res.sent // in the order published: the checker folds each user's in it
	r.Events = len(all)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	outs, err := harness.CollectOutcomes(wctx, nc, outcome.DefaultOutcomeStream)
	if err != nil {
		return nil, err
	}
	defer outs.Stop()
	for outs.Distinct() < len(all) {
		if held, err := st.Decide(wctx, nil, guard.Release, "kdload"); err == nil {
			r.Held += len(held)
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("%d of %d outcomes after the run: %w", outs.Distinct(), len(all), wctx.Err())
		case <-time.After(time.Second):
		}
	}
	r.DrainSec = time.Since(pubEnd).Seconds()
	takeSample()
	r.Seconds = since()
	r.Samples = len(samples)
	r.RSS = trend(samples, func(s sample) float64 { return s.rss })
	r.Goroutine = trend(samples, func(s sample) float64 { return s.goroutines })
	r.OpenFiles = trend(samples, func(s sample) float64 { return s.files })
	rep := checker.Check(checker.Input{
		Events:    harness.CheckerEvents(all),
		Effects:   sim.Effects(harness.UserIDs(all)),
		Outcomes:  outs.All(),
		Final:     sim.Final(),
		Ambiguous: checker.Ambiguity{Interruptions: interruptions},
	})
	r.Report = rep.String()
	r.Verdict = "clean"
	if !rep.OK() {
		r.Verdict = "violations"
	}
	return r, nil
}

// steadyHistory is per user a hire, then moves and role changes.
func steadyHistory(depts []int64, users, perUser int, seed uint64) ([]workload.Event, error) {
	evs, err := workload.Generate(workload.Options{Users: users, EventsPerUser: perUser, Departments: depts, Seed: seed, Leavers: 1e-9})
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for _, ev := range evs {
		if ev.Action == handlers.Disabled || ev.Action == handlers.Enabled || ev.Action == handlers.Deleted {
			continue
		}
		out = append(out, ev)
	}
	return out, nil
}

// disables makes a disable for n users hired in evs, other users for
// each burst.
func disables(evs []workload.Event, n, burst int) []workload.Event {
	var out []workload.Event
	skip := burst * n
	for _, ev := range evs {
		if len(out) == n {
			break
		}
		if ev.Action != handlers.Hired {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		d := checker.Event{ID: fmt.Sprintf("burst%d-%s", burst, ev.UserID), UserID: ev.UserID, Action: handlers.Disabled}
		e, err := workload.Encode(d, "identity.employee.", ev.Source, time.Now())
		if err == nil {
			out = append(out, e)
		}
	}
	return out
}

// publishSteady publishes evs at rate until ctx ends, and each burst as
// it comes, and returns what it published, in order. A publish that fails
// (NATS restarting) is retried until stored (deduplicated by its
// Nats-Msg-Id).
func publishSteady(ctx context.Context, js jetstream.JetStream, evs []workload.Event, rate float64, bursts <-chan []workload.Event) ([]workload.Event, error) {
	var sent []workload.Event
	pub := func(ev workload.Event) {
		m := &nats.Msg{Subject: ev.Subject, Data: ev.Body, Header: nats.Header{jetstream.MsgIDHeader: {ev.MsgID()}}}
		for {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_, err := js.PublishMsg(pctx, m)
			cancel()
			if err == nil {
				sent = append(sent, ev)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for _, ev := range evs {
		select {
		case b := <-bursts:
			for _, e := range b {
				pub(e)
			}
		default:
		}
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return sent, ctx.Err()
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			return sent, ctx.Err()
		}
		pub(ev)
		next = next.Add(interval)
	}
	// The steady events are all out: bursts (a guard hold) still come
	// until the soak ends.
	for {
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case b := <-bursts:
			for _, e := range b {
				pub(e)
			}
		}
	}
}

// kdsyncProc is the kdsync process under test, started again after each
// SIGKILL.
type kdsyncProc struct {
	bin string
	env []string
	log io.Writer
	cmd *exec.Cmd
}

func (k *kdsyncProc) start() error {
	cmd := exec.Command(k.bin, "run")
	cmd.Env = append(os.Environ(), k.env...)
	cmd.Stdout, cmd.Stderr = k.log, k.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kdsync: %w", err)
	}
	k.cmd = cmd
	return nil
}

func (k *kdsyncProc) pid() int {
	if k.cmd == nil || k.cmd.Process == nil {
		return 0
	}
	return k.cmd.Process.Pid
}

func (k *kdsyncProc) kill() {
	if k.cmd != nil {
		_ = k.cmd.Process.Kill()
		_ = k.cmd.Wait()
		k.cmd = nil
	}
}

func (k *kdsyncProc) stop() {
	if k.cmd != nil {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		_ = k.cmd.Wait()
		k.cmd = nil
	}
}

// procRSS is a process's resident set (VmRSS) in MiB.
func procRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// openFiles counts a process's open file descriptors.
func openFiles(pid int) (float64, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return float64(len(es)), err
}

// goroutines reads go_goroutines from kdsync's /metrics.
func goroutines(ctx context.Context, addr string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, errors.New("no go_goroutines")
}

func lastRSS(s []sample) float64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1].rss
}

// trend summarises a figure; the slope is over the longest stretch one
// process lived, leaving out its first minute (warm-up) when it lived
// longer than two.
func trend(samples []sample, f func(sample) float64) Trend {
	var t Trend
	if len(samples) == 0 {
		return t
	}
	t.First, t.Last = f(samples[0]), f(samples[len(samples)-1])
	t.Min, t.Max = t.First, t.First
	best, bestLen := []sample(nil), 0.0
	for i := 0; i < len(samples); {
		j := i
		for j < len(samples) && samples[j].pid == samples[i].pid {
			j++
		}
		if l := samples[j-1].at - samples[i].at; l > bestLen {
			best, bestLen = samples[i:j], l
		}
		i = j
	}
	for _, s := range samples {
		t.Min, t.Max = min(t.Min, f(s)), max(t.Max, f(s))
	}
	if bestLen > 120 {
		from := best[0].at + 60
		for len(best) > 2 && best[0].at < from {
			best = best[1:]
		}
	}
	t.AllPerHour = slopePerHour(samples, f)
	for i := 0; i < len(samples); {
		j := i
		var life []float64
		for ; j < len(samples) && samples[j].pid == samples[i].pid; j++ {
			life = append(life, f(samples[j]))
		}
		slices.Sort(life)
		t.LifeMedians = append(t.LifeMedians, life[len(life)/2])
		i = j
	}
	if len(best) < 2 {
		return t
	}
	t.PerHour = slopePerHour(best, f)
	t.OverSec = best[len(best)-1].at - best[0].at
	return t
}

// slopePerHour is the least-squares slope of f over the samples, per hour.
func slopePerHour(samples []sample, f func(sample) float64) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(samples))
	for _, s := range samples {
		x, y := s.at, f(s)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if den := n*sxx - sx*sx; den > 0 {
		return (n*sxy - sx*sy) / den * 3600
	}
	return 0
}

func medians(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(parts, " ")
}

func printSoak(w io.Writer, r *SoakReport) {
	fmt.Fprintf(w, "soak: %.0fs, %d events for %d users, %d faults (%d kdsync SIGKILLs), %d held and released, drained %.1fs after publishing ended\n",
		r.Seconds, r.Events, r.Users, len(r.Faults), r.Restarts, r.Held, r.DrainSec)
	for _, x := range []struct {
		name string
		t    Trend
	}{{"rss MiB", r.RSS}, {"goroutines", r.Goroutine}, {"open files", r.OpenFiles}} {
		fmt.Fprintf(w, "  %-11s first %7.1f  last %7.1f  min %7.1f  max %7.1f  slope %+8.2f/h over %.0fs of one process, %+8.2f/h over the run; median of each life %s\n",
			x.name, x.t.First, x.t.Last, x.t.Min, x.t.Max, x.t.PerHour, x.t.OverSec, x.t.AllPerHour, medians(x.t.LifeMedians))
	}
	fmt.Fprintf(w, "  checker: %s\n  verdict: %s\n", r.Report, r.Verdict)
}
