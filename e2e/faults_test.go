package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/internal/tcpproxy"
	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/workload"
)

// waitUnready polls /readyz until it stops answering 200.
func waitUnready(ctx context.Context, httpAddr string) error {
	for {
		code, _, err := httpGet("http://" + httpAddr + "/readyz")
		if err == nil && code != http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kdsync still ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestNetworkCut runs kdsync through a TCP proxy to NATS and cuts the
// connection twice mid-stream for a few seconds (every connection closed,
// new ones refused) while events keep being published directly: kdsync
// turns unready, reconnects when the path is back, and nothing is lost,
// reordered or answered twice.
func TestNetworkCut(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	seed := testSeed(t)
	bins.path(t, "kdsync") // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ns := startSingle(t, natsembed.Options{})
	proxy, err := tcpproxy.New(strings.TrimPrefix(ns.URL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	sim, err := harness.StartSim(kdsim.Options{Seed: seed, Faults: kdsim.Faults{
		Latency: 500 * time.Microsecond, Jitter: time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	evs, err := workload.Generate(workload.Options{Users: 400, EventsPerUser: 5, Departments: sim.Departments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	nc := connect(t, ns.URL())

	httpAddr := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kdsync.log")
	start := time.Now()
	d := startDaemon(t, kdsyncEnv("nats://"+proxy.Addr(), sim.URL, httpAddr), logPath)
	if err := waitReady(ctx, d, httpAddr); err != nil {
		t.Fatal(err, d.tail())
	}
	outcomes, err := harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outcomes.Stop()
	feedDone := runFeed(ctx, nc, evs, 15*time.Second)

	const cutFor = 4 * time.Second
	for i, at := range []int{len(evs) / 5, len(evs) / 2} {
		if err := outcomes.WaitFor(ctx, at); err != nil {
			t.Fatal(err, d.tail())
		}
		proxy.Cut()
		cut := time.Now()
		n := outcomes.Distinct()
		if err := waitUnready(ctx, httpAddr); err != nil {
			t.Fatal("after the cut: ", err)
		}
		time.Sleep(cutFor - time.Since(cut)) // the cut lasts cutFor
		if err := proxy.Restore(); err != nil {
			t.Fatal(err)
		}
		if err := waitReady(ctx, d, httpAddr); err != nil {
			t.Fatal("after the cut healed: ", err, d.tail())
		}
		t.Logf("cut %d after %d outcomes for %s; ready again %s after it healed", i+1, n, cutFor, time.Since(cut)-cutFor)
	}
	resent, err := feedDone()
	if err != nil {
		t.Fatal("publishing: ", err)
	}
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, d.tail())
	}
	wall := time.Since(start)
	_, metrics, err := httpGet("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if took, err := d.stop(t, 30*time.Second); err != nil {
		t.Errorf("kdsync stop after %s: %v", took, err)
	}
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	if got := proxy.Accepted(); got < 3 {
		t.Errorf("kdsync connected %d times through the proxy; want at least 3 (start and two reconnects)", got)
	}
	if got := metricValue(metrics, "kdsync_nats_reconnects_total"); got < 2 {
		t.Errorf("kdsync_nats_reconnects_total = %v, want at least 2", got)
	}
	verify(t, "network-cut", evs, sim, outcomes, checker.Ambiguity{},
		fmt.Sprintf("kdsync-NATS TCP cut twice for %s each (connections closed, dials refused); %d publishes re-sent", cutFor, resent), wall)
}

// TestKooDriveSlowThrottledAlreadyExists runs kdsync against a KooDrive
// that answers some writes only after the client gave up (the write was
// applied: the ambiguous case), throttles with 429 and Retry-After, and
// already holds some users when their hire arrives. Every event is
// applied once in order, nothing is dead-lettered, Retry-After is
// honoured, and the pre-existing users end as their events say.
func TestKooDriveSlowThrottledAlreadyExists(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	seed := testSeed(t)
	bins.path(t, "kdsync") // built before the clock starts
	rng := rand.New(rand.NewPCG(seed, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ns := startSingle(t, natsembed.Options{})
	sim, err := harness.StartSim(kdsim.Options{Seed: seed, Faults: kdsim.Faults{
		Latency: 500 * time.Microsecond, Jitter: time.Millisecond,
		SlowRate: 0.02, SlowFor: 3 * time.Second,
		ErrorRate: 0.05, ErrorStatuses: []int{429}, RetryAfter: time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	evs, err := workload.Generate(workload.Options{Users: 400, EventsPerUser: 5, Departments: sim.Departments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	// A tenth of the users exist in KooDrive already, disabled and
	// elsewhere, when their hire arrives.
	depts := sim.Departments()
	pre := 0
	for _, u := range harness.UserIDs(evs) {
		if rng.IntN(10) != 0 {
			continue
		}
		if _, err := sim.PutUserDirect(kdsim.User{UserID: u, DeptID: strconv.FormatInt(depts[rng.IntN(len(depts))], 10), Role: 3, Status: 1}); err != nil {
			t.Fatal(err)
		}
		pre++
	}
	nc := connect(t, ns.URL())

	httpAddr := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kdsync.log")
	start := time.Now()
	d := startDaemon(t, kdsyncEnv(ns.URL(), sim.URL, httpAddr,
		"KDSYNC_API_TIMEOUT=300ms", // the slow answers come after 3s
		"KDSYNC_RETRY_MAX=2s",      // lets a 1s Retry-After be honoured in full
	), logPath)
	if err := waitReady(ctx, d, httpAddr); err != nil {
		t.Fatal(err, d.tail())
	}
	outcomes, err := harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outcomes.Stop()
	feedDone := runFeed(ctx, nc, evs, 5*time.Second)
	if _, err := feedDone(); err != nil {
		t.Fatal("publishing: ", err)
	}
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, d.tail())
	}
	wall := time.Since(start)
	_, metrics, err := httpGet("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if took, err := d.stop(t, 30*time.Second); err != nil {
		t.Errorf("kdsync stop after %s: %v", took, err)
	}
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	st := sim.Stats()
	if st.Faults["slow"] == 0 || st.Faults["error429"] == 0 {
		t.Fatalf("faults not injected: %v", st.Faults)
	}
	if st.DuplicateCreates < int64(pre) {
		t.Errorf("%d creates answered \"already exists\"; want at least the %d users made beforehand", st.DuplicateCreates, pre)
	}
	if got := metricValue(metrics, "kdsync_retry_after_seconds_total"); got < 1 {
		t.Errorf("kdsync_retry_after_seconds_total = %v; the 429s' Retry-After was not honoured", got)
	}
	verify(t, "koodrive-slow-throttled-exists", evs, sim, outcomes, checker.Ambiguity{FailAfterWrite: true},
		fmt.Sprintf("%d answered after the 300ms client timeout (write applied), %d 429 with Retry-After 1s, %d users existing before their hire (%d creates answered already-exists); %d requests",
			st.Faults["slow"], st.Faults["error429"], pre, st.DuplicateCreates, st.Requests), wall)
}

// TestSIGTERMDuringLongRetry sends SIGTERM to kdsync twice while it cannot
// finish events: first while KooDrive is in an outage (every lane retrying,
// the breaker open), then while KooDrive takes writes but never answers
// (calls hanging past the shutdown timeout). Each time kdsync exits with
// status 0 within its shutdown timeout and stores no outcome; a third run,
// with KooDrive healthy, applies every event in order.
func TestSIGTERMDuringLongRetry(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	seed := testSeed(t)
	bins.path(t, "kdsync") // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ns := startSingle(t, natsembed.Options{})
	sim, err := harness.StartSim(kdsim.Options{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	evs, err := workload.Generate(workload.Options{Users: 200, EventsPerUser: 5, Departments: sim.Departments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	nc := connect(t, ns.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	outcomeCount := func() uint64 {
		s, err := js.Stream(ctx, "KDSYNC_OUTCOMES")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	waitFaults := func(kind string, n int64) {
		t.Helper()
		for sim.Stats().Faults[kind] < n {
			if ctx.Err() != nil {
				t.Fatalf("%d %s faults, want %d", sim.Stats().Faults[kind], kind, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	const shutdownTimeout = 3 * time.Second
	httpAddr := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kdsync.log")
	env := kdsyncEnv(ns.URL(), sim.URL, httpAddr,
		"KDSYNC_SHUTDOWN_TIMEOUT="+shutdownTimeout.String(),
		"KDSYNC_API_TIMEOUT=30s", // longer than the shutdown timeout
	)
	start := time.Now()

	// 1. Outage: every call answers 503 with a Retry-After of an hour.
	if err := sim.StartOutage(time.Hour); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, env, logPath)
	if err := waitReady(ctx, d, httpAddr); err != nil {
		t.Fatal(err, d.tail())
	}
	if _, err := feed(ctx, nc, "IDENTITY", evs, 0); err != nil {
		t.Fatal(err)
	}
	waitFaults("outage", 50)
	// Wait until the lanes are in a long retry: the breaker open, pulls
	// paused, probes going out.
	for {
		_, m, err := httpGet("http://" + httpAddr + "/metrics")
		if err == nil && metricValue(m, "kdsync_breaker_state") == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the breaker did not open during the outage", d.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	took, err := d.stop(t, 30*time.Second)
	if err != nil {
		t.Fatalf("SIGTERM during the outage: %v after %s\n%s", err, took, d.tail())
	}
	if took > shutdownTimeout+2*time.Second {
		t.Errorf("SIGTERM during the outage: exited after %s; shutdown timeout %s", took, shutdownTimeout)
	}
	if n := outcomeCount(); n != 0 {
		t.Fatalf("%d outcomes while KooDrive was down; want none (retries, not dead letters)", n)
	}
	t.Logf("SIGTERM during the outage (%d calls refused): exit 0 after %s", sim.Stats().Faults["outage"], took.Round(time.Millisecond))
	outageCalls := sim.Stats().Faults["outage"]

	// 2. KooDrive applies writes and never answers: calls hang.
	sim.StopOutage()
	if err := sim.SetFaults(kdsim.Faults{SlowRate: 1, SlowFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, env, logPath)
	if err := waitReady(ctx, d, httpAddr); err != nil {
		t.Fatal(err, d.tail())
	}
	waitFaults("slow", 20)
	took, err = d.stop(t, 30*time.Second)
	if err != nil {
		t.Fatalf("SIGTERM with calls hanging: %v after %s\n%s", err, took, d.tail())
	}
	if took > shutdownTimeout+2*time.Second {
		t.Errorf("SIGTERM with calls hanging: exited after %s; shutdown timeout %s", took, shutdownTimeout)
	}
	if n := outcomeCount(); n != 0 {
		t.Fatalf("%d outcomes while KooDrive did not answer; want none", n)
	}
	hung := sim.Stats().Faults["slow"]
	t.Logf("SIGTERM with %d calls hanging: exit 0 after %s", hung, took.Round(time.Millisecond))

	// 3. KooDrive healthy: everything comes back and is applied in order.
	if err := sim.SetFaults(kdsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, env, logPath)
	outcomes, err := harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outcomes.Stop()
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, d.tail())
	}
	wall := time.Since(start)
	if took, err := d.stop(t, 30*time.Second); err != nil {
		t.Errorf("kdsync stop after %s: %v", took, err)
	}
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	// The calls left hanging were applied (marked slow): each explains
	// one repeat by the third run.
	verify(t, "sigterm-during-retry", evs, sim, outcomes, checker.Ambiguity{FailAfterWrite: true},
		fmt.Sprintf("SIGTERM during a KooDrive outage (%d calls refused) and with %d calls hanging past the %s shutdown timeout, restart each time", outageCalls, hung, shutdownTimeout), wall)
}

// TestSIGTERMWhileNATSUnreachable stops kdsync while it waits for NATS at
// start (the broker down when the pod starts, then the pod is deleted): a
// requested stop is not a failure, so kdsync exits with status 0.
func TestSIGTERMWhileNATSUnreachable(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	closed := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kdsync.log")
	d := startDaemon(t, kdsyncEnv("nats://"+closed, "http://"+closed, "127.0.0.1:0"), logPath)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.tail(), "NATS not reachable yet") {
		if time.Now().After(deadline) || !d.running() {
			t.Fatalf("kdsync does not wait for NATS:\n%s", d.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	took, err := d.stop(t, 10*time.Second)
	if d.running() {
		t.Fatalf("kdsync did not stop within %s", took)
	}
	if err != nil {
		t.Fatalf("SIGTERM while waiting for NATS: %v after %s\n%s", err, took, d.tail())
	}
}
