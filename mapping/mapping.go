// Package mapping turns a source record (a SCIM User, its groups) into
// what KooDrive should hold for that person, with CEL expressions read from
// a YAML file (KDSYNC_MAPPING_FILE):
//
//	scope: 'user.userType != "Contractor"'
//	userId: 'user.externalId'
//	deptId: 'departments[enterprise.department]'
//	role: '"KooDrive Admins" in groups ? 3 : 1'
//	status: 'user.active ? 0 : 1'
//	departments:
//	  Engineering: "1319678187126486147"
//	  Sales: "1243693141656107521"
//
// The expressions see four variables: user (the SCIM User as stored, its
// booleans normalised and absent schema attributes null), enterprise (its
// enterprise extension, likewise), groups (the display names of the user's
// groups) and departments (the table). A file is compiled and type-checked
// once, when it is loaded, and every problem is reported at once with its
// line. Evaluating it for one record either gives a complete Result or a
// *Error naming the field, the expression and what went wrong: never a
// half-mapped record.
package mapping

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"go.yaml.in/yaml/v3"

	"github.com/kdsync/kdsync/kdapi"
)

// EnterpriseSchema is the URN of SCIM's enterprise User extension (RFC
// 7643 section 4.3); the enterprise variable is its object.
const EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

// Field is one mapped value.
type Field int

// The fields of a mapping file, in the order they are evaluated.
const (
	Scope Field = iota
	UserID
	DeptID
	Role
	Status
	nFields
)

var fieldNames = [nFields]string{Scope: "scope", UserID: "userId", DeptID: "deptId", Role: "role", Status: "status"}

func (f Field) String() string {
	if f >= 0 && f < nFields {
		return fieldNames[f]
	}
	return "field(" + strconv.Itoa(int(f)) + ")"
}

// DefaultFile is the mapping used when no file is given: every user is in
// scope; the KooDrive user id is externalId, else userName when it is all
// digits; the department is enterprise.department when that is itself a
// KooDrive department id (digits), else none (the consumer's
// KDSYNC_DEFAULT_DEPT_ID applies to a hire); the role is left alone (a
// hire is a common user); active gives the status.
const DefaultFile = `# kdsync's default mapping
scope: 'true'
userId: 'user.externalId != null ? user.externalId : user.userName'
deptId: 'enterprise.department != null && string(enterprise.department).matches("^[0-9]+$") ? enterprise.department : null'
role: 'null'
status: 'user.active ? 0 : 1'
`

// Mapping is a compiled mapping file. It is safe for concurrent use.
type Mapping struct {
	name        string
	exprs       [nFields]*expr
	departments map[string]string
	// SkipOutOfScopeDeletions keeps a user who leaves scope as KooDrive
	// has them; by default they are disabled.
	SkipOutOfScopeDeletions bool
}

type expr struct {
	field Field
	src   string
	line  int
	prg   cel.Program
}

// Record is what a mapping reads for one person.
type Record struct {
	// User is the SCIM User resource as JSON decodes it (json.Number or
	// float64 numbers both work).
	User map[string]any
	// Groups are the display names of the groups the user belongs to.
	Groups []string
}

// Result is what KooDrive should hold for a person. Nil fields are not
// managed by the mapping (its expression gave null or is absent).
type Result struct {
	InScope bool   `json:"scope"`
	UserID  string `json:"userId,omitempty"`
	DeptID  *int64 `json:"deptId,omitempty,string"`
	Role    *int   `json:"role,omitempty"`
	Status  *int   `json:"status,omitempty"`
}

// Error is a mapping that failed for one record: the field, its
// expression and where it is written, and what went wrong (a department
// missing from the table, a value of the wrong kind).
type Error struct {
	Field  Field
	Expr   string
	File   string
	Line   int
	Detail string
}

func (e *Error) Error() string {
	return fmt.Sprintf("mapping %s (%s:%d) %s: %s", e.Field, e.File, e.Line, clip(e.Expr), e.Detail)
}

// Problem is one thing wrong with a mapping file.
type Problem struct {
	Line int
	Msg  string
}

// ConfigError lists every problem of a mapping file.
type ConfigError struct {
	File     string
	Problems []Problem
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mapping file %s: %d problem(s)", e.File, len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  %s:%d: %s", e.File, p.Line, p.Msg)
	}
	return b.String()
}

// Load reads and compiles the mapping file at path.
func Load(path string) (*Mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	return Parse(path, b)
}

// Default compiles DefaultFile (a test pins that it compiles).
func Default() (*Mapping, error) {
	return Parse("(default mapping)", []byte(DefaultFile))
}

