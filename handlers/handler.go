package handlers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kdsync/kdsync/kdapi"
)

// Users is the part of KooDrive's API the handlers call. *kdapi.Client
// satisfies it.
type Users interface {
	CreateUser(ctx context.Context, body kdapi.CreateUserRequest) error
	UpdateUser(ctx context.Context, userID string, body kdapi.UpdateUserRequest) error
	GetUser(ctx context.Context, userID string) (*kdapi.User, error)
	DeleteUser(ctx context.Context, userID string) error
}

// Op names a KooDrive call, for outcomes and metric labels.
type Op string

// The calls handlers make.
const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpGet    Op = "get"
	OpDelete Op = "delete"
)

// Ops lists every Op, for metric initialisation.
var Ops = []Op{OpCreate, OpUpdate, OpGet, OpDelete}

// Handler applies events to KooDrive.
type Handler struct {
	Users Users
	// HardDelete makes employee.deleted call DELETE, which destroys the
	// user's files. When false, deleted disables the user instead.
	HardDelete bool
	// Observe, when set, is told about every KooDrive call: its operation,
	// duration and error (nil on success).
	Observe func(op Op, d time.Duration, err error)
	// DefaultDeptID is the department of a hire that names none. KooDrive's
	// create requires one: without a default such a hire is bad input.
	DefaultDeptID *int64
	// DefaultRole is the role of a hire that names none; nil means
	// kdapi.RoleCommonUser.
	DefaultRole *int
}

// State is what KooDrive holds for a user after an event, as far as the
// event determines it. Nil fields were not touched.
type State struct {
	Exists bool   `json:"exists"`
	DeptID *int64 `json:"deptId,omitempty"`
	Role   *int   `json:"role,omitempty"`
	Status *int   `json:"status,omitempty"`
}

// Merge returns s with the fields next sets applied over it.
func (s State) Merge(next State) State {
	if !next.Exists {
		return State{}
	}
	out := s
	out.Exists = true
	if next.DeptID != nil {
		out.DeptID = next.DeptID
	}
	if next.Role != nil {
		out.Role = next.Role
	}
	if next.Status != nil {
		out.Status = next.Status
	}
	return out
}

// Result tells what Apply did.
type Result struct {
	// Calls lists the KooDrive calls made, in order, e.g. "POST /users".
	Calls []string
	// Note explains a path worth knowing: an upsert, a user already gone.
	Note string
	// Noop is true when the event needed no call (e.g. changed with no
	// field); the consumer reports it as skipped.
	Noop bool
	// State is the user's state the event leads to.
	State State
	// Plan and Diff, from a decorator that plans KooDrive's writes
	// instead of making them (Shadow), are the writes it would make and
	// the fields they would change; nil otherwise.
	Plan []PlannedCall
	Diff []FieldChange
}

// Apply makes the calls ev implies. It is idempotent: applying the same
// event again leads to the same KooDrive state, so the consumer may retry it
// whole. Errors are kdapi errors or, for an event the handler cannot map,
// a *InputError: Classify tells them apart. The KooDrive calls carry the
// event's trace id (TraceID).
//
// known is the user's state as kdsync's record has it (nil: no record).
// Handler reads KooDrive instead and does not use it; a decorator that
// makes no call, Shadow, plans from it.
func (h *Handler) Apply(ctx context.Context, ev *Event, known *State) (Result, error) {
	ctx = kdapi.WithTraceID(ctx, ev.ID)
	var r Result
	switch ev.Action {
	case Hired:
		return r, h.hire(ctx, ev, &r)
	case Changed:
		upd := kdapi.UpdateUserRequest{DeptID: ev.DeptID, Role: ev.Role, Status: ev.Status}
		r.State = snapshot(ev.DeptID, ev.Role, ev.Status)
		if upd == (kdapi.UpdateUserRequest{}) {
			r.Noop, r.Note = true, "changed carries no deptId, role or status"
			return r, nil
		}
		return r, h.update(ctx, ev.UserID, upd, &r)
	case Disabled:
		return r, h.setStatus(ctx, ev.UserID, kdapi.StatusDisabled, &r)
	case Enabled:
		return r, h.setStatus(ctx, ev.UserID, kdapi.StatusEnabled, &r)
	case Deleted:
		if !h.HardDelete {
			r.Note = "hard deletes are off: disabled instead"
			return r, h.setStatus(ctx, ev.UserID, kdapi.StatusDisabled, &r)
		}
		err := h.call(ctx, OpDelete, "DELETE /users/{userId}", &r, func(ctx context.Context) error {
			return h.Users.DeleteUser(ctx, ev.UserID)
		})
		if errors.Is(err, kdapi.ErrNotFound) {
			r.Note, err = "user was already absent", nil
		}
		r.State = State{Exists: false}
		return r, err
	}
	return r, inputErr(ReasonUnknownType, "type", "no handler for action %q", ev.Action)
}

