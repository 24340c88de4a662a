package clitest

import "testing"

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
