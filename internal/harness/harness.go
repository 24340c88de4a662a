// Package harness assembles real parts for end-to-end runs: an embedded
// NATS server, the KooDrive simulator on a loopback port, event
// publishing, outcome collection, and the checker's input from what the
// simulator applied. Tests, the demo and the load tool use it.
package harness

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/workload"
)

// Credentials the harness's simulator accepts.
const (
	AppID     = "kdsync-harness-app"
	AppSecret = kdapi.Secret("harness-secret-0123456789abcdef")
	APIUserID = "1505084218764547200"
)

// Sim is the KooDrive simulator served on a loopback port.
type Sim struct {
	*kdsim.Server
	URL string
	srv *http.Server
}

// StartSim serves a simulator with app authentication on 127.0.0.1.
func StartSim(opts kdsim.Options) (*Sim, error) {
	if opts.AppID == "" && opts.Token == "" {
		opts.AppID, opts.AppSecret = AppID, AppSecret
	}
	s, err := kdsim.New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("harness: listen: %w", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Sim{Server: s, URL: "http://" + ln.Addr().String(), srv: srv}, nil
}

// Close stops serving.
func (s *Sim) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.srv.Close()
}

// Departments returns the simulator's department ids as int64.
func (s *Sim) Departments() []int64 {
	var out []int64
	for _, d := range s.Server.Departments() {
		if n, err := strconv.ParseInt(d.ID, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Effects returns the writes the simulator applied through its API to the
// given users (deleted ones included), in the order it applied them.
func (s *Sim) Effects(userIDs []string) []checker.Effect {
	type seqEffect struct {
		seq uint64
		ef  checker.Effect
	}
	var all []seqEffect
	for _, id := range userIDs {
		rec, ok := s.User(id)
		if !ok {
			continue
		}
		for _, op := range rec.Ops {
			if op.Direct {
				continue
			}
			all = append(all, seqEffect{op.Seq, checker.Effect{UserID: id, TraceID: op.TraceID, Op: op.Op, At: op.Time, Fault: op.FaultAfter}})
		}
	}
	slices.SortFunc(all, func(a, b seqEffect) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]checker.Effect, len(all))
	for i, e := range all {
		out[i] = e.ef
	}
	return out
}

// Final returns the simulator's users as checker states.
func (s *Sim) Final() map[string]checker.UserState {
	out := map[string]checker.UserState{}
	for _, u := range s.Users() {
		d, err := strconv.ParseInt(u.DeptID, 10, 64)
		if err != nil {
			d = -1 // no event implies it: a state mismatch, not a silent 0
		}
		out[u.UserID] = checker.UserState{DeptID: d, Role: u.Role, Status: u.Status}
	}
	return out
}

// NATS is an embedded JetStream server.
type NATS struct {
	*natsembed.Server
}

// StartNATS runs an embedded JetStream server storing in dir.
func StartNATS(dir string) (*NATS, error) {
	s, err := natsembed.Start(natsembed.Options{StoreDir: dir})
	if err != nil {
		return nil, err
	}
	return &NATS{s}, nil
}

// Publish sends events with Nats-Msg-Id = their identity (source and id,
// workload.Event.MsgID), waiting for every
// acknowledgement. It creates the stream if it does not exist yet.
func Publish(ctx context.Context, nc *nats.Conn, stream string, events []workload.Event) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.Stream(ctx, stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: stream, Subjects: []string{"identity.>"}, Storage: jetstream.FileStorage,
			Duplicates: 2 * time.Minute, MaxMsgSize: 1 << 20,
		}); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("harness: create stream: %w", err)
		}
	}
	const window = 2000
	futs := make([]jetstream.PubAckFuture, 0, window)
	flush := func() error {
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("harness: publish %s: %w", f.Msg().Subject, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futs = futs[:0]
		return nil
	}
	for _, ev := range events {
		m := &nats.Msg{Subject: ev.Subject, Data: ev.Body, Header: nats.Header{jetstream.MsgIDHeader: {ev.MsgID()}}}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("harness: publish: %w", err)
		}
		futs = append(futs, f)
		if len(futs) == window {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Outcomes collects outcomes from the outcome stream as they are stored.
type Outcomes struct {
	mu   sync.Mutex
	all  []outcome.Outcome
	byID map[string]int
	cc   jetstream.ConsumeContext
	add  chan struct{}
}

// CollectOutcomes reads the outcome stream from its start with an ordered
// consumer. The stream must exist (the consumer creates it).
func CollectOutcomes(ctx context.Context, nc *nats.Conn, stream string) (*Outcomes, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var oc jetstream.Consumer
	for {
		oc, err = js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("harness: outcomes: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	o := &Outcomes{byID: map[string]int{}, add: make(chan struct{}, 1)}
	o.cc, err = oc.Consume(func(m jetstream.Msg) {
		var out outcome.Outcome
		if err := json.Unmarshal(m.Data(), &out); err != nil {
			return
		}
		o.mu.Lock()
		o.all = append(o.all, out)
		o.byID[out.EventID]++
		o.mu.Unlock()
		select {
		case o.add <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("harness: outcomes: %w", err)
	}
	return o, nil
}

// Stop ends collection.
func (o *Outcomes) Stop() { o.cc.Stop() }

// All returns the outcomes collected so far.
func (o *Outcomes) All() []outcome.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]outcome.Outcome(nil), o.all...)
}

// Distinct is the number of distinct event ids with an outcome.
func (o *Outcomes) Distinct() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byID)
}

// WaitFor waits until n distinct events have outcomes, or ctx ends.
func (o *Outcomes) WaitFor(ctx context.Context, n int) error {
	for {
		if o.Distinct() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: %d of %d outcomes: %w", o.Distinct(), n, ctx.Err())
		case <-o.add:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CheckerEvents strips workload events to the checker's view.
func CheckerEvents(evs []workload.Event) []checker.Event {
	out := make([]checker.Event, len(evs))
	for i, e := range evs {
		out[i] = e.Intent
	}
	return out
}

// UserIDs lists the distinct users of evs.
func UserIDs(evs []workload.Event) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range evs {
		if !seen[e.UserID] {
			seen[e.UserID] = true
			out = append(out, e.UserID)
		}
	}
	return out
}
