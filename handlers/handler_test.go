package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// call is one KooDrive call a handler made: the method and path as
// Result.Calls names them, the user, and the JSON body as kdapi would send
// it.
type call struct {
	Op     string
	UserID string
	Body   string
}

// usersFunc is a function-type fake of handlers.Users: every method hands
// its call to the function, which answers for it (GET's user, or nil).
type usersFunc func(ctx context.Context, c call) (*kdapi.User, error)

func (f usersFunc) CreateUser(ctx context.Context, body kdapi.CreateUserRequest) error {
	_, err := f(ctx, call{Op: "POST /users", UserID: body.UserID, Body: mustJSON(body)})
	return err
}

func (f usersFunc) UpdateUser(ctx context.Context, userID string, body kdapi.UpdateUserRequest) error {
	_, err := f(ctx, call{Op: "PUT /users/{userId}", UserID: userID, Body: mustJSON(body)})
	return err
}

func (f usersFunc) GetUser(ctx context.Context, userID string) (*kdapi.User, error) {
	return f(ctx, call{Op: "GET /users/{userId}", UserID: userID})
}

func (f usersFunc) DeleteUser(ctx context.Context, userID string) error {
	_, err := f(ctx, call{Op: "DELETE /users/{userId}", UserID: userID})
	return err
}

var (
	_ handlers.Users = usersFunc(nil)
	_ handlers.Users = (*kdapi.Client)(nil)
)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// recorder records the calls made through it and answers each with
// respond (success when respond is nil or returns nil, nil).
type recorder struct {
	mu      sync.Mutex
	calls   []call
	respond func(c call) (*kdapi.User, error)
}

func (r *recorder) users() usersFunc {
	return func(ctx context.Context, c call) (*kdapi.User, error) {
		r.mu.Lock()
		r.calls = append(r.calls, c)
		r.mu.Unlock()
		if ctx == nil {
			panic("nil context")
		}
		if r.respond == nil {
			return nil, nil
		}
		return r.respond(c)
	}
}

// observed is one Observe report.
type observed struct {
	Op  handlers.Op
	Err error
}

// Errors KooDrive may answer with, as kdapi classifies them.
var (
	errExists = &kdapi.APIError{HTTPStatus: 400, Code: "31084", Msg: "user already exists", Method: "POST",
		Path: "/koodrive/ose/v1/users", Class: kdapi.ClassAlreadyExists}
	errConflict = &kdapi.APIError{HTTPStatus: 409, Msg: "conflict", Method: "POST",
		Path: "/koodrive/ose/v1/users", Class: kdapi.ClassAlreadyExists}
	errUnknownCode = &kdapi.APIError{HTTPStatus: 400, Code: "31999", Msg: "something", Method: "POST",
		Path: "/koodrive/ose/v1/users", Class: kdapi.ClassPermanent}
	errNotFound = &kdapi.APIError{HTTPStatus: 404, Code: "31004", Msg: "user does not exist", Method: "GET",
		Path: "/koodrive/ose/v1/users/" + testUser, Class: kdapi.ClassNotFound}
	errUnavailable = &kdapi.APIError{HTTPStatus: 503, Msg: "busy", Method: "POST", Path: "/koodrive/ose/v1/users",
		RetryAfter: 2 * time.Second, Class: kdapi.ClassRetryable}
	errRateLimited = &kdapi.APIError{HTTPStatus: 429, Method: "GET", Path: "/koodrive/ose/v1/users/" + testUser,
		Class: kdapi.ClassRetryable}
	errAuth      = &kdapi.APIError{HTTPStatus: 401, Msg: "bad token", Method: "POST", Path: "/koodrive/ose/v1/users", Class: kdapi.ClassAuth}
	errTransport = &kdapi.TransportError{Method: "POST", Path: "/koodrive/ose/v1/users", Err: io.ErrUnexpectedEOF}
	errForbidden = &kdapi.APIError{HTTPStatus: 400, Code: "31010", Msg: "role not allowed", Method: "PUT",
		Path: "/koodrive/ose/v1/users/" + testUser, Class: kdapi.ClassPermanent}
)

