package harness

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/kdsync/kdsync/consumer"
)

// Logger is a test's logger: text on stderr at quiet, or at info with
// go test -v.
func Logger(quiet slog.Level) *slog.Logger {
	lvl := quiet
	if testing.Verbose() {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// RunConsumer creates a consumer from opts and runs it until the returned
// stop is called or the test ends (stop cancels it and waits; a run that
// ended in an error fails the test). Calling stop more than once is fine.
func RunConsumer(t testing.TB, opts consumer.Options) (stop func()) {
	t.Helper()
	c, err := consumer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
