package reconcile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	t.Parallel()
	const dept, other = "42", "43"
	act := func(id, dept string, role, status int) Actual {
		return Actual{UserID: id, DeptID: dept, Role: role, Status: status}
	}
	full := func(id string, dept int64, role, status int) Desired {
		return Desired{UserID: id, DeptID: i64(dept), Role: iptr(role), Status: iptr(status)}
	}
	type drift struct {
		User  string
		Kinds []Kind
	}
	tests := map[string]struct {
		desired []Desired
		actual  []Actual
		opts    DiffOptions
		want    []drift
		totals  Totals
	}{
		"in sync": {
			desired: []Desired{full("1", 42, 1, 0)},
			actual:  []Actual{act("1", dept, 1, 0)},
			totals:  Totals{Desired: 1, KooDrive: 1, InSync: 1},
		},
		"each field differs": {
			desired: []Desired{full("1", 42, 1, 0), full("2", 42, 1, 0), full("3", 42, 1, 0), full("4", 42, 1, 0)},
			actual:  []Actual{act("1", other, 1, 0), act("2", dept, 5, 0), act("3", dept, 1, 1), act("4", other, 0, 1)},
			want: []drift{
				{"1", []Kind{KindDept}}, {"2", []Kind{KindRole}}, {"3", []Kind{KindStatus}},
				{"4", []Kind{KindDept, KindRole, KindStatus}},
			},
			totals: Totals{Desired: 4, KooDrive: 4, Drifted: 4, ByKind: map[Kind]int{KindDept: 2, KindRole: 2, KindStatus: 2}},
		},
		"unmanaged fields are not compared": {
			desired: []Desired{{UserID: "1", Status: iptr(0)}},
			actual:  []Actual{act("1", other, 5, 0)},
			totals:  Totals{Desired: 1, KooDrive: 1, InSync: 1},
		},
		"status 2 (undocumented) differs from 0": {
			desired: []Desired{full("1", 42, 1, 0)},
			actual:  []Actual{act("1", dept, 1, 2)},
			want:    []drift{{"1", []Kind{KindStatus}}},
			totals:  Totals{Desired: 1, KooDrive: 1, Drifted: 1, ByKind: map[Kind]int{KindStatus: 1}},
		},
		"missing": {
			desired: []Desired{full("1", 42, 1, 0), {UserID: "2"}},
			want:    []drift{{"1", []Kind{KindMissing}}, {"2", []Kind{KindMissing}}},
			totals:  Totals{Desired: 2, Drifted: 2, ByKind: map[Kind]int{KindMissing: 2}},
		},
		"desired disabled and absent is in sync": {
			desired: []Desired{full("1", 42, 1, 1)},
			totals:  Totals{Desired: 1, InSync: 1, DisabledAbsent: 1},
		},
		"hard-deleted: absent or disabled is in sync, enabled is unexpected": {
			desired: []Desired{{UserID: "1", Absent: true}, {UserID: "2", Absent: true}, {UserID: "3", Absent: true}},
			actual:  []Actual{act("2", dept, 1, 1), act("3", dept, 1, 0)},
			want:    []drift{{"3", []Kind{KindUnexpected}}},
			totals:  Totals{Desired: 3, KooDrive: 2, InSync: 2, DisabledAbsent: 1, Drifted: 1, ByKind: map[Kind]int{KindUnexpected: 1}},
		},
		"not listed, source not complete: counted only": {
			desired: []Desired{full("1", 42, 1, 0)},
			actual:  []Actual{act("1", dept, 1, 0), act("2", dept, 1, 0), act("3", dept, 1, 1)},
			totals:  Totals{Desired: 1, KooDrive: 3, InSync: 1, NotDesired: 2},
		},
		"not listed, complete source: enabled ones are unexpected": {
			desired: []Desired{full("1", 42, 1, 0)},
			actual:  []Actual{act("1", dept, 1, 0), act("2", dept, 1, 0), act("3", dept, 1, 1)},
			opts:    DiffOptions{Complete: true},
			want:    []drift{{"2", []Kind{KindUnexpected}}},
			totals:  Totals{Desired: 1, KooDrive: 3, InSync: 1, NotDesiredDisabled: 1, Drifted: 1, ByKind: map[Kind]int{KindUnexpected: 1}},
		},
		"ignored users are left out on both sides": {
			desired: []Desired{full("1", 42, 1, 0), full("9", 42, 1, 0)},
			actual:  []Actual{act("1", other, 1, 0), act("2", dept, 1, 0)},
			opts:    DiffOptions{Complete: true, Ignore: map[string]bool{"1": true, "2": true}},
			want:    []drift{{"9", []Kind{KindMissing}}},
			totals:  Totals{Desired: 1, KooDrive: 2, Ignored: 2, Drifted: 1, ByKind: map[Kind]int{KindMissing: 1}},
		},
		"drifts sorted numerically by user id": {
			desired: []Desired{{UserID: "100"}, {UserID: "20"}, {UserID: "3"}},
			want:    []drift{{"3", []Kind{KindMissing}}, {"20", []Kind{KindMissing}}, {"100", []Kind{KindMissing}}},
			totals:  Totals{Desired: 3, Drifted: 3, ByKind: map[Kind]int{KindMissing: 3}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			actual := map[string]Actual{}
			for _, a := range tc.actual {
				actual[a.UserID] = a
			}
			drifts, totals := Diff(tc.desired, actual, tc.opts)
			var got []drift
			for _, d := range drifts {
				got = append(got, drift{d.UserID, d.Kinds})
				if d.Has(KindMissing) != (d.Actual == nil) {
					t.Errorf("%s: Actual %v for kinds %v", d.UserID, d.Actual, d.Kinds)
				}
				if d.Desired == nil && !d.Has(KindUnexpected) {
					t.Errorf("%s: no Desired for kinds %v", d.UserID, d.Kinds)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("drift (-want +got):\n%s", diff)
			}
			want := tc.totals
			byKind := map[Kind]int{}
			for _, k := range Kinds {
				byKind[k] = want.ByKind[k]
			}
			want.ByKind = byKind
			if diff := cmp.Diff(want, totals); diff != "" {
				t.Errorf("totals (-want +got):\n%s", diff)
			}
		})
	}
}