// answer answers by operation; operations not listed succeed.
func answer(byOp map[string]error, user *kdapi.User) func(c call) (*kdapi.User, error) {
	return func(c call) (*kdapi.User, error) {
		if err := byOp[c.Op]; err != nil {
			return nil, err
		}
		if c.Op == "GET /users/{userId}" {
			return user, nil
		}
		return nil, nil
	}
}

func event(a handlers.Action, f func(*handlers.Event)) *handlers.Event {
	ev := &handlers.Event{ID: testID, Source: "hris/workday", Type: handlers.TypePrefix + string(a), Action: a, UserID: testUser}
	if f != nil {
		f(ev)
	}
	return ev
}

const (
	opPost   = "POST /users"
	opPut    = "PUT /users/{userId}"
	opGet    = "GET /users/{userId}"
	opDelete = "DELETE /users/{userId}"
)

func createBody(info string) string {
	if info == "" {
		return `{"userId":"` + testUser + `"}`
	}
	return `{"userId":"` + testUser + `","modifyUserInfoReq":` + info + `}`
}

func TestApply(t *testing.T) {
	t.Parallel()
	const dept = int64(1243693141656107521)
	deptRole := func(ev *handlers.Event) { ev.DeptID, ev.Role = kdapi.Ptr(dept), kdapi.Ptr(1) }
	existing := &kdapi.User{UserID: testUser, Status: 1}
	state := func(dept *int64, role, status *int) handlers.State {
		return handlers.State{Exists: true, DeptID: dept, Role: role, Status: status}
	}
	dr := func(ev *handlers.Event) { ev.DeptID = kdapi.Ptr(int64(7)) }
	body7 := createBody(`{"deptId":"7","role":"1"}`)
	tests := map[string]struct {
		ev         *handlers.Event
		hardDelete bool
		// defaultDept and defaultRole configure the handler.
		defaultDept *int64
		defaultRole *int
		respond     func(c call) (*kdapi.User, error)
		wantCalls   []call
		wantNote    bool
		wantNoop    bool
		wantState   handlers.State
		// wantErr is matched with errors.Is; wantClass is the error's
		// kdapi class.
		wantErr   error
		wantClass kdapi.Class
	}{
		"hired: POST with deptId and role as strings": {
			ev:        event(handlers.Hired, deptRole),
			wantCalls: []call{{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)}},
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
		},
		"hired: role 0 is sent": {
			ev:        event(handlers.Hired, func(ev *handlers.Event) { ev.DeptID, ev.Role = kdapi.Ptr(int64(7)), kdapi.Ptr(0) }),
			wantCalls: []call{{opPost, testUser, createBody(`{"deptId":"7","role":"0"}`)}},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(0), kdapi.Ptr(0)),
		},
		"hired: without role → common user": {
			ev:        event(handlers.Hired, dr),
			wantCalls: []call{{opPost, testUser, body7}},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(0)),
		},
		"hired: without deptId or role → the defaults": {
			ev:          event(handlers.Hired, nil),
			defaultDept: kdapi.Ptr(int64(99)),
			defaultRole: kdapi.Ptr(5),
			wantCalls:   []call{{opPost, testUser, createBody(`{"deptId":"99","role":"5"}`)}},
			wantState:   state(kdapi.Ptr(int64(99)), kdapi.Ptr(5), kdapi.Ptr(0)),
		},
		"hired: the event's deptId and role win over the defaults": {
			ev:          event(handlers.Hired, deptRole),
			defaultDept: kdapi.Ptr(int64(99)),
			defaultRole: kdapi.Ptr(5),
			wantCalls:   []call{{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)}},
			wantState:   state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
		},
		"hired: without deptId and no default → bad input, no call": {
			ev:      event(handlers.Hired, func(ev *handlers.Event) { ev.Role = kdapi.Ptr(1) }),
			wantErr: &handlers.InputError{}, wantClass: kdapi.ClassPermanent,
		},
		"hired: already exists without deptId → PUT with the defaults, as a create would": {
			ev:          event(handlers.Hired, nil),
			defaultDept: kdapi.Ptr(int64(99)),
			respond:     answer(map[string]error{opPost: errExists}, nil),
			wantCalls: []call{
				{opPost, testUser, createBody(`{"deptId":"99","role":"1"}`)},
				{opPut, testUser, `{"deptId":99,"role":1,"status":0}`},
			},
			wantNote:  true,
			wantState: state(kdapi.Ptr(int64(99)), kdapi.Ptr(1), kdapi.Ptr(0)),
		},
		"hired: status 0 needs no PUT": {
			ev:        event(handlers.Hired, func(ev *handlers.Event) { deptRole(ev); ev.Status = kdapi.Ptr(0) }),
			wantCalls: []call{{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)}},
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
		},
		"hired: status 1 is POST then PUT status 1": {
			ev: event(handlers.Hired, func(ev *handlers.Event) { deptRole(ev); ev.Status = kdapi.Ptr(1) }),
			wantCalls: []call{
				{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)},
				{opPut, testUser, `{"status":1}`},
			},
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(1)),
		},
		"hired: status 1, the PUT fails": {
			ev:      event(handlers.Hired, func(ev *handlers.Event) { dr(ev); ev.Status = kdapi.Ptr(1) }),
			respond: answer(map[string]error{opPut: errUnavailable}, nil),
			wantCalls: []call{
				{opPost, testUser, body7},
				{opPut, testUser, `{"status":1}`},
			},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(1)),
			wantErr:   errUnavailable, wantClass: kdapi.ClassRetryable,
		},
		"hired: already exists (code) → PUT deptId, role and status 0": {
			ev:      event(handlers.Hired, deptRole),
			respond: answer(map[string]error{opPost: errExists}, nil),
			wantCalls: []call{
				{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)},
				{opPut, testUser, `{"deptId":1243693141656107521,"role":1,"status":0}`},
			},
			wantNote:  true,
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
		},
		"hired: already exists (409) with status 1 → one PUT with status 1": {
			ev:      event(handlers.Hired, func(ev *handlers.Event) { dr(ev); ev.Status = kdapi.Ptr(1) }),
			respond: answer(map[string]error{opPost: errConflict}, nil),
			wantCalls: []call{
				{opPost, testUser, body7},
				{opPut, testUser, `{"deptId":7,"role":1,"status":1}`},
			},
			wantNote:  true,
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(1)),
		},
		"hired: already exists, the PUT fails": {
			ev:      event(handlers.Hired, deptRole),
			respond: answer(map[string]error{opPost: errExists, opPut: errForbidden}, nil),
			wantCalls: []call{
				{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)},
				{opPut, testUser, `{"deptId":1243693141656107521,"role":1,"status":0}`},
			},
			wantNote:  true,
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errForbidden, wantClass: kdapi.ClassPermanent,
		},
		"hired: unknown permanent failure, GET finds the user → PUT (upsert without codes)": {
			ev:      event(handlers.Hired, deptRole),
			respond: answer(map[string]error{opPost: errUnknownCode}, existing),
			wantCalls: []call{
				{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)},
				{opGet, testUser, ""},
				{opPut, testUser, `{"deptId":1243693141656107521,"role":1,"status":0}`},
			},
			wantNote:  true,
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
		},
		"hired: unknown permanent failure, GET says not found → the create error": {
			ev:      event(handlers.Hired, deptRole),
			respond: answer(map[string]error{opPost: errUnknownCode, opGet: errNotFound}, nil),
			wantCalls: []call{
				{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)},
				{opGet, testUser, ""},
			},
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errUnknownCode, wantClass: kdapi.ClassPermanent,
		},
		"hired: unknown permanent failure, GET answers no user → the create error": {
			ev:        event(handlers.Hired, dr),
			respond:   answer(map[string]error{opPost: errUnknownCode}, nil),
			wantCalls: []call{{opPost, testUser, body7}, {opGet, testUser, ""}},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errUnknownCode, wantClass: kdapi.ClassPermanent,
		},
		"hired: create not found (department) and GET not found → the create error": {
			ev:        event(handlers.Hired, deptRole),
			respond:   answer(map[string]error{opPost: errNotFound, opGet: errNotFound}, nil),
			wantCalls: []call{{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)}, {opGet, testUser, ""}},
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errNotFound, wantClass: kdapi.ClassNotFound,
		},
		"hired: create retryable → returned without GET": {
			ev:        event(handlers.Hired, deptRole),
			respond:   answer(map[string]error{opPost: errUnavailable}, existing),
			wantCalls: []call{{opPost, testUser, createBody(`{"deptId":"1243693141656107521","role":"1"}`)}},
			wantState: state(kdapi.Ptr(dept), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errUnavailable, wantClass: kdapi.ClassRetryable,
		},
		"hired: create transport error → returned without GET": {
			ev:        event(handlers.Hired, dr),
			respond:   answer(map[string]error{opPost: errTransport}, existing),
			wantCalls: []call{{opPost, testUser, body7}},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errTransport, wantClass: kdapi.ClassRetryable,
		},
		"hired: create auth failure → returned without GET": {
			ev:        event(handlers.Hired, dr),
			respond:   answer(map[string]error{opPost: errAuth}, existing),
			wantCalls: []call{{opPost, testUser, body7}},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errAuth, wantClass: kdapi.ClassAuth,
		},
		"hired: GET retryable after an unknown create failure → retryable": {
			ev:        event(handlers.Hired, dr),
			respond:   answer(map[string]error{opPost: errUnknownCode, opGet: errRateLimited}, nil),
			wantCalls: []call{{opPost, testUser, body7}, {opGet, testUser, ""}},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   errRateLimited, wantClass: kdapi.ClassRetryable,
		},
		"hired: GET transport error after an unknown create failure → retryable": {
			ev:        event(handlers.Hired, dr),
			respond:   answer(map[string]error{opPost: errUnknownCode, opGet: errTransport}, nil),
			wantCalls: []call{{opPost, testUser, body7}, {opGet, testUser, ""}},
			wantState: state(kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(0)),
			wantErr:   kdapi.ErrRetryable, wantClass: kdapi.ClassRetryable,
		},
		"changed: PUT with exactly the fields present, status 0 sent": {
			ev: event(handlers.Changed, func(ev *handlers.Event) {
				ev.DeptID, ev.Status = kdapi.Ptr(int64(9007199254740993)), kdapi.Ptr(0)
			}),
			wantCalls: []call{{opPut, testUser, `{"deptId":9007199254740993,"status":0}`}},
			wantState: state(kdapi.Ptr(int64(9007199254740993)), nil, kdapi.Ptr(0)),
		},
		"changed: role 0 only": {
			ev:        event(handlers.Changed, func(ev *handlers.Event) { ev.Role = kdapi.Ptr(0) }),
			wantCalls: []call{{opPut, testUser, `{"role":0}`}},
			wantState: state(nil, kdapi.Ptr(0), nil),
		},
		"changed: all fields": {
			ev: event(handlers.Changed, func(ev *handlers.Event) {
				ev.DeptID, ev.Role, ev.Status = kdapi.Ptr(int64(5)), kdapi.Ptr(5), kdapi.Ptr(1)
			}),
			wantCalls: []call{{opPut, testUser, `{"deptId":5,"role":5,"status":1}`}},
			wantState: state(kdapi.Ptr(int64(5)), kdapi.Ptr(5), kdapi.Ptr(1)),
		},
		"changed: no fields → Noop, no call": {
			ev:        event(handlers.Changed, func(ev *handlers.Event) { ev.Name = "Sam" }),
			wantNoop:  true,
			wantNote:  true,
			wantState: handlers.State{Exists: true},
		},
		"changed: user not found → the error": {
			ev:        event(handlers.Changed, func(ev *handlers.Event) { ev.Role = kdapi.Ptr(1) }),
			respond:   answer(map[string]error{opPut: errNotFound}, nil),
			wantCalls: []call{{opPut, testUser, `{"role":1}`}},
			wantState: state(nil, kdapi.Ptr(1), nil),
			wantErr:   kdapi.ErrNotFound, wantClass: kdapi.ClassNotFound,
		},
		"disabled: PUT status 1": {
			ev:        event(handlers.Disabled, func(ev *handlers.Event) { ev.Role = kdapi.Ptr(2) }),
			wantCalls: []call{{opPut, testUser, `{"status":1}`}},
			wantState: state(nil, nil, kdapi.Ptr(1)),
		},
		"enabled: PUT status 0": {
			ev:        event(handlers.Enabled, func(ev *handlers.Event) { ev.Status = kdapi.Ptr(1) }),
			wantCalls: []call{{opPut, testUser, `{"status":0}`}},
			wantState: state(nil, nil, kdapi.Ptr(0)),
		},
		"enabled: retryable failure → the error": {
			ev:        event(handlers.Enabled, nil),
			respond:   answer(map[string]error{opPut: errTransport}, nil),
			wantCalls: []call{{opPut, testUser, `{"status":0}`}},
			wantState: state(nil, nil, kdapi.Ptr(0)),
			wantErr:   errTransport, wantClass: kdapi.ClassRetryable,
		},
		"deleted with HardDelete: DELETE": {
			ev:         event(handlers.Deleted, nil),
			hardDelete: true,
			wantCalls:  []call{{opDelete, testUser, ""}},
			wantState:  handlers.State{},
		},
		"deleted with HardDelete: not found is already absent": {
			ev:         event(handlers.Deleted, nil),
			hardDelete: true,
			respond:    answer(map[string]error{opDelete: errNotFound}, nil),
			wantCalls:  []call{{opDelete, testUser, ""}},
			wantNote:   true,
			wantState:  handlers.State{},
		},
		"deleted with HardDelete: retryable → the error": {
			ev:         event(handlers.Deleted, nil),
			hardDelete: true,
			respond:    answer(map[string]error{opDelete: errUnavailable}, nil),
			wantCalls:  []call{{opDelete, testUser, ""}},
			wantState:  handlers.State{},
			wantErr:    errUnavailable, wantClass: kdapi.ClassRetryable,
		},
		"deleted without HardDelete: PUT status 1 and a note": {
			ev:        event(handlers.Deleted, nil),
			wantCalls: []call{{opPut, testUser, `{"status":1}`}},
			wantNote:  true,
			wantState: state(nil, nil, kdapi.Ptr(1)),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{respond: tc.respond}
			var obs []observed
			h := &handlers.Handler{
				Users:         rec.users(),
				HardDelete:    tc.hardDelete,
				DefaultDeptID: tc.defaultDept,
				DefaultRole:   tc.defaultRole,
				Observe: func(op handlers.Op, d time.Duration, err error) {
					if d < 0 {
						t.Errorf("Observe(%s): negative duration %v", op, d)
					}
					obs = append(obs, observed{op, err})
				},
			}
			res, err := h.Apply(t.Context(), tc.ev, nil)

			if diff := cmp.Diff(tc.wantCalls, rec.calls); diff != "" {
				t.Errorf("calls mismatch (-want +got):\n%s", diff)
			}
			var ops []string
			for _, c := range rec.calls {
				ops = append(ops, c.Op)
			}
			if diff := cmp.Diff(ops, res.Calls); diff != "" {
				t.Errorf("Result.Calls differs from the calls made (-made +reported):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantState, res.State); diff != "" {
				t.Errorf("State mismatch (-want +got):\n%s", diff)
			}
			if res.Noop != tc.wantNoop {
				t.Errorf("Noop = %v, want %v", res.Noop, tc.wantNoop)
			}
			if (res.Note != "") != tc.wantNote {
				t.Errorf("Note = %q, want a note: %v", res.Note, tc.wantNote)
			}

			var ie *handlers.InputError
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("Apply: %v", err)
			case errors.As(tc.wantErr, &ie):
				if !errors.As(err, &ie) || ie.Field != "data.deptId" {
					t.Errorf("Apply error = %v, want bad input naming data.deptId", err)
				}
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("Apply error = %v, want %v", err, tc.wantErr)
			case tc.wantErr != nil:
				if class, _ := kdapi.ClassOf(err); class != tc.wantClass {
					t.Errorf("Apply error %v has class %v, want %v", err, class, tc.wantClass)
				}
			}

			// Observe hears of every call once, with its answer.
			if len(obs) != len(rec.calls) {
				t.Fatalf("Observe called %d times for %d calls: %v", len(obs), len(rec.calls), obs)
			}
			opOf := map[string]handlers.Op{opPost: handlers.OpCreate, opPut: handlers.OpUpdate, opGet: handlers.OpGet, opDelete: handlers.OpDelete}
			for i, c := range rec.calls {
				var wantErr error
				if tc.respond != nil {
					_, wantErr = tc.respond(c)
				}
				if obs[i].Op != opOf[c.Op] || obs[i].Err != wantErr {
					t.Errorf("Observe #%d = %s, %v; want %s, %v", i, obs[i].Op, obs[i].Err, opOf[c.Op], wantErr)
				}
			}
		})
	}
}

