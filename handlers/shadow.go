package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/kdsync/kdsync/kdapi"
)

// PlannedCall is a write shadow mode would make: method, path and body,
// and Refused when KooDrive would refuse it (a create of a user that
// exists, which the active mode follows with a PUT).
type PlannedCall struct {
	Method  string          `json:"method"`
	Path    string          `json:"path"`
	Body    json.RawMessage `json:"body,omitempty"`
	Refused string          `json:"refused,omitempty"`
}

// FieldChange is one field a planned event would change in KooDrive.
type FieldChange struct {
	Field string `json:"field"` // exists, deptId, role, status
	From  any    `json:"from"`
	To    any    `json:"to"`
}

// plan collects, for one event in shadow mode, the writes that would be
// made and the state they would lead to.
type plan struct {
	mu     sync.Mutex
	known  bool // before is known (from kdsync's record or a read)
	before State
	after  State
	calls  []PlannedCall
}

// newPlan returns an empty plan. When state is non-nil it is taken as
// the user's state in KooDrive (shadow mode's record of the events it has
// planned so far); otherwise the first call reads it.
func newPlan(state *State) *plan {
	p := &plan{}
	if state != nil {
		p.known, p.before, p.after = true, *state, *state
	}
	return p
}

// diff lists the fields the plan would change.
func (p *plan) diff() []FieldChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []FieldChange
	b, a := p.before, p.after
	if b.Exists != a.Exists {
		out = append(out, FieldChange{"exists", b.Exists, a.Exists})
	}
	if !a.Exists {
		return out
	}
	add := func(field string, from, to any, differ bool) {
		if differ {
			out = append(out, FieldChange{field, from, to})
		}
	}
	add("deptId", deref(b.DeptID), deref(a.DeptID), !eqPtr(b.DeptID, a.DeptID))
	add("role", deref(b.Role), deref(a.Role), !eqPtr(b.Role, a.Role))
	add("status", deref(b.Status), deref(a.Status), !eqPtr(b.Status, a.Status))
	return out
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func eqPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// Shadow is a Handler decorator for shadow mode: it applies each event
// through Handler with KooDrive's writes planned instead of made, and
// returns the plan in the Result (Plan, Diff). Reads go to KooDrive for
// real; writes are answered as KooDrive would from the state the plan
// tracks: a create of an existing user is "already exists", an update of
// an absent one "not found". It makes no write at all.
type Shadow struct {
	Handler *Handler
}

// Apply plans ev's writes from known, the user's state as shadow mode's
// record has it (nil: read from KooDrive at the first call).
func (s Shadow) Apply(ctx context.Context, ev *Event, known *State) (Result, error) {
	p := newPlan(known)
	h := *s.Handler
	h.Users = planner{users: s.Handler.Users, plan: p}
	res, err := h.Apply(ctx, ev, known)
	res.Plan, res.Diff = p.calls, p.diff()
	return res, err
}

// planner is the Users a Shadow's Handler calls: it records writes in
// plan and reads through users.
type planner struct {
	users Users
	plan  *plan
}

// load makes sure the plan knows the user's state, reading it once.
func (s planner) load(ctx context.Context, userID string) error {
	p := s.plan
	p.mu.Lock()
	known := p.known
	p.mu.Unlock()
	if known {
		return nil
	}
	u, err := s.users.GetUser(ctx, userID)
	var st State
	switch {
	case err == nil:
		st = userState(u)
	case kdapiNotFound(err):
	default:
		return err
	}
	p.mu.Lock()
	p.known, p.before, p.after = true, st, st
	p.mu.Unlock()
	return nil
}

func userState(u *kdapi.User) State {
	st := State{Exists: true}
	if d, err := strconv.ParseInt(string(u.DeptID), 10, 64); err == nil {
		st.DeptID = &d
	}
	r, s := int(u.Role), int(u.Status)
	st.Role, st.Status = &r, &s
	return st
}

func kdapiNotFound(err error) bool {
	c, _ := kdapi.ClassOf(err)
	return c == kdapi.ClassNotFound
}

func shadowErr(class kdapi.Class, method, path, msg string) error {
	return &kdapi.APIError{HTTPStatus: http.StatusBadRequest, Code: "shadow", Msg: msg + " (shadow)", Method: method, Path: path, Class: class}
}

func (p *plan) record(method, path string, body any) {
	var raw json.RawMessage
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	p.calls = append(p.calls, PlannedCall{Method: method, Path: path, Body: raw})
}

// CreateUser records POST /users, or answers "already exists".
func (s planner) CreateUser(ctx context.Context, body kdapi.CreateUserRequest) error {
	p := s.plan
	if err := s.load(ctx, body.UserID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record(http.MethodPost, "/users", body)
	if p.after.Exists {
		p.calls[len(p.calls)-1].Refused = "user already exists"
		return shadowErr(kdapi.ClassAlreadyExists, http.MethodPost, "/users", "user already exists")
	}
	next := State{Exists: true, Status: intPtr(kdapi.StatusEnabled)}
	if body.ModifyUserInfoReq != nil {
		if d, err := strconv.ParseInt(body.ModifyUserInfoReq.DeptID, 10, 64); err == nil {
			next.DeptID = &d
		}
		if r, err := strconv.Atoi(body.ModifyUserInfoReq.Role); err == nil {
			next.Role = &r
		}
	}
	p.after = next
	return nil
}

// UpdateUser records PUT /users/{userId}, or answers "not found".
func (s planner) UpdateUser(ctx context.Context, userID string, body kdapi.UpdateUserRequest) error {
	p := s.plan
	if err := s.load(ctx, userID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	path := "/users/" + userID
	if !p.after.Exists {
		return shadowErr(kdapi.ClassNotFound, http.MethodPut, path, "user does not exist")
	}
	p.record(http.MethodPut, path, body)
	p.after = p.after.Merge(State{Exists: true, DeptID: body.DeptID, Role: body.Role, Status: body.Status})
	return nil
}

// GetUser answers from the plan's state.
func (s planner) GetUser(ctx context.Context, userID string) (*kdapi.User, error) {
	p := s.plan
	if err := s.load(ctx, userID); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.after.Exists {
		return nil, shadowErr(kdapi.ClassNotFound, http.MethodGet, "/users/"+userID, "user does not exist")
	}
	u := &kdapi.User{UserID: kdapi.FlexString(userID)}
	if p.after.DeptID != nil {
		u.DeptID = kdapi.FlexString(strconv.FormatInt(*p.after.DeptID, 10))
	}
	if p.after.Role != nil {
		u.Role = kdapi.FlexInt64(*p.after.Role)
	}
	if p.after.Status != nil {
		u.Status = kdapi.FlexInt64(*p.after.Status)
	}
	return u, nil
}

// DeleteUser records DELETE /users/{userId}, or answers "not found".
func (s planner) DeleteUser(ctx context.Context, userID string) error {
	p := s.plan
	if err := s.load(ctx, userID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	path := "/users/" + userID
	if !p.after.Exists {
		return shadowErr(kdapi.ClassNotFound, http.MethodDelete, path, "user does not exist")
	}
	p.record(http.MethodDelete, path, nil)
	p.after = State{}
	return nil
}

func intPtr(v int) *int { return &v }
