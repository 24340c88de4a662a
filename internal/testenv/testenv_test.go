package testenv_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kdsync/kdsync/internal/testenv"
)

// TestMissingTool runs TestChildNeedsAbsentTool in a child process: it
// skips by default and fails, naming the reason, under either CI switch.
func TestMissingTool(t *testing.T) {
	tests := map[string]struct {
		env      []string
		wantFail bool
		want     string
	}{
		"laptop: skip":           {nil, false, "--- SKIP: TestChildNeedsAbsentTool"},
		"KDSYNC_CI=1: fail":      {[]string{"KDSYNC_CI=1"}, true, "is required in CI"},
		"REQUIRE_DOCKER=1: fail": {[]string{"KDSYNC_REQUIRE_DOCKER=1"}, true, "is required in CI"},
		"KDSYNC_CI=0: skip":      {[]string{"KDSYNC_CI=0"}, false, "--- SKIP: TestChildNeedsAbsentTool"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestChildNeedsAbsentTool$", "-test.v")
			cmd.Env = append([]string{"KDSYNC_TEST_CHILD=1", "PATH=" + os.Getenv("PATH")}, tc.env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			if failed := errors.As(err, &exit); failed != tc.wantFail || (!tc.wantFail && err != nil) {
				t.Errorf("child: err %v, want failure %v\n%s", err, tc.wantFail, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("child output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}

// TestShortSkipsOrFails runs TestChildLong with -test.short: it skips by
// default and fails under KDSYNC_CI=1.
func TestShortSkipsOrFails(t *testing.T) {
	tests := map[string]struct {
		env      []string
		wantFail bool
		want     string
	}{
		"laptop: skip":      {nil, false, "--- SKIP: TestChildLong"},
		"KDSYNC_CI=1: fail": {[]string{"KDSYNC_CI=1"}, true, "is required in CI"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestChildLong$", "-test.v", "-test.short")
			cmd.Env = append([]string{"KDSYNC_TEST_CHILD=1", "PATH=" + os.Getenv("PATH")}, tc.env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			if failed := errors.As(err, &exit); failed != tc.wantFail || (!tc.wantFail && err != nil) {
				t.Errorf("child: err %v, want failure %v\n%s", err, tc.wantFail, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("child output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}

func TestChildLong(t *testing.T) {
	if os.Getenv("KDSYNC_TEST_CHILD") != "1" {
		t.Skip("run by TestShortSkipsOrFails in a child process")
	}
	testenv.SkipShort(t, "a long test")
	t.Fatal("SkipShort returned under -short")
}

func TestChildNeedsAbsentTool(t *testing.T) {
	if os.Getenv("KDSYNC_TEST_CHILD") != "1" {
		t.Skip("run by TestMissingTool in a child process")
	}
	testenv.Tool(t, "kdsync-no-such-tool", "the check")
	t.Fatal("Tool returned for a program that is not there")
}

func TestToolFound(t *testing.T) {
	self, err := os.Executable() // this test binary: surely there
	if err != nil {
		t.Fatal(err)
	}
	if p := testenv.Tool(t, self, "the check"); p != self {
		t.Fatalf("Tool(%s) = %q", self, p)
	}
}
