package kdsim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Users returns every user's current state, in userId order.
func (s *Server) Users() []User { return s.store.all() }

// User returns the current state of userID (or of the user with that
// generated id) and the log of writes applied to it. ok is false when the
// simulator has never seen the user.
func (s *Server) User(userID string) (rec UserRecord, ok bool) { return s.store.record(userID) }

// Stats returns the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Departments returns the departments, in id order.
func (s *Server) Departments() []Department { return s.depts.list() }

// Reset removes all users, their logs and the counters. Departments and the
// fault configuration stay.
func (s *Server) Reset() {
	s.store.reset()
	s.stats.reset()
	s.log.Info("reset")
}

// PutUserDirect creates or replaces a user as an edit in KooDrive's console
// would: behind the API client's back. It is logged (Op.Direct) but not
// counted in Stats. UserID must be digits; DeptID a known department; Role
// one of 0, 1, 2, 3, 5; Status 0, 1 or 2 (2 appears in KooDrive's examples,
// undocumented). An empty ID keeps the user's generated id or makes one; an
// empty Name becomes "User <userId>"; DeptName is derived from DeptID.
func (s *Server) PutUserDirect(u User) (User, error) {
	if !isDigits(u.UserID) {
		return User{}, fmt.Errorf("kdsim: put user: userId %q: want a string of digits", u.UserID)
	}
	if _, ok := s.depts.byID[u.DeptID]; !ok {
		return User{}, fmt.Errorf("kdsim: put user %s: department %q does not exist", u.UserID, u.DeptID)
	}
	if !validRole(int64(u.Role)) {
		return User{}, fmt.Errorf("kdsim: put user %s: role %d: want 0, 1, 2, 3 or 5", u.UserID, u.Role)
	}
	if u.Status < 0 || u.Status > 2 {
		return User{}, fmt.Errorf("kdsim: put user %s: status %d: want 0, 1 or 2", u.UserID, u.Status)
	}
	if u.Name == "" {
		u.Name = "User " + u.UserID
	}
	out, ok := s.store.putDirect(u, s.now())
	if !ok {
		return User{}, fmt.Errorf("kdsim: put user %s: id %s belongs to another user", u.UserID, u.ID)
	}
	return out, nil
}

// DeleteUserDirect removes a user behind the API client's back, as
// PutUserDirect edits one. It reports whether the user existed.
func (s *Server) DeleteUserDirect(userID string) bool {
	return s.store.deleteDirect(userID, s.now())
}

// serveAdmin serves /_admin/.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/_admin/")
	if p == "healthz" && r.Method == http.MethodGet {
		s.writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
		return
	}
	if s.adminToken != "" {
		tok, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.adminToken)) != 1 {
			s.adminError(w, http.StatusUnauthorized, CodeAuth, "admin API: missing or bad bearer token")
			return
		}
	}
	switch m := r.Method; {
	case p == "users" && m == http.MethodGet:
		users := s.Users()
		s.writeJSON(w, http.StatusOK, struct {
			Users []User `json:"users"`
			Total int    `json:"total"`
		}{users, len(users)})
	case strings.HasPrefix(p, "users/") && len(p) > len("users/"):
		s.adminUser(w, r, p[len("users/"):])
	case p == "stats" && m == http.MethodGet:
		s.writeJSON(w, http.StatusOK, s.Stats())
	case p == "departments" && m == http.MethodGet:
		s.writeJSON(w, http.StatusOK, s.Departments())
	case p == "faults" && m == http.MethodGet:
		s.writeJSON(w, http.StatusOK, s.Faults())
	case p == "faults" && m == http.MethodPut:
		var f Faults
		if err := decodeAdmin(r, &f); err != nil {
			s.adminError(w, http.StatusBadRequest, CodeInvalid, err.Error())
			return
		}
		if err := s.SetFaults(f); err != nil {
			s.adminError(w, http.StatusBadRequest, CodeInvalid, err.Error())
			return
		}
		s.writeJSON(w, http.StatusOK, s.Faults())
	case p == "outage" && m == http.MethodPost:
		if err := s.adminOutage(r); err != nil {
			s.adminError(w, http.StatusBadRequest, CodeInvalid, err.Error())
			return
		}
		s.writeJSON(w, http.StatusOK, s.Faults())
	case p == "quota" && m == http.MethodPut:
		if err := s.adminQuota(r); err != nil {
			s.adminError(w, http.StatusBadRequest, CodeInvalid, err.Error())
			return
		}
		s.writeJSON(w, http.StatusOK, s.Faults())
	case p == "outage" && m == http.MethodDelete:
		s.StopOutage()
		s.writeJSON(w, http.StatusOK, s.Faults())
	case p == "reset" && m == http.MethodPost:
		s.Reset()
		s.writeJSON(w, http.StatusOK, map[string]string{"code": CodeOK, "msg": "success"})
	default:
		s.adminError(w, http.StatusNotFound, CodeNoSuchAPI, "no such admin API: "+r.Method+" "+r.URL.Path)
	}
}

