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

// Plan collects, for one event in shadow mode, the writes that would be
// made and the state they would lead to. Create one per attempt with
// NewPlan and pass it in the context with WithPlan.
type Plan struct {
	mu     sync.Mutex
	known  bool // Before is known (from kdsync's record or a read)
	Before State
	After  State
	Calls  []PlannedCall
}

// NewPlan returns an empty plan. When state is non-nil it is taken as
// the user's state in KooDrive (shadow mode's record of the events it has
// planned so far); otherwise the first call reads it.
func NewPlan(state *State) *Plan {
	p := &Plan{}
	if state != nil {
		p.known, p.Before, p.After = true, *state, *state
	}
	return p
}

type planKey struct{}

// WithPlan returns a context whose Shadow calls record into p.
func WithPlan(ctx context.Context, p *Plan) context.Context {
	return context.WithValue(ctx, planKey{}, p)
}

// Diff lists the fields the plan would change.
func (p *Plan) Diff() []FieldChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []FieldChange
	b, a := p.Before, p.After
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

// Shadow is a Users that reads KooDrive for real and records writes in
// the context's Plan instead of making them, answering as KooDrive would
// from the state the plan tracks: a create of an existing user is
// "already exists", an update of an absent one "not found". It makes no
// write at all.
type Shadow struct {
	Users Users
}

func planOf(ctx context.Context) *Plan {
	if p, ok := ctx.Value(planKey{}).(*Plan); ok {
		return p
	}
	return NewPlan(nil) // a throwaway: the caller did not ask for one
}

// load makes sure the plan knows the user's state, reading it once.
func (s Shadow) load(ctx context.Context, p *Plan, userID string) error {
	p.mu.Lock()
	known := p.known
	p.mu.Unlock()
	if known {
		return nil
	}
	u, err := s.Users.GetUser(ctx, userID)
	var st State
	switch {
	case err == nil:
		st = userState(u)
	case kdapiNotFound(err):
	default:
		return err
	}
	p.mu.Lock()
	p.known, p.Before, p.After = true, st, st
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

func (p *Plan) record(method, path string, body any) {
	var raw json.RawMessage
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	p.Calls = append(p.Calls, PlannedCall{Method: method, Path: path, Body: raw})
}

// CreateUser records POST /users, or answers "already exists".
func (s Shadow) CreateUser(ctx context.Context, body kdapi.CreateUserRequest) error {
	p := planOf(ctx)
	if err := s.load(ctx, p, body.UserID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record(http.MethodPost, "/users", body)
	if p.After.Exists {
		p.Calls[len(p.Calls)-1].Refused = "user already exists"
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
	p.After = next
	return nil
}

// UpdateUser records PUT /users/{userId}, or answers "not found".
func (s Shadow) UpdateUser(ctx context.Context, userID string, body kdapi.UpdateUserRequest) error {
	p := planOf(ctx)
	if err := s.load(ctx, p, userID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	path := "/users/" + userID
	if !p.After.Exists {
		return shadowErr(kdapi.ClassNotFound, http.MethodPut, path, "user does not exist")
	}
	p.record(http.MethodPut, path, body)
	p.After = p.After.Merge(State{Exists: true, DeptID: body.DeptID, Role: body.Role, Status: body.Status})
	return nil
}

// GetUser answers from the plan's state.
func (s Shadow) GetUser(ctx context.Context, userID string) (*kdapi.User, error) {
	p := planOf(ctx)
	if err := s.load(ctx, p, userID); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.After.Exists {
		return nil, shadowErr(kdapi.ClassNotFound, http.MethodGet, "/users/"+userID, "user does not exist")
	}
	u := &kdapi.User{UserID: kdapi.FlexString(userID)}
	if p.After.DeptID != nil {
		u.DeptID = kdapi.FlexString(strconv.FormatInt(*p.After.DeptID, 10))
	}
	if p.After.Role != nil {
		u.Role = kdapi.FlexInt64(*p.After.Role)
	}
	if p.After.Status != nil {
		u.Status = kdapi.FlexInt64(*p.After.Status)
	}
	return u, nil
}

// DeleteUser records DELETE /users/{userId}, or answers "not found".
func (s Shadow) DeleteUser(ctx context.Context, userID string) error {
	p := planOf(ctx)
	if err := s.load(ctx, p, userID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	path := "/users/" + userID
	if !p.After.Exists {
		return shadowErr(kdapi.ClassNotFound, http.MethodDelete, path, "user does not exist")
	}
	p.record(http.MethodDelete, path, nil)
	p.After = State{}
	return nil
}

func intPtr(v int) *int { return &v }