// TestApplyUnknownAction checks that an event Decode would never return is
// refused as bad input, without a call.
func TestApplyUnknownAction(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h := &handlers.Handler{Users: rec.users()}
	_, err := h.Apply(t.Context(), event(handlers.Unknown, nil), nil)
	var ie *handlers.InputError
	if !errors.As(err, &ie) || ie.Reason != handlers.ReasonUnknownType {
		t.Errorf("Apply(unknown) error = %v, want an unknown_type *InputError", err)
	}
	if len(rec.calls) != 0 {
		t.Errorf("calls made: %v", rec.calls)
	}
}

// TestApplyCanceledAfterCreate checks that a create failing because the
// context ended is not followed by a GET.
func TestApplyCanceledAfterCreate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	rec := &recorder{respond: func(c call) (*kdapi.User, error) {
		cancel()
		return nil, fmt.Errorf("kdapi: POST /users: %w", context.Canceled)
	}}
	h := &handlers.Handler{Users: rec.users(), DefaultDeptID: kdapi.Ptr(int64(1))}
	_, err := h.Apply(ctx, event(handlers.Hired, nil), nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply error = %v, want context.Canceled", err)
	}
	if len(rec.calls) != 1 {
		t.Errorf("calls = %v, want the create alone", rec.calls)
	}
}

