package demo

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// outcomeWatcher keeps what the demo prints and calls done once it has
// printed want applied outcomes.
type outcomeWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want int
	done func()
}

func (w *outcomeWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Count(w.buf.String(), "\napplied ") >= w.want {
		w.done()
	}
	return n, err
}

func (w *outcomeWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestDemo: the demo starts its own NATS and simulator, feeds sample
// events through kdsync, prints their outcomes and, when stopped, the
// simulator's figures.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &outcomeWatcher{want: 3, done: cancel}
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{
			HTTPAddr: "127.0.0.1:0", NATSPort: 0, DataDir: t.TempDir(),
			Users: 3, EventsPerUser: 2, Rate: 0, Loop: false,
			Stdout: out,
		})
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("demo: %v\n%s", err, out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no 3 applied outcomes within a minute:\n%s", out)
	}
	s := out.String()
	m := regexp.MustCompile(`simulator: (\d+) requests, (\d+) creates`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no simulator figures:\n%s", s)
	}
	if creates, err := strconv.Atoi(m[2]); err != nil || creates < 1 {
		t.Errorf("simulator creates %q (%v), want at least 1:\n%s", m[2], err, s)
	}
	for _, w := range []string{"NATS (embedded, JetStream)", "KDSYNC_APP_ID=" + AppID} {
		if !strings.Contains(s, w) {
			t.Errorf("no %q in:\n%s", w, s)
		}
	}
}
