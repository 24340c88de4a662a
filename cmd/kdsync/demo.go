package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/peterbourgon/ff/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/ingress"
	"github.com/kdsync/kdsync/internal/harness"
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

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kdsync demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http-addr", "127.0.0.1:9090", "address of /metrics, /healthz and /readyz")
	natsPort := fs.Int("nats-port", 4222, "port of the embedded NATS server (0: any free port)")
	dataDir := fs.String("data-dir", "", "JetStream store of the embedded server (default: a temporary folder, removed at exit)")
	users := fs.Int("users", 50, "sample users")
	perUser := fs.Int("events-per-user", 5, "events per sample user (a hire, moves, disables and enables, some leavers)")
	rate := fs.Float64("rate", 20, "sample events per second (0: all at once)")
	loop := fs.Bool("loop", true, "start over with new users when the sample is sent, until stopped")
	errRate := fs.Float64("sim-error-rate", 0.02, "share of simulator calls answered 429/500/503")
	latency := fs.Duration("sim-latency", 5*time.Millisecond, "simulator latency")
	quiet := fs.Bool("quiet", false, "do not print outcomes")
	logLevel := fs.String("log-level", "warn", "kdsync's log level: debug, info, warn or error")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until interrupted)")
	deprov := fs.String("deprovision-limit", "", "mass-deprovisioning guard for the demo, e.g. 5/10m (try kdsync guard status)")
	scimAddr := fs.String("scim-addr", "127.0.0.1:8081", "address of the ingress with SCIM 2.0 under /scim/v2 (the demo prints curl commands for it; empty: off)")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("KDSYNC_DEMO")); err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	log, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	limit, err := guard.ParseLimit(*deprov)
	if err != nil {
		return err
	}

	dir := *dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kdsync-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	port := *natsPort
	ns, err := natsembed.Start(natsembed.Options{StoreDir: dir, Port: port})
	if err != nil {
		return fmt.Errorf("embedded NATS on port %d: %w (try -nats-port 0)", port, err)
	}
	defer ns.Stop()

	sim, err := harness.StartSim(kdsim.Options{Faults: kdsim.Faults{
		Latency: *latency, Jitter: *latency, ErrorRate: *errRate,
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

	fmt.Fprintf(stdout, `kdsync demo
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

`, ns.URL(), sim.URL, sim.URL, *httpAddr, ns.URL(), harness.AppID, harness.AppSecret.Reveal(), harness.APIUserID,
		ns.URL(), sim.URL, ns.URL(), ns.URL())

	var ingressOpts service.IngressOptions
	if *scimAddr != "" {
		if ingressOpts, err = demoSCIM(stdout, *scimAddr, sim); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	b := buildInfo()
	opts := service.Options{
		Conn: nc,
		Consumer: consumer.Options{
			Manage:           true,
			DeprovisionLimit: limit,
			Concurrency:      16,
			RetryInitial:     100 * time.Millisecond,
			RetryMax:         5 * time.Second,
		},
		// Report-only reconciliation against kdsync's own records, so
		// that the reconcile metrics (and their alerts) have figures.
		Reconcile:  service.ReconcileOptions{Interval: time.Minute},
		APIBaseURL: sim.URL,
		AppID:      harness.AppID,
		AppSecret:  harness.AppSecret,
		APIUserID:  harness.APIUserID,
		APITimeout: 5 * time.Second,
		HTTPAddr:   *httpAddr,
		Ingress:    ingressOpts,
		Build:      metrics.BuildInfo{Version: b.Version, Revision: b.Revision, GoVersion: b.GoVersion},
		Logger:     log,
		Registerer: reg,
		Gatherer:   reg,
	}

	if !*quiet {
		sub, err := nc.Subscribe("kdsync.outcome.>", func(m *nats.Msg) { printOutcome(stdout, m.Data) })
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}

	runErr := make(chan error, 1)
	go func() { runErr <- service.Run(ctx, opts) }()

	pubErr := make(chan error, 1)
	go func() {
		pubErr <- feed(ctx, nc, sim.Departments(), *users, *perUser, *rate, *loop)
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
	fmt.Fprintf(stdout, "\nsimulator: %d requests, %d creates, %d updates, %d deletes, %d injected errors\n",
		st.Requests, st.Creates, st.Updates, st.Deletes, sumValues(st.Faults)-st.Faults["latency"])
	return nil
}

// feed publishes sample histories at rate events per second.
func feed(ctx context.Context, nc *nats.Conn, depts []int64, users, perUser int, rate float64, loop bool) error {
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
			e, err := workload.Encode(ev.Event, "identity.employee.", "hris/demo", time.Now().UTC())
			if err != nil {
				return err
			}
			if err := harness.Publish(ctx, nc, "IDENTITY", []workload.Event{e}); err != nil {
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

// demoSCIM configures the ingress with SCIM for the demo: the issue's
// example mapping with the simulator's departments, and prints the curl
// commands that provision a SCIM-sourced user.
func demoSCIM(w io.Writer, addr string, sim *harness.Sim) (service.IngressOptions, error) {
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
