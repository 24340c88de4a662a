package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/workload"
)

// cluster is an in-process three-node JetStream cluster, each node with
// its own store and fsync on every write (sync_interval: always).
type cluster struct {
	nodes []*natsembed.Server
}

func startCluster(t *testing.T, size int) *cluster {
	t.Helper()
	dir := t.TempDir()
	ports := make([]int, size)
	routes := make([]string, size)
	for i := range size {
		p, err := natsembed.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	c := &cluster{}
	for i := range size {
		ns, err := natsembed.Start(natsembed.Options{
			ServerName:  fmt.Sprintf("n%d", i+1),
			Cluster:     "kdsync-e2e",
			ClusterPort: ports[i],
			Routes:      routes,
			StoreDir:    filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			SyncAlways:  true,
		})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, ns)
		t.Cleanup(ns.Stop)
	}
	return c
}

// URLs lists every node's client URL, comma-separated.
func (c *cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// node returns the node called name.
func (c *cluster) node(name string) *natsembed.Server {
	for _, n := range c.nodes {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// waitMeta polls until a running node sees a meta leader and every other
// node as a current peer.
func (c *cluster) waitMeta(ctx context.Context) error {
	for {
		for _, n := range c.nodes {
			if !n.Running() {
				continue
			}
			info, err := n.Jsz(&server.JSzOptions{})
			if err != nil || info.Meta == nil || info.Meta.Leader == "" || len(info.Meta.Replicas) != len(c.nodes)-1 {
				continue
			}
			current := 0
			for _, p := range info.Meta.Replicas {
				if p.Current && !p.Offline {
					current++
				}
			}
			if current == len(c.nodes)-1 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: no meta leader with all peers current: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kdsyncClient reports the name of the node kdsync's connection is on.
func (c *cluster) kdsyncClient() string {
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		cz, err := n.Connz(&server.ConnzOptions{})
		if err != nil {
			continue
		}
		for _, ci := range cz.Conns {
			if ci.Name == "kdsync" {
				return n.Name()
			}
		}
	}
	return ""
}

// moveStreamLeader asks stream's leader to step down in favour of want and
// returns once want leads; it fails t when want is empty, the step-down is
// refused, or want does not lead within 10s.
func (c *cluster) moveStreamLeader(ctx context.Context, t *testing.T, nc *nats.Conn, stream, want string) string {
	t.Helper()
	if want == "" {
		t.Fatal("moving the stream leader: no node named")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := func() string {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return ""
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return ""
		}
		return info.Cluster.Leader
	}
	if leader() == want {
		return want
	}
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, want)
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req))
	if err != nil {
		t.Fatalf("stream leader step-down towards %s: %v", want, err)
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		t.Fatalf("stream leader step-down: answer %q: %v", msg.Data, err)
	}
	if resp.Error != nil || !resp.Success {
		t.Fatalf("stream leader step-down towards %s refused: %s", want, msg.Data)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := leader()
		if l == want {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s led by %q 10s after a step-down towards %s", stream, l, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterNodeLoss runs kdsync against a three-node JetStream cluster
// (R3 streams and bucket, fsync on every write), connected with all three
// URLs, while events are being published: the node leading the event
// stream and holding kdsync's connection is shut down mid-stream, the cluster goes on with two, and the
// node is started again on its store. Nothing is lost, reordered or
// answered twice.
func TestClusterNodeLoss(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process against a three-node cluster")
	seed := testSeed(t)
	bins.path(t, "kdsync") // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cl := startCluster(t, 3)
	if err := cl.waitMeta(ctx); err != nil {
		t.Fatal(err)
	}
	sim, err := harness.StartSim(kdsim.Options{Seed: seed, Faults: kdsim.Faults{
		Latency: 500 * time.Microsecond, Jitter: time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	evs, err := workload.Generate(workload.Options{Users: 300, EventsPerUser: 5, Departments: sim.Departments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	nc := connect(t, cl.URLs())

	httpAddr := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kdsync.log")
	start := time.Now()
	d := startDaemon(t, kdsyncEnv(cl.URLs(), sim.URL, httpAddr, "KDSYNC_REPLICAS=3"), logPath)
	if err := waitReady(ctx, d, httpAddr); err != nil {
		t.Fatal(err, d.tail())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("stream IDENTITY has %d replicas, want 3", r)
	}
	outcomes, err := harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outcomes.Stop()
	feedDone := runFeed(ctx, nc, evs, 12*time.Second)

	// Mid-stream: shut down the node leading the event stream.
	if err := outcomes.WaitFor(ctx, len(evs)/4); err != nil {
		t.Fatal(err, d.tail())
	}
	// The harshest single-node loss: the node that leads the event stream
	// and holds kdsync's connection. Move the leadership there first.
	on := cl.kdsyncClient()
	if on == "" {
		t.Fatal("kdsync's connection is on no node")
	}
	victim := cl.node(cl.moveStreamLeader(ctx, t, nc, "IDENTITY", on))
	if now := cl.kdsyncClient(); now != victim.Name() {
		t.Fatalf("kdsync's connection moved from %s to %q while the leadership moved there", on, now)
	}
	victim.Stop()
	down := time.Now()
	before := outcomes.Distinct()
	t.Logf("node %s (stream leader, holding kdsync's connection) shut down after %d outcomes", victim.Name(), before)

	// The two left go on: outcomes keep coming while it is down.
	if err := outcomes.WaitFor(ctx, before+len(evs)/5); err != nil {
		t.Fatal("no progress with one node down: ", err, d.tail())
	}
	// kdsync failed over: its connection is on one of the two left.
	if on := cl.kdsyncClient(); on == "" || on == victim.Name() {
		t.Fatalf("kdsync's connection is on %q with %s down; want another node", on, victim.Name())
	}
	if time.Since(down) < 3*time.Second {
		// Keep it down a few seconds at least, so that elections and
		// reconnects happen under load.
		time.Sleep(3*time.Second - time.Since(down))
	}
	downFor := time.Since(down)
	t.Logf("%d outcomes during %s with node %s down", outcomes.Distinct()-before, downFor.Round(time.Millisecond), victim.Name())
	if err := victim.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s started again on its store", victim.Name())

	resent, err := feedDone()
	if err != nil {
		t.Fatal("publishing: ", err)
	}
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
	// The restarted node rejoined.
	if err := cl.waitMeta(ctx); err != nil {
		t.Fatal(err)
	}
	verify(t, "cluster-node-loss", evs, sim, outcomes, checker.Ambiguity{},
		fmt.Sprintf("R3 stream leader %s, holding kdsync's connection, shut down mid-stream for %s then restarted; %d publishes re-sent",
			victim.Name(), downFor.Round(100*time.Millisecond), resent), wall)
}
