package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/ingress"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/service"
)

// Credentials of the ingress under test.
const (
	ingressToken  = "e2e-ingress-token-0123456789abcdef"
	ingressSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

// TestIngressEndToEnd runs kdsync run's service with the webhook ingress
// on, against an embedded NATS server and the KooDrive simulator, and
// sends events in every content mode of the CloudEvents HTTP binding: as
// plain requests (structured with a bearer token, binary signed the
// Standard Webhooks way, a batch) and with the CloudEvents Go SDK's HTTP
// client (structured, binary signed). Every event must come out of the
// real consumer as an applied outcome, and the simulator's users must end
// in the state the events describe.
func TestIngressEndToEnd(t *testing.T) {
	env := harness.NewEnv(t, kdsim.Options{})
	depts := env.Sim.Departments()
	if len(depts) < 2 {
		t.Fatalf("the simulator has %d departments, want 2", len(depts))
	}
	d0, d1 := strconv.FormatInt(depts[0], 10), strconv.FormatInt(depts[1], 10)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ingLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
			Tokens:  []kdapi.Secret{ingressToken},
			Secrets: []kdapi.Secret{ingressSecret},
		}},
		Registerer: reg,
		Gatherer:   reg,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- service.Run(runCtx, o) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	httpBase, url := "http://"+httpLn.Addr().String(), "http://"+ingLn.Addr().String()+"/events"
	for {
		if code, _, _ := httpGet(httpBase + "/readyz"); code == http.StatusOK {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-ctx.Done():
			t.Fatal("kdsync not ready")
		case <-time.After(20 * time.Millisecond):
		}
	}
	outs, err := harness.CollectOutcomes(ctx, env.NC, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outs.Stop()

	const (
		structuredUser = "1008600000000701"
		binaryUser     = "1008600000000702"
		batchUser      = "1008600000000703"
		sdkStructUser  = "1008600000000704"
		sdkBinaryUser  = "1008600000000705"
	)
	ev := func(id, action, user string, data map[string]any) map[string]any {
		data["userId"] = user
		return map[string]any{"specversion": "1.0", "id": id, "source": "hris/e2e", "type": "employee." + action,
			"subject": user, "time": time.Now().UTC().Format(time.RFC3339Nano), "data": data}
	}
	send := func(name string, header http.Header, body []byte, want int) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d %s, want %d", name, resp.StatusCode, answer, want)
		}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Structured, bearer token.
	send("structured", http.Header{"Content-Type": {"application/cloudevents+json"}, "Authorization": {"Bearer " + ingressToken}},
		mustJSON(ev("e2e-structured-1", "hired", structuredUser, map[string]any{"deptId": d0, "role": 1, "name": "Structured"})), http.StatusAccepted)

	// Binary, signed.
	data := mustJSON(map[string]any{"userId": binaryUser, "deptId": d1, "role": 0, "name": "Binary"})
	h := http.Header{
		"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"e2e-binary-1"},
		"Ce-Source": {"hris/e2e"}, "Ce-Type": {"employee.hired"}, "Ce-Subject": {binaryUser},
		"Ce-Time": {time.Now().UTC().Format(time.RFC3339Nano)},
	}
	if err := signWebhook(h, "msg_e2e_binary_1", data); err != nil {
		t.Fatal(err)
	}
	send("binary", h, data, http.StatusAccepted)

	// Batch, bearer token: a hire, and later events for the users above.
	batch := mustJSON([]map[string]any{
		ev("e2e-batch-1", "hired", batchUser, map[string]any{"deptId": d0, "role": 1, "name": "Batch"}),
		ev("e2e-batch-2", "changed", structuredUser, map[string]any{"deptId": d1, "role": 0}),
		ev("e2e-batch-3", "disabled", binaryUser, map[string]any{}),
	})
	send("batch", http.Header{"Content-Type": {"application/cloudevents-batch+json"}, "Authorization": {"Bearer " + ingressToken}},
		batch, http.StatusAccepted)

	// The CloudEvents SDK's client: structured with a token, binary signed.
	for _, tc := range []struct {
		name, id, user, dept string
		structured           bool
		opt                  cehttp.Option
	}{
		{"sdk structured", "e2e-sdk-structured-1", sdkStructUser, d1, true, cehttp.WithHeader("Authorization", "Bearer "+ingressToken)},
		{"sdk binary", "e2e-sdk-binary-1", sdkBinaryUser, d0, false, cehttp.WithRoundTripper(signingTransport{})},
	} {
		p, err := cloudevents.NewHTTP(cloudevents.WithTarget(url), tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		c, err := cloudevents.NewClient(p)
		if err != nil {
			t.Fatal(err)
		}
		e := cloudevents.NewEvent()
		e.SetID(tc.id)
		e.SetSource("hris/sdk")
		e.SetType("employee.hired")
		e.SetSubject(tc.user)
		e.SetTime(time.Now())
		if err := e.SetData(cloudevents.ApplicationJSON, map[string]any{"userId": tc.user, "deptId": tc.dept, "role": 1, "name": tc.name}); err != nil {
			t.Fatal(err)
		}
		sctx := cloudevents.WithEncodingBinary(ctx)
		if tc.structured {
			sctx = cloudevents.WithEncodingStructured(ctx)
		}
		var hr *cehttp.Result
		if res := c.Send(sctx, e); !cloudevents.ResultAs(res, &hr) || hr.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: %v, want 202", tc.name, res)
		}
	}

	const events = 7
	if err := outs.WaitFor(ctx, events); err != nil {
		t.Fatal(err)
	}
	for _, out := range outs.All() {
		if out.Result != outcome.Applied {
			t.Errorf("event %s (%s of %s): %s %s %s", out.EventID, out.Action, out.UserID, out.Result, out.Reason, out.Error)
		}
	}
	want := map[string]kdsim.User{
		structuredUser: {DeptID: d1, Role: 0, Status: kdapi.StatusEnabled},
		binaryUser:     {DeptID: d1, Role: 0, Status: kdapi.StatusDisabled},
		batchUser:      {DeptID: d0, Role: 1, Status: kdapi.StatusEnabled},
		sdkStructUser:  {DeptID: d1, Role: 1, Status: kdapi.StatusEnabled},
		sdkBinaryUser:  {DeptID: d0, Role: 1, Status: kdapi.StatusEnabled},
	}
	users := make([]string, 0, len(want))
	for id, w := range want {
		users = append(users, id)
		rec, ok := env.Sim.User(id)
		if !ok || rec.User == nil {
			t.Errorf("user %s: not in the simulator", id)
			continue
		}
		u := rec.User
		if u.DeptID != w.DeptID || u.Role != w.Role || u.Status != w.Status {
			t.Errorf("user %s: dept %s role %d status %d, want dept %s role %d status %d",
				id, u.DeptID, u.Role, u.Status, w.DeptID, w.Role, w.Status)
		}
	}
	// One write per event: a create per hire, an update per change or
	// disable. (KooDrive names users itself: the events' names are not
	// written.)
	if n := len(env.Sim.Effects(users)); n != events {
		t.Errorf("%d writes to KooDrive, want %d: %+v", n, events, env.Sim.Effects(users))
	}
	_, m, err := httpGet(httpBase + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for mode, n := range map[string]float64{"structured": 2, "binary": 2, "batch": 1} {
		if got := metricValue(m, fmt.Sprintf(`kdsync_ingress_requests_total{code="202",mode=%q}`, mode)); got != n {
			t.Errorf("kdsync_ingress_requests_total{code=202,mode=%s} = %v, want %v", mode, got, n)
		}
	}
}

// signWebhook adds the Standard Webhooks headers of body to h, signed with
// ingressSecret.
func signWebhook(h http.Header, id string, body []byte) error {
	wh, err := standardwebhooks.NewWebhook(ingressSecret)
	if err != nil {
		return err
	}
	now := time.Now()
	sig, err := wh.Sign(id, now, body)
	if err != nil {
		return err
	}
	h.Set("Webhook-Id", id)
	h.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("Webhook-Signature", sig)
	return nil
}

// signingTransport signs each request the Standard Webhooks way, so that
// the CloudEvents SDK's client sends signed webhooks.
type signingTransport struct{}

func (signingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		body = b
	}
	r = r.Clone(r.Context())
	if err := signWebhook(r.Header, fmt.Sprintf("msg_sdk_%d", time.Now().UnixNano()), body); err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return http.DefaultTransport.RoundTrip(r)
}
