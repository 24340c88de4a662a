package main

import (
	"strings"
	"testing"

	"github.com/kdsync/kdsync/handlers"
)

// TestPublishCommand: kdsync publish sends the event built from its flags
// or a file into the stream, once per event id, and refuses one the
// consumer would dead-letter without sending it.
func TestPublishCommand(t *testing.T) {
	url, js := natsWithStreams(t)
	publish := func(args ...string) (int, string, string) {
		return kdsync(t, append([]string{"publish", "-nats-url", url}, args...)...)
	}
	hire := []string{"-type", "hired", "-user", "1001", "-dept", "42", "-role", "1", "-id", "e-1"}
	if code, out, errOut := publish(hire...); code != 0 || !strings.Contains(out, "published identity.employee.hired.1001 to IDENTITY as sequence 1\n") {
		t.Fatalf("publish: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := publish(hire...); code != 0 || !strings.Contains(out, "(duplicate: already in the stream)") {
		t.Errorf("publish again: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := publish("-type", "disabled", "-user", "1001", "-binary"); code != 0 || !strings.Contains(out, "sequence 2") {
		t.Errorf("publish -binary: exit %d: %s%s", code, out, errOut)
	}
	file := writeFile(t, "ev.json", `{"specversion":"1.0","id":"e-3","source":"hris","type":"employee.enabled","subject":"1001","data":{"userId":"1001"}}`)
	if code, out, errOut := publish("-file", file); code != 0 || !strings.Contains(out, "identity.employee.enabled.1001 to IDENTITY as sequence 3") {
		t.Errorf("publish -file: exit %d: %s%s", code, out, errOut)
	}
	for name, args := range map[string][]string{
		"no user":      {"-type", "hired"},
		"bad role":     {"-type", "changed", "-user", "1001", "-role", "admin"},
		"bad action":   {"-type", "fired", "-user", "1001"},
		"bad file":     {"-file", writeFile(t, "bad.json", `{"specversion":"1.0"`)},
		"missing file": {"-file", file + ".none"},
	} {
		if code, out, errOut := publish(args...); code != 1 || errOut == "" {
			t.Errorf("%s: exit %d: %s%s", name, code, out, errOut)
		}
	}
	msgs := streamMsgs(t, js)
	if len(msgs) != 3 {
		t.Fatalf("%d events in the stream, want 3", len(msgs))
	}
	for i, m := range msgs {
		ev, err := (handlers.Decoder{}).Decode(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Errorf("event %d: %v", i+1, err)
			continue
		}
		if m.Header.Get("Nats-Msg-Id") != ev.Key() {
			t.Errorf("event %d: Nats-Msg-Id %q, want the event's key", i+1, m.Header.Get("Nats-Msg-Id"))
		}
	}
	if ev, _ := (handlers.Decoder{}).Decode(msgs[1].Subject, msgs[1].Header, msgs[1].Data); ev == nil || !ev.Binary {
		t.Error("-binary: not a binary-mode event")
	}
}
