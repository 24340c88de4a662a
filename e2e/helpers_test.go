package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/workload"
)

func TestMain(m *testing.M) {
	// testcontainers reads its configuration once, at its first use: Ryuk
	// (the reaper) would need an image pulled from a registry, so it is
	// off, and every container is removed by the test that made it.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	// The Docker engine runs on this machine when its bridge is one of our
	// interfaces: published ports are then on 127.0.0.1. testcontainers
	// would otherwise take /.dockerenv (present on some VMs) to mean "in a
	// container" and look for the engine at the default route's gateway,
	// which answers nothing.
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		if _, err := net.InterfaceByName("docker0"); err == nil {
			os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
		}
	}
	code := m.Run()
	removeTestImage()
	bins.cleanup()
	os.Exit(code)
}

// binaries are the static programs the tests run, built once per test
// binary: kdsync and kdsim for processes and containers, nats-server for
// containers only.
type binaries struct {
	once map[string]*sync.Once
	mu   sync.Mutex
	dir  string
	errs map[string]error
}

var bins = &binaries{once: map[string]*sync.Once{}, errs: map[string]error{}}

var buildTargets = map[string]string{
	"kdsync":      "./cmd/kdsync",
	"kdsim":       "./cmd/kdsim",
	"nats-server": "github.com/nats-io/nats-server/v2",
}

// path builds name (a key of buildTargets) as a static linux binary unless
// built already, and returns its path.
func (b *binaries) path(t *testing.T, name string) string {
	t.Helper()
	b.mu.Lock()
	if b.dir == "" {
		dir, err := os.MkdirTemp("", "kdsync-e2e-bin-")
		if err != nil {
			b.mu.Unlock()
			t.Fatal(err)
		}
		b.dir = dir
	}
	once := b.once[name]
	if once == nil {
		once = &sync.Once{}
		b.once[name] = once
	}
	dir := b.dir
	b.mu.Unlock()
	out := filepath.Join(dir, name)
	once.Do(func() {
		start := time.Now()
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, buildTargets[name])
		cmd.Dir = ".." // the module root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if o, err := cmd.CombinedOutput(); err != nil {
			b.mu.Lock()
			b.errs[name] = fmt.Errorf("build %s: %v\n%s", name, err, o)
			b.mu.Unlock()
			return
		}
		t.Logf("built %s in %s", name, time.Since(start).Round(time.Millisecond))
	})
	b.mu.Lock()
	err := b.errs[name]
	b.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *binaries) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// testSeed returns KDSYNC_TEST_SEED or a fresh seed, and logs it.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KDSYNC_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KDSYNC_TEST_SEED %q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (set KDSYNC_TEST_SEED=%d to replay)", seed, seed)
	return seed
}

// kdsyncEnv is the environment of a kdsync run against the harness's
// simulator, tuned for tests: short waits, quick retries.
func kdsyncEnv(natsURL, simURL, httpAddr string, extra ...string) []string {
	env := []string{
		"KDSYNC_NATS_URL=" + natsURL,
		"KDSYNC_API_BASE_URL=" + simURL,
		"KDSYNC_APP_ID=" + harness.AppID,
		"KDSYNC_APP_SECRET=" + harness.AppSecret.Reveal(),
		"KDSYNC_API_USER_ID=" + harness.APIUserID,
		"KDSYNC_HTTP_ADDR=" + httpAddr,
		"KDSYNC_ACK_WAIT=3s",
		"KDSYNC_RETRY_INITIAL=20ms",
		"KDSYNC_RETRY_MAX=500ms",
		"KDSYNC_BREAKER_PROBE=300ms",
		"KDSYNC_API_TIMEOUT=2s",
		"KDSYNC_SHUTDOWN_TIMEOUT=5s",
		"KDSYNC_LOG_LEVEL=info",
	}
	return append(env, extra...)
}

// daemon is a running `kdsync run` whose output goes to a log file.
type daemon struct {
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	exited  chan struct{}
	err     error // Wait's error, once exited is closed
}

