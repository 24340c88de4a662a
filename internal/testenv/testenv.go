// Package testenv decides what a test does when something it needs is
// missing from the machine: on a laptop it skips; in CI it fails, so that
// a check never passes by not running. CI is KDSYNC_CI=1 or
// KDSYNC_REQUIRE_DOCKER=1 (.ci/run sets both).
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing tools fail tests rather than skip them.
func Strict() bool {
	return os.Getenv("KDSYNC_CI") == "1" || os.Getenv("KDSYNC_REQUIRE_DOCKER") == "1"
}

// Missing skips t, or fails it when Strict, saying what is missing and
// what is therefore not checked.
func Missing(t testing.TB, what, check string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s: %s is required in CI (KDSYNC_CI=1 or KDSYNC_REQUIRE_DOCKER=1), not skipped", what, check)
	}
	t.Skipf("%s: %s skipped (KDSYNC_CI=1 makes this a failure)", what, check)
}

// SkipShort skips t under go test -short, or fails it when Strict: a CI
// run with -short must not pass by leaving out its long tests. what says
// what t does that -short leaves out.
func SkipShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		Missing(t, "-short", what)
	}
}

// Tool returns the path of the named program on PATH; without it, it
// calls Missing.
func Tool(t testing.TB, name, check string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" not on PATH", check)
	}
	return p
}
