package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/kdsync/kdsync/"

// imports reads, for every package directory of the module (relative to
// its root), the module and NATS packages its production files import:
// "nats" for the client, "nats/server" for the embedded server.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		dir = filepath.ToSlash(dir)
		out[dir] = append(out[dir], []string{}...)
		for _, s := range f.Imports {
			p, err := strconv.Unquote(s.Path.Value)
			if err != nil {
				return err
			}
			switch {
			case strings.HasPrefix(p, module):
				p = strings.TrimPrefix(p, module)
			case strings.HasPrefix(p, "github.com/nats-io/nats-server/"):
				p = "nats/server" // the broker itself, under "nats" too
			case strings.HasPrefix(p, "github.com/nats-io/"):
				p = "nats"
			default:
				continue
			}
			if !slices.Contains(out[dir], p) {
				out[dir] = append(out[dir], p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out["consumer"]) == 0 || len(out["service"]) == 0 {
		t.Fatalf("the walk found no consumer or service imports: %v", out)
	}
	return out
}

// closure is every module package pkg depends on, itself included.
func closure(g map[string][]string, pkg string) []string {
	seen := []string{pkg}
	for i := 0; i < len(seen); i++ {
		for _, p := range g[seen[i]] {
			if _, ok := g[p]; ok && !slices.Contains(seen, p) {
				seen = append(seen, p)
			}
		}
	}
	return seen
}

func under(p string, prefixes ...string) bool {
	for _, x := range prefixes {
		if p == x || strings.HasPrefix(p, x+"/") {
			return true
		}
	}
	return false
}

var testKit = []string{"internal", "checker", "workload"}

// TestImportRules: the rules of docs/architecture.md, one per line.
func TestImportRules(t *testing.T) {
	g := imports(t)
	direct := []struct {
		from   []string
		banned []string
		why    string
	}{
		{[]string{"handlers"}, []string{"consumer", "nats"}, "handlers know no NATS"},
		{[]string{"kdapi"}, []string{"consumer", "handlers", "metrics", "outcome"}, "the client knows no events and is instrumented from outside"},
		{[]string{"consumer"}, []string{"kdapi"}, "the consumer calls handlers only"},
		{[]string{"dlq", "guard", "reconcile", "provision", "usertrace", "console", "checker"}, []string{"consumer"}, "tools read the outcome contract"},
		{[]string{"metrics"}, []string{"consumer", "kdapi"}, "metrics read the outcome contract; reasons and classes come from outcome and handlers"},
		{[]string{"outcome"}, []string{"consumer", "kdapi", "nats"}, "the contract is data, not the engine"},
	}
	for _, r := range direct {
		for _, from := range r.from {
			for _, p := range g[from] {
				if under(p, r.banned...) {
					t.Errorf("%s imports %s: %s", from, p, r.why)
				}
			}
		}
	}
	// Transitively: what the daemon's packages link.
	for _, from := range []string{"consumer", "handlers", "kdapi", "service"} {
		for _, p := range closure(g, from) {
			if under(p, "kdsim") {
				t.Errorf("%s links %s: production never imports the simulator", from, p)
			}
			if under(p, testKit...) {
				t.Errorf("%s links %s: the daemon links no test scaffolding", from, p)
			}
		}
	}
	// The binary links no harness nor checker (the demo's own package
	// links the simulator, embedded NATS and the workload only).
	for _, p := range closure(g, "cmd/kdsync") {
		if under(p, "internal/harness", "checker") {
			t.Errorf("cmd/kdsync links %s: the binary links no test harness", p)
		}
		// Nor the demo, nor the NATS server it embeds (cmd/kddemo is
		// the demo's binary): a production daemon carries no broker,
		// and is 32 MB instead of 45.
		if under(p, "demo") {
			t.Errorf("cmd/kdsync links %s: the demo is cmd/kddemo's", p)
		}
		for _, q := range g[p] {
			if under(q, "nats/server") {
				t.Errorf("cmd/kdsync links the NATS server (github.com/nats-io/nats-server) through %s", p)
			}
		}
	}
	if !slices.Contains(closure(g, "cmd/kddemo"), "demo") || !slices.Contains(g["internal/natsembed"], "nats/server") {
		t.Errorf("the walk does not see cmd/kddemo link demo, or natsembed import the NATS server: %v %v",
			closure(g, "cmd/kddemo"), g["internal/natsembed"])
	}
	for _, p := range g["envflag"] {
		t.Errorf("envflag imports %s: the flag parser is a general library, it imports no kdsync package", p)
	}
	for from, ps := range g {
		for _, p := range ps {
			if under(p, "cmd") {
				t.Errorf("%s imports %s: nothing imports main", from, p)
			}
		}
	}
}
