package kdsim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Default identifiers of the simulated organisation.
const (
	DefaultOrgID    = "1242547285573394433"
	DefaultTenantID = "1242547285573394434"
)

// Department is a KooDrive department as the simulator serves it. ID is
// KooDrive's numeric-string id (a user's deptId); DeptID is the OrgID
// department id (32 hex digits). The root department has ParentID "0" (or
// empty).
type Department struct {
	ID       string `json:"id"`
	OrgID    string `json:"orgId"`
	DeptID   string `json:"deptId"`
	ParentID string `json:"parentId"`
	Name     string `json:"name"`
	TenantID string `json:"tenantId"`
}

// DefaultDepartments returns the departments a Server starts with when
// Options.Departments is empty: a root and a small tree below it.
//
//	1243693141656107521 Acme (root)
//	├── 1319678187126486144 Engineering
//	│   ├── 1319678187126486145 Platform
//	│   └── 1319678187126486146 Mobile
//	├── 1319678187126486147 Sales
//	└── 1319678187126486148 Finance
func DefaultDepartments() []Department {
	return []Department{
		{ID: "1243693141656107521", ParentID: "0", Name: "Acme"},
		{ID: "1319678187126486144", ParentID: "1243693141656107521", Name: "Engineering"},
		{ID: "1319678187126486145", ParentID: "1319678187126486144", Name: "Platform"},
		{ID: "1319678187126486146", ParentID: "1319678187126486144", Name: "Mobile"},
		{ID: "1319678187126486147", ParentID: "1243693141656107521", Name: "Sales"},
		{ID: "1319678187126486148", ParentID: "1243693141656107521", Name: "Finance"},
	}
}

// deptRec is a validated department with what the handlers need precomputed.
type deptRec struct {
	Department
	ancestors []string // parent, grandparent, ..., root
	lowerName string
	json      []byte // the department object
}

// depts is the immutable department tree.
type depts struct {
	byID     map[string]*deptRec
	root     *deptRec
	children map[string][]*deptRec // by parent id, in id order
}

func isRootParent(p string) bool { return p == "" || p == "0" }

// newDepts validates ds and indexes them. Empty OrgID, TenantID and DeptID
// fields are filled in.
func newDepts(ds []Department, orgID, tenantID string) (*depts, error) {
	if len(ds) == 0 {
		return nil, errors.New("no departments")
	}
	d := &depts{byID: make(map[string]*deptRec, len(ds)), children: make(map[string][]*deptRec)}
	for _, in := range ds {
		if !isDigits(in.ID) {
			return nil, fmt.Errorf("department %q: id must be a non-empty string of digits", in.ID)
		}
		if in.Name == "" {
			return nil, fmt.Errorf("department %s: empty name", in.ID)
		}
		if _, dup := d.byID[in.ID]; dup {
			return nil, fmt.Errorf("department %s: duplicate id", in.ID)
		}
		if in.OrgID == "" {
			in.OrgID = orgID
		}
		if in.TenantID == "" {
			in.TenantID = tenantID
		}
		if in.DeptID == "" {
			sum := sha256.Sum256([]byte("dept:" + in.ID))
			in.DeptID = hex.EncodeToString(sum[:16])
		}
		r := &deptRec{Department: in, lowerName: strings.ToLower(in.Name)}
		d.byID[in.ID] = r
		if isRootParent(in.ParentID) {
			if d.root != nil {
				return nil, fmt.Errorf("departments %s and %s are both roots (parentId empty or \"0\")", d.root.ID, in.ID)
			}
			d.root = r
		}
	}
	if d.root == nil {
		return nil, errors.New("no root department (parentId empty or \"0\")")
	}
	for _, r := range d.byID {
		if r == d.root {
			continue
		}
		for p := r.ParentID; !isRootParent(p); {
			pr, ok := d.byID[p]
			if !ok {
				return nil, fmt.Errorf("department %s: parent %s does not exist", r.ID, p)
			}
			if pr == r || len(r.ancestors) > len(ds) {
				return nil, fmt.Errorf("department %s: parent cycle", r.ID)
			}
			r.ancestors = append(r.ancestors, p)
			p = pr.ParentID
		}
		d.children[r.ParentID] = append(d.children[r.ParentID], r)
	}
	for _, cs := range d.children {
		slices.SortFunc(cs, func(a, b *deptRec) int { return compareIDs(a.ID, b.ID) })
	}
	for _, r := range d.byID {
		r.json = appendDepartment(nil, &r.Department)
	}
	return d, nil
}

// within reports whether department id is anc or below it.
func (d *depts) within(id, anc string) bool {
	if id == anc {
		return true
	}
	r, ok := d.byID[id]
	if !ok {
		return false
	}
	return slices.Contains(r.ancestors, anc)
}

// list returns all departments in id order.
func (d *depts) list() []Department {
	out := make([]Department, 0, len(d.byID))
	for _, r := range d.byID {
		out = append(out, r.Department)
	}
	slices.SortFunc(out, func(a, b Department) int { return compareIDs(a.ID, b.ID) })
	return out
}

// appendDepartment appends d as a JSON object:
// {"id":..,"orgId":..,"deptId":..,"parentId":..,"name":..,"tenantId":..}.
func appendDepartment(b []byte, d *Department) []byte {
	b = append(b, '{')
	b = appendDepartmentFields(b, d)
	return append(b, '}')
}

// appendDepartmentFields appends d's fields without the braces.
func appendDepartmentFields(b []byte, d *Department) []byte {
	b = appendStringField(b, true, "id", d.ID)
	b = appendStringField(b, false, "orgId", d.OrgID)
	b = appendStringField(b, false, "deptId", d.DeptID)
	b = appendStringField(b, false, "parentId", d.ParentID)
	b = appendStringField(b, false, "name", d.Name)
	return appendStringField(b, false, "tenantId", d.TenantID)
}

// isDigits reports whether s is a non-empty string of ASCII digits.
func isDigits(s string) bool {
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

// compareIDs orders digit strings numerically (shorter first), any other
// strings by bytes after that.
func compareIDs(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
