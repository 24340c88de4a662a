package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/nats-io/nats.go"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/workload"
)

// The container tests run the three programs as Docker containers on one
// network, from an image built FROM scratch out of static binaries
// compiled by the test: no registry is needed (none is reachable here),
// and Ryuk is off (TestMain), so each test removes what it made.

// requireDocker skips the test when no Docker engine answers, or fails it
// in CI (testenv: KDSYNC_REQUIRE_DOCKER=1).
func requireDocker(t *testing.T) {
	t.Helper()
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		p, err := testcontainers.NewDockerProvider()
		if err != nil {
			return err
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return p.Health(ctx)
	}()
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("no Docker engine answers (%v)", err), "the container test")
	}
}

// image is the test image: nats-server, kdsync and kdsim, built once.
var image struct {
	once sync.Once
	tag  string
	err  error
}

const imageRepo = "kdsync-e2e"

// testImage builds the image unless built already and returns its tag.
func testImage(t *testing.T) string {
	t.Helper()
	paths := []string{bins.path(t, "nats-server"), bins.path(t, "kdsync"), bins.path(t, "kdsim")}
	image.once.Do(func() {
		start := time.Now()
		dir := t.TempDir()
		for _, p := range paths {
			if err := os.Link(p, filepath.Join(dir, filepath.Base(p))); err != nil {
				b, err := os.ReadFile(p)
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o755)
				}
				if err != nil {
					image.err = err
					return
				}
			}
		}
		if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
			image.err = err
			return
		}
		dockerfile := `FROM scratch
COPY nats-server kdsync kdsim /
COPY --chown=65534:65534 data/ /data/
USER 65534:65534
WORKDIR /data
`
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			image.err = err
			return
		}
		p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.TestLogger(t)))
		if err != nil {
			image.err = err
			return
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		image.tag, image.err = p.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
			Context: dir, Dockerfile: "Dockerfile", Repo: imageRepo, Tag: strconv.Itoa(os.Getpid()), KeepImage: true,
		}})
		if image.err == nil {
			t.Logf("built image %s in %s", image.tag, time.Since(start).Round(time.Millisecond))
		}
	})
	if image.err != nil {
		t.Fatalf("build the test image: %v", image.err)
	}
	return image.tag
}

// removeTestImage removes the image after the tests (from TestMain).
func removeTestImage() {
	if image.tag == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return
	}
	defer cli.Close()
	_, _ = cli.ImageRemove(ctx, image.tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
}

// natsConf is the broker's configuration in the containers: JetStream
// with fsync before every acknowledgement.
const natsConf = `
port: 4222
http_port: 8222
jetstream {
  store_dir: /data
  sync_interval: always
}
`

// stack is NATS, the KooDrive simulator and kdsync in containers on one
// network, reachable by name: nats, kdsim, kdsync.
type stack struct {
	t      *testing.T
	image  string
	net    *testcontainers.DockerNetwork
	nats   *testcontainers.DockerContainer
	sim    *testcontainers.DockerContainer
	kdsync *testcontainers.DockerContainer

	natsAddrs atomic.Value // []string: host:port of each NATS node now (they change on restart)
	dials     atomic.Uint64
	simURL    string
}

func newStack(t *testing.T, ctx context.Context) *stack {
	t.Helper()
	requireDocker(t)
	s := &stack{t: t, image: testImage(t)}
	nw, err := tcnetwork.New(ctx)
	testcontainers.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatal(err)
	}
	s.net = nw
	return s
}

// run starts a container of the test image as alias on the network.
func (s *stack) run(ctx context.Context, alias string, entrypoint []string, env map[string]string, port string, ready wait.Strategy, opts ...testcontainers.ContainerCustomizer) *testcontainers.DockerContainer {
	s.t.Helper()
	all := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(tclog.TestLogger(s.t)),
		testcontainers.WithEntrypoint(entrypoint...),
		testcontainers.WithEnv(env),
		testcontainers.WithExposedPorts(port),
		tcnetwork.WithNetwork([]string{alias}, s.net),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, ready),
	}
	c, err := testcontainers.Run(ctx, s.image, append(all, opts...)...)
	testcontainers.CleanupContainer(s.t, c)
	if err != nil {
		s.t.Fatalf("container %s: %v", alias, err)
	}
	return c
}

