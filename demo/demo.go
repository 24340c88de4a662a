// Package demo runs kdsync with everything it needs in one process: an
// embedded NATS JetStream server, the KooDrive simulator (kdsim) and a
// stream of sample events (workload), the outcomes printed and the
// metrics served. It is the command kddemo (cmd/kddemo); the daemon,
// cmd/kdsync, does not link it.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/ingress"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/mapping"
	"github.com/kdsync/kdsync/metrics"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/scim"
	"github.com/kdsync/kdsync/service"
	"github.com/kdsync/kdsync/workload"
)

// The simulator's app credentials, printed for a second kdsync to use.
const (
	AppID     = "kdsync-demo-app"
	AppSecret = kdapi.Secret("demo-secret-0123456789abcdef")
	APIUserID = "1505084218764547200"
)

// Options configure the demo; kddemo's flags fill them.
type Options struct {
	HTTPAddr string // /metrics, /healthz, /readyz; port 0: any free port; empty: none
	SCIMAddr string // the ingress with SCIM; empty: off
	NATSPort int    // of the embedded server; 0: any free port
	DataDir  string // its JetStream store; empty: a temporary folder, removed at the end

	Users         int     // sample users per round
	EventsPerUser int     // events per sample user
	Rate          float64 // sample events per second; 0: all at once
	Loop          bool    // start over with new users when a round is sent

	SimErrorRate float64       // share of simulator calls answered 429/500/503
	SimLatency   time.Duration // simulator latency

	Quiet            bool          // do not print outcomes
	Duration         time.Duration // stop after this long; 0: when ctx ends
	DeprovisionLimit guard.Limit

	Stdout io.Writer    // what the demo prints
	Logger *slog.Logger // kdsync's logs
	Build  metrics.BuildInfo
}

