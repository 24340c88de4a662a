package handlers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/handlers"
)

// TestDraftEncode: a draft encodes, in either content mode, into the event
// the consumer decodes; a mistake is reported before anything is sent.
func TestDraftEncode(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	dept, role, status := int64(1319678187126486147), 1, 1
	for name, tc := range map[string]struct {
		draft   handlers.Draft
		want    *handlers.Event
		wantErr string
	}{
		"structured": {
			draft: handlers.Draft{Action: handlers.Hired, UserID: "1001", DeptID: "1319678187126486147", Role: "1", Status: "1", ID: "e-1", Source: "ops", Time: at},
			want: &handlers.Event{ID: "e-1", Source: "ops", Type: "employee.hired", Subject: "1001", Time: at, Action: handlers.Hired,
				UserID: "1001", DeptID: &dept, Role: &role, Status: &status},
		},
		"binary": {
			draft: handlers.Draft{Action: handlers.Disabled, UserID: "1002", ID: "e-2", Source: "ops", Time: at, Binary: true},
			want:  &handlers.Event{ID: "e-2", Source: "ops", Type: "employee.disabled", Subject: "1002", Time: at, Action: handlers.Disabled, Binary: true, UserID: "1002"},
		},
		"no user":                   {draft: handlers.Draft{Action: handlers.Hired, Source: "ops"}, wantErr: "an action and a user"},
		"role not a number":         {draft: handlers.Draft{Action: handlers.Changed, UserID: "1001", Role: "admin", Source: "ops"}, wantErr: `role "admin": want a number`},
		"unknown action":            {draft: handlers.Draft{Action: "fired", UserID: "1001", Source: "ops"}, wantErr: "would be dead-lettered"},
		"hire without a department": {draft: handlers.Draft{Action: handlers.Hired, UserID: "1001", DeptID: "x", Source: "ops"}, wantErr: "would be dead-lettered"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, err := tc.draft.Encode("identity.employee")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "identity.employee." + string(tc.want.Action) + "." + tc.want.UserID; m.Subject != want {
				t.Errorf("subject %q, want %q", m.Subject, want)
			}
			ev, err := (handlers.Decoder{}).Decode(m.Subject, m.Header, m.Body)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ev); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(ev, m.Event); diff != "" {
				t.Errorf("Message.Event (-decoded +got):\n%s", diff)
			}
		})
	}
}

// TestMessageOf: a structured event from a file goes on the subject of its
// type and user, checked as the consumer will.
func TestMessageOf(t *testing.T) {
	t.Parallel()
	body := `{"specversion":"1.0","id":"e-9","source":"hris","type":"employee.enabled","subject":"1009","data":{"userId":"1009"}}`
	m, err := handlers.MessageOf("identity.employee", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "identity.employee.enabled.1009" || m.Event.ID != "e-9" || string(m.Body) != body {
		t.Errorf("got %q, event %+v", m.Subject, m.Event)
	}
	for name, bad := range map[string]string{
		"not JSON":      `{"specversion":`,
		"user mismatch": `{"specversion":"1.0","id":"e-9","source":"hris","type":"employee.enabled","subject":"1008","data":{"userId":"1009"}}`,
		"no type":       `{"specversion":"1.0","id":"e-9","source":"hris","data":{"userId":"1009"}}`,
	} {
		if _, err := handlers.MessageOf("identity.employee", []byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
