package kdsim

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
)

// User is a KooDrive user as the simulator holds it. UserID is the OrgID
// user id (the key kdsync uses); ID is the id KooDrive generated.
type User struct {
	ID       string `json:"id"`
	OrgID    string `json:"orgId"`
	UserID   string `json:"userId"`
	DeptID   string `json:"deptId"`
	DeptName string `json:"deptName"`
	Mobile   string `json:"mobile"`
	Name     string `json:"name"`
	Role     int    `json:"role"`
	Status   int    `json:"status"`
}

// Operation kinds in the op log.
const (
	OpCreate = "create"
	OpUpdate = "update"
	OpDelete = "delete"
)

// Fault kinds recorded in Op.FaultAfter.
const (
	FaultFailAfterWrite = "failAfterWrite"
	FaultSlow           = "slow"
)

// Op is one write applied to a user, in the order the simulator applied it.
type Op struct {
	// Seq is a sequence number shared by all users: a later write has a
	// larger Seq.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Op is OpCreate, OpUpdate or OpDelete.
	Op string `json:"op"`
	// Fields are the fields the write set (all three for a create).
	Fields OpFields `json:"fields"`
	// TraceID is the request's X-Traceid header.
	TraceID string `json:"traceId,omitempty"`
	// FaultAfter names the fault injected after the write was applied
	// (FaultFailAfterWrite: answered 500; FaultSlow: answered late), empty
	// when the write was answered normally.
	FaultAfter string `json:"faultAfter,omitempty"`
	// Direct marks an edit made with PutUserDirect, DeleteUserDirect or the
	// admin API, behind the client's back.
	Direct bool `json:"direct,omitempty"`
}

// OpFields are the fields a write set; nil means not set.
type OpFields struct {
	DeptID *string `json:"deptId,omitempty"`
	Role   *int    `json:"role,omitempty"`
	Status *int    `json:"status,omitempty"`
}

// UserRecord is a user's current state and the log of writes applied to it.
type UserRecord struct {
	// User is the current state; nil when the user does not exist (it was
	// deleted).
	User *User `json:"user"`
	Ops  []Op  `json:"ops"`
}

type opKind uint8

const (
	kindCreate opKind = iota + 1
	kindUpdate
	kindDelete
)

func (k opKind) String() string {
	switch k {
	case kindCreate:
		return OpCreate
	case kindUpdate:
		return OpUpdate
	case kindDelete:
		return OpDelete
	}
	return "unknown"
}

type faultKind uint8

const (
	faultNone faultKind = iota
	faultFailAfterWrite
	faultSlow
)

func (f faultKind) String() string {
	switch f {
	case faultFailAfterWrite:
		return FaultFailAfterWrite
	case faultSlow:
		return FaultSlow
	}
	return ""
}

const (
	setDept uint8 = 1 << iota
	setRole
	setStatus
)

// opRec is the compact form of an Op.
type opRec struct {
	seq    uint64
	at     int64 // unix nanoseconds
	trace  string
	dept   string
	kind   opKind
	mask   uint8
	role   int8
	status int8
	fault  faultKind
	direct bool
}

func (o *opRec) export() Op {
	op := Op{
		Seq:        o.seq,
		Time:       time.Unix(0, o.at).UTC(),
		Op:         o.kind.String(),
		TraceID:    o.trace,
		FaultAfter: o.fault.String(),
		Direct:     o.direct,
	}
	if o.mask&setDept != 0 {
		op.Fields.DeptID = new(o.dept)
	}
	if o.mask&setRole != 0 {
		op.Fields.Role = new(int(o.role))
	}
	if o.mask&setStatus != 0 {
		op.Fields.Status = new(int(o.status))
	}
	return op
}

// userRec is an immutable snapshot of a user; a write replaces it.
type userRec struct {
	u         User
	lowerName string
	json      []byte // the user object, rendered once
}

func newUserRec(u User) *userRec {
	r := &userRec{u: u, lowerName: strings.ToLower(u.Name)}
	b := make([]byte, 0, 160+len(u.Name)+len(u.DeptName))
	b = appendStringField(append(b, '{'), true, "id", u.ID)
	b = appendStringField(b, false, "orgId", u.OrgID)
	b = appendStringField(b, false, "userId", u.UserID)
	b = appendStringField(b, false, "deptId", u.DeptID)
	b = appendStringField(b, false, "deptName", u.DeptName)
	b = appendStringField(b, false, "mobile", u.Mobile)
	b = appendStringField(b, false, "name", u.Name)
	b = appendIntField(b, "role", int64(u.Role))
	b = appendIntField(b, "status", int64(u.Status))
	r.json = append(b, '}')
	return r
}

