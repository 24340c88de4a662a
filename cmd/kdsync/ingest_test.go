package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/kdsim"
)

// TestIngestCommand runs kdsync ingest against an embedded NATS server,
// sends an event, reads the health and metrics endpoints and stops it.
func TestIngestCommand(t *testing.T) {
	url, js := natsWithStreams(t)
	port, err := natsembed.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	const token = "ingest-test-token-0123456789"
	t.Setenv("KDSYNC_INGRESS_TOKEN", "other-token-0123456789abc,"+token)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- cmdIngest(ctx, []string{"-ingress-addr", addr, "-nats-url", url, "-log-format", "text"}, io.Discard, logs)
	}()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	body := `{"specversion":"1.0","id":"cmd-1","source":"hris/test","type":"employee.hired","data":{"userId":"1008600000000201","deptId":"42"}}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /events: %d %s", resp.StatusCode, answer)
	}
	s, err := js.Stream(t.Context(), "IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(t.Context(), "identity.employee.hired.1008600000000201")
	if err != nil || string(m.Data) != body || m.Header.Get(jetstream.MsgIDHeader) != handlers.EventKey("hris/test", "cmd-1") {
		t.Fatalf("stored: %v %v", m, err)
	}

	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kdsync_ingress_requests_total{code="202",mode="structured"} 1`, `kdsync_ingress_events_total{result="accepted"} 1`,
		"kdsync_ingress_request_duration_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the logs show a token")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ingest: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ingest did not stop")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestIngestConfiguration(t *testing.T) {
	cases := map[string][]string{
		"no credentials":  {},
		"short token":     {"-ingress-token", "abc"},
		"bad secret":      {"-ingress-secret", "not-whsec"},
		"half TLS":        {"-ingress-token", "0123456789abcdef0", "-ingress-tls-cert", "c.pem"},
		"tiny event size": {"-ingress-token", "0123456789abcdef0", "-max-event-size", "10"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			// No NATS at this address: configuration errors come first,
			// and the rest fail on ingress.New before any connection.
			err := cmdIngest(ctx, append(args, "-nats-url", "nats://127.0.0.1:1", "-ingress-addr", "127.0.0.1:0"), io.Discard, &stderr)
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestIngestInRun runs kdsync run with the ingress on (KDSYNC_INGRESS_ADDR
// and the shared -ingress-* flags): an event POSTed to it is applied to
// the simulator, and run's /metrics carries the ingress's metrics.
func TestIngestInRun(t *testing.T) {
	env := harness.NewEnv(t, kdsim.Options{})
	dept := env.Sim.Departments()[0]
	var addrs [2]string
	for i := range addrs {
		port, err := natsembed.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	httpAddr, ingressAddr := addrs[0], addrs[1]
	const token = "run-ingress-token-0123456789"
	t.Setenv("KDSYNC_INGRESS_ADDR", ingressAddr)
	t.Setenv("KDSYNC_APP_SECRET", string(harness.AppSecret))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- cmdRun(ctx, []string{"-nats-url", env.NATS.URL(), "-api-base-url", env.Sim.URL,
			"-app-id", harness.AppID, "-api-user-id", harness.APIUserID, "-http-addr", httpAddr,
			"-ingress-token", token, "-ingress-publish-timeout", "2s", "-log-format", "text"}, io.Discard, logs)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	const user = "1008600000000202"
	body := fmt.Sprintf(`{"specversion":"1.0","id":"run-1","source":"hris/test","type":"employee.hired","data":{"userId":%q,"deptId":"%d","role":1}}`, user, dept)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+ingressAddr+"/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /events: %d %s", resp.StatusCode, answer)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if rec, ok := env.Sim.User(user); ok && rec.User != nil && rec.User.DeptID == fmt.Sprint(dept) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %s not created\n%s", user, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err = http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `kdsync_ingress_requests_total{code="202",mode="structured"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("run's /metrics lacks %s", want)
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the logs show the ingress token")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
	if !strings.Contains(logs.String(), "webhook ingress stopped") {
		t.Errorf("no sign of the ingress stopping in the logs:\n%s", logs.String())
	}
}

// TestIngestInRunConfiguration: with -ingress-addr, kdsync run refuses an
// ingress without credentials; without it, the ingress flags are unused.
func TestIngestInRunConfiguration(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	err := cmdRun(ctx, []string{"-ingress-addr", "127.0.0.1:0", "-nats-url", "nats://127.0.0.1:1",
		"-api-base-url", "http://127.0.0.1:1", "-api-token", "t", "-http-addr", "off", "-log-format", "text"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "KDSYNC_INGRESS_TOKEN") {
		t.Fatalf("run with an ingress lacking credentials: %v\n%s", err, stderr.String())
	}
	err = cmdRun(ctx, []string{"-ingress-addr", "127.0.0.1:0", "-ingress-token-file", "/nonexistent", "-nats-url", "nats://127.0.0.1:1",
		"-api-base-url", "http://127.0.0.1:1", "-api-token", "t", "-http-addr", "off"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "ingress token file") {
		t.Fatalf("unreadable token file: %v", err)
	}
}