func TestStateMerge(t *testing.T) {
	t.Parallel()
	full := handlers.State{Exists: true, DeptID: kdapi.Ptr(int64(7)), Role: kdapi.Ptr(1), Status: kdapi.Ptr(0)}
	tests := map[string]struct {
		s, next, want handlers.State
	}{
		"onto nothing": {handlers.State{}, full, full},
		"partial over full": {full, handlers.State{Exists: true, Status: kdapi.Ptr(1)},
			handlers.State{Exists: true, DeptID: kdapi.Ptr(int64(7)), Role: kdapi.Ptr(1), Status: kdapi.Ptr(1)}},
		"zero values are values": {full, handlers.State{Exists: true, Role: kdapi.Ptr(0)},
			handlers.State{Exists: true, DeptID: kdapi.Ptr(int64(7)), Role: kdapi.Ptr(0), Status: kdapi.Ptr(0)}},
		"deleted clears":       {full, handlers.State{}, handlers.State{}},
		"recreate after clear": {handlers.State{}, handlers.State{Exists: true, Status: kdapi.Ptr(0)}, handlers.State{Exists: true, Status: kdapi.Ptr(0)}},
		"exists with no field": {full, handlers.State{Exists: true}, full},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, tc.s.Merge(tc.next)); diff != "" {
				t.Errorf("Merge mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// kdUser is what the in-memory KooDrive holds for a user.
type kdUser struct {
	DeptID int64
	Role   int
	Status int
}

// memKooDrive is a small stateful KooDrive. When existsCode is false a
// duplicate create fails with a code kdapi does not know (a permanent
// error), as an unconfigured client would see it.
type memKooDrive struct {
	users      map[string]kdUser
	existsCode bool
	// lose, when set, is asked before answering each write: true performs
	// the write but answers with a retryable error, as when the response
	// is lost on the way back.
	lose func(c call) bool
}

func (m *memKooDrive) fake() usersFunc {
	return func(_ context.Context, c call) (*kdapi.User, error) {
		u, ok := m.users[c.UserID]
		var err error
		switch c.Op {
		case opPost:
			if ok {
				if m.existsCode {
					return nil, errExists
				}
				return nil, errUnknownCode
			}
			var req kdapi.CreateUserRequest
			mustUnmarshal(c.Body, &req)
			u = kdUser{Role: kdapi.RoleCommonUser}
			if info := req.ModifyUserInfoReq; info != nil {
				if info.DeptID != "" {
					u.DeptID, err = strconv.ParseInt(info.DeptID, 10, 64)
				}
				if info.Role != "" && err == nil {
					u.Role, err = strconv.Atoi(info.Role)
				}
			}
			if err != nil {
				panic(err)
			}
			m.users[c.UserID] = u
		case opPut:
			if !ok {
				return nil, errNotFound
			}
			var req kdapi.UpdateUserRequest
			mustUnmarshal(c.Body, &req)
			if req.DeptID != nil {
				u.DeptID = *req.DeptID
			}
			if req.Role != nil {
				u.Role = *req.Role
			}
			if req.Status != nil {
				u.Status = *req.Status
			}
			m.users[c.UserID] = u
		case opGet:
			if !ok {
				return nil, errNotFound
			}
			return &kdapi.User{UserID: kdapi.FlexString(c.UserID), Role: kdapi.FlexInt64(u.Role), Status: kdapi.FlexInt64(u.Status)}, nil
		case opDelete:
			if !ok {
				return nil, errNotFound
			}
			delete(m.users, c.UserID)
		}
		if m.lose != nil && m.lose(c) {
			return nil, errTransport
		}
		return nil, nil
	}
}

func mustUnmarshal(s string, v any) {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		panic(err)
	}
}

// idempotencyScript is a user's life: hire, changes, disable, enable,
// rehire, deletion.
func idempotencyScript() []*handlers.Event {
	return []*handlers.Event{
		event(handlers.Hired, func(ev *handlers.Event) { ev.DeptID, ev.Role = kdapi.Ptr(int64(10)), kdapi.Ptr(1) }),
		event(handlers.Changed, func(ev *handlers.Event) { ev.DeptID = kdapi.Ptr(int64(11)) }),
		event(handlers.Changed, func(ev *handlers.Event) { ev.Role, ev.Status = kdapi.Ptr(0), kdapi.Ptr(1) }),
		event(handlers.Changed, nil),
		event(handlers.Enabled, nil),
		event(handlers.Disabled, nil),
		event(handlers.Hired, func(ev *handlers.Event) { ev.Role = kdapi.Ptr(5) }),
		event(handlers.Hired, func(ev *handlers.Event) { ev.DeptID, ev.Status = kdapi.Ptr(int64(12)), kdapi.Ptr(1) }),
		event(handlers.Deleted, nil),
		event(handlers.Enabled, nil),
		event(handlers.Deleted, nil),
		event(handlers.Hired, func(ev *handlers.Event) { ev.DeptID, ev.Role = kdapi.Ptr(int64(13)), kdapi.Ptr(3) }),
	}
}

// TestApplyIdempotent applies each event of a script once, twice, and with
// lost responses retried, against the in-memory KooDrive: the state after
// every event must be the same, and must agree with Result.State merged.
func TestApplyIdempotent(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		hardDelete bool
		existsCode bool
	}{
		"hard deletes, already-exists code known":  {hardDelete: true, existsCode: true},
		"hard deletes, unknown code (GET decides)": {hardDelete: true},
		"soft deletes, already-exists code known":  {existsCode: true},
		"soft deletes, unknown code (GET decides)": {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			once := &memKooDrive{users: map[string]kdUser{}, existsCode: tc.existsCode}
			twice := &memKooDrive{users: map[string]kdUser{}, existsCode: tc.existsCode}
			// lossy loses the response of every first write of an event.
			lossy := &memKooDrive{users: map[string]kdUser{}, existsCode: tc.existsCode}
			lost := false
			lossy.lose = func(c call) bool {
				if !lost && c.Op != opGet {
					lost = true
					return true
				}
				return false
			}
			apply := func(m *memKooDrive, ev *handlers.Event) (handlers.Result, error) {
				h := &handlers.Handler{Users: m.fake(), HardDelete: tc.hardDelete, DefaultDeptID: kdapi.Ptr(int64(99))}
				return h.Apply(t.Context(), ev, nil)
			}
			var merged handlers.State
			for i, ev := range idempotencyScript() {
				res, err1 := apply(once, ev)
				if err1 == nil && !res.Noop {
					merged = merged.Merge(res.State)
				}
				for range 2 {
					_, _ = apply(twice, ev) // compared by state below
				}
				lost = false
				_, err := apply(lossy, ev)
				for attempts := 1; err != nil && errors.Is(err, kdapi.ErrRetryable); attempts++ {
					if attempts > 3 {
						t.Fatalf("event %d (%s): still failing after %d attempts: %v", i, ev.Action, attempts, err)
					}
					_, err = apply(lossy, ev)
				}
				if (err == nil) != (err1 == nil) {
					t.Errorf("event %d (%s): once: %v; with a lost response and retries: %v", i, ev.Action, err1, err)
				}
				if diff := cmp.Diff(once.users, twice.users); diff != "" {
					t.Errorf("event %d (%s): applied twice differs from once (-once +twice):\n%s", i, ev.Action, diff)
				}
				if diff := cmp.Diff(once.users, lossy.users); diff != "" {
					t.Errorf("event %d (%s): retried after a lost response differs from once (-once +retried):\n%s", i, ev.Action, diff)
				}
				checkState(t, i, ev, merged, once.users)
			}
			if len(once.users) != 1 {
				t.Errorf("final users = %v, want the one rehired", once.users)
			}
		})
	}
}