// idBase is where generated KooDrive user ids start.
const idBase = 1316083732377000000

// store holds users, their op logs and the sequence counter.
type store struct {
	depts *depts
	orgID string

	mu     sync.RWMutex
	users  map[string]*userRec     // by UserID
	byID   map[string]*userRec     // by generated ID
	sorted *btree.BTreeG[*userRec] // all users in UserID order
	logs   map[string][]opRec      // by UserID; survives deletion
	seq    uint64
	nextID uint64
}

func newStore(d *depts, orgID string) *store {
	s := &store{depts: d, orgID: orgID}
	s.resetLocked()
	return s
}

func (s *store) resetLocked() {
	s.users = make(map[string]*userRec)
	s.byID = make(map[string]*userRec)
	// A B-tree, not a sorted slice: inserting into a slice moved half of
	// it each time, which at a million users was most of the
	// simulator's CPU (and kdload's, which runs it).
	s.sorted = btree.NewG(32, func(a, b *userRec) bool { return compareIDs(a.u.UserID, b.u.UserID) < 0 })
	s.logs = make(map[string][]opRec)
	s.seq = 0
	s.nextID = 0
}

func (s *store) reset() {
	s.mu.Lock()
	s.resetLocked()
	s.mu.Unlock()
}

// lookupLocked finds a user by UserID, then by generated ID.
func (s *store) lookupLocked(key string) *userRec {
	if r, ok := s.users[key]; ok {
		return r
	}
	return s.byID[key]
}

func (s *store) get(key string) *userRec {
	s.mu.RLock()
	r := s.lookupLocked(key)
	s.mu.RUnlock()
	return r
}

func (s *store) deptName(id string) string {
	if d, ok := s.depts.byID[id]; ok {
		return d.Name
	}
	return ""
}

// setLocked installs r as the state of r.u.UserID.
func (s *store) setLocked(r *userRec) {
	old := s.users[r.u.UserID]
	if old != nil && old.u.ID != r.u.ID {
		delete(s.byID, old.u.ID)
	}
	s.users[r.u.UserID] = r
	s.byID[r.u.ID] = r
	s.sorted.ReplaceOrInsert(r)
}

func (s *store) removeLocked(r *userRec) {
	delete(s.users, r.u.UserID)
	delete(s.byID, r.u.ID)
	s.sorted.Delete(r)
}

func (s *store) logLocked(userID string, o opRec) {
	s.seq++
	o.seq = s.seq
	s.logs[userID] = append(s.logs[userID], o)
}

func (s *store) newIDLocked() string {
	for {
		s.nextID++
		id := strconv.FormatUint(idBase+s.nextID, 10)
		if _, taken := s.byID[id]; !taken {
			return id
		}
	}
}

// write describes one API write.
type write struct {
	mask   uint8
	dept   string
	role   int
	status int
	trace  string
	fault  faultKind // injected after the write, if it applies
	at     time.Time
}

func (w *write) rec(kind opKind) opRec {
	return opRec{
		at: w.at.UnixNano(), trace: w.trace, dept: w.dept, kind: kind, mask: w.mask,
		role: int8(w.role), status: int8(w.status), fault: w.fault,
	}
}

// create adds userID with w's department and role, status enabled. It
// returns the new user's generated id, or ok false when userID exists.
func (s *store) create(userID string, w write) (id string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.users[userID]; exists {
		return "", false
	}
	u := User{
		ID: s.newIDLocked(), OrgID: s.orgID, UserID: userID,
		DeptID: w.dept, DeptName: s.deptName(w.dept),
		Name: "User " + userID, Role: w.role, Status: 0,
	}
	s.setLocked(newUserRec(u))
	w.mask = setDept | setRole | setStatus
	w.status = 0
	s.logLocked(userID, w.rec(kindCreate))
	return u.ID, true
}

