package service_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/console"
	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/service"
)

// TestRunConsole: kdsync run serves the console on its own listener; it
// refuses strangers and shows a script kdsync's overview from run's
// metrics registry; in shadow mode it is read-only.
func TestRunConsole(t *testing.T) {
	for _, shadow := range []bool{false, true} {
		t.Run(map[bool]string{false: "active", true: "shadow"}[shadow], func(t *testing.T) {
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
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			const token = kdapi.Secret("service-console-token-0123")
			reg := prometheus.NewRegistry()
			co := consumer.Options{Manage: true}
			if shadow {
				co.Consumer, co.OutcomeStream, co.OutcomePrefix, co.StateBucket = "kdsync-shadow", "KDSYNC_SHADOW", "kdsync.shadow", "KDSYNC_SHADOW_STATE"
			}
			o := service.Options{
				NATS: consumer.ConnectOptions{URLs: ns.URL()}, Consumer: co, Shadow: shadow,
				APIBaseURL: sim.URL, AppID: harness.AppID, AppSecret: harness.AppSecret, APIUserID: harness.APIUserID,
				Registerer: reg, Gatherer: reg,
				Console: service.ConsoleOptions{Listener: ln, Options: console.Options{Token: token}},
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- service.Run(ctx, o) }()
			base := "http://" + ln.Addr().String()
			get := func(path string, bearer bool) (int, string) {
				req, _ := http.NewRequest("GET", base+path, nil)
				if bearer {
					req.Header.Set("Authorization", "Bearer "+token.Reveal())
				}
				c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				resp, err := c.Do(req)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				if code, _ := get("/login", false); code == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the console did not come up")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if code, _ := get("/", false); code != http.StatusSeeOther {
				t.Errorf("a stranger: %d, want a redirect to /login", code)
			}
			code, body := get("/", true)
			if code != http.StatusOK || !strings.Contains(body, "Circuit breaker") || !strings.Contains(body, "closed") {
				t.Errorf("overview: %d\n%s", code, body)
			}
			_, sess := get("/api/session", true)
			if want := `"readOnly": ` + map[bool]string{false: "false", true: "true"}[shadow]; !strings.Contains(sess, want) {
				t.Errorf("session %s, want %s", sess, want)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}
