package consumer_test

import (
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/throttle"
)

// pacedOptions are the env's options with a KooDrive client paced by a
// throttle.Limiter, as kdsync run builds it.
func (e *env) pacedOptions() (*throttle.Limiter, *breakerWatch) {
	e.t.Helper()
	lim, err := throttle.New(throttle.Options{Max: 16})
	if err != nil {
		e.t.Fatal(err)
	}
	kd, err := kdapi.NewClient(kdapi.WithBaseURL(e.sim.URL), kdapi.WithAppAuth(harness.AppID, harness.AppSecret, harness.APIUserID),
		kdapi.WithTimeout(2*time.Second), kdapi.WithPacer(lim))
	if err != nil {
		e.t.Fatal(err)
	}
	e.kd = kd
	return lim, &breakerWatch{}
}

// TestQuotaIsNotAnOutage: against a quota well under what kdsync could
// send, every event is applied, nothing is dead-lettered, the breaker
// never leaves closed, and few requests are refused.
func TestQuotaIsNotAnOutage(t *testing.T) {
	for name, steps := range map[string][]struct {
		after time.Duration
		quota float64
	}{
		"steady quota":           nil,
		"quota lowered and back": {{2 * time.Second, 25}, {5 * time.Second, 80}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, kdsim.Faults{Quota: 80, Latency: 2 * time.Millisecond})
			lim, states := e.pacedOptions()
			evs := e.generate(200, 3, 14)
			opts := e.options()
			opts.Handler = &handlers.Handler{Users: e.kd}
			opts.Observer = states
			e.publish(evs)
			stop := e.run(opts)
			start := time.Now()
			o := e.collect()
			for _, s := range steps {
				time.Sleep(time.Until(start.Add(s.after)))
				if err := e.sim.SetQuota(s.quota, 0); err != nil {
					t.Fatal(err)
				}
			}
			e.wait(o, len(evs), 60*time.Second)
			stop()
			e.check(evs, o, false)
			for _, out := range o.All() {
				if out.Result == "deadlettered" {
					t.Errorf("event %s dead-lettered: %s", out.EventID, out.Error)
				}
			}
			if seen := states.all(); len(seen) > 0 {
				t.Errorf("breaker states %v; a quota must leave it closed", seen)
			}
			st := e.sim.Stats()
			share := float64(st.Faults["quota429"]) / float64(st.Requests)
			t.Logf("%d requests, %d refused (%.1f%%) in %s; limiter %+v", st.Requests, st.Faults["quota429"], share*100, time.Since(start).Round(time.Millisecond), lim.Stats())
			if share > 0.1 {
				t.Errorf("%.1f%% of requests refused 429, want at most 10%%", share*100)
			}
			if lim.Stats().Throttled == 0 {
				t.Error("no 429 seen: the quota was not met, the test proves nothing")
			}
		})
	}
}

// TestOutageOpensBreakerWhenPaced: with the pacer in front of KooDrive, an
// outage (503 for everyone) still opens the breaker, and the events are
// applied once it ends.
func TestOutageOpensBreakerWhenPaced(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	_, states := e.pacedOptions()
	evs := e.generate(100, 2, 15)
	if err := e.sim.StartOutage(time.Hour); err != nil {
		t.Fatal(err)
	}
	opts := e.options()
	opts.Handler = &handlers.Handler{Users: e.kd}
	opts.Observer = states
	e.publish(evs)
	stop := e.run(opts)
	o := e.collect()
	deadline := time.Now().Add(30 * time.Second)
	for !states.seen(2) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !states.seen(2) {
		t.Fatalf("breaker states %v: an outage did not open it", states.all())
	}
	e.sim.StopOutage()
	e.wait(o, len(evs), 60*time.Second)
	stop()
	e.check(evs, o, false)
}