// update applies w's fields to the user key (UserID or generated id). ok is
// false when there is no such user.
func (s *store) update(key string, w write) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.lookupLocked(key)
	if old == nil {
		return false
	}
	u := old.u
	if w.mask&setDept != 0 {
		u.DeptID, u.DeptName = w.dept, s.deptName(w.dept)
	}
	if w.mask&setRole != 0 {
		u.Role = w.role
	}
	if w.mask&setStatus != 0 {
		u.Status = w.status
	}
	s.setLocked(newUserRec(u))
	s.logLocked(u.UserID, w.rec(kindUpdate))
	return true
}

// remove deletes the user key (UserID or generated id). ok is false when
// there is no such user.
func (s *store) remove(key string, w write) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.lookupLocked(key)
	if old == nil {
		return false
	}
	s.removeLocked(old)
	w.mask = 0
	s.logLocked(old.u.UserID, w.rec(kindDelete))
	return true
}

// putDirect installs u (otherwise validated) and logs it as a direct edit.
// ok is false when u.ID is the generated id of another user.
func (s *store) putDirect(u User, at time.Time) (_ User, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, taken := s.byID[u.ID]; taken && r.u.UserID != u.UserID {
		return User{}, false
	}
	old := s.users[u.UserID]
	switch {
	case u.ID != "":
	case old != nil:
		u.ID = old.u.ID
	default:
		u.ID = s.newIDLocked()
	}
	if u.OrgID == "" {
		u.OrgID = s.orgID
	}
	u.DeptName = s.deptName(u.DeptID)
	s.setLocked(newUserRec(u))
	kind := kindUpdate
	if old == nil {
		kind = kindCreate
	}
	s.logLocked(u.UserID, opRec{
		at: at.UnixNano(), kind: kind, dept: u.DeptID, role: int8(u.Role), status: int8(u.Status),
		mask: setDept | setRole | setStatus, direct: true,
	})
	return u, true
}

// deleteDirect removes userID and logs it as a direct edit.
func (s *store) deleteDirect(userID string, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.users[userID]
	if old == nil {
		return false
	}
	s.removeLocked(old)
	s.logLocked(userID, opRec{at: at.UnixNano(), kind: kindDelete, direct: true})
	return true
}

func (s *store) count() int {
	s.mu.RLock()
	n := len(s.users)
	s.mu.RUnlock()
	return n
}

// filter selects users for listing and counting.
type filter struct {
	dept     string // empty: all
	isDirect bool   // only users of dept itself, not of its sub-departments
	keyword  string // lower-case substring of the name; empty: all
}

func (s *store) match(f *filter, r *userRec) bool {
	if f.dept != "" {
		if f.isDirect {
			if r.u.DeptID != f.dept {
				return false
			}
		} else if !s.depts.within(r.u.DeptID, f.dept) {
			return false
		}
	}
	return f.keyword == "" || strings.Contains(r.lowerName, f.keyword)
}

// countMatching counts the users f selects.
func (s *store) countMatching(f *filter) int {
	if f.dept == "" && f.keyword == "" {
		return s.count()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	s.sorted.Ascend(func(r *userRec) bool {
		if s.match(f, r) {
			n++
		}
		return true
	})
	return n
}

// page appends the JSON objects of the users f selects, from offset, at most
// limit, comma-separated, to b. It returns b and the number selected in all.
func (s *store) page(b []byte, f *filter, offset, limit int) ([]byte, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	total, n := 0, 0
	s.sorted.Ascend(func(r *userRec) bool {
		if !s.match(f, r) {
			return true
		}
		if total >= offset && n < limit {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, r.json...)
			n++
		}
		total++
		return true
	})
	return b, total
}

// all returns every user in UserID order.
func (s *store) all() []User {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]User, 0, s.sorted.Len())
	s.sorted.Ascend(func(r *userRec) bool {
		out = append(out, r.u)
		return true
	})
	return out
}

// record returns userID's state and op log; ok is false when the simulator
// has never seen userID (key may also be a generated id of a current user).
func (s *store) record(key string) (UserRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	userID := key
	var rec UserRecord
	if r := s.lookupLocked(key); r != nil {
		u := r.u
		rec.User = &u
		userID = u.UserID
	}
	log, seen := s.logs[userID]
	if rec.User == nil && !seen {
		return UserRecord{}, false
	}
	rec.Ops = make([]Op, len(log))
	for i := range log {
		rec.Ops[i] = log[i].export()
	}
	return rec, true
}
