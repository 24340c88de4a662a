package clitest

import (
	"os"
	"testing"
)

// recorder is a testing.TB that keeps its failures.
type recorder struct {
	testing.TB
	errs int
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.errs++ }

func TestLines(t *testing.T) {
	const out = "invalid configuration:\nKDSYNC_X: want an integer\n-port: bad\n"
	for name, tc := range map[string]struct {
		want, not []string
		errs      int
	}{
		"all present":       {want: []string{"KDSYNC_X: want", "-port"}, errs: 0},
		"not at line start": {want: []string{"want an integer"}, errs: 1},
		"missing":           {want: []string{"KDSYNC_Y"}, errs: 1},
		"forbidden present": {not: []string{"bad"}, errs: 1},
		"forbidden absent":  {not: []string{"KDSYNC_Y"}, errs: 0},
	} {
		t.Run(name, func(t *testing.T) {
			r := &recorder{TB: t}
			Lines(r, out, tc.want, tc.not)
			if r.errs != tc.errs {
				t.Errorf("%d failures, want %d", r.errs, tc.errs)
			}
		})
	}
}

func TestClearEnv(t *testing.T) {
	t.Setenv("CLITEST_X_A", "1")
	t.Setenv("CLITEST_Y", "2")
	t.Run("cleared", func(t *testing.T) {
		ClearEnv(t, "CLITEST_X_")
		if _, ok := os.LookupEnv("CLITEST_X_A"); ok {
			t.Error("CLITEST_X_A still set")
		}
		if os.Getenv("CLITEST_Y") != "2" {
			t.Error("CLITEST_Y, of another prefix, was cleared")
		}
	})
	if os.Getenv("CLITEST_X_A") != "1" {
		t.Error("CLITEST_X_A not restored after the test")
	}
}
