package service_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/ingress"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/service"
)

// TestRunServesHealthMetricsAndReconciles runs the whole service against
// an embedded NATS server and the simulator: /healthz and /readyz answer,
// /metrics carries kdsync's families, and a periodic reconciliation pass
// runs and exports the drift.
func TestRunServesHealthMetricsAndReconciles(t *testing.T) {
	ns, err := harness.StartNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	sim, err := harness.StartSim(kdsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	// A user KooDrive has that nobody asked for: drift kdsync's records
	// do not explain (reported only with a complete source, so the pass
	// here reports none, but it must run).
	if _, err := sim.PutUserDirect(kdsim.User{UserID: "1008600000000000999", DeptID: "1319678187126486147", Role: 1}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o := service.Options{
		NATS:         consumer.ConnectOptions{URLs: ns.URL()},
		Consumer:     consumer.Options{Manage: true},
		APIBaseURL:   sim.URL,
		AppID:        harness.AppID,
		AppSecret:    harness.AppSecret,
		APIUserID:    harness.APIUserID,
		HTTPListener: ln,
		Registerer:   reg,
		Gatherer:     reg,
		Reconcile:    service.ReconcileOptions{Interval: 300 * time.Millisecond, Rate: 100},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, o) }()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := get("/readyz")
		_, m := get("/metrics")
		if code == http.StatusOK && strings.Contains(m, `kdsync_reconcile_runs_total{result="ok"} `) && !strings.Contains(m, `kdsync_reconcile_runs_total{result="ok"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready or no reconciliation pass: /readyz %d\n%s", code, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	_, m := get("/metrics")
	for _, fam := range []string{"kdsync_events_finished_total", "kdsync_koodrive_requests_total", "kdsync_drift_users", "kdsync_build_info"} {
		if !strings.Contains(m, fam) {
			t.Errorf("/metrics lacks %s", fam)
		}
	}
	if code, body := get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ with pprof off: %d %s, want 404", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunIngress runs the service with the webhook ingress on its own
// listener: an event POSTed there is applied to the simulator through
// the consumer, its metrics are on run's /metrics, each listener serves
// only its own endpoints, and on shutdown the ingress stops taking
// connections at once while a request under way is still answered 202
// and stored.
func TestRunIngress(t *testing.T) {
	env := harness.NewEnv(t, kdsim.Options{})
	dept := env.Sim.Departments()[0]
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ingLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const token = "service-ingress-token-0123456789"
	reg := prometheus.NewRegistry()
	o := service.Options{
		NATS:         consumer.ConnectOptions{URLs: env.NATS.URL()},
		Consumer:     consumer.Options{Manage: true, ShutdownTimeout: 5 * time.Second},
		APIBaseURL:   env.Sim.URL,
		AppID:        harness.AppID,
		AppSecret:    harness.AppSecret,
		APIUserID:    harness.APIUserID,
		HTTPListener: httpLn,
		Ingress: service.IngressOptions{Listener: ingLn, Options: ingress.Options{
			Tokens: []kdapi.Secret{token}, PublishTimeout: 2 * time.Second}},
		Registerer: reg,
		Gatherer:   reg,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, o) }()
	base, ingBase := "http://"+httpLn.Addr().String(), "http://"+ingLn.Addr().String()
	waitReady(t, base)

	event := func(id, user string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"hris/test","type":"employee.hired","data":{"userId":%q,"deptId":"%d","role":1,"name":"Ingrid"}}`, id, user, dept)
	}
	post := func(url, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/cloudevents+json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(ingBase+"/events", event("svc-ing-1", "1008600000000301")); code != http.StatusAccepted {
		t.Fatalf("POST /events: %d %s", code, body)
	}
	waitUser(t, env.Sim, "1008600000000301", dept)

	if code, body := post(base+"/events", event("svc-ing-x", "1008600000000399")); code < 400 || code >= 500 {
		t.Errorf("the metrics address answers POST /events with %d %s, want a 4xx refusal", code, body)
	}
	if code, body := httpGet(ingBase + "/metrics"); code < 400 || code >= 500 {
		t.Errorf("the ingress address answers GET /metrics with %d %s, want a 4xx refusal", code, body)
	}
	_, m := httpGet(base + "/metrics")
	for _, want := range []string{`kdsync_ingress_requests_total{code="202",mode="structured"} 1`, `kdsync_ingress_events_total{result="accepted"} 1`, "kdsync_events_finished_total"} {
		if !strings.Contains(m, want) {
			t.Errorf("run's /metrics lacks %s", want)
		}
	}

	// A request under way when the shutdown starts: headers and half the
	// body sent.
	body := event("svc-ing-2", "1008600000000302")
	conn, err := net.Dial("tcp", ingLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /events HTTP/1.1\r\nHost: kdsync\r\nContent-Type: application/cloudevents+json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		token, len(body), body[:len(body)/2])
	time.Sleep(100 * time.Millisecond) // the server has read the headers
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ingLn.Addr().String(), 200*time.Millisecond)
		if err != nil {
			break // no longer taking connections
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the ingress still takes connections after the shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.WriteString(conn, body[len(body)/2:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request under way got no answer: %v", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("request under way: %d %s", resp.StatusCode, answer)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop")
	}
	s, err := env.JS.Stream(t.Context(), "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetLastMsgForSubject(t.Context(), "identity.employee.hired.1008600000000302"); err != nil || m.Header.Get(jetstream.MsgIDHeader) != handlers.EventKey("hris/test", "svc-ing-2") {
		t.Fatalf("the event answered 202 during the shutdown is not stored: %v", err)
	}
}

// TestRunIngressConfiguration checks that a misconfigured ingress stops
// Run before anything starts.
func TestRunIngressConfiguration(t *testing.T) {
	cases := map[string]service.IngressOptions{
		"no credentials": {Addr: "127.0.0.1:0"},
		"short token":    {Addr: "127.0.0.1:0", Options: ingress.Options{Tokens: []kdapi.Secret{"short"}}},
		"bad secret":     {Addr: "127.0.0.1:0", Options: ingress.Options{Secrets: []kdapi.Secret{"not-whsec"}}},
		"half TLS":       {Addr: "127.0.0.1:0", TLSCert: "c.pem", Options: ingress.Options{Tokens: []kdapi.Secret{"0123456789abcdef0"}}},
	}
	for name, ic := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			o := service.Options{
				NATS:       consumer.ConnectOptions{URLs: "nats://127.0.0.1:1"},
				APIBaseURL: "http://127.0.0.1:1", APIToken: "token",
				Ingress: ic,
			}
			err := service.Run(ctx, o)
			if err == nil || !strings.Contains(err.Error(), "invalid configuration") || !strings.Contains(err.Error(), "ingress:") {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := httpGet(base + "/readyz"); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUser waits until the simulator has user in dept.
func waitUser(t *testing.T, sim *harness.Sim, user string, dept int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if rec, ok := sim.User(user); ok && rec.User != nil && rec.User.DeptID == strconv.FormatInt(dept, 10) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %s not created in department %d", user, dept)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
