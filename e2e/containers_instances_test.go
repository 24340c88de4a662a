package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/outcome"
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
	// b must have worked its partitions before it is killed.
	for byInstance(outcomes.All())["b"] == 0 {
		if ctx.Err() != nil {
			t.Fatal("instance b finished no event before the kill", byInstance(outcomes.All()), tailString(logs(ctx, ins["b"]), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var zero time.Duration
	killFrom := time.Now()
	if err := ins["b"].Stop(ctx, &zero); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	before := outcomes.All()
	bParts := map[string]bool{}
	for _, o := range before {
		if o.Instance == "b" {
			bParts[partitionOf(o.Subject)] = true
		}
	}
	t.Logf("instance b killed (SIGKILL) after %d outcomes, %d of them b's, on partitions %v", len(before), byInstance(before)["b"], slices.Sorted(maps.Keys(bParts)))
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
	by := byInstance(outcomes.All())
	t.Logf("outcomes by instance: %v", by)
	if by["a"] == 0 || by["c"] == 0 {
		t.Errorf("the work was not shared: %v", by)
	}
	// The others took b's partitions over: each partition b worked has
	// events finished by a or c after the kill.
	taken := map[string]bool{}
	for _, o := range outcomes.All() {
		if o.Instance != "b" && o.Time.After(killed) && bParts[partitionOf(o.Subject)] {
			taken[partitionOf(o.Subject)] = true
		}
	}
	for p := range bParts {
		if !taken[p] {
			t.Errorf("partition %s, worked by b before the kill, had no event finished by a or c after it", p)
		}
	}
	// An instance killed, a partition handed over (counted from the
	// outcomes) or a lease lapsing under load may leave a write on the
	// wire (at most one per call under way: KDSYNC_CONCURRENCY, 64) that
	// the next holder makes again.
	moves := handovers(outcomes.All())
	t.Logf("partition handovers seen in the outcomes: %d", moves)
	amb := checker.Ambiguity{Interruptions: []checker.Interruption{
		{What: "b killed", From: killFrom, To: killed.Add(time.Second), Limit: 64},
		{What: fmt.Sprintf("%d partition handovers", moves), Limit: moves * 64},
		{What: "leases lapsing under load", Limit: 64},
	}}
	verifyRemote(t, "containers-three-instances", evs, remoteSim{s.simURL}, outcomes, amb,
		fmt.Sprintf("three kdsync containers on 8 partitions, one killed (SIGKILL) mid-stream; %d publishes re-sent", resent), wall)
}

// byInstance counts outcomes by the instance that finished them.
func byInstance(outs []outcome.Outcome) map[string]int {
	by := map[string]int{}
	for _, o := range outs {
		by[o.Instance]++
	}
	return by
}

// handovers counts the times a partition's events, in the order their
// outcomes were stored, pass from one instance to another.
func handovers(outs []outcome.Outcome) int {
	outs = slices.Clone(outs)
	slices.SortStableFunc(outs, func(a, b outcome.Outcome) int { return a.Time.Compare(b.Time) })
	last := map[string]string{} // partition -> instance
	n := 0
	for _, o := range outs {
		p := partitionOf(o.Subject)
		if p == "" {
			continue
		}
		if prev, ok := last[p]; ok && prev != o.Instance {
			n++
		}
		last[p] = o.Instance
	}
	return n
}

// partitionOf returns p of a partitioned subject,
// identity.part.<p>.employee.<action>.<user>; "" for another subject.
func partitionOf(subject string) string {
	f := strings.Split(subject, ".")
	if len(f) < 3 || f[1] != "part" {
		return ""
	}
	return f[2]
}