// startDaemon runs `kdsync run` with env (and nothing else of the test's
// environment but PATH and HOME), appending its output to logPath.
func startDaemon(t *testing.T, env []string, logPath string) *daemon {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.path(t, "kdsync"), "run")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, logPath: logPath, log: f, exited: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		f.Close()
		close(d.exited)
	}()
	t.Cleanup(func() { d.kill() })
	return d
}

// kill sends SIGKILL and waits.
func (d *daemon) kill() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// stop sends SIGTERM and waits up to limit; it returns how long the
// process took to exit and its error (nil for exit status 0). A process
// still running after limit is killed and reported.
func (d *daemon) stop(t *testing.T, limit time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return time.Since(start), d.err
	case <-time.After(limit):
		d.kill()
		return time.Since(start), fmt.Errorf("still running %s after SIGTERM; killed", limit)
	}
}

// running reports whether the process has not exited.
func (d *daemon) running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

func (d *daemon) tail() string { return logTail(d.logPath) }

// listening returns the TCP addresses the daemon's process listens on, read
// from /proc: its socket file descriptors matched with the kernel's table of
// listening sockets (state 0A in /proc/net/tcp and tcp6).
func (d *daemon) listening() ([]string, error) {
	pid := d.cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) >= 10 && f[3] == "0A" && inodes[f[9]] {
				out = append(out, table+" "+f[1])
			}
		}
	}
	return out, nil
}

