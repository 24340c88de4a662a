package kdapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// Role values of KooDrive users (UpdateUser; CreateUser adds 3).
const (
	RoleDeptAdmin     = 0
	RoleCommonUser    = 1
	RoleSystemAdmin   = 2
	RoleCloudAdmin    = 3
	RoleMemberManager = 5
)

// Status values of KooDrive users.
const (
	StatusEnabled  = 0
	StatusDisabled = 1
)

// ValidRole reports whether r is a documented role.
func ValidRole(r int) bool { return r >= 0 && r <= 3 || r == 5 }

// ValidStatus reports whether s is a documented status (0 or 1).
func ValidStatus(s int) bool { return s == StatusEnabled || s == StatusDisabled }

// CreateUserRequest is the body of POST /users.
type CreateUserRequest struct {
	// UserID is the person's OrgID user id.
	UserID string `json:"userId"`
	// ModifyUserInfoReq carries department and role, both typed as strings by
	// the create page.
	ModifyUserInfoReq *CreateUserInfo `json:"modifyUserInfoReq,omitempty"`
}

// CreateUserInfo is the modifyUserInfoReq object of a create.
type CreateUserInfo struct {
	DeptID string `json:"deptId,omitempty"`
	Role   string `json:"role,omitempty"`
}

// UpdateUserRequest is the body of PUT /users/{userId}. Every field is
// optional; pointers keep a zero (status 0 = enabled) apart from "absent".
type UpdateUserRequest struct {
	DeptID *int64 `json:"deptId,omitempty"`
	Role   *int   `json:"role,omitempty"`
	Status *int   `json:"status,omitempty"`
}

// User is a KooDrive user as GET /users/{userId} and /userList return it.
type User struct {
	ID       FlexString `json:"id"`
	OrgID    FlexString `json:"orgId"`
	UserID   FlexString `json:"userId"`
	DeptID   FlexString `json:"deptId"`
	DeptName string     `json:"deptName"`
	Mobile   string     `json:"mobile"`
	Name     string     `json:"name"`
	Role     FlexInt64  `json:"role"`
	Status   FlexInt64  `json:"status"`
}

// Ptr returns a pointer to v, for the optional fields of requests.
func Ptr[T any](v T) *T { return &v }

// CreateUser enrols an OrgID user in KooDrive.
//
// KooDrive API docs: https://support.huaweicloud.com/intl/en-us/api-koodrive/CreateUser.html
//
//meta:operation POST /users
func (c *Client) CreateUser(ctx context.Context, body CreateUserRequest) error {
	if body.UserID == "" {
		return fmt.Errorf("kdapi: create user: %w: empty userId", ErrPermanent)
	}
	req, err := c.NewRequest(ctx, http.MethodPost, "users", nil, body)
	if err != nil {
		return err
	}
	_, err = c.Do(req)
	return err
}

// UpdateUser changes a user's department, role or status.
//
// KooDrive API docs: https://support.huaweicloud.com/intl/tr-tr/api-koodrive/UpdateUser.html
//
//meta:operation PUT /users/{userId}
func (c *Client) UpdateUser(ctx context.Context, userID string, body UpdateUserRequest) error {
	if userID == "" {
		return fmt.Errorf("kdapi: update user: %w: empty userId", ErrPermanent)
	}
	req, err := c.NewRequest(ctx, http.MethodPut, "users/"+url.PathEscape(userID), nil, body)
	if err != nil {
		return err
	}
	_, err = c.Do(req)
	return err
}

