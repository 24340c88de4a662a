package reconcile

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	// want is the decoded repair event, or the skip.
	type want struct {
		action handlers.Action
		dept   *int64
		role   *int
		status *int
		skip   string // a part of Repair.Skip
	}
	tests := map[string]struct {
		drift Drift
		opts  PlanOptions
		want  want
	}{
		"missing: hired with every desired field": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindMissing}, Desired: &Desired{UserID: "1001", DeptID: i64(1319678187126486147), Role: iptr(5), Status: iptr(0)}},
			want:  want{action: handlers.Hired, dept: i64(1319678187126486147), role: iptr(5), status: iptr(0)},
		},
		"missing with only a department: hired with it": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindMissing}, Desired: &Desired{UserID: "1001", DeptID: i64(42)}},
			want:  want{action: handlers.Hired, dept: i64(42)},
		},
		"missing without a department: no repair": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindMissing}, Desired: &Desired{UserID: "1001", Role: iptr(1)}},
			want:  want{skip: "no department known"},
		},
		"differing fields: changed with those only": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindDept, KindStatus},
				Desired: &Desired{UserID: "1001", DeptID: i64(42), Role: iptr(1), Status: iptr(1)},
				Actual:  &Actual{UserID: "1001", DeptID: "43", Role: 1, Status: 0}},
			want: want{action: handlers.Changed, dept: i64(42), status: iptr(1)},
		},
		"role only": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindRole},
				Desired: &Desired{UserID: "1001", DeptID: i64(42), Role: iptr(0), Status: iptr(0)},
				Actual:  &Actual{UserID: "1001", DeptID: "42", Role: 1, Status: 0}},
			want: want{action: handlers.Changed, role: iptr(0)},
		},
		"unexpected: disabled, never deleted": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindUnexpected}, Actual: &Actual{UserID: "1001", DeptID: "42", Role: 1}},
			want:  want{action: handlers.Disabled},
		},
		"hard-deleted and back: disabled": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindUnexpected}, Desired: &Desired{UserID: "1001", Absent: true, Seq: 9}, Actual: &Actual{UserID: "1001", DeptID: "42", Role: 0}},
			want:  want{action: handlers.Disabled},
		},
		"unexpected administrator: reported only": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindUnexpected}, Actual: &Actual{UserID: "1001", DeptID: "42", Role: kdapi.RoleSystemAdmin}},
			want:  want{skip: "administrator (role 2)"},
		},
		"unexpected administrator with DisableAdmins: disabled": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindUnexpected}, Actual: &Actual{UserID: "1001", DeptID: "42", Role: kdapi.RoleCloudAdmin}},
			opts:  PlanOptions{DisableAdmins: true},
			want:  want{action: handlers.Disabled},
		},
		"protected user: never repaired": {
			drift: Drift{UserID: "1001", Kinds: []Kind{KindStatus}, Desired: &Desired{UserID: "1001", Status: iptr(1)}, Actual: &Actual{UserID: "1001"}},
			opts:  PlanOptions{Protect: map[string]bool{"1001": true}},
			want:  want{skip: "protected"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := tc.opts
			o.RunID, o.Time = "run1", at
			drifts := []Drift{tc.drift}
			if err := Plan(drifts, o); err != nil {
				t.Fatal(err)
			}
			r := drifts[0].Repair
			if tc.want.skip != "" {
				if r.Action != "" || !strings.Contains(r.Skip, tc.want.skip) || r.Body() != nil {
					t.Fatalf("repair %+v, want a skip containing %q and no event", r, tc.want.skip)
				}
				return
			}
			if r.Skip != "" {
				t.Fatalf("skipped: %s", r.Skip)
			}
			if r.EventID != "reconcile:run1:1001" || r.Subject != "identity.employee."+string(tc.want.action)+".1001" {
				t.Errorf("id %q subject %q", r.EventID, r.Subject)
			}
			ev, err := (handlers.Decoder{}).Decode(r.Subject, nil, r.Body())
			if err != nil {
				t.Fatalf("the consumer's decoder refuses the repair: %v\n%s", err, r.Body())
			}
			got := want{action: ev.Action, dept: ev.DeptID, role: ev.Role, status: ev.Status}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("event (-want +got):\n%s\n%s", diff, r.Body())
			}
			if ev.ID != r.EventID || ev.Source != DefaultEventSource || !ev.Time.Equal(at) || ev.UserID != "1001" {
				t.Errorf("envelope: id %q source %q time %v user %q", ev.ID, ev.Source, ev.Time, ev.UserID)
			}
		})
	}
}

func TestPlanGuardAndOptions(t *testing.T) {
	t.Parallel()
	drifts := []Drift{{UserID: "7", Kinds: []Kind{KindStatus}, Desired: &Desired{UserID: "7", Status: iptr(1), Seq: 42}, Actual: &Actual{UserID: "7"}}}
	if err := Plan(drifts, PlanOptions{RunID: "r", SubjectPrefix: "hr.people", Source: "ops/test"}); err != nil {
		t.Fatal(err)
	}
	r := drifts[0].Repair
	if r.guard != 42 || r.Subject != "hr.people.changed.7" {
		t.Errorf("guard %d subject %q", r.guard, r.Subject)
	}
	if !strings.Contains(string(r.Body()), `"source":"ops/test"`) {
		t.Errorf("source not set: %s", r.Body())
	}
	for _, bad := range []string{"", "a.b", "a b", "x*"} {
		if err := Plan(nil, PlanOptions{RunID: bad}); err == nil {
			t.Errorf("run id %q accepted", bad)
		}
	}
}

func TestGuardSubject(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		prefix string
		tr     *jetstream.SubjectTransformConfig
		want   string
	}{
		"no transform":    {prefix: "identity.employee", want: "identity.employee.*.1001"},
		"other prefix":    {prefix: "hr", want: "hr.*.1001"},
		"empty transform": {prefix: "identity.employee", tr: &jetstream.SubjectTransformConfig{}, want: "identity.employee.*.1001"},
		"partitioned stream": {
			prefix: "identity.employee",
			tr:     &jetstream.SubjectTransformConfig{Source: "identity.employee.*.*", Destination: "identity.part.{{partition(8,1,2)}}.employee.{{wildcard(1)}}.{{wildcard(2)}}"},
			want:   "identity.part.*.employee.*.1001",
		},
		"partitioned, spaces in the mapping": {
			prefix: "identity.employee",
			tr:     &jetstream.SubjectTransformConfig{Source: "identity.employee.*.*", Destination: "identity.part.{{ partition(8, 2) }}.employee.{{ Wildcard(1) }}.{{wildcard( 2 )}}"},
			want:   "identity.part.*.employee.*.1001",
		},
		"transform of other subjects": {
			prefix: "identity.employee",
			tr:     &jetstream.SubjectTransformConfig{Source: "other.*.*", Destination: "x.{{wildcard(1)}}.{{wildcard(2)}}"},
			want:   "identity.employee.*.1001",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := GuardSubject(tc.prefix, "1001", tc.tr); got != tc.want {
				t.Errorf("GuardSubject = %q, want %q", got, tc.want)
			}
		})
	}
}
