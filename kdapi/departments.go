package kdapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Department is a KooDrive department. ID is KooDrive's id (used as a user's
// deptId and in paths); DeptID is the OrgID department id.
type Department struct {
	ID       FlexString `json:"id"`
	OrgID    FlexString `json:"orgId"`
	DeptID   FlexString `json:"deptId"`
	ParentID FlexString `json:"parentId"`
	Name     string     `json:"name"`
	TenantID FlexString `json:"tenantId"`
}

// ListDepartmentsOptions are the query parameters of GET /departmentList.
type ListDepartmentsOptions struct {
	DepartmentID string // parent; empty for the root department
	KeyWord      string // optional name filter
}

// ListDepartments returns the direct sub-departments of opts.DepartmentID
// (KooDrive does not recurse).
//
// KooDrive API docs: https://support.huaweicloud.com/intl/en-us/api-koodrive/GetDepartmentList.html
//
//meta:operation GET /departmentList
func (c *Client) ListDepartments(ctx context.Context, opts ListDepartmentsOptions) ([]Department, error) {
	q := url.Values{}
	if opts.DepartmentID != "" {
		q.Set("departmentId", opts.DepartmentID)
	}
	if opts.KeyWord != "" {
		q.Set("keyWord", opts.KeyWord)
	}
	req, err := c.NewRequest(ctx, http.MethodGet, "departmentList", q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	var ds []Department
	if isNull(resp.env.Data) {
		return ds, nil
	}
	if err := decodePayload(req, resp, resp.env.Data, &ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// GetDepartment returns one department. KooDrive answers with the fields at
// the top level of the envelope.
//
// KooDrive API docs: https://support.huaweicloud.com/intl/en-us/api-koodrive/GetDepartment.html
//
//meta:operation GET /departments/{department_id}
func (c *Client) GetDepartment(ctx context.Context, id string) (*Department, error) {
	if id == "" {
		return nil, fmt.Errorf("kdapi: get department: %w: empty id", ErrPermanent)
	}
	req, err := c.NewRequest(ctx, http.MethodGet, "departments/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	raw := resp.env.Data
	if isNull(raw) {
		raw = resp.Body
	}
	var d Department
	if err := decodePayload(req, resp, raw, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
