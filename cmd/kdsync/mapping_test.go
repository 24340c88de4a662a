package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMappingTest runs kdsync mapping test as an operator would.
func TestMappingTest(t *testing.T) {
	dir := t.TempDir()
	user := filepath.Join(dir, "user.json")
	if err := os.WriteFile(user, []byte(`{"externalId":"1008600000029937613","active":"False","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"mapping", "test", "-file", "../../mapping/testdata/example.yaml", "-user", user, "-groups", "Everyone, KooDrive Admins"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got["userId"] != "1008600000029937613" || got["deptId"] != "1243693141656107521" || got["role"] != float64(3) || got["status"] != float64(1) || got["scope"] != true {
		t.Errorf("got %v", got)
	}

	if err := os.WriteFile(user, []byte(`{"externalId":"1","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Marketing"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"mapping", "test", "-file", "../../mapping/testdata/example.yaml", "-user", user}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "Marketing") || !strings.Contains(errb.String(), "reason mapping") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"mapping", "test", "-file", "../../mapping/testdata/broken.yaml", "-user", user}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "broken.yaml:3") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	if code := run([]string{"mapping"}, &out, &errb); code != 2 {
		t.Errorf("no subcommand: exit %d", code)
	}
}
