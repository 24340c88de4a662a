package main

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/kdsync/kdsync/internal/clitest"
)

// TestConfigurationAllAtOnce: each command reports every problem of its
// flags and variables together, one per line, with what was expected, and
// exits 2 when the command line itself does not parse, 1 otherwise.
func TestConfigurationAllAtOnce(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string // each a line of stderr
		not  []string
	}{
		{
			name: "run: two bad values and a misspelt variable",
			env:  map[string]string{"KDSYNC_CONCURRENCY": "abc", "KDSYNC_RETRY_BUDGET": "soon", "KDSYNC_CONCURENCY": "8"},
			args: []string{"run"},
			code: 1,
			want: []string{
				`KDSYNC_CONCURRENCY: want an integer, got "abc"`,
				`KDSYNC_RETRY_BUDGET: want a duration such as 30s, 5m or 1h30m, got "soon"`,
				`KDSYNC_CONCURENCY: unknown; did you mean KDSYNC_CONCURRENCY?`,
			},
		},
		{
			name: "run: misspelt budget",
			env:  map[string]string{"KDSYNC_RETRY_BUGDET": "1h"},
			args: []string{"run"},
			code: 1,
			want: []string{`KDSYNC_RETRY_BUGDET: unknown; did you mean KDSYNC_RETRY_BUDGET?`},
		},
		{
			name: "run: every stage in one list",
			env:  map[string]string{"KDSYNC_LOG_LEVEL": "loud", "KDSYNC_APP_SECRET_FILE": missing, "KDSYNC_MAX_ACK_PENDING": "1"},
			args: []string{"run", "-log-format", "xml", "-mode", "canary", "-http-addr", "localhost", "-pull-batch", "many",
				"-api-base-url", "http://127.0.0.1:1", "-app-id", "a", "-api-user-id", "u"},
			code: 2, // -pull-batch does not parse
			want: []string{
				`-pull-batch: want an integer, got "many"`,
				`log level "loud": want debug, info, warn or error`,
				`mode "canary": want active or shadow`,
				`app secret file: open ` + missing,
				`consumer: invalid options: max ack pending 1: must be at least the concurrency 512`,
				`http-addr "localhost": want host:port or :port`,
			},
		},
		{
			name: "run: a flag wins over its variable",
			env:  map[string]string{"KDSYNC_CONCURRENCY": "abc"},
			args: []string{"run", "-concurrency", "8"},
			code: 1,
			want: []string{"the KooDrive endpoint is required"},
			not:  []string{"KDSYNC_CONCURRENCY"},
		},
		{
			name: "unknown flag",
			args: []string{"run", "-concurency", "8"},
			code: 2,
			want: []string{"flag provided but not defined: -concurency"},
		},
		{
			// KDSYNC_DEMO_ variables are cmd/kddemo's to check, even
			// misspelt: accepted, never read by the daemon.
			name: "documented variables of tests, CI, selectors and the demo are accepted, and not read",
			env: map[string]string{"KDSYNC_CI": "1", "KDSYNC_REQUIRE_DOCKER": "1", "KDSYNC_TEST_SEED": "7", "KDSYNC_PARK_FULL": "1",
				"KDSYNC_YES": "true", "KDSYNC_ALL": "true", "KDSYNC_APPLY": "true", "KDSYNC_DEMO_USERS": "3",
				"KDSYNC_DEMO_HTTP_ADDR": "nowhere", "KDSYNC_DEMO_USRES": "x"},
			args: []string{"run"},
			code: 1,
			want: []string{"the KooDrive endpoint is required"},
			not:  []string{"unknown"},
		},
		{
			name: "ingest",
			env:  map[string]string{"KDSYNC_INGRESS_MAX_BATCH": "lots", "KDSYNC_NATS_UR": "nats://x"},
			args: []string{"ingest", "-ingress-addr", "8080"},
			code: 1,
			want: []string{
				`KDSYNC_INGRESS_MAX_BATCH: want an integer, got "lots"`,
				`KDSYNC_NATS_UR: unknown; did you mean KDSYNC_NATS_URL?`,
				`ingress-addr "8080": want host:port or :port`,
			},
		},
		{
			name: "demo: moved to cmd/kddemo, says so",
			env:  map[string]string{"KDSYNC_DEMO_USERS": "many"},
			args: []string{"demo", "-duration", "5s"},
			code: 2,
			want: []string{"kdsync demo moved to its own command: go run ./cmd/kddemo"},
			not:  []string{"KDSYNC_DEMO_USERS"},
		},
		{
			name: "dlq: connection variables checked, selectors not read",
			env:  map[string]string{"KDSYNC_NATS_URL": "nats://127.0.0.1:1", "KDSYNC_TIMEOUT": "soon", "KDSYNC_SEQ": "x"},
			args: []string{"dlq", "list", "-seq", "0"},
			code: 1,
			want: []string{`-seq "0": want sequences or ranges`},
			not:  []string{"KDSYNC_SEQ", "KDSYNC_TIMEOUT"}, // known, command-line only: not read
		},
		{
			name: "reconcile: bad rate on the command line and a bad variable",
			env:  map[string]string{"KDSYNC_API_TIMEOUT": "10"},
			args: []string{"reconcile", "-from-state", "-rate", "fast"},
			code: 2,
			want: []string{
				`-rate: want a number, got "fast"`,
				`KDSYNC_API_TIMEOUT: want a duration such as 30s, 5m or 1h30m, got "10"`,
				`the KooDrive endpoint is required`,
			},
		},
		{
			name: "guard",
			env:  map[string]string{"KDSYNC_GUARD_BUCKETS": "G"},
			args: []string{"guard", "release", "-seq", "1"},
			code: 1,
			want: []string{`KDSYNC_GUARD_BUCKETS: unknown; did you mean KDSYNC_GUARD_BUCKET?`},
		},
		{
			name: "user",
			env:  map[string]string{"KDSYNC_RATE": "-"},
			args: []string{"user", "42"},
			code: 1,
			want: []string{`KDSYNC_RATE: want a number, got "-"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearKDSYNC(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, stderr := kdsync(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			clitest.Lines(t, stderr, tc.want, tc.not)
		})
	}
}

// clearKDSYNC unsets the test's own KDSYNC_ variables for its duration.
func clearKDSYNC(t *testing.T) {
	t.Helper()
	clitest.ClearEnv(t, envPrefix)
}

// TestKnownVariables: every command's flags, command-line only ones
// included, and the documented test and CI switches are known; nothing
// else is.
func TestKnownVariables(t *testing.T) {
	known := knownVariables()
	for _, v := range []string{
		"KDSYNC_NATS_URL", "KDSYNC_CONCURRENCY", "KDSYNC_INGRESS_TOKEN", "KDSYNC_INGRESS_ADDR", "KDSYNC_LOG_FORMAT",
		"KDSYNC_DLQ_STREAM", "KDSYNC_GUARD_BUCKET", "KDSYNC_SUBJECT_PREFIX", "KDSYNC_WORKERS", "KDSYNC_BINARY",
		"KDSYNC_YES", "KDSYNC_ALL", "KDSYNC_SEQ", "KDSYNC_APPLY", "KDSYNC_DRY_RUN", "KDSYNC_MAX_EVENTS",
		"KDSYNC_CONSOLE_OIDC_CLIENT_SECRET_FILE",
		"KDSYNC_CI", "KDSYNC_REQUIRE_DOCKER", "KDSYNC_CI_SKIP_DOCKER", "KDSYNC_RECONCILE_TEST_RATE", "KDSYNC_PARK_FULL",
	} {
		if !known[v] {
			t.Errorf("%s unknown", v)
		}
	}
	for _, v := range []string{"KDSYNC_CONCURENCY", "KDSYNC_DEMO", "KDSYNC_NATS", "KDSYNC_USERS", "KDSYNC_STATE", "KDSYNC_DEMO_USERS"} {
		if known[v] {
			t.Errorf("%s known", v)
		}
	}
	// The demo's variables (cmd/kddemo's) and the test switches are
	// accepted by prefix, without being known: no did-you-mean points
	// at them, and the daemon reads none.
	accepted := newFlags("kdsync run").Accepted
	for _, v := range []string{"KDSYNC_DEMO_USERS", "KDSYNC_DEMO_NATS_PORT", "KDSYNC_DEMO_USRES", "KDSYNC_TEST_SEED"} {
		if !accepted(v) {
			t.Errorf("%s not accepted", v)
		}
	}
	for _, v := range []string{"KDSYNC_DEMO", "KDSYNC_DEMOUSERS", "KDSYNC_USERS"} {
		if accepted(v) {
			t.Errorf("%s accepted", v)
		}
	}
	// Every flag of every command is in.
	for _, f := range everyCommandsFlags() {
		f.VisitAll(func(fl *flag.Flag) {
			if !known[f.Variable(fl.Name)] {
				t.Errorf("%s: -%s has no known variable", f.Name(), fl.Name)
			}
		})
	}
}

// TestCommandLineOnly: the selectors and confirmations of dlq, guard,
// reconcile, user and sync are never read from the environment.
func TestCommandLineOnly(t *testing.T) {
	for _, tc := range []struct {
		f              *cmdFlags
		fromEnv, cmdOn []string
	}{
		{first(dlqFlags("purge", nil)), []string{"nats-url", "dlq-stream"}, []string{"yes", "all", "seq", "user", "timeout"}},
		{first(guardFlags("status", nil)), []string{"nats-url", "guard-bucket", "deprovision-limit"}, []string{"all", "seq", "by", "shadow"}},
		{first(reconcileFlags(nil)), []string{"nats-url", "api-base-url", "stream"}, []string{"apply", "source", "rate", "complete"}},
		{first(userFlags("sync", nil)), []string{"nats-url", "api-token", "rate", "state-bucket"}, []string{"dry-run", "wait", "json"}},
	} {
		for _, n := range tc.fromEnv {
			if tc.f.Lookup(n) == nil || !tc.f.FromEnv(n) {
				t.Errorf("%s: -%s not read from the environment", tc.f.Name(), n)
			}
		}
		for _, n := range tc.cmdOn {
			if tc.f.Lookup(n) == nil || tc.f.FromEnv(n) {
				t.Errorf("%s: -%s read from the environment", tc.f.Name(), n)
			}
		}
	}
}

func first[T any](f *cmdFlags, _ T) *cmdFlags { return f }
