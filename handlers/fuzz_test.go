package handlers_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// The seed corpora are in testdata/fuzz/FuzzDecode and
// testdata/fuzz/FuzzDecodeBinary; search for more with
//
//	go test -run='^$' -fuzz=FuzzDecode$ -fuzztime=60s ./handlers
//	go test -run='^$' -fuzz=FuzzDecodeBinary -fuzztime=60s ./handlers

// FuzzDecode decodes structured events and checks the invariants of
// checkDecoded, plus agreement with encoding/json: whatever Decode accepts
// is valid JSON whose attributes encoding/json reads the same, and
// whatever encoding/json refuses as JSON Decode refuses as malformed.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, subject string) {
		d := handlers.Decoder{}
		ev, err := d.Decode(subject, nil, body)
		checkDecoded(t, subject, ev, err)
		again, err2 := d.Decode(subject, nil, body)
		if diff := cmp.Diff(ev, again); diff != "" || (err == nil) != (err2 == nil) {
			t.Fatalf("Decode is not deterministic: %v, %v\n%s", err, err2, diff)
		}

		var ie *handlers.InputError
		if errors.As(err, &ie) && (ie.Reason == handlers.ReasonTooLarge || ie.Reason == handlers.ReasonInvalidUTF8) {
			return
		}
		if !json.Valid(body) {
			if err == nil || ie.Reason != handlers.ReasonMalformed {
				t.Fatalf("encoding/json refuses the body, Decode: %v", err)
			}
			return
		}
		if err != nil {
			return
		}
		if ev.Binary {
			t.Fatalf("structured event decoded as binary")
		}
		// encoding/json reads the same attributes (Decode refused any
		// name it matches case-insensitively or twice, so they agree).
		var w struct {
			ID     string `json:"id"`
			Source string `json:"source"`
			Type   string `json:"type"`
			Data   struct {
				// A string, or an integer taken as its digits.
				UserID json.RawMessage `json:"userId"`
				Name   string          `json:"name"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &w); err != nil {
			t.Fatalf("Decode accepted what encoding/json cannot read: %v", err)
		}
		got := []string{ev.ID, ev.Source, ev.Type, ev.UserID, ev.Name}
		uid := string(w.Data.UserID)
		if len(uid) > 0 && uid[0] == '"' {
			if err := json.Unmarshal(w.Data.UserID, &uid); err != nil {
				t.Fatalf("encoding/json cannot read data.userId %s: %v", w.Data.UserID, err)
			}
		}
		want := []string{w.ID, w.Source, w.Type, uid, w.Data.Name}
		if !slices.Equal(got, want) {
			t.Fatalf("Decode read %q, encoding/json %q", got, want)
		}
		// An accepted event survives re-encoding.
		re, err := d.Decode(subject, nil, encode(t, ev))
		if err != nil {
			t.Fatalf("re-encoded event refused: %v", err)
		}
		if diff := cmp.Diff(ev, re); diff != "" {
			t.Fatalf("re-encoded event differs (-first +again):\n%s", diff)
		}
	})
}

// FuzzDecodeBinary decodes binary-mode events: ce-* headers, whose names
// take the case mask's cases, and the data object as the body.
func FuzzDecodeBinary(f *testing.F) {
	f.Fuzz(func(t *testing.T, specversion, id, source, typ, ceSubject, ceTime, contentType, subject string, caseMask uint8, body []byte) {
		header := map[string][]string{}
		for i, kv := range [][2]string{
			{"ce-specversion", specversion}, {"ce-id", id}, {"ce-source", source}, {"ce-type", typ},
			{"ce-subject", ceSubject}, {"ce-time", ceTime}, {"content-type", contentType},
		} {
			if kv[1] == "" && caseMask&(1<<7) != 0 {
				continue // absent rather than empty
			}
			name := kv[0]
			if caseMask&(1<<i) != 0 {
				name = strings.ToUpper(name)
			}
			header[name] = append(header[name], kv[1])
		}
		if caseMask&(1<<7) == 0 && id != "" {
			// The same header once more in another case, same value.
			header["Ce-Id"] = []string{id}
		}
		ev, err := handlers.Decoder{}.Decode(subject, header, body)
		checkDecoded(t, subject, ev, err)
		again, err2 := handlers.Decoder{}.Decode(subject, header, body)
		if diff := cmp.Diff(ev, again); diff != "" || (err == nil) != (err2 == nil) {
			t.Fatalf("Decode is not deterministic: %v, %v\n%s", err, err2, diff)
		}
		if err != nil {
			return
		}
		if specversion == "" {
			// Structured mode: the body was a whole event.
			if ev.Binary {
				t.Fatalf("no ce-specversion, yet decoded as binary")
			}
			return
		}
		if !ev.Binary || ev.ID != id || ev.Source != source || ev.Type != typ || ev.Subject != ceSubject {
			t.Fatalf("event %+v does not carry the headers %q %q %q %q", ev, id, source, typ, ceSubject)
		}
		if !json.Valid(body) {
			t.Fatalf("Decode accepted a body encoding/json refuses")
		}
		if ceTime != "" {
			want, perr := time.Parse(time.RFC3339Nano, ceTime)
			if perr == nil && !want.Equal(ev.Time) {
				t.Fatalf("ce-time %q read as %v, time.Parse reads %v", ceTime, ev.Time, want)
			}
		}
	})
}

// checkDecoded checks what any Decode must satisfy: exactly one of an
// event and an *InputError; an error with a known Reason whose message
// names its field; an event whose fields hold the contract's invariants.
func checkDecoded(t *testing.T, subject string, ev *handlers.Event, err error) {
	t.Helper()
	if (ev == nil) == (err == nil) {
		t.Fatalf("Decode returned event %v and error %v: want exactly one", ev, err)
	}
	if err != nil {
		var ie *handlers.InputError
		if !errors.As(err, &ie) {
			t.Fatalf("error %v (%T) is not an *InputError", err, err)
		}
		if !slices.Contains(handlers.InputReasons, ie.Reason) {
			t.Fatalf("error %v has an unknown reason %q", err, ie.Reason)
		}
		if ie.Detail == "" || !strings.Contains(ie.Error(), ie.Field) || !strings.Contains(ie.Error(), string(ie.Reason)) {
			t.Fatalf("error %q does not give its reason, field and detail", err)
		}
		if !utf8.ValidString(ie.Error()) {
			t.Fatalf("error message is not valid UTF-8: %q", err)
		}
		return
	}
	if len(ev.UserID) == 0 || len(ev.UserID) > 64 || strings.Trim(ev.UserID, "0123456789") != "" {
		t.Fatalf("UserID %q is not 1 to 64 digits", ev.UserID)
	}
	if ev.ID == "" || len(ev.ID) > 256 || ev.Source == "" {
		t.Fatalf("ID %q or Source %q invalid", ev.ID, ev.Source)
	}
	if !slices.Contains(handlers.Actions, ev.Action) || ev.Type != handlers.TypePrefix+string(ev.Action) {
		t.Fatalf("Action %q and Type %q", ev.Action, ev.Type)
	}
	if ev.Role != nil && !kdapi.ValidRole(*ev.Role) || ev.Status != nil && !kdapi.ValidStatus(*ev.Status) {
		t.Fatalf("invalid Role %v or Status %v", ev.Role, ev.Status)
	}
	if ev.DeptID != nil && *ev.DeptID <= 0 {
		t.Fatalf("DeptID %d is not positive", *ev.DeptID)
	}
	if ev.Subject != "" && ev.Subject != ev.UserID {
		t.Fatalf("Subject %q differs from UserID %q", ev.Subject, ev.UserID)
	}
	for _, s := range []string{ev.ID, ev.Source, ev.Name} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 in %q", s)
		}
	}
	if subject != "" {
		action, user, ok := handlers.ParseSubject(subject)
		if !ok || action != string(ev.Action) || user != ev.UserID {
			t.Fatalf("NATS subject %q accepted for %s of %s", subject, ev.Action, ev.UserID)
		}
	}
}

// encode writes ev as a structured event.
func encode(t *testing.T, ev *handlers.Event) []byte {
	t.Helper()
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
	if ev.Name != "" {
		data["name"] = ev.Name
	}
	env := map[string]any{"specversion": "1.0", "id": ev.ID, "source": ev.Source, "type": ev.Type, "data": data}
	if ev.Subject != "" {
		env["subject"] = ev.Subject
	}
	if !ev.Time.IsZero() {
		env["time"] = ev.Time.Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