func (s *stack) startNATS(ctx context.Context) {
	s.t.Helper()
	s.nats = s.run(ctx, "nats", []string{"/nats-server", "-c", "/etc/nats.conf"}, nil, "4222/tcp",
		wait.ForLog("Server is ready"),
		testcontainers.WithFiles(testcontainers.ContainerFile{Reader: strings.NewReader(natsConf), ContainerFilePath: "/etc/nats.conf", FileMode: 0o644}))
	s.resolveNATS(ctx)
}

// resolveNATS reads NATS's mapped port again (Docker picks a new one when
// the container starts again).
func (s *stack) resolveNATS(ctx context.Context) {
	s.t.Helper()
	addr, err := s.nats.PortEndpoint(ctx, "4222/tcp", "")
	if err != nil {
		s.t.Fatal(err)
	}
	s.natsAddrs.Store([]string{addr})
}

func (s *stack) startSim(ctx context.Context, seed uint64, env map[string]string) {
	s.t.Helper()
	e := map[string]string{
		"KDSIM_ADDR":       ":8090",
		"KDSIM_APP_ID":     harness.AppID,
		"KDSIM_APP_SECRET": harness.AppSecret.Reveal(),
		"KDSIM_SEED":       strconv.FormatUint(seed, 10),
	}
	for k, v := range env {
		e[k] = v
	}
	s.sim = s.run(ctx, "kdsim", []string{"/kdsim"}, e, "8090/tcp",
		wait.ForHTTP("/_admin/healthz").WithPort("8090/tcp"))
	u, err := s.sim.PortEndpoint(ctx, "8090/tcp", "http")
	if err != nil {
		s.t.Fatal(err)
	}
	s.simURL = u
}

// shippedEnv is kdsync's configuration as deploy/kubernetes sets it
// (kdsync.env and the Secret), with the addresses of this stack.
func shippedEnv() map[string]string {
	return map[string]string{
		"KDSYNC_NATS_URL":             "nats://nats:4222",
		"KDSYNC_STREAM":               "IDENTITY",
		"KDSYNC_STREAM_SUBJECTS":      "identity.>",
		"KDSYNC_CONSUMER":             "kdsync",
		"KDSYNC_FILTER":               "identity.employee.>",
		"KDSYNC_MANAGE":               "true",
		"KDSYNC_REPLICAS":             "1", // one NATS server here
		"KDSYNC_OUTCOME_STREAM":       "KDSYNC_OUTCOMES",
		"KDSYNC_DLQ_STREAM":           "KDSYNC_DLQ",
		"KDSYNC_STATE_BUCKET":         "KDSYNC_STATE",
		"KDSYNC_CONCURRENCY":          "64",
		"KDSYNC_MAX_ACK_PENDING":      "1024",
		"KDSYNC_ACK_WAIT":             "30s",
		"KDSYNC_RETRY_BUDGET":         "6h",
		"KDSYNC_RETRY_INITIAL":        "200ms",
		"KDSYNC_RETRY_MAX":            "1m",
		"KDSYNC_BREAKER_PROBE":        "5s",
		"KDSYNC_SHUTDOWN_TIMEOUT":     "20s",
		"KDSYNC_API_BASE_URL":         "http://kdsim:8090",
		"KDSYNC_API_TIMEOUT":          "10s",
		"KDSYNC_HARD_DELETE":          "false",
		"KDSYNC_HTTP_ADDR":            ":9090",
		"KDSYNC_LOG_LEVEL":            "info",
		"KDSYNC_LOG_FORMAT":           "json",
		"KDSYNC_APP_ID":               harness.AppID,
		"KDSYNC_APP_SECRET":           harness.AppSecret.Reveal(),
		"KDSYNC_API_USER_ID":          harness.APIUserID,
		"KDSYNC_MAX_EVENT_SIZE":       "65536",
		"KDSYNC_ALREADY_EXISTS_CODES": "13000501",
	}
}

func (s *stack) startKdsync(ctx context.Context, env map[string]string) {
	s.t.Helper()
	s.kdsync = s.run(ctx, "kdsync", []string{"/kdsync", "run"}, env, "9090/tcp",
		wait.ForHTTP("/readyz").WithPort("9090/tcp"))
}

