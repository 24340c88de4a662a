// Package e2e runs kdsync as its own process against real parts: an
// embedded NATS server and the KooDrive simulator, and kills it.
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/workload"
)

// buildKdsync compiles cmd/kdsync once per test binary run.
func buildKdsync(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kdsync")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/kdsync")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kdsync: %v\n%s", err, out)
	}
	return bin
}

// proc is a running `kdsync run`.
type proc struct {
	cmd *exec.Cmd
	log *os.File
}

func startKdsync(t *testing.T, bin string, env []string, logPath string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &proc{cmd: cmd, log: f}
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.log.Close()
}

func (p *proc) term(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("kdsync after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Error("kdsync did not stop within 30s of SIGTERM")
	}
	p.log.Close()
}

// TestKilledTwice is the pipeline's acceptance run: 2,000 users × 5 events
// published beforehand, 5% transient failures (some after the write was
// applied), kdsync killed with SIGKILL twice while it works and restarted
// each time. The simulator's final state must equal what the events imply,
// per-user order kept, and every event must have exactly one outcome.
func TestKilledTwice(t *testing.T) {
	runWorkload(t, kdsim.Faults{
		Latency: 500 * time.Microsecond, Jitter: time.Millisecond,
		ErrorRate: 0.03, ErrorStatuses: []int{429, 500, 503}, RetryAfter: time.Millisecond,
		FailAfterWriteRate: 0.02,
	}, 2)
}

// TestSameWorkloadNoFaults is TestKilledTwice's workload with no fault and
// no kill: the baseline its events/s compare with.
func TestSameWorkloadNoFaults(t *testing.T) {
	runWorkload(t, kdsim.Faults{Latency: 500 * time.Microsecond, Jitter: time.Millisecond}, 0)
}

// runWorkload publishes 2,000 users × 5 events, runs kdsync as a process
// against the simulator with faults, SIGKILLs it kills times mid-run
// (restarting it each time), and checks the result.
func runWorkload(t *testing.T, faults kdsim.Faults, kills int) {
	testenv.SkipShort(t, "builds and runs kdsync as a process")
	users, perUser := 2000, 5
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))

	bin := buildKdsync(t)
	dir := t.TempDir()
	ns, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	sim, err := harness.StartSim(kdsim.Options{Seed: seed, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	evs, err := workload.Generate(workload.Options{Users: users, EventsPerUser: perUser, Departments: sim.Departments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := harness.Publish(ctx, nc, "IDENTITY", evs); err != nil {
		t.Fatal(err)
	}
	t.Logf("published %d events in %s", len(evs), time.Since(start))

	env := []string{
		"KDSYNC_NATS_URL=" + ns.URL(),
		"KDSYNC_API_BASE_URL=" + sim.URL,
		"KDSYNC_APP_ID=" + harness.AppID,
		"KDSYNC_APP_SECRET=" + harness.AppSecret.Reveal(),
		"KDSYNC_API_USER_ID=" + harness.APIUserID,
		"KDSYNC_HTTP_ADDR=127.0.0.1:0",
		"KDSYNC_ACK_WAIT=3s",
		"KDSYNC_RETRY_INITIAL=20ms",
		"KDSYNC_RETRY_MAX=500ms",
		"KDSYNC_API_TIMEOUT=2s",
		"KDSYNC_LOG_LEVEL=warn",
		// Calls under way bounded as the kills' ambiguity below declares
		// (the default ceiling is 512).
		"KDSYNC_CONCURRENCY=64",
	}
	logPath := filepath.Join(dir, "kdsync.log")
	var outcomes *harness.Outcomes
	start = time.Now()
	collect := func(p *proc) {
		if outcomes != nil {
			return
		}
		outcomes, err = harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
		if err != nil {
			p.kill(t)
			t.Fatal(err)
		}
		t.Cleanup(outcomes.Stop)
	}
	// The faults that may make a write happen twice: writes answered 500
	// after they were applied, and each kill between a write and its
	// watermark (at most one per call under way: KDSYNC_CONCURRENCY, 64).
	amb := checker.Ambiguity{FailAfterWrite: faults.FailAfterWriteRate > 0 || faults.SlowRate > 0}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for kill := range kills {
		p := startKdsync(t, bin, env, logPath)
		collect(p)
		// Kill at a random point of the second and third fifths.
		target := len(evs)*(kill+1)/5 + rng.IntN(len(evs)/5)
		if err := outcomes.WaitFor(ctx, target); err != nil {
			p.kill(t)
			t.Fatal(err, logTail(logPath))
		}
		from := time.Now()
		p.kill(t)
		amb.Interruptions = append(amb.Interruptions, checker.Interruption{
			What: fmt.Sprintf("SIGKILL %d", kill+1), From: from, To: time.Now().Add(time.Second), Limit: 64})
		// The kill interrupted work: the dead process held events it had
		// not acknowledged (they come back after the ack wait), and events
		// were left without an outcome.
		c, err := js.Consumer(ctx, "IDENTITY", "kdsync")
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done := outcomes.Distinct()
		if info.NumAckPending == 0 || done >= len(evs) {
			t.Fatalf("SIGKILL %d interrupted nothing: %d events held unacknowledged, %d of %d outcomes", kill+1, info.NumAckPending, done, len(evs))
		}
		t.Logf("SIGKILL %d after %d outcomes, %d events held unacknowledged (%s)", kill+1, done, info.NumAckPending, time.Since(start).Round(time.Millisecond))
	}
	p := startKdsync(t, bin, env, logPath)
	collect(p)
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		p.kill(t)
		t.Fatal(err, logTail(logPath))
	}
	elapsed := time.Since(start)
	p.term(t)
	// Every outcome stored is read (a late duplicate one included).
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	redelivered := 0
	for _, o := range outcomes.All() {
		if o.Delivered > 1 {
			redelivered++
		}
	}
	if kills > 0 && redelivered == 0 {
		t.Errorf("no event was redelivered after %d kills: the kills interrupted nothing", kills)
	}

	r := checker.Check(checker.Input{
		Events:    harness.CheckerEvents(evs),
		Effects:   sim.Effects(harness.UserIDs(evs)),
		Outcomes:  outcomes.All(),
		Final:     sim.Final(),
		Ambiguous: amb,
	})
	st := sim.Stats()
	t.Logf("%d events in %s (%.0f events/s with %d kills and restarts, %d outcomes of redelivered events); simulator: %d requests, faults %v",
		len(evs), elapsed.Round(time.Millisecond), float64(len(evs))/elapsed.Seconds(), kills, redelivered, st.Requests, st.Faults)
	t.Log(r)
	if !r.OK() {
		t.Fatalf("checker: %s\n%s", r, logTail(logPath))
	}
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Sprintf("--- kdsync log tail ---\n%s", b)
}