// waitReady polls kdsync's /readyz until it answers 200.
func waitReady(ctx context.Context, d *daemon, httpAddr string) error {
	for {
		if !d.running() {
			return fmt.Errorf("kdsync exited: %v", d.err)
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kdsync not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// httpGet returns the status and body of GET url.
func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricValue sums the samples of a metric family (all label sets) in a
// Prometheus text exposition.
func metricValue(exposition, name string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// connect dials NATS for the test's own use: publishing and collecting.
func connect(t *testing.T, urls string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// orderedBatches splits evs, in order, into batches holding at most one
// event per user and at most max events.
func orderedBatches(evs []workload.Event, max int) [][]workload.Event {
	var out [][]workload.Event
	var cur []workload.Event
	users := map[string]bool{}
	for _, ev := range evs {
		if users[ev.UserID] || len(cur) == max {
			out = append(out, cur)
			cur, users = nil, map[string]bool{}
		}
		cur = append(cur, ev)
		users[ev.UserID] = true
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// feed publishes evs to stream over about spread, while faults happen.
// Each user's events must enter the stream in their order although
// publishes fail (a leader election, a node down): a batch holds at most
// one event per user, and every event of a batch is re-sent until it is
// acknowledged before the next batch starts; Nats-Msg-Id = event id makes
// the re-sends harmless. It waits for the stream to exist (kdsync creates
// it). It returns how many publishes were re-sent.
func feed(ctx context.Context, nc *nats.Conn, stream string, evs []workload.Event, spread time.Duration) (int, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	for {
		if _, err = js.Stream(ctx, stream); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("stream %s: %w (last error %v)", stream, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	batches := orderedBatches(evs, 250)
	pause := spread / time.Duration(len(batches))
	resent := 0
	for _, batch := range batches {
		todo := batch
		for len(todo) > 0 {
			if ctx.Err() != nil {
				return resent, ctx.Err()
			}
			type pending struct {
				ev  workload.Event
				fut jetstream.PubAckFuture
			}
			var sent []pending
			var failed []workload.Event
			for _, ev := range todo {
				m := &nats.Msg{Subject: ev.Subject, Data: ev.Body, Header: nats.Header{jetstream.MsgIDHeader: {ev.MsgID()}}}
				f, err := js.PublishMsgAsync(m)
				if err != nil {
					failed = append(failed, ev)
					continue
				}
				sent = append(sent, pending{ev, f})
			}
			deadline := time.After(5 * time.Second)
		acks:
			for i, p := range sent {
				select {
				case <-p.fut.Ok():
				case <-p.fut.Err():
					failed = append(failed, p.ev)
				case <-deadline:
					for _, q := range sent[i:] {
						failed = append(failed, q.ev)
					}
					break acks
				case <-ctx.Done():
					return resent, ctx.Err()
				}
			}
			if len(failed) > 0 {
				resent += len(failed)
				select {
				case <-ctx.Done():
					return resent, ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
			todo = failed
		}
		select {
		case <-ctx.Done():
			return resent, ctx.Err()
		case <-time.After(pause):
		}
	}
	return resent, nil
}

// streamEvents generates users×5 events of defaultDepartments from seed,
// starts collecting outcomes, and feeds the events in the background over
// 10s. The caller stops the collector (defer outcomes.Stop()).
func streamEvents(t *testing.T, ctx context.Context, nc *nats.Conn, users int, seed uint64) ([]workload.Event, *harness.Outcomes, func() (int, error)) {
	t.Helper()
	evs, err := workload.Generate(workload.Options{Users: users, EventsPerUser: 5, Departments: defaultDepartments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	return evs, outcomes, runFeed(ctx, nc, evs, 10*time.Second)
}

// runFeed runs feed in the background; the returned function waits for it.
func runFeed(ctx context.Context, nc *nats.Conn, evs []workload.Event, spread time.Duration) (wait func() (int, error)) {
	type res struct {
		n   int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		n, err := feed(ctx, nc, "IDENTITY", evs, spread)
		ch <- res{n, err}
	}()
	return func() (int, error) {
		r := <-ch
		return r.n, r.err
	}
}

// collectAll waits until the collector holds every message of the outcome
// stream (nothing stored is left unread), then returns them.
func collectAll(ctx context.Context, nc *nats.Conn, o *harness.Outcomes) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		s, err := js.Stream(ctx, "KDSYNC_OUTCOMES")
		if err == nil {
			info, err := s.Info(ctx)
			if err == nil && uint64(len(o.All())) >= info.State.Msgs {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("outcomes: %d collected: %w", len(o.All()), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// verify checks a finished run and logs one summary line for
// docs/reliability.md; it fails the test on any violation. amb declares
// the run's faults that may make a write happen twice (the zero value: no
// duplicate allowed).
func verify(t *testing.T, scenario string, evs []workload.Event, sim *harness.Sim, o *harness.Outcomes, amb checker.Ambiguity, faults string, wall time.Duration) *checker.Report {
	t.Helper()
	return report(t, scenario, evs, checker.Input{
		Events:    harness.CheckerEvents(evs),
		Effects:   sim.Effects(harness.UserIDs(evs)),
		Outcomes:  o.All(),
		Final:     sim.Final(),
		Ambiguous: amb,
	}, o, faults, wall)
}

// report runs the checker on in, logs the summary line and fails the test
// on any violation or on any dead letter (every event of the workloads is
// valid and every fault injected transient).
func report(t *testing.T, scenario string, evs []workload.Event, in checker.Input, o *harness.Outcomes, faults string, wall time.Duration) *checker.Report {
	t.Helper()
	r := checker.Check(in)
	t.Logf("RESULT scenario=%s events=%d faults=[%s] lost=%d unexpected=%d duplicated=%d unexplained=%d reordered=%d outcome_missing=%d outcome_duplicated=%d wrong_result=%d state_mismatch=%d wall=%s",
		scenario, len(evs), faults, len(r.Lost), len(r.Unexpected), len(r.Duplicated), len(r.Unexplained), len(r.Reordered),
		len(r.OutcomeMissing), len(r.OutcomeDuplicated), len(r.WrongResult), len(r.StateMismatch), wall.Round(100*time.Millisecond))
	if !r.OK() {
		t.Errorf("checker: %s", r)
	}
	deadLettered := 0
	for _, out := range o.All() {
		if out.Result == "deadlettered" {
			deadLettered++
		}
	}
	if deadLettered > 0 {
		t.Errorf("%d events dead-lettered; every event of the workload is valid and every fault transient", deadLettered)
	}
	return r
}

// startSingle runs one embedded JetStream server with fsync on every write.
func startSingle(t *testing.T, opts natsembed.Options) *natsembed.Server {
	t.Helper()
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	opts.SyncAlways = true
	ns, err := natsembed.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	return ns
}

// freeAddr is a loopback host:port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := natsembed.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}