// adminOutage starts an outage: ?for=30s from now, or ?from=&until= in RFC
// 3339 (from defaults to now).
func (s *Server) adminOutage(r *http.Request) error {
	q := r.URL.Query()
	if v := q.Get("for"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("for: %w", err)
		}
		return s.StartOutage(d)
	}
	untilText := q.Get("until")
	if untilText == "" {
		return errors.New("want ?for=<duration> or ?until=<RFC 3339 time>[&from=<RFC 3339 time>]")
	}
	until, err := time.Parse(time.RFC3339, untilText)
	if err != nil {
		return fmt.Errorf("until: %w", err)
	}
	from := s.now()
	if v := q.Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return fmt.Errorf("from: %w", err)
		}
	}
	if !from.Before(until) {
		return errors.New("from must be before until")
	}
	return s.updateFaults(func(f *Faults) { f.OutageFrom, f.OutageUntil = from, until })
}

// adminUser serves /_admin/users/{userId}: GET the record, PUT a direct
// edit (body: a User), DELETE a direct deletion.
func (s *Server) adminUser(w http.ResponseWriter, r *http.Request, id string) {
	switch r.Method {
	case http.MethodGet:
		rec, ok := s.User(id)
		if !ok {
			s.adminError(w, http.StatusNotFound, CodeUserNotFound, "user does not exist")
			return
		}
		s.writeJSON(w, http.StatusOK, rec)
	case http.MethodPut:
		var u User
		if err := decodeAdmin(r, &u); err != nil {
			s.adminError(w, http.StatusBadRequest, CodeInvalid, err.Error())
			return
		}
		if u.UserID == "" {
			u.UserID = id
		}
		if u.UserID != id {
			s.adminError(w, http.StatusBadRequest, CodeInvalid, "body userId differs from the path")
			return
		}
		out, err := s.PutUserDirect(u)
		if err != nil {
			s.adminError(w, http.StatusBadRequest, CodeInvalid, err.Error())
			return
		}
		s.writeJSON(w, http.StatusOK, out)
	case http.MethodDelete:
		if !s.DeleteUserDirect(id) {
			s.adminError(w, http.StatusNotFound, CodeUserNotFound, "user does not exist")
			return
		}
		s.writeJSON(w, http.StatusOK, map[string]string{"code": CodeOK, "msg": "success"})
	default:
		s.adminError(w, http.StatusNotFound, CodeNoSuchAPI, "no such admin API: "+r.Method+" "+r.URL.Path)
	}
}

// decodeAdmin decodes a JSON body of at most 1 MiB into v.
func decodeAdmin(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if len(b) > maxBody {
		return errors.New("body larger than 1 MiB")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}

func (s *Server) adminError(w http.ResponseWriter, status int, code, msg string) {
	s.write(w, status, nil, appendError(nil, code, msg))
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.adminError(w, http.StatusInternalServerError, CodeInternal, "encode: "+err.Error())
		return
	}
	s.write(w, status, nil, append(b, '\n'))
}
