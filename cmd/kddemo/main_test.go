package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kdsync/kdsync/internal/clitest"
)

// kddemo runs the command line and returns its exit code and output.
func kddemo(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// clearDemoVariables unsets the test's own KDSYNC_DEMO_ variables for its duration.
func clearDemoVariables(t *testing.T) {
	t.Helper()
	clitest.ClearEnv(t, envPrefix)
}

// TestConfigurationAllAtOnce: kddemo reports every problem of its flags
// and KDSYNC_DEMO_ variables together, one per line, with what was
// expected, and exits 2 without starting anything; the daemon's KDSYNC_
// variables are none of its business.
func TestConfigurationAllAtOnce(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string // each a line of stderr
		not  []string
	}{
		{
			name: "bad values and a misspelt variable",
			env: map[string]string{"KDSYNC_DEMO_USERS": "many", "KDSYNC_DEMO_SIM_LATENCY": "slow", "KDSYNC_DEMO_LOG_LEVEL": "loud",
				"KDSYNC_DEMO_DEPROVISION_LIMIT": "5", "KDSYNC_DEMO_USRES": "3"},
			code: 2,
			want: []string{
				`KDSYNC_DEMO_USERS: want an integer, got "many"`,
				`KDSYNC_DEMO_SIM_LATENCY: want a duration such as 30s, 5m or 1h30m, got "slow"`,
				`log level "loud": want debug, info, warn or error`,
				`deprovision limit "5": want N/duration, e.g. 50/10m`,
				`KDSYNC_DEMO_USRES: unknown; did you mean KDSYNC_DEMO_USERS?`,
			},
		},
		{
			name: "command line and variables in one list",
			env:  map[string]string{"KDSYNC_DEMO_HTTP_ADDR": "localhost", "KDSYNC_DEMO_NATS_PROT": "0"},
			args: []string{"-rate", "fast", "-scim-addr", "8081"},
			code: 2,
			want: []string{
				`-rate: want a number, got "fast"`,
				`KDSYNC_DEMO_NATS_PROT: unknown; did you mean KDSYNC_DEMO_NATS_PORT?`,
				`http-addr "localhost": want host:port or :port`,
				`scim-addr "8081": want host:port or :port`,
			},
		},
		{
			name: "a flag wins over its variable",
			env:  map[string]string{"KDSYNC_DEMO_USERS": "many", "KDSYNC_DEMO_RATE": "fast"},
			args: []string{"-users", "3"},
			code: 2,
			want: []string{`KDSYNC_DEMO_RATE: want a number, got "fast"`},
			not:  []string{"KDSYNC_DEMO_USERS"},
		},
		{
			name: "the daemon's variables are left alone",
			env: map[string]string{"KDSYNC_USERS": "3", "KDSYNC_CONCURRENCY": "abc", "KDSYNC_HTTP_ADDR": "localhost",
				"KDSYNC_DEMO_EVENTS_PER_USER": "some"},
			code: 2,
			want: []string{`KDSYNC_DEMO_EVENTS_PER_USER: want an integer, got "some"`},
			not:  []string{"KDSYNC_USERS", "KDSYNC_CONCURRENCY", "KDSYNC_HTTP_ADDR", "http-addr"},
		},
		{
			name: "-version is read from the command line only",
			env:  map[string]string{"KDSYNC_DEMO_VERSION": "true", "KDSYNC_DEMO_QUIET": "maybe"},
			code: 2,
			want: []string{`KDSYNC_DEMO_QUIET: want true or false, got "maybe"`},
			not:  []string{"KDSYNC_DEMO_VERSION"},
		},
		{
			name: "unknown flag",
			args: []string{"-user", "3"},
			code: 2,
			want: []string{"flag provided but not defined: -user"},
		},
		{
			name: "an argument",
			args: []string{"-quiet", "run"},
			code: 2,
			want: []string{`unexpected argument "run": kddemo takes flags only`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDemoVariables(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := kddemo(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q: nothing may start", stdout)
			}
			if !strings.HasPrefix(stderr, "kddemo: invalid configuration (see kddemo -h):\n") {
				t.Errorf("stderr does not start with the invalid configuration:\n%s", stderr)
			}
			clitest.Lines(t, stderr, tc.want, tc.not)
		})
	}
}

// TestHelpAndVersion: -h prints the usage with the variables' prefix on
// stdout, -version the build; both exit 0.
func TestHelpAndVersion(t *testing.T) {
	clearDemoVariables(t)
	code, stdout, stderr := kddemo(t, "-h")
	if code != 0 || stderr != "" {
		t.Errorf("-h: exit %d, stderr %q", code, stderr)
	}
	for _, w := range []string{"Usage:\n  kddemo [flags]", "KDSYNC_DEMO_USERS", "-nats-port", "-version"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("-h: no %q in\n%s", w, stdout)
		}
	}
	code, stdout, stderr = kddemo(t, "-version")
	if code != 0 || stderr != "" || !regexp.MustCompile(`^kddemo \S+ \(\S+, \S+\)\n$`).MatchString(stdout) {
		t.Errorf("-version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// syncBuffer is a bytes.Buffer written by several goroutines (the
// banner, the outcomes) and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	metricsAddr = regexp.MustCompile(`metrics and health\s+http://(\S+)/metrics`)
	applied     = regexp.MustCompile(`(?m)^kdsync_events_finished_total\{[^}]*result="applied"[^}]*\} (\S+)$`)
)

// TestRun: a real run, configured by flags and a variable, with a free
// port for everything: the banner tells where /metrics is, kdsync's
// metrics there count sample events applied, outcomes are printed, and
// SIGTERM stops it cleanly (exit 0, the simulator's figures printed).
func TestRun(t *testing.T) {
	clearDemoVariables(t)
	t.Setenv("KDSYNC_DEMO_USERS", "4")
	// Ours too, so that the SIGTERM below cannot kill the test binary
	// should run have stopped listening for it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	defer signal.Stop(sig)

	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"-duration", "2m", "-nats-port", "0", "-http-addr", "127.0.0.1:0", "-scim-addr=",
			"-data-dir", t.TempDir(), "-events-per-user", "2", "-rate", "0", "-loop=false",
			"-sim-error-rate", "0", "-sim-latency", "1ms"}, &stdout, &stderr)
	}()
	// until polls cond until it holds; it fails the test if kddemo exits
	// first or a minute passes.
	until := func(what string, cond func() bool) {
		t.Helper()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(time.Minute)
		for !cond() {
			select {
			case code := <-exit:
				t.Fatalf("kddemo exited %d before %s\nstdout:\n%s\nstderr:\n%s", code, what, &stdout, &stderr)
			case <-deadline:
				t.Fatalf("no %s within a minute\nstdout:\n%s\nstderr:\n%s", what, &stdout, &stderr)
			case <-tick.C:
			}
		}
	}

	var addr string
	until("metrics address in the banner", func() bool {
		m := metricsAddr.FindStringSubmatch(stdout.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("the banner tells port 0, not the port listened on: %s", addr)
	}
	var body string
	until("applied events in /metrics", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		body = string(b)
		for _, m := range applied.FindAllStringSubmatch(body, -1) {
			if n, err := strconv.ParseFloat(m[1], 64); err == nil && n > 0 {
				return true
			}
		}
		return false
	})
	for _, w := range []string{"kdsync_build_info{", "kdsync_nats_connected 1"} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	until("an applied outcome printed", func() bool { return strings.Contains(stdout.String(), "\napplied ") })

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0\nstderr:\n%s", code, &stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM\nstdout:\n%s", &stdout)
	}
	if m := regexp.MustCompile(`simulator: \d+ requests, (\d+) creates`).FindStringSubmatch(stdout.String()); m == nil || m[1] == "0" {
		t.Errorf("no simulator figures with creates after the stop:\n%s", &stdout)
	}
}