// Run runs the demo until ctx ends or o.Duration has passed.
func Run(ctx context.Context, o Options) error {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var err error
	dir := o.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kdsync-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	// Listened on first, so that the banner tells the address port 0 got.
	var ln net.Listener
	httpAddr := "(none)"
	if o.HTTPAddr != "" {
		if ln, err = net.Listen("tcp", o.HTTPAddr); err != nil {
			return fmt.Errorf("demo: metrics and health: listen on %s: %w", o.HTTPAddr, err)
		}
		defer ln.Close() // when service.Run fails before serving on it
		httpAddr = ln.Addr().String()
	}
	port := o.NATSPort
	ns, err := natsembed.Start(natsembed.Options{StoreDir: dir, Port: port})
	if err != nil {
		return fmt.Errorf("embedded NATS on port %d: %w (try -nats-port 0)", port, err)
	}
	defer ns.Stop()

	sim, err := startSim(kdsim.Options{AppID: AppID, AppSecret: AppSecret, Faults: kdsim.Faults{
		Latency: o.SimLatency, Jitter: o.SimLatency, ErrorRate: o.SimErrorRate,
		ErrorStatuses: []int{429, 500, 503}, RetryAfter: time.Second,
	}})
	if err != nil {
		return err
	}
	defer sim.Close()

	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	fmt.Fprintf(o.Stdout, `kddemo: kdsync with its own NATS, KooDrive simulator and sample events
  NATS (embedded, JetStream)  %s
  KooDrive simulator          %s/koodrive/ose/v1  (admin: %s/_admin/stats, /_admin/users)
  metrics and health          http://%s/metrics  /healthz  /readyz
  outcomes                    kdsync.outcome.<result>.<action>.<userId> (stream KDSYNC_OUTCOMES)
  dead letters                kdsync.dlq.<reason>.<action>.<userId> (stream KDSYNC_DLQ)
Publish your own event from another terminal:
  go run ./cmd/kdsync publish -nats-url %s -type hired -user 1008600000029937613 -dept 1319678187126486147 -role 1
Run a second kdsync against the same parts, e.g. in shadow mode:
  KDSYNC_APP_ID=%s KDSYNC_APP_SECRET=%s KDSYNC_API_USER_ID=%s \
  go run ./cmd/kdsync run -shadow -nats-url %s -api-base-url %s -http-addr 127.0.0.1:9091 -log-format text
Dead letters: go run ./cmd/kdsync dlq list -nats-url %s   Guard (with -deprovision-limit): kdsync guard status -nats-url %s
Stop with Ctrl-C.

`, ns.URL(), sim.URL, sim.URL, httpAddr, ns.URL(), AppID, AppSecret.Reveal(), APIUserID,
		ns.URL(), sim.URL, ns.URL(), ns.URL())

	var ingressOpts service.IngressOptions
	if o.SCIMAddr != "" {
		if ingressOpts, err = scimIngress(o.Stdout, o.SCIMAddr, sim); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	opts := service.Options{
		Conn: nc,
		Consumer: consumer.Options{
			Manage:           true,
			DeprovisionLimit: o.DeprovisionLimit,
			Concurrency:      16,
			RetryInitial:     100 * time.Millisecond,
			RetryMax:         5 * time.Second,
		},
		// Report-only reconciliation against kdsync's own records, so
		// that the reconcile metrics (and their alerts) have figures.
		Reconcile:    service.ReconcileOptions{Interval: time.Minute},
		APIBaseURL:   sim.URL,
		AppID:        AppID,
		AppSecret:    AppSecret,
		APIUserID:    APIUserID,
		APITimeout:   5 * time.Second,
		HTTPAddr:     o.HTTPAddr,
		HTTPListener: ln,
		Ingress:      ingressOpts,
		Build:        o.Build,
		Logger:       o.Logger,
		Registerer:   reg,
		Gatherer:     reg,
	}

	if !o.Quiet {
		sub, err := nc.Subscribe("kdsync.outcome.>", func(m *nats.Msg) { printOutcome(o.Stdout, m.Data) })
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}

	runErr := make(chan error, 1)
	go func() { runErr <- service.Run(ctx, opts) }()

	pubErr := make(chan error, 1)
	go func() {
		pubErr <- feed(ctx, js, sim.departments(), o.Users, o.EventsPerUser, o.Rate, o.Loop)
	}()

	select {
	case err := <-runErr:
		if err != nil {
			return err
		}
	case err := <-pubErr:
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if err := <-runErr; err != nil {
			return err
		}
	}
	st := sim.Stats()
	fmt.Fprintf(o.Stdout, "\nsimulator: %d requests, %d creates, %d updates, %d deletes, %d injected errors\n",
		st.Requests, st.Creates, st.Updates, st.Deletes, sumValues(st.Faults)-st.Faults["latency"])
	return nil
}

// feed publishes sample histories at rate events per second.
func feed(ctx context.Context, js jetstream.JetStream, depts []int64, users, perUser int, rate float64, loop bool) error {
	for round := uint64(1); ; round++ {
		evs, err := workload.Generate(workload.Options{
			Users: users, EventsPerUser: perUser, Departments: depts, Seed: uint64(time.Now().UnixNano()),
			FirstUser: 1008600000000000000 + round*1_000_000,
		})
		if err != nil {
			return err
		}
		for _, ev := range evs {
			// Stamp the event when it is sent, so that latency is real.
			e, err := workload.Encode(ev.Intent, "identity.employee.", "hris/demo", time.Now().UTC())
			if err != nil {
				return err
			}
			if err := publish(ctx, js, e); err != nil {
				return err
			}
			if rate > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(float64(time.Second) / rate)):
				}
			}
		}
		if !loop {
			<-ctx.Done()
			return ctx.Err()
		}
	}
}

// Demo credentials of the ingress and of SCIM.
const (
	demoIngressToken = "demo-ingress-token-0123456789"
	demoSCIMToken    = "demo-scim-token-0123456789abcdef"
)