// checkState checks that merged results describe KooDrive's state.
func checkState(t *testing.T, i int, ev *handlers.Event, s handlers.State, users map[string]kdUser) {
	t.Helper()
	u, ok := users[testUser]
	if s.Exists != ok {
		t.Errorf("event %d (%s): State.Exists = %v, KooDrive has the user: %v", i, ev.Action, s.Exists, ok)
		return
	}
	if s.DeptID != nil && *s.DeptID != u.DeptID || s.Role != nil && *s.Role != u.Role || s.Status != nil && *s.Status != u.Status {
		t.Errorf("event %d (%s): State %s differs from KooDrive's %+v", i, ev.Action, mustJSON(s), u)
	}
}

// TestApplyStateIsACopy checks that Result.State does not share memory
// with the event or the handler's defaults: the consumer keeps States in
// its per-user records, which must neither change with nor pin the event.
func TestApplyStateIsACopy(t *testing.T) {
	t.Parallel()
	for _, a := range handlers.Actions {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			ev := event(a, func(ev *handlers.Event) {
				ev.DeptID, ev.Role, ev.Status = kdapi.Ptr(int64(7)), kdapi.Ptr(1), kdapi.Ptr(1)
			})
			def := kdapi.Ptr(int64(99))
			h := &handlers.Handler{Users: (&recorder{}).users(), DefaultDeptID: def}
			res, err := h.Apply(t.Context(), ev, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := mustJSON(res.State)
			*ev.DeptID, *ev.Role, *ev.Status, *def = 8, 2, 0, 100
			if after := mustJSON(res.State); after != before {
				t.Errorf("State changed with the event: %s, then %s", before, after)
			}
		})
	}
}
