package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// TestContainersThreeInstances runs three kdsync containers sharing a
// stream split into 8 partitions (the shipped configuration plus
// KDSYNC_PARTITIONS), kills one with SIGKILL mid-stream, and checks that
// the others take its partitions over: nothing lost, nothing reordered,
// one outcome per event.
func TestContainersThreeInstances(t *testing.T) {
	seed := testSeed(t)
	requireDocker(t)
	testImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := newStack(t, ctx)
	s.startNATS(ctx)
	s.startSim(ctx, seed, map[string]string{"KDSIM_LATENCY": "2ms", "KDSIM_JITTER": "2ms"})
	start := time.Now()
	instance := func(id string) *testcontainers.DockerContainer {
		env := shippedEnv()
		env["KDSYNC_PARTITIONS"] = "8"
		env["KDSYNC_INSTANCE_ID"] = id
		env["KDSYNC_PINNED_TTL"] = "3s"
		env["KDSYNC_ACK_WAIT"] = "5s"
		return s.run(ctx, "kdsync-"+id, []string{"/kdsync", "run"}, env, "9090/tcp",
			wait.ForHTTP("/readyz").WithPort("9090/tcp"))
	}
	// The first instance partitions the stream before any event arrives.
	ins := map[string]*testcontainers.DockerContainer{"a": instance("a")}
	ins["b"], ins["c"] = instance("b"), instance("c")
	s.kdsync = ins["a"]
	nc := s.connectNATS()
	evs, outcomes, feedDone := streamEvents(t, ctx, nc, 400, seed)
	defer outcomes.Stop()
	if err := outcomes.WaitFor(ctx, len(evs)/3); err != nil {
		t.Fatal(err, tailString(logs(ctx, ins["b"]), 3000))
	}
	var zero time.Duration
	if err := ins["b"].Stop(ctx, &zero); err != nil {
		t.Fatal(err)
	}
	at := outcomes.Distinct()
	t.Logf("instance b killed (SIGKILL) after %d outcomes", at)
	resent, err := feedDone()
	if err != nil {
		t.Fatal("publishing: ", err)
	}
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, tailString(logs(ctx, ins["a"]), 3000), tailString(logs(ctx, ins["c"]), 3000))
	}
	wall := time.Since(start)
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	by := map[string]int{}
	for _, o := range outcomes.All() {
		by[o.Instance]++
	}
	t.Logf("outcomes by instance: %v", by)
	if len(by) < 2 || by["a"]+by["c"] == 0 {
		t.Errorf("the work was not shared: %v", by)
	}
	verifyRemote(t, "containers-three-instances", evs, remoteSim{s.simURL}, outcomes,
		fmt.Sprintf("three kdsync containers on 8 partitions, one killed (SIGKILL) mid-stream; %d publishes re-sent", resent), wall)
}
