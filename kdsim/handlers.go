package kdsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// invalid answers 400 with 13000102 "parameter verification failed: <msg>".
func (s *Server) invalid(c *call, format string, args ...any) {
	s.stats.invalid.Add(1)
	c.fail(http.StatusBadRequest, CodeInvalid, "parameter verification failed: "+fmt.Sprintf(format, args...))
}

// okWrite is the answer to a successful write: code as a JSON string.
func okWrite(b []byte) []byte { return append(b, `{"code":"0","msg":"success"}`...) }

// okRead starts the answer to a successful read: code as a JSON number.
func okRead(b []byte) []byte { return append(b, `{"code":0,"msg":"success"`...) }

// rawKind classifies a raw JSON value.
type rawKind uint8

const (
	rawAbsent rawKind = iota // absent or null
	rawString
	rawNumber
	rawOther
)

func kindOf(raw json.RawMessage) rawKind {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return rawAbsent
	case raw[0] == '"':
		return rawString
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		return rawNumber
	}
	return rawOther
}

func unquote(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s) // kindOf said it is a string
	return s
}

// decodeObject decodes a JSON object body into v, whose fields are all
// json.RawMessage so that only the shape can fail here.
func decodeObject(body []byte, v any) string {
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return "body: want a JSON object, got nothing"
	}
	if t[0] != '{' {
		return "body: want a JSON object"
	}
	if err := json.Unmarshal(t, v); err != nil {
		return "body: malformed JSON"
	}
	return ""
}

// validRole reports whether r is a documented role: 0, 1, 2, 3 or 5.
func validRole(r int64) bool { return r >= 0 && r <= 3 || r == 5 }

// validStatus reports whether st is a documented status: 0 or 1.
func validStatus(st int64) bool { return st == 0 || st == 1 }

type createRequest struct {
	UserID json.RawMessage `json:"userId"`
	Info   json.RawMessage `json:"modifyUserInfoReq"`
}

type createInfo struct {
	DeptID json.RawMessage `json:"deptId"`
	Role   json.RawMessage `json:"role"`
}

// createUser serves POST /users.
func (s *Server) createUser(c *call) {
	var req createRequest
	if msg := decodeObject(c.body, &req); msg != "" {
		s.invalid(c, "%s", msg)
		return
	}
	var userID string
	switch kindOf(req.UserID) {
	case rawAbsent:
		s.invalid(c, "userId: required")
		return
	case rawString:
		userID = unquote(req.UserID)
		if !isDigits(userID) {
			s.invalid(c, "userId: want a non-empty string of digits, got %q", truncate(userID, 40))
			return
		}
	default:
		s.invalid(c, "userId: want a string of digits")
		return
	}
	if kindOf(req.Info) == rawAbsent {
		s.invalid(c, "modifyUserInfoReq: required (deptId and role)")
		return
	}
	var info createInfo
	if msg := decodeObject(req.Info, &info); msg != "" {
		s.invalid(c, "modifyUserInfoReq: want an object with deptId and role")
		return
	}
	var w write
	switch kindOf(info.DeptID) {
	case rawAbsent:
		s.invalid(c, "modifyUserInfoReq.deptId: required")
		return
	case rawString:
		w.dept = unquote(info.DeptID)
		if !isDigits(w.dept) {
			s.invalid(c, "modifyUserInfoReq.deptId: want a string of digits, got %q", truncate(w.dept, 40))
			return
		}
		if _, ok := s.depts.byID[w.dept]; !ok {
			s.invalid(c, "modifyUserInfoReq.deptId: department %s does not exist", w.dept)
			return
		}
	default:
		s.invalid(c, "modifyUserInfoReq.deptId: want a string of digits")
		return
	}
	switch kindOf(info.Role) {
	case rawAbsent:
		s.invalid(c, "modifyUserInfoReq.role: required")
		return
	case rawString:
		rs := unquote(info.Role)
		r, err := strconv.ParseInt(rs, 10, 8)
		if err != nil || !validRole(r) || strconv.FormatInt(r, 10) != rs {
			s.invalid(c, `modifyUserInfoReq.role: %q is not one of "0", "1", "2", "3", "5"`, truncate(rs, 20))
			return
		}
		w.role = int(r)
	default:
		s.invalid(c, `modifyUserInfoReq.role: want a string, one of "0", "1", "2", "3", "5"`)
		return
	}
	w.trace, w.fault, w.at = c.r.Header.Get("X-Traceid"), c.after, s.now()
	id, ok := s.store.create(userID, w)
	if !ok {
		s.stats.duplicateCreates.Add(1)
		c.fail(http.StatusBadRequest, CodeUserExists, "user already exists")
		return
	}
	s.stats.creates.Add(1)
	c.applied = true
	c.out = append(c.out, `{"code":"0","msg":"success","data":{"id":`...)
	c.out = appendString(c.out, id)
	c.out = append(c.out, "}}"...)
}