// metrics returns kdsync's /metrics.
func (s *stack) metrics(ctx context.Context) string {
	s.t.Helper()
	u, err := s.kdsync.PortEndpoint(ctx, "9090/tcp", "http")
	if err != nil {
		s.t.Fatal(err)
	}
	_, body, err := httpGet(u + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	return body
}

// logs returns a container's output so far.
func logs(ctx context.Context, c *testcontainers.DockerContainer) string {
	rc, err := c.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("(logs: %v)", err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// connectNATS dials NATS for the test through a dialer that always uses
// the mapped port known now, so the test's connection follows the broker
// across a container restart.
func (s *stack) connectNATS() *nats.Conn {
	s.t.Helper()
	return connect(s.t, "nats://nats-container:4222", nats.SetCustomDialer(stackDialer{s}))
}

type stackDialer struct{ s *stack }

// Dial ignores the address nats.go asks for (a container's own, or one
// the cluster advertised) and dials the nodes' mapped loopback ports in
// turn.
func (d stackDialer) Dial(network, _ string) (net.Conn, error) {
	addrs := d.s.natsAddrs.Load().([]string)
	var err error
	for range addrs {
		a := addrs[int(d.s.dials.Add(1))%len(addrs)]
		var c net.Conn
		if c, err = net.DialTimeout(network, a, 5*time.Second); err == nil {
			return c, nil
		}
	}
	return nil, err
}

// remoteSim reads the simulator's admin API for the checker.
type remoteSim struct{ url string }

func (r remoteSim) get(path string, v any) error {
	resp, err := http.Get(r.url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

var errNotFound = fmt.Errorf("not found")

// Effects is harness.Sim.Effects over HTTP.
func (r remoteSim) Effects(userIDs []string) ([]checker.Effect, error) {
	type seqEffect struct {
		seq uint64
		ef  checker.Effect
	}
	var all []seqEffect
	for _, id := range userIDs {
		var rec kdsim.UserRecord
		if err := r.get("/_admin/users/"+id, &rec); err == errNotFound {
			continue
		} else if err != nil {
			return nil, err
		}
		for _, op := range rec.Ops {
			if !op.Direct {
				all = append(all, seqEffect{op.Seq, checker.Effect{UserID: id, TraceID: op.TraceID, Op: op.Op, At: op.Time, Fault: op.FaultAfter}})
			}
		}
	}
	slices.SortFunc(all, func(a, b seqEffect) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]checker.Effect, len(all))
	for i, e := range all {
		out[i] = e.ef
	}
	return out, nil
}

// Final is harness.Sim.Final over HTTP.
func (r remoteSim) Final() (map[string]checker.UserState, error) {
	var list struct {
		Users []kdsim.User `json:"users"`
	}
	if err := r.get("/_admin/users", &list); err != nil {
		return nil, err
	}
	out := map[string]checker.UserState{}
	for _, u := range list.Users {
		d, err := strconv.ParseInt(u.DeptID, 10, 64)
		if err != nil {
			d = -1 // no event implies it: a state mismatch, not a silent 0
		}
		out[u.UserID] = checker.UserState{DeptID: d, Role: u.Role, Status: u.Status}
	}
	return out, nil
}

// Stats is the simulator's counters.
func (r remoteSim) Stats() (kdsim.Stats, error) {
	var st kdsim.Stats
	err := r.get("/_admin/stats", &st)
	return st, err
}

func defaultDepartments() []int64 {
	var out []int64
	for _, d := range kdsim.DefaultDepartments() {
		if n, err := strconv.ParseInt(d.ID, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// verifyRemote is verify for a simulator in a container.
func verifyRemote(t *testing.T, scenario string, evs []workload.Event, sim remoteSim, o *harness.Outcomes, amb checker.Ambiguity, faults string, wall time.Duration) *checker.Report {
	t.Helper()
	effects, err := sim.Effects(harness.UserIDs(evs))
	if err != nil {
		t.Fatal(err)
	}
	final, err := sim.Final()
	if err != nil {
		t.Fatal(err)
	}
	return report(t, scenario, evs, checker.Input{
		Events: harness.CheckerEvents(evs), Effects: effects, Outcomes: o.All(), Final: final, Ambiguous: amb,
	}, o, faults, wall)
}

// TestContainersFullFlow runs the shipped configuration end to end in
// containers: NATS (fsync always), the KooDrive simulator with transient
// and ambiguous faults, kdsync configured only through KDSYNC_* variables
// as deploy/kubernetes sets them, reaching the others by name. Every
// event is applied once in order; kdsync's metrics count them; its logs
// never show the app secret.
func TestContainersFullFlow(t *testing.T) {
	seed := testSeed(t)
	requireDocker(t)
	testImage(t) // before the clock starts: a cold build takes minutes on a small machine
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := newStack(t, ctx)
	s.startNATS(ctx)
	s.startSim(ctx, seed, map[string]string{
		"KDSIM_FAIL_RATE": "0.03", "KDSIM_FAIL_STATUSES": "429,500,503", "KDSIM_RETRY_AFTER": "1s",
		"KDSIM_FAIL_AFTER_WRITE_RATE": "0.02", "KDSIM_LATENCY": "1ms",
	})
	start := time.Now()
	s.startKdsync(ctx, shippedEnv())
	nc := s.connectNATS()
	evs, err := workload.Generate(workload.Options{Users: 300, EventsPerUser: 5, Departments: defaultDepartments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outcomes.Stop()
	if _, err := feed(ctx, nc, "IDENTITY", evs, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, logs(ctx, s.kdsync))
	}
	wall := time.Since(start)
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	// The counter moves after the ack, a moment after the outcome is stored:
	// wait for it, but never accept more than one count per event.
	var got float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = metricValue(s.metrics(ctx), "kdsync_events_finished_total")
		if int(got) >= len(evs) || time.Now().After(deadline) {
			break
		}
	}
	if int(got) != len(evs) {
		t.Errorf("kdsync_events_finished_total = %v, want %d", got, len(evs))
	}
	sim := remoteSim{s.simURL}
	st, err := sim.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Faults["failAfterWrite"] == 0 {
		t.Errorf("no fail-after-write fault injected: %v", st.Faults)
	}
	// Stop kdsync as Kubernetes would (SIGTERM), then read its logs.
	timeout := 25 * time.Second
	if err := s.kdsync.Stop(ctx, &timeout); err != nil {
		t.Fatal(err)
	}
	state, err := s.kdsync.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if state.ExitCode != 0 {
		t.Errorf("kdsync exited with status %d after SIGTERM", state.ExitCode)
	}
	out := logs(ctx, s.kdsync)
	if strings.Contains(out, harness.AppSecret.Reveal()) {
		t.Error("kdsync's log shows the app secret")
	}
	if !strings.Contains(out, `"kdsync stopped"`) {
		t.Errorf("kdsync's log lacks its clean stop:\n%s", tailString(out, 2000))
	}
	verifyRemote(t, "containers-full-flow", evs, sim, outcomes, checker.Ambiguity{FailAfterWrite: true},
		fmt.Sprintf("containers, shipped configuration; simulator: %d requests, faults %v", st.Requests, st.Faults), wall)
}

// TestContainersNATSRestart kills the NATS container mid-stream (docker
// stop with no grace: SIGKILL) and starts it again on its file system:
// kdsync, in its container, reconnects by name and carries on; the store
// (fsync always) kept every acknowledged event.
func TestContainersNATSRestart(t *testing.T) {
	seed := testSeed(t)
	requireDocker(t)
	testImage(t) // before the clock starts: a cold build takes minutes on a small machine
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := newStack(t, ctx)
	s.startNATS(ctx)
	s.startSim(ctx, seed, map[string]string{"KDSIM_LATENCY": "1ms", "KDSIM_JITTER": "2ms"})
	start := time.Now()
	env := shippedEnv()
	env["KDSYNC_ACK_WAIT"] = "5s" // events held by a broken connection come back sooner
	s.startKdsync(ctx, env)
	nc := s.connectNATS()
	evs, outcomes, feedDone := streamEvents(t, ctx, nc, 300, seed)
	defer outcomes.Stop()
	if err := outcomes.WaitFor(ctx, len(evs)/4); err != nil {
		t.Fatal(err, logs(ctx, s.kdsync))
	}
	var zero time.Duration
	if err := s.nats.Stop(ctx, &zero); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	at := outcomes.Distinct()
	if err := s.nats.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s.resolveNATS(ctx)
	t.Logf("NATS killed after %d outcomes and started again after %s", at, time.Since(down).Round(time.Millisecond))
	resent, err := feedDone()
	if err != nil {
		t.Fatal("publishing: ", err)
	}
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, tailString(logs(ctx, s.kdsync), 4000))
	}
	wall := time.Since(start)
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(s.metrics(ctx), "kdsync_nats_reconnects_total"); got < 1 {
		t.Errorf("kdsync_nats_reconnects_total = %v, want at least 1", got)
	}
	verifyRemote(t, "containers-nats-restart", evs, remoteSim{s.simURL}, outcomes, checker.Ambiguity{},
		fmt.Sprintf("NATS container killed (SIGKILL) mid-stream and started again on its store; %d publishes re-sent", resent), wall)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
