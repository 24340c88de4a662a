package reconcile

import (
	"cmp"
	"slices"

	"github.com/kdsync/kdsync/kdapi"
)

// Kind is one way a user drifted.
type Kind string

// The kinds of drift.
const (
	// KindMissing: desired, absent from KooDrive.
	KindMissing Kind = "missing"
	// KindUnexpected: in KooDrive and enabled, but not desired (with a
	// complete source) or hard-deleted by kdsync.
	KindUnexpected Kind = "unexpected"
	// KindDept, KindRole, KindStatus: present in both, the field differs.
	KindDept   Kind = "dept"
	KindRole   Kind = "role"
	KindStatus Kind = "status"
)

// Kinds lists every kind, for metric initialisation.
var Kinds = []Kind{KindMissing, KindUnexpected, KindDept, KindRole, KindStatus}

// Drift is one user whose KooDrive state differs from the desired one.
type Drift struct {
	UserID string `json:"userId"`
	// Kinds are the differences, in the order of Kinds.
	Kinds []Kind `json:"kinds"`
	// Desired is nil for a user that is not desired at all.
	Desired *Desired `json:"desired,omitempty"`
	// Actual is nil for a user absent from KooDrive.
	Actual *Actual `json:"actual,omitempty"`
	// Repair is set by Plan.
	Repair *Repair `json:"repair,omitempty"`
}

// Has reports whether d is of kind k.
func (d *Drift) Has(k Kind) bool { return slices.Contains(d.Kinds, k) }

// DiffOptions shape a comparison.
type DiffOptions struct {
	// Complete says the desired users are everyone who should have an
	// account: a KooDrive user not among them is unexpected unless
	// disabled. Without it such users are only counted (NotDesired).
	Complete bool
	// Ignore lists user ids left out of the comparison altogether.
	Ignore map[string]bool
}

// Totals sum up a comparison.
type Totals struct {
	// Desired is the number of desired users compared (ignored ones left
	// out); KooDrive the number of users read from KooDrive.
	Desired  int `json:"desired"`
	KooDrive int `json:"koodrive"`
	// InSync counts desired users whose KooDrive state matches, the
	// absent-and-disabled ones included (DisabledAbsent).
	InSync int `json:"inSync"`
	// DisabledAbsent counts desired users satisfied by being absent: a
	// desired status 1, or a user kdsync hard-deleted.
	DisabledAbsent int `json:"disabledAbsent"`
	// Drifted counts users with at least one kind of drift; ByKind counts
	// users per kind (a user may count under several).
	Drifted int          `json:"drifted"`
	ByKind  map[Kind]int `json:"byKind"`
	// NotDesired counts KooDrive users the desired state does not list and
	// that were not judged: the source is not complete.
	NotDesired int `json:"notDesired"`
	// NotDesiredDisabled counts KooDrive users not listed but disabled:
	// in sync with a complete source.
	NotDesiredDisabled int `json:"notDesiredDisabled"`
	// Ignored counts users left out by DiffOptions.Ignore.
	Ignored int `json:"ignored"`
}

// Diff compares desired with actual (keyed by user id). Drifts come in
// user id order. desired must not list a user twice (ReadSource and
// ReadState never do).
func Diff(desired []Desired, actual map[string]Actual, o DiffOptions) ([]Drift, Totals) {
	t := Totals{KooDrive: len(actual), ByKind: make(map[Kind]int, len(Kinds))}
	for _, k := range Kinds {
		t.ByKind[k] = 0
	}
	var out []Drift
	add := func(d Drift) {
		out = append(out, d)
		t.Drifted++
		for _, k := range d.Kinds {
			t.ByKind[k]++
		}
	}
	listed := make(map[string]bool, len(desired))
	for i := range desired {
		d := &desired[i]
		listed[d.UserID] = true
		if o.Ignore[d.UserID] {
			t.Ignored++
			continue
		}
		t.Desired++
		a, ok := actual[d.UserID]
		switch {
		case !ok && d.disabledOrAbsent():
			t.InSync++
			t.DisabledAbsent++
		case !ok:
			add(Drift{UserID: d.UserID, Kinds: []Kind{KindMissing}, Desired: d})
		case d.Absent && a.Status == kdapi.StatusDisabled:
			t.InSync++
		case d.Absent:
			add(Drift{UserID: d.UserID, Kinds: []Kind{KindUnexpected}, Desired: d, Actual: &a})
		default:
			var kinds []Kind
			if d.DeptID != nil && deptText(*d.DeptID) != a.DeptID {
				kinds = append(kinds, KindDept)
			}
			if d.Role != nil && *d.Role != a.Role {
				kinds = append(kinds, KindRole)
			}
			if d.Status != nil && *d.Status != a.Status {
				kinds = append(kinds, KindStatus)
			}
			if len(kinds) == 0 {
				t.InSync++
				continue
			}
			add(Drift{UserID: d.UserID, Kinds: kinds, Desired: d, Actual: &a})
		}
	}
	for id, a := range actual {
		switch {
		case listed[id]:
		case o.Ignore[id]:
			t.Ignored++
		case !o.Complete:
			t.NotDesired++
		case a.Status == kdapi.StatusDisabled:
			t.NotDesiredDisabled++
		default:
			add(Drift{UserID: id, Kinds: []Kind{KindUnexpected}, Actual: &a})
		}
	}
	slices.SortFunc(out, func(a, b Drift) int {
		if c := cmp.Compare(len(a.UserID), len(b.UserID)); c != 0 {
			return c
		}
		return cmp.Compare(a.UserID, b.UserID)
	})
	return out, t
}
