// Package workload generates identity-event histories for tests, the demo
// and the load tool: per user a hire, then moves, role changes, disables
// and enables, and sometimes a leaver, encoded as the contract's
// CloudEvents.
package workload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// Options shape a history.
type Options struct {
	Users         int
	EventsPerUser int
	// Departments to move people between; required.
	Departments []int64
	// Seed makes the history reproducible.
	Seed uint64
	// FirstUser is the first OrgID user id; users are numbered from it.
	FirstUser uint64
	// Prefix of subjects; default identity.employee.
	Prefix string
	// Source of the events; default hris/workload.
	Source string
	// Leavers is the share of users whose last event is a leaver
	// (deleted); default 0.1.
	Leavers float64
}

// Intent is what one event asks of KooDrive for one user, before it is
// encoded: what the checker compares KooDrive's writes with
// (checker.Event is this type).
type Intent struct {
	ID     string
	UserID string
	Action handlers.Action
	DeptID *int64
	Role   *int
	Status *int
	// Bad marks an event that must be dead-lettered as bad input.
	Bad bool
}

// Event is a generated event with its subject, source and encoded body.
type Event struct {
	Intent
	Subject string
	Source  string
	Body    []byte
}

// MsgID is the Nats-Msg-Id the event is published with: its identity,
// source and id (handlers.EventKey), as kdsync's ingress sets it.
func (e Event) MsgID() string { return handlers.EventKey(e.Source, e.ID) }

// Generate returns the events interleaved across users (round-robin with
// some shuffling), each user's events in order.
func Generate(o Options) ([]Event, error) {
	if o.Users < 1 || o.EventsPerUser < 1 {
		return nil, fmt.Errorf("workload: users (%d) and events per user (%d) must be positive", o.Users, o.EventsPerUser)
	}
	if len(o.Departments) == 0 {
		return nil, fmt.Errorf("workload: departments are required")
	}
	if o.Prefix == "" {
		o.Prefix = "identity.employee."
	}
	if o.Source == "" {
		o.Source = "hris/workload"
	}
	if o.FirstUser == 0 {
		o.FirstUser = 1008600000000000000
	}
	if o.Leavers == 0 {
		o.Leavers = 0.1
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	perUser := make([][]Intent, o.Users)
	for u := range o.Users {
		user := strconv.FormatUint(o.FirstUser+uint64(u), 10)
		status := kdapi.StatusEnabled
		for i := range o.EventsPerUser {
			ev := Intent{ID: fmt.Sprintf("%x-%d-%d", o.Seed, u, i), UserID: user}
			dept := o.Departments[rng.IntN(len(o.Departments))]
			switch {
			case i == 0:
				role := []int{0, 1, 1, 1, 5}[rng.IntN(5)]
				ev.Action, ev.DeptID, ev.Role = handlers.Hired, &dept, &role
			case i == o.EventsPerUser-1 && rng.Float64() < o.Leavers:
				ev.Action = handlers.Deleted
			default:
				switch rng.IntN(4) {
				case 0:
					ev.Action, ev.DeptID = handlers.Changed, &dept
				case 1:
					role := []int{0, 1, 2, 5}[rng.IntN(4)]
					ev.Action, ev.DeptID, ev.Role = handlers.Changed, &dept, &role
				default:
					if status == kdapi.StatusEnabled {
						ev.Action, status = handlers.Disabled, kdapi.StatusDisabled
					} else {
						ev.Action, status = handlers.Enabled, kdapi.StatusEnabled
					}
				}
			}
			perUser[u] = append(perUser[u], ev)
		}
	}
	// Interleave: pick a random user with events left each time.
	out := make([]Event, 0, o.Users*o.EventsPerUser)
	next := make([]int, o.Users)
	live := make([]int, o.Users)
	for i := range live {
		live[i] = i
	}
	base := time.Now().UTC()
	for len(live) > 0 {
		k := rng.IntN(len(live))
		u := live[k]
		ev := perUser[u][next[u]]
		next[u]++
		if next[u] == len(perUser[u]) {
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		e, err := Encode(ev, o.Prefix, o.Source, base)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Encode builds the subject and the structured-mode CloudEvent of ev.
func Encode(ev Intent, prefix, source string, at time.Time) (Event, error) {
	data := map[string]any{"userId": ev.UserID}
	if ev.DeptID != nil {
		data["deptId"] = strconv.FormatInt(*ev.DeptID, 10)
	}
	if ev.Role != nil {
		data["role"] = *ev.Role
	}
	if ev.Status != nil {
		data["status"] = *ev.Status
	}
	body, err := json.Marshal(map[string]any{
		"specversion":     "1.0",
		"id":              ev.ID,
		"source":          source,
		"type":            handlers.TypePrefix + string(ev.Action),
		"subject":         ev.UserID,
		"time":            at.Format(time.RFC3339Nano),
		"datacontenttype": "application/json",
		"data":            data,
	})
	if err != nil {
		return Event{}, fmt.Errorf("workload: encode %s: %w", ev.ID, err)
	}
	return Event{Intent: ev, Subject: prefix + string(ev.Action) + "." + ev.UserID, Source: source, Body: body}, nil
}
