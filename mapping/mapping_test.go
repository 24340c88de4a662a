package mapping

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

func loadUser(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u, err := DecodeUser(b)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestIssueExample runs the issue's mapping, as written, over the records
// an IdP sends.
func TestIssueExample(t *testing.T) {
	m, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ent := func(dept string) map[string]any { return map[string]any{"department": dept} }
	tests := map[string]struct {
		user   map[string]any
		groups []string
		want   Result
	}{
		"engineer, active": {
			user: map[string]any{"externalId": "1008600000000001", "userName": "a@x", "active": true, EnterpriseSchema: ent("Engineering")},
			want: Result{InScope: true, UserID: "1008600000000001", DeptID: ptr(int64(1319678187126486147)), Role: ptr(1), Status: ptr(0)},
		},
		"admin in sales, Entra's False": {
			user:   map[string]any{"externalId": "1008600000000002", "userName": "b@x", "active": "False", EnterpriseSchema: ent("Sales")},
			groups: []string{"Everyone", "KooDrive Admins"},
			want:   Result{InScope: true, UserID: "1008600000000002", DeptID: ptr(int64(1243693141656107521)), Role: ptr(3), Status: ptr(1)},
		},
		"no userType is in scope, no active is active": {
			user: map[string]any{"externalId": "1008600000000003", "userName": "c@x", EnterpriseSchema: ent("Sales")},
			want: Result{InScope: true, UserID: "1008600000000003", DeptID: ptr(int64(1243693141656107521)), Role: ptr(1), Status: ptr(0)},
		},
		"contractor is out of scope, whatever else": {
			user: map[string]any{"userType": "Contractor", "userName": "d@x"},
			want: Result{InScope: false},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := m.Map(Record{User: tc.user, Groups: tc.groups})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestEntraUserFile(t *testing.T) {
	m, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Map(Record{User: loadUser(t, "testdata/entra-user.json")})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{InScope: true, UserID: "1008600000029937613", DeptID: ptr(int64(1319678187126486147)), Role: ptr(1), Status: ptr(1)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

// TestRuntimeErrors: a record the mapping cannot map gets a typed error
// naming the field, the expression and the value, and no result.
func TestRuntimeErrors(t *testing.T) {
	m, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		user      map[string]any
		field     Field
		inMessage []string
	}{
		"department missing from the table": {
			user:      map[string]any{"externalId": "1", EnterpriseSchema: map[string]any{"department": "Marketing"}},
			field:     DeptID,
			inMessage: []string{"departments[enterprise.department]", "Marketing", "example.yaml:3"},
		},
		"no department at all": {
			user:      map[string]any{"externalId": "1"},
			field:     DeptID,
			inMessage: []string{"departments[enterprise.department]"},
		},
		"externalId not digits": {
			user:      map[string]any{"externalId": "sam@x", EnterpriseSchema: map[string]any{"department": "Sales"}},
			field:     UserID,
			inMessage: []string{`"sam@x"`, "user.externalId"},
		},
		"no externalId": {
			user:      map[string]any{"userName": "sam@x"},
			field:     UserID,
			inMessage: []string{"gave null"},
		},
		"active neither true nor false": {
			user:      map[string]any{"externalId": "1", "active": "maybe", EnterpriseSchema: map[string]any{"department": "Sales"}},
			field:     Status,
			inMessage: []string{"user.active ? 0 : 1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := m.Map(Record{User: tc.user})
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("Map = %+v, %v; want a *mapping.Error", got, err)
			}
			if me.Field != tc.field {
				t.Errorf("field %s, want %s (%v)", me.Field, tc.field, err)
			}
			for _, s := range tc.inMessage {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not name %q", err, s)
				}
			}
			if got != (Result{}) {
				t.Errorf("a failed mapping returned %+v", got)
			}
		})
	}
}

// TestValueChecks: values of the wrong kind are refused when evaluated.
func TestValueChecks(t *testing.T) {
	tests := map[string]struct {
		file, want string
	}{
		"role 7":             {"userId: '\"1\"'\nrole: '7'\n", "gave 7, want a role"},
		"status 2":           {"userId: '\"1\"'\nstatus: '2'\n", "gave 2, want a status"},
		"dept zero":          {"userId: '\"1\"'\ndeptId: '0'\n", "gave 0, which is not a KooDrive department id"},
		"dyn role as string": {"userId: '\"1\"'\nrole: 'user.title'\n", `gave "boss", want a role`},
		"dyn scope":          {"userId: '\"1\"'\nscope: 'user.title'\n", "want true or false"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := Parse("t.yaml", []byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Map(Record{User: map[string]any{"title": "boss"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Map: %v, want %q", err, tc.want)
			}
		})
	}
	m, err := Parse("t.yaml", []byte("userId: '\"1\"'\nrole: 'user.title'\n"))
	if err != nil {
		t.Fatal(err)
	}
	// A dyn role that gives null leaves the role unmanaged.
	r, err := m.Map(Record{User: map[string]any{}})
	if err != nil || r.Role != nil {
		t.Errorf("Map = %+v, %v; want no role and no error from a null title", r, err)
	}
}

// TestCompileErrors: every problem of a file, with its line, at once.
func TestCompileErrors(t *testing.T) {
	_, err := Load("testdata/broken.yaml")
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Load: %v, want a *ConfigError", err)
	}
	lines := map[int]string{}
	for _, p := range ce.Problems {
		lines[p.Line] += p.Msg
	}
	want := map[int]string{
		1: "scope",       // = is not an operator
		3: "departmnts",  // undeclared
		4: "gives bool",  // role must be an int
		5: "colour",      // unknown key
		7: "Engineering", // id overflows int64
		8: "Sales",       // not positive
	}
	for line, s := range want {
		if !strings.Contains(lines[line], s) {
			t.Errorf("line %d: %q, want it to mention %q\n%v", line, lines[line], s, err)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("problems on %d lines, want %d:\n%v", len(lines), len(want), err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := map[string]struct{ file, want string }{
		"empty":           {"", "empty"},
		"not a mapping":   {"- a\n- b\n", "want a mapping"},
		"no userId":       {"scope: 'true'\n", "userId is required"},
		"twice":           {"userId: '\"1\"'\nuserId: '\"2\"'\n", "given twice"},
		"bad yaml":        {"userId: '\n", "yaml"},
		"list as expr":    {"userId: [a]\n", "want a CEL expression"},
		"skip not bool":   {"userId: '\"1\"'\nskipOutOfScopeDeletions: sometimes\n", "skipOutOfScopeDeletions"},
		"table not a map": {"userId: '\"1\"'\ndepartments: [a]\n", "departments"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		user    map[string]any
		want    Result
		wantErr string
	}{
		"externalId": {
			user: map[string]any{"externalId": "42", "userName": "sam@x", "active": "False"},
			want: Result{InScope: true, UserID: "42", Status: ptr(1)},
		},
		"userName of digits": {
			user: map[string]any{"userName": "1008600000000009", EnterpriseSchema: map[string]any{"department": "1243693141656107521"}},
			want: Result{InScope: true, UserID: "1008600000000009", DeptID: ptr(int64(1243693141656107521)), Status: ptr(0)},
		},
		"department by name is not an id": {
			user: map[string]any{"externalId": "42", EnterpriseSchema: map[string]any{"department": "Sales"}},
			want: Result{InScope: true, UserID: "42", Status: ptr(0)},
		},
		"an email userName": {
			user:    map[string]any{"userName": "sam@x"},
			wantErr: "not a KooDrive user id",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := m.Map(Record{User: tc.user})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Map = %+v, %v; want %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestSkipOutOfScopeDeletions(t *testing.T) {
	m, err := Parse("t.yaml", []byte("userId: 'user.externalId'\nskipOutOfScopeDeletions: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.SkipOutOfScopeDeletions {
		t.Error("skipOutOfScopeDeletions not read")
	}
}

// TestNumbers: ids given as JSON numbers stay exact.
func TestNumbers(t *testing.T) {
	m, err := Parse("t.yaml", []byte("userId: 'user.externalId'\ndeptId: 'enterprise.costCenter'\n"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := DecodeUser([]byte(`{"externalId": 1008600000029937613, "` + EnterpriseSchema + `": {"costCenter": 1319678187126486147}}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Map(Record{User: u})
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != "1008600000029937613" || got.DeptID == nil || *got.DeptID != 1319678187126486147 {
		t.Errorf("got %+v", got)
	}
}