// hire creates the user, or updates it when it exists already (upsert),
// then sets a status other than 0.
func (h *Handler) hire(ctx context.Context, ev *Event, r *Result) error {
	status := kdapi.StatusEnabled
	if ev.Status != nil {
		status = *ev.Status
	}
	dept, role := ev.DeptID, ev.Role
	if dept == nil {
		dept = h.DefaultDeptID
	}
	if dept == nil {
		return inputErr(ReasonMissingField, "data.deptId", "a hire needs a department: KooDrive's create requires one (or set a default department)")
	}
	if role == nil {
		role = h.DefaultRole
	}
	if role == nil {
		common := kdapi.RoleCommonUser
		role = &common
	}
	r.State = snapshot(dept, role, &status)
	body := kdapi.CreateUserRequest{UserID: ev.UserID, ModifyUserInfoReq: &kdapi.CreateUserInfo{
		DeptID: strconv.FormatInt(*dept, 10),
		Role:   strconv.Itoa(*role),
	}}
	err := h.call(ctx, OpCreate, "POST /users", r, func(ctx context.Context) error {
		return h.Users.CreateUser(ctx, body)
	})
	exists, err := h.existsAfterFailedCreate(ctx, ev.UserID, err, r)
	if err != nil {
		return err
	}
	if exists {
		// Upsert: a rehire or a create retried after an ambiguous failure.
		r.Note = "user existed: attributes applied with PUT"
		return h.update(ctx, ev.UserID, kdapi.UpdateUserRequest{DeptID: dept, Role: role, Status: &status}, r)
	}
	if status != kdapi.StatusEnabled {
		return h.update(ctx, ev.UserID, kdapi.UpdateUserRequest{Status: &status}, r)
	}
	return nil
}

// existsAfterFailedCreate decides what a failed create means. "Already
// exists" (by code or status) means the user exists. A retryable or auth
// failure stays an error. Any other permanent failure may be an "already
// exists" whose code the client does not know, so a GET settles it.
func (h *Handler) existsAfterFailedCreate(ctx context.Context, userID string, createErr error, r *Result) (bool, error) {
	if createErr == nil {
		return false, nil
	}
	class, _ := kdapi.ClassOf(createErr)
	switch class {
	case kdapi.ClassAlreadyExists:
		return true, nil
	case kdapi.ClassRetryable, kdapi.ClassAuth:
		return false, createErr
	}
	if ctx.Err() != nil {
		return false, createErr
	}
	var u *kdapi.User
	err := h.call(ctx, OpGet, "GET /users/{userId}", r, func(ctx context.Context) error {
		var err error
		u, err = h.Users.GetUser(ctx, userID)
		return err
	})
	switch {
	case err == nil && u != nil:
		return true, nil
	case errors.Is(err, kdapi.ErrNotFound):
		return false, createErr
	case err != nil:
		// The GET failed for its own reason; report both, classified by the
		// GET (a retryable GET makes the whole attempt retryable).
		return false, fmt.Errorf("create failed (%v), then checking whether the user exists failed: %w", createErr, err)
	}
	return false, createErr
}

func (h *Handler) setStatus(ctx context.Context, userID string, status int, r *Result) error {
	r.State = snapshot(nil, nil, &status)
	return h.update(ctx, userID, kdapi.UpdateUserRequest{Status: &status}, r)
}

func (h *Handler) update(ctx context.Context, userID string, body kdapi.UpdateUserRequest, r *Result) error {
	return h.call(ctx, OpUpdate, "PUT /users/{userId}", r, func(ctx context.Context) error {
		return h.Users.UpdateUser(ctx, userID, body)
	})
}

// snapshot returns the State of an existing user with copies of the
// fields given. The consumer keeps States in its per-user records; copies
// keep them from holding on to the event (and the handler's defaults).
func snapshot(dept *int64, role, status *int) State {
	s := State{Exists: true}
	if dept == nil && role == nil && status == nil {
		return s
	}
	v := new(struct {
		dept         int64
		role, status int
	})
	if dept != nil {
		v.dept, s.DeptID = *dept, &v.dept
	}
	if role != nil {
		v.role, s.Role = *role, &v.role
	}
	if status != nil {
		v.status, s.Status = *status, &v.status
	}
	return s
}

// call makes one KooDrive call, records it in r and tells Observe.
func (h *Handler) call(ctx context.Context, op Op, name string, r *Result, f func(context.Context) error) error {
	start := time.Now()
	err := f(ctx)
	r.Calls = append(r.Calls, name)
	if h.Observe != nil {
		h.Observe(op, time.Since(start), err)
	}
	return err
}
