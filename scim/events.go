package scim

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/mapping"
	"github.com/kdsync/kdsync/outcome"
)

// change is one identity event a write implies.
type change struct {
	action handlers.Action
	userID string
	deptID *int64
	role   *int
	status *int
	name   string
}

// plan returns what KooDrive should hold after a write and the events
// that take it there from old. res is the mapping of the resource as
// written; deleted marks a deleted resource.
func plan(old mapped, res mapping.Result, deleted, skipOutOfScope bool, name string) (mapped, []change) {
	disabled := old.Status != nil && *old.Status == kdapi.StatusDisabled
	switch {
	case deleted:
		if !old.Exists {
			return mapped{}, nil
		}
		return mapped{}, []change{{action: handlers.Deleted, userID: old.UserID}}
	case !res.InScope:
		if !old.Exists || skipOutOfScope || disabled {
			return old, nil
		}
		next := old
		next.Status, next.ScopeDisabled = ptr(kdapi.StatusDisabled), true
		return next, []change{{action: handlers.Disabled, userID: old.UserID}}
	case !old.Exists:
		next := mapped{Exists: true, UserID: res.UserID, DeptID: res.DeptID, Role: res.Role, Status: res.Status}
		return next, []change{{action: handlers.Hired, userID: res.UserID, deptID: res.DeptID, role: res.Role, status: res.Status, name: name}}
	case old.UserID != res.UserID:
		// The person's KooDrive id moved (externalId changed): the old
		// account is disabled and the new one hired.
		var out []change
		if !disabled {
			out = append(out, change{action: handlers.Disabled, userID: old.UserID})
		}
		next := mapped{Exists: true, UserID: res.UserID, DeptID: res.DeptID, Role: res.Role, Status: res.Status}
		return next, append(out, change{action: handlers.Hired, userID: res.UserID, deptID: res.DeptID, role: res.Role, status: res.Status, name: name})
	}
	next := old
	next.ScopeDisabled = false
	ch := change{action: handlers.Changed, userID: old.UserID}
	if res.DeptID != nil && !equal(old.DeptID, res.DeptID) {
		ch.deptID, next.DeptID = res.DeptID, res.DeptID
	}
	if res.Role != nil && !equal(old.Role, res.Role) {
		ch.role, next.Role = res.Role, res.Role
	}
	var out []change
	if ch.deptID != nil || ch.role != nil {
		out = append(out, ch)
	}
	want := res.Status
	if want == nil && old.ScopeDisabled {
		want = ptr(kdapi.StatusEnabled) // back in scope
	}
	if want != nil && *want != statusOf(old) {
		next.Status = want
		a := handlers.Enabled
		if *want == kdapi.StatusDisabled {
			a = handlers.Disabled
		}
		out = append(out, change{action: a, userID: old.UserID})
	}
	return next, out
}

// statusOf is the status KooDrive holds: a hire without one is enabled.
func statusOf(m mapped) int {
	if m.Status == nil {
		return kdapi.StatusEnabled
	}
	return *m.Status
}

func equal[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func ptr[T any](v T) *T { return &v }

// cloudEvent is an identity event as the consumer's handlers.Decoder reads
// it (structured mode).
type cloudEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            ceData `json:"data"`
}

type ceData struct {
	UserID string `json:"userId"`
	DeptID string `json:"deptId,omitempty"`
	Role   *int   `json:"role,omitempty"`
	Status *int   `json:"status,omitempty"`
	Name   string `json:"name,omitempty"`
}

// eventID is the deterministic id of the n-th event of the write of
// resource id made over revision base (0 for a create): a given write can
// only succeed once over a given revision, so ids never repeat, and the
// same write tried again makes the same ids.
func eventID(id string, base uint64, n int) string {
	return "scim:" + id + ":" + strconv.FormatUint(base, 10) + ":" + strconv.Itoa(n)
}

// messages builds the messages of changes: structured CloudEvents on
// <prefix>.<action>.<userId> with Nats-Msg-Id = handlers.EventKey(source, id).
func (s *Server) messages(id string, base uint64, changes []change) []outMsg {
	if len(changes) == 0 {
		return nil
	}
	now := s.now().UTC().Format(time.RFC3339Nano)
	out := make([]outMsg, 0, len(changes))
	for i, c := range changes {
		ev := cloudEvent{SpecVersion: "1.0", ID: eventID(id, base, i), Source: s.opts.Source,
			Type: handlers.TypePrefix + string(c.action), Subject: c.userID, Time: now,
			DataContentType: "application/json",
			Data:            ceData{UserID: c.userID, Role: c.role, Status: c.status, Name: c.name}}
		if c.deptID != nil {
			ev.Data.DeptID = strconv.FormatInt(*c.deptID, 10)
		}
		b, _ := json.Marshal(ev) // plain types: cannot fail
		out = append(out, outMsg{
			Subject: s.opts.SubjectPrefix + "." + string(c.action) + "." + c.userID,
			Header:  map[string][]string{jetstream.MsgIDHeader: {eventKey(ev.Source, ev.ID)}},
			Data:    b,
		})
	}
	return out
}

// deadLetter builds, for a user the mapping cannot map, a dead letter on
// <DLQPrefix>.mapping.<action>.<userId> (the SCIM User as its body; headers
// as the consumer's dead letters have them, without an original subject: a
// replay cannot fix a mapping) and its outcome on
// <OutcomePrefix>.deadlettered.<action>.<userId>.
func (s *Server) deadLetter(id string, base uint64, action handlers.Action, userID string, res resource, merr error) []outMsg {
	evID := eventID(id, base, 0)
	now := s.now().UTC()
	body, _ := json.Marshal(res)
	detail := merr.Error()
	var me *mapping.Error
	if errors.As(merr, &me) {
		detail = me.Error()
	}
	h := map[string][]string{
		jetstream.MsgIDHeader:    {"dlq-" + eventKey(s.opts.Source, evID)},
		outcome.HdrReason:        {clipText(detail)},
		outcome.HdrErrorClass:    {outcome.ReasonMapping.String()},
		outcome.HdrAttempts:      {"0"},
		outcome.HdrEventID:       {evID},
		outcome.HdrEventSource:   {s.opts.Source},
		outcome.HdrUserID:        {userID},
		outcome.HdrDeadAt:        {now.Format(time.RFC3339Nano)},
		"Kdsync-Scim-Resource":   {"Users/" + id},
		"Content-Type":           {mediaType},
		"Kdsync-Mapping-File":    {s.opts.Mapping.Name()},
		"Kdsync-Original-Source": {"scim"},
	}
	out := outcome.Outcome{EventID: evID, Source: s.opts.Source, UserID: userID, Action: action,
		Result: outcome.Deadlettered, Reason: outcome.ReasonMapping, Error: detail,
		Note: "SCIM resource Users/" + id + " could not be mapped; fix the mapping (kdsync mapping test), then the next write or kdsync's start maps it again",
		Time: now}
	ob, _ := json.Marshal(out)
	return []outMsg{
		{Subject: outcome.DeadLetterSubject(s.opts.DLQPrefix, outcome.ReasonMapping, action, userID), Header: h, Data: body, BestEffort: true},
		{Subject: outcome.Subject(s.opts.OutcomePrefix, outcome.Deadlettered, action, userID),
			Header: map[string][]string{jetstream.MsgIDHeader: {"outcome-" + eventKey(s.opts.Source, evID)}}, Data: ob, BestEffort: true},
	}
}
