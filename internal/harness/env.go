package harness

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

// Env is the usual end-to-end fixture of a test: an embedded JetStream
// server, the simulator (seed 1 unless opts says otherwise), a connection
// that reconnects forever, and a KooDrive client signing with the
// harness's credentials. Everything is closed when the test ends.
type Env struct {
	NATS *NATS
	Sim  *Sim
	NC   *nats.Conn
	JS   jetstream.JetStream
	KD   *kdapi.Client
}

// NewJetStream starts an embedded JetStream server for t and connects to
// it with a connection that reconnects forever. Both end with the test.
func NewJetStream(t testing.TB) (*NATS, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := StartNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return ns, nc, js
}

// NewEnv starts an Env for t.
func NewEnv(t testing.TB, opts kdsim.Options) *Env {
	t.Helper()
	ns, nc, js := NewJetStream(t)
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	sim, err := StartSim(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	kd, err := kdapi.NewClient(kdapi.WithBaseURL(sim.URL),
		kdapi.WithAppAuth(AppID, AppSecret, APIUserID), kdapi.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return &Env{NATS: ns, Sim: sim, NC: nc, JS: js, KD: kd}
}