// scimIngress configures the ingress with SCIM for the demo: the issue's
// example mapping with the simulator's departments, and prints the curl
// commands that provision a SCIM-sourced user.
func scimIngress(w io.Writer, addr string, sim *simServer) (service.IngressOptions, error) {
	depts := sim.Server.Departments()
	if len(depts) == 0 {
		return service.IngressOptions{}, errors.New("demo: the simulator has no departments")
	}
	var b strings.Builder
	b.WriteString(`scope: 'user.userType != "Contractor"'
userId: 'user.externalId'
deptId: 'departments[enterprise.department]'
role: '"KooDrive Admins" in groups ? 3 : 1'
status: 'user.active ? 0 : 1'
departments:
`)
	for _, d := range depts {
		fmt.Fprintf(&b, "  %s: %q\n", strconv.Quote(d.Name), d.ID)
	}
	m, err := mapping.Parse("(demo mapping)", []byte(b.String()))
	if err != nil {
		return service.IngressOptions{}, err
	}
	dept := depts[0].Name
	for _, d := range depts {
		if d.ParentID != "" { // a department below the root
			dept = d.Name
			break
		}
	}
	base := "http://" + addr + scim.Prefix
	user := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","%s"],"userName":"sam@contoso.example","externalId":"1008600000029937613","active":true,"displayName":"Sam Lee","%s":{"department":%q}}`,
		mapping.EnterpriseSchema, mapping.EnterpriseSchema, dept)
	fmt.Fprintf(w, `SCIM 2.0 (as Entra ID or Okta would send it), mapping: the issue's example with the simulator's departments:
  A='Authorization: Bearer %s' T='Content-Type: application/scim+json'
  curl -sS %s/Users -H "$A" -H "$T" -d '%s'
  curl -sS '%s/Users?filter=userName%%20eq%%20%%22sam@contoso.example%%22' -H "$A"
  curl -sS -X PATCH %s/Users/<id> -H "$A" -H "$T" -d '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}'
  and watch for the hired and disabled outcomes of user 1008600000029937613 below.

`, demoSCIMToken, base, user, base, base)
	return service.IngressOptions{
		Addr:    addr,
		Options: ingress.Options{Tokens: []kdapi.Secret{demoIngressToken}},
		SCIM:    &scim.Options{Tokens: []kdapi.Secret{demoSCIMToken}, Mapping: m},
	}, nil
}

func printOutcome(w io.Writer, data []byte) {
	var o outcome.Outcome
	if err := json.Unmarshal(data, &o); err != nil {
		return
	}
	lat := ""
	if o.LatencyMs != nil {
		lat = fmt.Sprintf("%7.1fms", *o.LatencyMs)
	}
	detail := strings.Join(o.Calls, ", ")
	if o.Reason != "" {
		detail = string(o.Reason) + ": " + detail
	}
	if o.Error != "" {
		detail += " " + o.Error
	}
	fmt.Fprintf(w, "%-12s %-9s user %-20s attempts %d %s  %s\n", o.Result, o.Action, o.UserID, o.Attempts, lat, detail)
}

func sumValues(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// simServer is the KooDrive simulator served on a loopback port.
type simServer struct {
	*kdsim.Server
	URL string
	srv *http.Server
}

// startSim serves a simulator on 127.0.0.1.
func startSim(opts kdsim.Options) (*simServer, error) {
	s, err := kdsim.New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: simulator: listen: %w", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &simServer{Server: s, URL: "http://" + ln.Addr().String(), srv: srv}, nil
}

// Close stops serving.
func (s *simServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// departments are the simulator's department ids.
func (s *simServer) departments() []int64 {
	var out []int64
	for _, d := range s.Server.Departments() {
		if id, err := strconv.ParseInt(d.ID, 10, 64); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// publish sends one event into the stream IDENTITY, creating the stream
// if kdsync has not yet, and waits for its acknowledgement.
func publish(ctx context.Context, js jetstream.JetStream, ev workload.Event) error {
	m := &nats.Msg{Subject: ev.Subject, Data: ev.Body, Header: nats.Header{jetstream.MsgIDHeader: {ev.MsgID()}}}
	_, err := js.PublishMsg(ctx, m)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: "IDENTITY", Subjects: []string{"identity.>"}, Storage: jetstream.FileStorage,
			Duplicates: 2 * time.Minute, MaxMsgSize: 1 << 20,
		}); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("demo: create stream: %w", err)
		}
		_, err = js.PublishMsg(ctx, m)
	}
	if err != nil {
		return fmt.Errorf("demo: publish %s: %w", m.Subject, err)
	}
	return nil
}