// LoadOrDefault loads the file at path, or the default mapping when path
// is empty.
func LoadOrDefault(path string) (*Mapping, error) {
	if path == "" {
		return Default()
	}
	return Load(path)
}

// newEnv declares the variables every expression sees.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("user", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("enterprise", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("groups", cel.ListType(cel.StringType)),
		cel.Variable("departments", cel.MapType(cel.StringType, cel.StringType)),
	)
}

// costLimit bounds one expression's evaluation, against a loop over a
// huge list: far above what a mapping needs.
const costLimit = 100_000

// Parse compiles a mapping file's content; name is used in messages.
func Parse(name string, data []byte) (*Mapping, error) {
	m := &Mapping{name: name, departments: map[string]string{}}
	var problems []Problem
	add := func(line int, format string, args ...any) {
		problems = append(problems, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ConfigError{File: name, Problems: []Problem{{Line: yamlErrLine(err), Msg: err.Error()}}}
	}
	if len(doc.Content) == 0 {
		return nil, &ConfigError{File: name, Problems: []Problem{{Line: 1, Msg: "the file is empty; it needs at least userId"}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &ConfigError{File: name, Problems: []Problem{{Line: root.Line, Msg: "want a mapping of scope, userId, deptId, role, status, departments"}}}
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("mapping: CEL environment: %w", err)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if at, dup := seen[k.Value]; dup {
			add(k.Line, "%s is given twice (first at line %d)", k.Value, at)
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "departments":
			m.parseDepartments(v, add)
		case "skipOutOfScopeDeletions":
			if err := v.Decode(&m.SkipOutOfScopeDeletions); err != nil || v.Kind != yaml.ScalarNode {
				add(v.Line, "skipOutOfScopeDeletions: want true or false, got %q", v.Value)
			}
		default:
			f := fieldOf(k.Value)
			if f < 0 {
				add(k.Line, "unknown key %q (want scope, userId, deptId, role, status, departments, skipOutOfScopeDeletions)", k.Value)
				continue
			}
			if v.Kind != yaml.ScalarNode || v.Tag != "!!str" && v.Tag != "!!bool" && v.Tag != "!!int" && v.Tag != "!!null" {
				add(v.Line, "%s: want a CEL expression as a string, e.g. %s: 'user.externalId'", k.Value, k.Value)
				continue
			}
			src := v.Value
			if v.Tag == "!!null" {
				src = "null"
			}
			e, errs := compile(env, f, src)
			for _, p := range errs {
				add(v.Line+p.Line-1, "%s: %s", k.Value, p.Msg)
			}
			if e != nil {
				e.line = v.Line
				m.exprs[f] = e
			}
		}
	}
	if _, ok := seen["userId"]; !ok {
		add(root.Line, "userId is required (e.g. userId: 'user.externalId')")
	}
	if _, ok := seen["scope"]; !ok && len(problems) == 0 {
		e, _ := compile(env, Scope, "true")
		m.exprs[Scope] = e
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, &ConfigError{File: name, Problems: problems}
	}
	return m, nil
}

func fieldOf(name string) Field {
	for f, n := range fieldNames {
		if n == name {
			return Field(f)
		}
	}
	return -1
}

func (m *Mapping) parseDepartments(v *yaml.Node, add func(int, string, ...any)) {
	if v.Kind != yaml.MappingNode {
		add(v.Line, "departments: want a table of department name: KooDrive department id")
		return
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, id := v.Content[i], v.Content[i+1]
		if _, dup := m.departments[k.Value]; dup {
			add(k.Line, "departments: %q is given twice", k.Value)
			continue
		}
		n, err := strconv.ParseInt(id.Value, 10, 64)
		if id.Kind != yaml.ScalarNode || err != nil || n <= 0 || !allDigits(id.Value) {
			add(id.Line, "departments: %q: %q is not a KooDrive department id (a positive 64-bit integer, best quoted)", k.Value, id.Value)
			continue
		}
		m.departments[k.Value] = id.Value
	}
}

// compile parses and type-checks one expression and checks that its type
// fits its field. Problems carry the line within src (from 1).
func compile(env *cel.Env, f Field, src string) (*expr, []Problem) {
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var out []Problem
		for _, e := range iss.Errors() {
			out = append(out, Problem{Line: max(e.Location.Line(), 1),
				Msg: fmt.Sprintf("%s (column %d of %q)", e.Message, e.Location.Column()+1, clip(src))})
		}
		return nil, out
	}
	if want, ok := fitsField(f, ast.OutputType()); !ok {
		return nil, []Problem{{Line: 1, Msg: fmt.Sprintf("%q gives %s, want %s", clip(src), ast.OutputType(), want)}}
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit))
	if err != nil {
		return nil, []Problem{{Line: 1, Msg: err.Error()}}
	}
	return &expr{field: f, src: src, prg: prg}, nil
}

// fitsField tells whether an expression of type t may give field f
// (dyn is checked when evaluated).
func fitsField(f Field, t *cel.Type) (string, bool) {
	k := t.Kind()
	if k == types.DynKind || k == types.AnyKind {
		return "", true
	}
	switch f {
	case Scope:
		return "bool", k == types.BoolKind
	case UserID, DeptID:
		return "a string of digits, an int or null", k == types.StringKind || k == types.IntKind || k == types.UintKind || k == types.NullTypeKind
	default:
		return "an int or null", k == types.IntKind || k == types.UintKind || k == types.NullTypeKind
	}
}

// Departments returns a copy of the department table.
func (m *Mapping) Departments() map[string]string {
	out := make(map[string]string, len(m.departments))
	for k, v := range m.departments {
		out[k] = v
	}
	return out
}

// Name is the file the mapping came from.
func (m *Mapping) Name() string { return m.name }

// Map evaluates the mapping for one record. Out of scope, only InScope is
// set. Any failure is an *Error.
func (m *Mapping) Map(rec Record) (Result, error) {
	vars := Vars(rec)
	vars["departments"] = m.departments
	var r Result
	for f := Scope; f < nFields; f++ {
		e := m.exprs[f]
		if e == nil {
			continue
		}
		out, _, err := e.prg.Eval(vars)
		if err != nil {
			return Result{}, m.fail(e, "%v", err)
		}
		if err := m.set(&r, e, out); err != nil {
			return Result{}, err
		}
		if f == Scope && !r.InScope {
			return Result{InScope: false}, nil
		}
	}
	return r, nil
}

func (m *Mapping) fail(e *expr, format string, args ...any) *Error {
	return &Error{Field: e.field, Expr: e.src, File: m.name, Line: e.line, Detail: fmt.Sprintf(format, args...)}
}

// set checks one expression's value and stores it in r.
func (m *Mapping) set(r *Result, e *expr, out ref.Val) error {
	v := out.Value()
	isNull := out.Type() == types.NullType
	switch e.field {
	case Scope:
		b, ok := v.(bool)
		if !ok {
			return m.fail(e, "gave %s, want true or false", show(out))
		}
		r.InScope = b
	case UserID:
		s, ok := idText(v)
		if !ok || len(s) > 64 {
			return m.fail(e, "gave %s, which is not a KooDrive user id (digits, at most 64)", show(out))
		}
		r.UserID = s
	case DeptID:
		if isNull {
			return nil
		}
		s, ok := idText(v)
		n, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil || n <= 0 {
			return m.fail(e, "gave %s, which is not a KooDrive department id (a positive 64-bit integer)", show(out))
		}
		r.DeptID = &n
	case Role, Status:
		if isNull {
			return nil
		}
		n, ok := intOf(v)
		valid, allowed := kdapi.ValidRole, "a role: 0 department admin, 1 common user, 2 system admin, 3 cloud-drive admin, 5 member with management rights"
		if e.field == Status {
			valid, allowed = kdapi.ValidStatus, "a status: 0 enabled, 1 disabled"
		}
		if !ok || !valid(n) {
			return m.fail(e, "gave %s, want %s", show(out), allowed)
		}
		if e.field == Role {
			r.Role = &n
		} else {
			r.Status = &n
		}
	}
	return nil
}

// idText reads an id given as digits or as a non-negative integer.
func idText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, allDigits(x)
	case int64:
		return strconv.FormatInt(x, 10), x >= 0
	case uint64:
		return strconv.FormatUint(x, 10), true
	}
	return "", false
}

func intOf(v any) (int, bool) {
	switch x := v.(type) {
	case int64:
		return int(x), x >= math.MinInt32 && x <= math.MaxInt32
	case uint64:
		return int(x), x <= math.MaxInt32
	}
	return 0, false
}

// show prints a CEL value for an error message: null, "text", 7, ...
func show(v ref.Val) string {
	switch x := v.Value().(type) {
	case string:
		return strconv.Quote(clip(x))
	case bool, int64, uint64, float64:
		return fmt.Sprint(x)
	}
	if v.Type() == types.NullType {
		return "null"
	}
	return clip(fmt.Sprintf("%v (%s)", v.Value(), v.Type().TypeName()))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	const n = 120
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func yamlErrLine(err error) int {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return 1
	}
	// yaml.v3 messages read "yaml: line 3: ...".
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		j := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if j > 0 {
			if n, err := strconv.Atoi(rest[:j]); err == nil {
				return n
			}
		}
	}
	return 1
}
