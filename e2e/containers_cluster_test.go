package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/kdsync/kdsync/checker"
)

// clusterConf is one node's configuration: JetStream with fsync before
// every acknowledgement, routes to the three nodes by their names on the
// Docker network.
func clusterConf(name string) string {
	return fmt.Sprintf(`
server_name: %s
port: 4222
jetstream {
  store_dir: /data
  sync_interval: always
}
cluster {
  name: kdsync-e2e
  port: 6222
  routes: [nats-route://n1:6222, nats-route://n2:6222, nats-route://n3:6222]
}
`, name)
}

// TestContainersClusterNodeStop runs kdsync in a container against a
// three-node NATS cluster in containers (R3, fsync always), given all
// three URLs by name; the node leading the event stream is killed
// mid-stream and started again on its file system.
func TestContainersClusterNodeStop(t *testing.T) {
	seed := testSeed(t)
	requireDocker(t)
	testImage(t) // before the clock starts: a cold build takes minutes on a small machine
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := newStack(t, ctx)
	nodes := map[string]*testcontainers.DockerContainer{}
	for _, name := range []string{"n1", "n2", "n3"} {
		nodes[name] = s.run(ctx, name, []string{"/nats-server", "-c", "/etc/nats.conf"}, nil, "4222/tcp",
			wait.ForLog("Server is ready"),
			testcontainers.WithFiles(testcontainers.ContainerFile{Reader: strings.NewReader(clusterConf(name)), ContainerFilePath: "/etc/nats.conf", FileMode: 0o644}))
	}
	resolve := func() {
		var addrs []string
		for _, c := range nodes {
			if !c.IsRunning() {
				continue
			}
			a, err := c.PortEndpoint(ctx, "4222/tcp", "")
			if err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, a)
		}
		s.natsAddrs.Store(addrs)
	}
	resolve()
	nc := s.connectNATS()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the cluster can place an R3 stream: a meta leader and
	// three current peers.
	formStart := time.Now()
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateStream(actx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: 3, Storage: jetstream.MemoryStorage})
		acancel()
		if err == nil {
			if err := js.DeleteStream(ctx, "PROBE"); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Since(formStart) > time.Minute {
			t.Fatalf("the cluster cannot place an R3 stream after a minute: %v\nn1 said:\n%s", err, tailString(logs(ctx, nodes["n1"]), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}

	s.startSim(ctx, seed, map[string]string{"KDSIM_LATENCY": "1ms", "KDSIM_JITTER": "2ms"})
	env := shippedEnv()
	env["KDSYNC_NATS_URL"] = "nats://n1:4222,nats://n2:4222,nats://n3:4222"
	env["KDSYNC_REPLICAS"] = "3" // as deploy/kubernetes ships it
	env["KDSYNC_ACK_WAIT"] = "5s"
	start := time.Now()
	s.startKdsync(ctx, env)
	evs, outcomes, feedDone := streamEvents(t, ctx, nc, 300, seed)
	defer outcomes.Stop()
	if err := outcomes.WaitFor(ctx, len(evs)/4); err != nil {
		t.Fatal(err, logs(ctx, s.kdsync))
	}
	stream, err := js.Stream(ctx, "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.Cluster == nil || nodes[info.Cluster.Leader] == nil {
		t.Fatalf("stream leader: %v %+v", err, info)
	}
	if info.Config.Replicas != 3 {
		t.Fatalf("stream IDENTITY has %d replicas, want 3", info.Config.Replicas)
	}
	victim := info.Cluster.Leader
	var zero time.Duration
	if err := nodes[victim].Stop(ctx, &zero); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	resolve()
	at := outcomes.Distinct()
	// The two left go on.
	if err := outcomes.WaitFor(ctx, at+len(evs)/5); err != nil {
		t.Fatal("no progress with one node down: ", err, tailString(logs(ctx, s.kdsync), 4000))
	}
	if err := nodes[victim].Start(ctx); err != nil {
		t.Fatal(err)
	}
	downFor := time.Since(down)
	resolve()
	t.Logf("node %s (stream leader) killed after %d outcomes, %d more while it was down, started again after %s",
		victim, at, outcomes.Distinct()-at, downFor.Round(time.Millisecond))
	resent, err := feedDone()
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal("publishing: ", err)
	}
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, tailString(logs(ctx, s.kdsync), 4000))
	}
	wall := time.Since(start)
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	verifyRemote(t, "containers-cluster-node-stop", evs, remoteSim{s.simURL}, outcomes, checker.Ambiguity{},
		fmt.Sprintf("3-node cluster in containers, R3, stream leader %s killed (SIGKILL) mid-stream for %s and started again; %d publishes re-sent",
			victim, downFor.Round(100*time.Millisecond), resent), wall)
}
