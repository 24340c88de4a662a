package kdsim

import (
	"net/http"
	"sync/atomic"
)

// Stats are the simulator's counters since it started or was last reset.
type Stats struct {
	// Requests counts API requests (not admin ones), including refused ones.
	Requests         int64            `json:"requests"`
	RequestsByMethod map[string]int64 `json:"requestsByMethod"`
	// RequestsByOp counts API requests by operation: createUser,
	// updateUser, getUser, deleteUser, listUsers, countUsers,
	// listDepartments, getDepartment, and unknown (no such API).
	RequestsByOp map[string]int64 `json:"requestsByOp"`

	Creates          int64 `json:"creates"`          // users created through the API
	DuplicateCreates int64 `json:"duplicateCreates"` // creates refused: user already exists
	Updates          int64 `json:"updates"`          // updates applied
	UnknownUpdates   int64 `json:"unknownUpdates"`   // updates refused: no such user
	Deletes          int64 `json:"deletes"`          // deletes applied
	UnknownDeletes   int64 `json:"unknownDeletes"`   // deletes refused: no such user
	// Writes is Creates + Updates + Deletes: writes the API applied.
	Writes int64 `json:"writes"`
	// Invalid counts requests refused with 13000102 (bad parameters).
	Invalid      int64 `json:"invalid"`
	AuthFailures int64 `json:"authFailures"`
	// Faults counts injected faults by kind: latency (requests delayed),
	// outage, error429, error500, error503, slow, slowAborted (the client
	// gave up during the wait), failAfterWrite, quota429 (refused by the
	// quota or the concurrency cap).
	Faults map[string]int64 `json:"faults"`
}

type method uint8

const (
	methodGet method = iota
	methodPost
	methodPut
	methodDelete
	methodOther
	numMethods
)

func methodOf(m string) method {
	switch m {
	case http.MethodGet:
		return methodGet
	case http.MethodPost:
		return methodPost
	case http.MethodPut:
		return methodPut
	case http.MethodDelete:
		return methodDelete
	}
	return methodOther
}

func (m method) String() string {
	switch m {
	case methodGet:
		return http.MethodGet
	case methodPost:
		return http.MethodPost
	case methodPut:
		return http.MethodPut
	case methodDelete:
		return http.MethodDelete
	}
	return "other"
}

type op uint8

const (
	opUnknown op = iota
	opCreateUser
	opUpdateUser
	opGetUser
	opDeleteUser
	opListUsers
	opCountUsers
	opListDepartments
	opGetDepartment
	numOps
)

func (o op) String() string {
	switch o {
	case opCreateUser:
		return "createUser"
	case opUpdateUser:
		return "updateUser"
	case opGetUser:
		return "getUser"
	case opDeleteUser:
		return "deleteUser"
	case opListUsers:
		return "listUsers"
	case opCountUsers:
		return "countUsers"
	case opListDepartments:
		return "listDepartments"
	case opGetDepartment:
		return "getDepartment"
	}
	return "unknown"
}

func (o op) isWrite() bool { return o == opCreateUser || o == opUpdateUser || o == opDeleteUser }

type fault uint8

const (
	fLatency fault = iota
	fOutage
	fError429
	fError500
	fError503
	fSlow
	fSlowAborted
	fFailAfterWrite
	fQuota
	numFaults
)

func (f fault) String() string {
	switch f {
	case fLatency:
		return "latency"
	case fOutage:
		return "outage"
	case fError429:
		return "error429"
	case fError500:
		return "error500"
	case fError503:
		return "error503"
	case fSlow:
		return "slow"
	case fSlowAborted:
		return "slowAborted"
	case fFailAfterWrite:
		return "failAfterWrite"
	case fQuota:
		return "quota429"
	}
	return "unknown"
}

func errorFault(status int) fault {
	switch status {
	case http.StatusTooManyRequests:
		return fError429
	case http.StatusServiceUnavailable:
		return fError503
	}
	return fError500
}

// counters are the atomic counters behind Stats. Each sits on its own cache
// line where it is hot.
type counters struct {
	byMethod [numMethods]paddedInt
	byOp     [numOps]paddedInt
	faults   [numFaults]atomic.Int64

	creates, duplicateCreates, updates, unknownUpdates atomic.Int64
	deletes, unknownDeletes, invalid, authFailures     atomic.Int64
}

type paddedInt struct {
	atomic.Int64
	_ [56]byte
}

func (c *counters) reset() {
	for i := range c.byMethod {
		c.byMethod[i].Store(0)
	}
	for i := range c.byOp {
		c.byOp[i].Store(0)
	}
	for i := range c.faults {
		c.faults[i].Store(0)
	}
	for _, v := range []*atomic.Int64{&c.creates, &c.duplicateCreates, &c.updates, &c.unknownUpdates,
		&c.deletes, &c.unknownDeletes, &c.invalid, &c.authFailures} {
		v.Store(0)
	}
}

func (c *counters) snapshot() Stats {
	st := Stats{
		RequestsByMethod: make(map[string]int64, numMethods),
		RequestsByOp:     make(map[string]int64, numOps),
		Faults:           make(map[string]int64, numFaults),
		Creates:          c.creates.Load(),
		DuplicateCreates: c.duplicateCreates.Load(),
		Updates:          c.updates.Load(),
		UnknownUpdates:   c.unknownUpdates.Load(),
		Deletes:          c.deletes.Load(),
		UnknownDeletes:   c.unknownDeletes.Load(),
		Invalid:          c.invalid.Load(),
		AuthFailures:     c.authFailures.Load(),
	}
	st.Writes = st.Creates + st.Updates + st.Deletes
	for i := range c.byMethod {
		n := c.byMethod[i].Load()
		st.RequestsByMethod[method(i).String()] = n
		st.Requests += n
	}
	for i := range c.byOp {
		st.RequestsByOp[op(i).String()] = c.byOp[i].Load()
	}
	for i := range c.faults {
		st.Faults[fault(i).String()] = c.faults[i].Load()
	}
	return st
}