// GetUser returns one user.
//
// KooDrive API docs: https://support.huaweicloud.com/intl/en-us/api-koodrive/GetUser.html
//
//meta:operation GET /users/{userId}
func (c *Client) GetUser(ctx context.Context, userID string) (*User, error) {
	if userID == "" {
		return nil, fmt.Errorf("kdapi: get user: %w: empty userId", ErrPermanent)
	}
	req, err := c.NewRequest(ctx, http.MethodGet, "users/"+url.PathEscape(userID), nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	var u User
	if err := decodePayload(req, resp, resp.env.Data, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// DeleteUser removes a user and the user's resources (files included).
//
// KooDrive API docs: https://support.huaweicloud.com/intl/ja-jp/api-koodrive/DeleteUser.html
//
//meta:operation DELETE /users/{userId}
func (c *Client) DeleteUser(ctx context.Context, userID string) error {
	if userID == "" {
		return fmt.Errorf("kdapi: delete user: %w: empty userId", ErrPermanent)
	}
	req, err := c.NewRequest(ctx, http.MethodDelete, "users/"+url.PathEscape(userID), nil, nil)
	if err != nil {
		return err
	}
	_, err = c.Do(req)
	return err
}

// ListUsersOptions are the query parameters of GET /userList.
type ListUsersOptions struct {
	DeptID   string // optional
	IsDirect bool   // only direct members of DeptID
	KeyWord  string // optional name filter
	Offset   int    // >= 0
	Limit    int    // 1..100; 0 means 100
}

func (o ListUsersOptions) values() (url.Values, error) {
	if o.Offset < 0 {
		return nil, fmt.Errorf("kdapi: list users: %w: negative offset", ErrPermanent)
	}
	if o.Limit == 0 {
		o.Limit = 100
	}
	if o.Limit < 1 || o.Limit > 100 {
		return nil, fmt.Errorf("kdapi: list users: %w: limit %d outside 1..100", ErrPermanent, o.Limit)
	}
	q := url.Values{"offset": {strconv.Itoa(o.Offset)}, "limit": {strconv.Itoa(o.Limit)}}
	if o.DeptID != "" {
		q.Set("deptId", o.DeptID)
	}
	if o.IsDirect {
		q.Set("isDirect", "true")
	}
	if o.KeyWord != "" {
		q.Set("keyWord", o.KeyWord)
	}
	return q, nil
}

// UserPage is one page of GET /userList.
type UserPage struct {
	Users []User
	Total int64
}

// ListUsers returns one page of users.
//
// KooDrive API docs: https://support.huaweicloud.com/intl/es-us/api-koodrive/GetUserList.html
//
//meta:operation GET /userList
func (c *Client) ListUsers(ctx context.Context, opts ListUsersOptions) (*UserPage, error) {
	q, err := opts.values()
	if err != nil {
		return nil, err
	}
	req, err := c.NewRequest(ctx, http.MethodGet, "userList", q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	// Newer pages put the users under "list", older ones under "data".
	raw := resp.env.List
	if isNull(raw) {
		raw = resp.env.Data
	}
	var p UserPage
	if !isNull(raw) {
		if err := decodePayload(req, resp, raw, &p.Users); err != nil {
			return nil, err
		}
	}
	if resp.env.Total != nil {
		p.Total = int64(*resp.env.Total)
	}
	return &p, nil
}

// AllUsers walks every page of GET /userList from opts.Offset on, yielding
// each user once. It stops at the first error, which it yields.
//
// When KooDrive reports a total, the walk goes on until the offset reaches
// it, so a server that returns fewer users per page than asked for does not
// end the walk early; without a total, a short page ends it. An empty page
// always ends it.
func (c *Client) AllUsers(ctx context.Context, opts ListUsersOptions) iter.Seq2[*User, error] {
	return func(yield func(*User, error) bool) {
		if opts.Limit == 0 {
			opts.Limit = 100
		}
		for {
			p, err := c.ListUsers(ctx, opts)
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range p.Users {
				if !yield(&p.Users[i], nil) {
					return
				}
			}
			if len(p.Users) == 0 {
				return
			}
			opts.Offset += len(p.Users)
			if p.Total > 0 {
				if int64(opts.Offset) >= p.Total {
					return
				}
			} else if len(p.Users) < opts.Limit {
				return
			}
		}
	}
}

// CountUsers returns the number of members of deptID, or of the whole
// organisation when deptID is empty.
//
// KooDrive API docs: https://support.huaweicloud.com/intl/ar-mena/api-koodrive/CountUser.html
//
//meta:operation GET /users/count
func (c *Client) CountUsers(ctx context.Context, deptID string) (int64, error) {
	var q url.Values
	if deptID != "" {
		q = url.Values{"deptId": {deptID}}
	}
	req, err := c.NewRequest(ctx, http.MethodGet, "users/count", q, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	if resp.env.Total != nil {
		return int64(*resp.env.Total), nil
	}
	// Some copies nest it under data.
	var d struct {
		Total FlexInt64 `json:"total"`
	}
	if err := decodePayload(req, resp, resp.env.Data, &d); err != nil {
		return 0, err
	}
	return int64(d.Total), nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// decodePayload decodes raw into v; a payload that does not decode is a
// permanent *APIError naming the call.
func decodePayload(req *http.Request, resp *Response, raw json.RawMessage, v any) error {
	if isNull(raw) {
		return &APIError{HTTPStatus: resp.HTTPStatus, Method: req.Method, Path: req.URL.Path, Msg: "response has no payload", Class: ClassPermanent}
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var se *json.SyntaxError
		msg := "malformed payload: " + err.Error()
		if errors.As(err, &se) {
			msg = fmt.Sprintf("malformed payload at byte %d", se.Offset)
		}
		return &APIError{HTTPStatus: resp.HTTPStatus, Method: req.Method, Path: req.URL.Path, Msg: msg, Class: ClassPermanent}
	}
	return nil
}
