package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Draft is an identity event as an operator gives it (kdsync publish),
// before it is encoded and checked.
type Draft struct {
	Action Action
	UserID string
	// DeptID, Role and Status are as given, empty when absent: DeptID is
	// sent as a string, Role and Status as numbers.
	DeptID, Role, Status string
	// ID is the event id; empty: a new UUID.
	ID     string
	Source string
	// Time is when it happened; zero: now.
	Time time.Time
	// Binary encodes in binary content mode (ce-* headers, the data as
	// the body) instead of structured mode (one JSON object).
	Binary bool
}

// Message is an identity event as it is published: its subject
// <prefix>.<action>.<userId>, headers and body, and the Event the
// consumer decodes from them.
type Message struct {
	Subject string
	Header  map[string][]string
	Body    []byte
	Event   *Event
}

// Encode builds d's CloudEvent on prefix and checks it with the
// consumer's decoder, so that a mistake is reported here rather than by a
// dead letter.
func (d Draft) Encode(prefix string) (*Message, error) {
	if d.Action == "" || d.UserID == "" {
		return nil, errors.New("an event needs an action and a user")
	}
	if d.ID == "" {
		d.ID = uuid.NewString()
	}
	if d.Time.IsZero() {
		d.Time = time.Now()
	}
	data := map[string]any{"userId": d.UserID}
	if d.DeptID != "" {
		data["deptId"] = d.DeptID
	}
	for _, f := range []struct{ name, value string }{{"role", d.Role}, {"status", d.Status}} {
		if f.value == "" {
			continue
		}
		n, err := strconv.Atoi(f.value)
		if err != nil {
			return nil, fmt.Errorf("%s %q: want a number", f.name, f.value)
		}
		data[f.name] = n
	}
	now := d.Time.UTC().Format(time.RFC3339Nano)
	typ := TypePrefix + string(d.Action)
	header := map[string][]string{}
	var body []byte
	var err error
	if d.Binary {
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": d.ID, "ce-source": d.Source, "ce-type": typ,
			"ce-subject": d.UserID, "ce-time": now, "content-type": "application/json"} {
			header[k] = []string{v}
		}
		body, err = json.Marshal(data)
	} else {
		body, err = json.Marshal(map[string]any{
			"specversion": "1.0", "id": d.ID, "source": d.Source, "type": typ,
			"subject": d.UserID, "time": now, "datacontenttype": "application/json", "data": data,
		})
	}
	if err != nil {
		return nil, err
	}
	return check(prefix+"."+string(d.Action)+"."+d.UserID, header, body)
}

// MessageOf reads body, a structured CloudEvent, as a Message on
// <prefix>.<action>.<userId> (its type's action and data.userId), checked
// with the consumer's decoder.
func MessageOf(prefix string, body []byte) (*Message, error) {
	var head struct {
		Type string `json:"type"`
		Data struct {
			UserID string `json:"userId"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, err
	}
	action := head.Type[min(len(head.Type), len(TypePrefix)):]
	return check(prefix+"."+action+"."+head.Data.UserID, map[string][]string{}, body)
}

func check(subject string, header map[string][]string, body []byte) (*Message, error) {
	ev, err := (Decoder{}).Decode(subject, header, body)
	if err != nil {
		return nil, fmt.Errorf("the event would be dead-lettered: %w", err)
	}
	return &Message{Subject: subject, Header: header, Body: body, Event: ev}, nil
}
