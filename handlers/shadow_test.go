package handlers_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// TestShadow: the decorator makes reads only, returns the writes it
// planned and the fields they change in the Result, and answers as
// KooDrive would from the state it plans from (known, else a read).
func TestShadow(t *testing.T) {
	t.Parallel()
	dept, role, enabled, disabled := int64(7), 1, kdapi.StatusEnabled, kdapi.StatusDisabled
	existing := &kdapi.User{UserID: testUser, DeptID: "7", Role: 1, Status: 0}
	tests := map[string]struct {
		ev       *handlers.Event
		known    *handlers.State
		user     *kdapi.User // KooDrive's answer to a read; nil: not found
		reads    []string
		plan     []handlers.PlannedCall
		diff     []handlers.FieldChange
		calls    []string
		wantNote string
	}{
		"hire of a new user": {
			ev:    event(handlers.Hired, func(ev *handlers.Event) { ev.DeptID = &dept }),
			reads: []string{opGet},
			plan:  []handlers.PlannedCall{{Method: "POST", Path: "/users", Body: []byte(createBody(`{"deptId":"7","role":"1"}`))}},
			diff: []handlers.FieldChange{{Field: "exists", From: false, To: true}, {Field: "deptId", From: nil, To: dept},
				{Field: "role", From: nil, To: role}, {Field: "status", From: nil, To: enabled}},
			calls: []string{opPost},
		},
		"hire of a user who exists: refused create, then PUT": {
			ev:    event(handlers.Hired, func(ev *handlers.Event) { ev.DeptID = &dept }),
			user:  existing,
			reads: []string{opGet},
			plan: []handlers.PlannedCall{
				{Method: "POST", Path: "/users", Body: []byte(createBody(`{"deptId":"7","role":"1"}`)), Refused: "user already exists"},
				{Method: "PUT", Path: "/users/" + testUser, Body: []byte(`{"deptId":7,"role":1,"status":0}`)},
			},
			calls:    []string{opPost, opPut},
			wantNote: "user existed: attributes applied with PUT",
		},
		"disable from the known state: no read": {
			ev:    event(handlers.Disabled, nil),
			known: &handlers.State{Exists: true, DeptID: &dept, Role: &role, Status: &enabled},
			plan:  []handlers.PlannedCall{{Method: "PUT", Path: "/users/" + testUser, Body: []byte(`{"status":1}`)}},
			diff:  []handlers.FieldChange{{Field: "status", From: enabled, To: disabled}},
			calls: []string{opPut},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{respond: func(c call) (*kdapi.User, error) {
				if c.Op != opGet {
					t.Errorf("shadow made a write: %s", c.Op)
				}
				if tc.user == nil {
					return nil, errNotFound
				}
				return tc.user, nil
			}}
			var observed []handlers.Op
			s := handlers.Shadow{Handler: &handlers.Handler{Users: rec.users(),
				Observe: func(op handlers.Op, _ time.Duration, _ error) { observed = append(observed, op) }}}
			res, err := s.Apply(t.Context(), tc.ev, tc.known)
			if err != nil {
				t.Fatal(err)
			}
			var reads []string
			for _, c := range rec.calls {
				reads = append(reads, c.Op)
			}
			if diff := cmp.Diff(tc.reads, reads); diff != "" {
				t.Errorf("reads (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.plan, res.Plan); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.diff, res.Diff); diff != "" {
				t.Errorf("diff (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.calls, res.Calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if res.Note != tc.wantNote {
				t.Errorf("note %q, want %q", res.Note, tc.wantNote)
			}
			if len(observed) != len(res.Calls) {
				t.Errorf("observed %v for calls %v", observed, res.Calls)
			}
		})
	}
}
