package kdapi

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ciStrict reports whether the environment asks tests to fail, not skip,
// when a tool they need is missing: KDSYNC_CI=1 (exported by .ci/run) or
// KDSYNC_REQUIRE_DOCKER=1 (the CI switch of the container tests).
func ciStrict(getenv func(string) string) bool {
	return getenv("KDSYNC_CI") == "1" || getenv("KDSYNC_REQUIRE_DOCKER") == "1"
}

func TestCIStrict(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		env  map[string]string
		want bool
	}{
		"nothing set":         {nil, false},
		"KDSYNC_CI=1":         {map[string]string{"KDSYNC_CI": "1"}, true},
		"REQUIRE_DOCKER=1":    {map[string]string{"KDSYNC_REQUIRE_DOCKER": "1"}, true},
		"both":                {map[string]string{"KDSYNC_CI": "1", "KDSYNC_REQUIRE_DOCKER": "1"}, true},
		"KDSYNC_CI=0":         {map[string]string{"KDSYNC_CI": "0"}, false},
		"KDSYNC_CI=true":      {map[string]string{"KDSYNC_CI": "true"}, false},
		"REQUIRE_DOCKER=0":    {map[string]string{"KDSYNC_REQUIRE_DOCKER": "0"}, false},
		"another variable: 1": {map[string]string{"CI": "1"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ciStrict(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("ciStrict = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPythonMissing runs the Python cross-check in a child test process
// whose PATH has no python3: it must skip by default and fail, naming the
// reason, when KDSYNC_CI=1 or KDSYNC_REQUIRE_DOCKER=1.
func TestPythonMissing(t *testing.T) {
	t.Parallel()
	if os.Getenv("KDSYNC_TEST_CHILD") == "1" {
		t.Skip("already in the child process")
	}
	tests := map[string]struct {
		env      []string
		wantFail bool
		want     string
	}{
		"local run skips":      {nil, false, "--- SKIP: TestSignVectors_Python"},
		"KDSYNC_CI fails":      {[]string{"KDSYNC_CI=1"}, true, "python3 not on PATH"},
		"REQUIRE_DOCKER fails": {[]string{"KDSYNC_REQUIRE_DOCKER=1"}, true, "is required because KDSYNC_CI=1 or KDSYNC_REQUIRE_DOCKER=1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestSignVectors_Python$", "-test.v")
			cmd.Env = append([]string{"PATH=" + t.TempDir(), "HOME=" + os.Getenv("HOME"), "KDSYNC_TEST_CHILD=1"}, tc.env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			if tc.wantFail != errors.As(err, &exit) || !tc.wantFail && err != nil {
				t.Errorf("child: err = %v, want failure %v\n%s", err, tc.wantFail, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("child output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}
