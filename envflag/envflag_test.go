package envflag

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"KDSYNC_CONCURENCY", "KDSYNC_CONCURRENCY", 1},
		{"KDSYNC_RETRY_BUGDET", "KDSYNC_RETRY_BUDGET", 2},
		{"kitten", "sitting", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestParse: flags win over variables, command-line only flags ignore
// theirs, and every problem is reported at once, with what was expected;
// a flag's mistake is a UsageError, a variable's is not.
func TestParse(t *testing.T) {
	t.Setenv("T_WORKERS", "abc")
	t.Setenv("T_NAME", "from-env")
	t.Setenv("T_WAIT", "2m")
	t.Setenv("T_YES", "true")
	t.Setenv("T_WROKERS", "1")
	f := New("t", "T_")
	f.Int("workers", 1, "")
	name := f.String("name", "", "")
	f.Duration("wait", time.Second, "")
	f.CommandLineOnly()
	yes := f.Bool("yes", false, "")
	f.Known = func() map[string]bool {
		return map[string]bool{"T_WORKERS": true, "T_NAME": true, "T_WAIT": true, "T_YES": true}
	}
	f.Accepted = func(name string) bool { return strings.HasPrefix(name, "T_TEST_") }
	t.Setenv("T_TEST_SEED", "1")

	err := f.Parse([]string{"-wait", "soon", "-name", "given", "arg"})
	for _, w := range []string{`-wait: want a duration such as 30s, 5m or 1h30m, got "soon"`, `T_WORKERS: want an integer, got "abc"`,
		"T_WROKERS: unknown; did you mean T_WORKERS?"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("err %v; want %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "T_TEST_SEED") || strings.Contains(err.Error(), "T_NAME") {
		t.Errorf("err %v", err)
	}
	if !errors.As(err, new(UsageError)) {
		t.Error("a flag's mistake is no UsageError")
	}
	if *name != "given" || *yes || f.Arg(0) != "arg" || !f.IsSet("name") || f.IsSet("yes") {
		t.Errorf("name %q yes %v args %v", *name, *yes, f.Args())
	}

	g := New("t", "T_")
	g.String("name", "", "")
	g.SetOutput(new(strings.Builder))
	if err := g.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	if err := g.Parse(nil); err != nil || g.Lookup("name").Value.String() != "from-env" {
		t.Errorf("from the environment: %v, %q", err, g.Lookup("name").Value.String())
	}
}

func TestSecretAndList(t *testing.T) {
	file := t.TempDir() + "/s"
	if err := writeFile(file, " s3cret\n"); err != nil {
		t.Fatal(err)
	}
	if s, err := Secret[string]("x", "", file); err != nil || s != "s3cret" {
		t.Errorf("Secret from a file: %q, %v", s, err)
	}
	if _, err := Secret[string]("x", "v", file); err == nil {
		t.Error("Secret from both")
	}
	if ss, err := Secrets[string]("x", "a, b,,c", ""); err != nil || strings.Join(ss, "|") != "a|b|c" {
		t.Errorf("Secrets: %q, %v", ss, err)
	}
	if l := List(" a,,b ,"); strings.Join(l, "|") != "a|b" {
		t.Errorf("List: %q", l)
	}
}

func writeFile(name, body string) error { return os.WriteFile(name, []byte(body), 0o600) }
