// Package clitest checks what a command printed, for the tests of the
// commands under cmd/.
package clitest

import (
	"os"
	"strings"
	"testing"
)

// Lines fails t unless every entry of want starts a line of out, and
// unless no entry of not appears anywhere in out.
func Lines(t testing.TB, out string, want, not []string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("no line starting %q in\n%s", w, out)
		}
	}
	for _, n := range not {
		if strings.Contains(out, n) {
			t.Errorf("%q in\n%s", n, out)
		}
	}
}

// ClearEnv unsets, for the test's duration, the variables of the test's
// own environment whose names start with prefix (KDSYNC_CI, ...), so that
// a command under test reads only those the test sets.
func ClearEnv(t *testing.T, prefix string) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, prefix) {
			t.Setenv(name, value) // restored at the end
			if err := os.Unsetenv(name); err != nil {
				t.Fatal(err)
			}
		}
	}
}