type updateRequest struct {
	DeptID json.RawMessage `json:"deptId"`
	Role   json.RawMessage `json:"role"`
	Status json.RawMessage `json:"status"`
}

// intField parses an integer field that must be a JSON number.
func intField(raw json.RawMessage) (int64, bool) {
	if kindOf(raw) != rawNumber {
		return 0, false
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	return v, err == nil
}

// updateUser serves PUT /users/{userId}.
func (s *Server) updateUser(c *call) {
	var req updateRequest
	if msg := decodeObject(c.body, &req); msg != "" {
		s.invalid(c, "%s", msg)
		return
	}
	var w write
	switch kindOf(req.DeptID) {
	case rawAbsent:
	case rawNumber, rawString:
		text := string(bytes.TrimSpace(req.DeptID))
		if kindOf(req.DeptID) == rawString {
			text = unquote(req.DeptID)
		}
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil || v <= 0 {
			s.invalid(c, "deptId: want a positive integer (a JSON number or a string of digits)")
			return
		}
		w.dept = strconv.FormatInt(v, 10)
		if _, ok := s.depts.byID[w.dept]; !ok {
			s.invalid(c, "deptId: department %s does not exist", w.dept)
			return
		}
		w.mask |= setDept
	default:
		s.invalid(c, "deptId: want a positive integer (a JSON number or a string of digits)")
		return
	}
	if kindOf(req.Role) != rawAbsent {
		r, ok := intField(req.Role)
		if !ok || !validRole(r) {
			s.invalid(c, "role: want an integer, one of 0, 1, 2, 3, 5")
			return
		}
		w.role, w.mask = int(r), w.mask|setRole
	}
	if kindOf(req.Status) != rawAbsent {
		st, ok := intField(req.Status)
		if !ok || !validStatus(st) {
			s.invalid(c, "status: want an integer, 0 (enabled) or 1 (disabled)")
			return
		}
		w.status, w.mask = int(st), w.mask|setStatus
	}
	if w.mask == 0 {
		s.invalid(c, "body: no deptId, role or status to change")
		return
	}
	w.trace, w.fault, w.at = c.r.Header.Get("X-Traceid"), c.after, s.now()
	if !s.store.update(c.param, w) {
		s.stats.unknownUpdates.Add(1)
		c.fail(http.StatusBadRequest, CodeUserNotFound, "user does not exist")
		return
	}
	s.stats.updates.Add(1)
	c.applied = true
	c.out = okWrite(c.out)
}

// deleteUser serves DELETE /users/{userId}.
func (s *Server) deleteUser(c *call) {
	w := write{trace: c.r.Header.Get("X-Traceid"), fault: c.after, at: s.now()}
	if !s.store.remove(c.param, w) {
		s.stats.unknownDeletes.Add(1)
		c.fail(http.StatusBadRequest, CodeUserNotFound, "user does not exist")
		return
	}
	s.stats.deletes.Add(1)
	c.applied = true
	c.out = okWrite(c.out)
}

// getUser serves GET /users/{userId}; the generated id works too.
func (s *Server) getUser(c *call) {
	r := s.store.get(c.param)
	if r == nil {
		c.fail(http.StatusBadRequest, CodeUserNotFound, "user does not exist")
		return
	}
	c.out = append(okRead(c.out), `,"data":`...)
	c.out = append(c.out, r.json...)
	c.out = append(c.out, '}')
}

// deptParam reads an optional department id query parameter.
func (s *Server) deptParam(c *call, name, v string) (string, bool) {
	if v == "" {
		return "", true
	}
	if !isDigits(v) {
		s.invalid(c, "%s: want a string of digits, got %q", name, truncate(v, 40))
		return "", false
	}
	if _, ok := s.depts.byID[v]; !ok {
		s.invalid(c, "%s: department %s does not exist", name, v)
		return "", false
	}
	return v, true
}

// listUsers serves GET /userList.
func (s *Server) listUsers(c *call) {
	q := c.r.URL.Query()
	offset, err := strconv.Atoi(q.Get("offset"))
	if err != nil || offset < 0 {
		s.invalid(c, "offset: required, an integer >= 0")
		return
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 100 {
		s.invalid(c, "limit: required, an integer within 1..100")
		return
	}
	var f filter
	var ok bool
	if f.dept, ok = s.deptParam(c, "deptId", q.Get("deptId")); !ok {
		return
	}
	if v := q.Get("isDirect"); v != "" {
		if f.isDirect, err = strconv.ParseBool(v); err != nil {
			s.invalid(c, "isDirect: want true or false")
			return
		}
	}
	f.keyword = strings.ToLower(q.Get("keyWord"))
	c.out = append(okRead(c.out), `,"list":[`...)
	var total int
	c.out, total = s.store.page(c.out, &f, offset, limit)
	c.out = append(c.out, `],"total":`...)
	c.out = strconv.AppendInt(c.out, int64(total), 10)
	c.out = append(c.out, '}')
}

// countUsers serves GET /users/count.
func (s *Server) countUsers(c *call) {
	var f filter
	if c.r.URL.RawQuery != "" {
		var ok bool
		if f.dept, ok = s.deptParam(c, "deptId", c.r.URL.Query().Get("deptId")); !ok {
			return
		}
	}
	c.out = append(c.out, `{"total":`...)
	c.out = strconv.AppendInt(c.out, int64(s.store.countMatching(&f)), 10)
	c.out = append(c.out, `,"code":0,"msg":"success"}`...)
}

// listDepartments serves GET /departmentList: the direct sub-departments of
// departmentId, or of the root department when it is absent.
func (s *Server) listDepartments(c *call) {
	q := c.r.URL.Query()
	parent, ok := s.deptParam(c, "departmentId", q.Get("departmentId"))
	if !ok {
		return
	}
	if parent == "" {
		parent = s.depts.root.ID
	}
	kw := strings.ToLower(q.Get("keyWord"))
	c.out = append(okRead(c.out), `,"data":[`...)
	n := 0
	for _, d := range s.depts.children[parent] {
		if kw != "" && !strings.Contains(d.lowerName, kw) {
			continue
		}
		if n > 0 {
			c.out = append(c.out, ',')
		}
		c.out = append(c.out, d.json...)
		n++
	}
	c.out = append(c.out, "]}"...)
}

// getDepartment serves GET /departments/{id}, with the fields at the top
// level of the envelope.
func (s *Server) getDepartment(c *call) {
	d, ok := s.depts.byID[c.param]
	if !ok {
		c.fail(http.StatusBadRequest, CodeDeptNotFound, "department does not exist")
		return
	}
	c.out = append(c.out, '{')
	c.out = appendDepartmentFields(c.out, &d.Department)
	c.out = append(c.out, `,"code":0,"msg":"success"}`...)
}
