package consumer_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/outcome"
)

// TestEventsToldApartBySourceAndID: two sources that use the same event id
// for different events both reach KooDrive (a leaver is not dropped as a
// duplicate of a hire), while the same event (source and id) published
// again, under a Nats-Msg-Id JetStream has not seen, is skipped as a
// duplicate.
func TestEventsToldApartBySourceAndID(t *testing.T) {
	e := newEnv(t, kdsim.Faults{})
	stop := e.run(e.options())
	defer stop()
	o := e.collect()
	js := e.js()
	const user = "1008600000000301"
	dept := strconv.FormatInt(e.sim.Departments()[0], 10)
	publish := func(msgID, source string, action handlers.Action, data map[string]any) uint64 {
		t.Helper()
		data["userId"] = user
		body, err := json.Marshal(map[string]any{"specversion": "1.0", "id": "7", "source": source,
			"type": handlers.TypePrefix + string(action), "data": data})
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: "identity.employee." + string(action) + "." + user,
			Header: nats.Header{jetstream.MsgIDHeader: {msgID}}, Data: body})
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate {
			t.Fatalf("JetStream dropped %s as a duplicate; the test needs it stored", msgID)
		}
		return ack.Sequence
	}
	outcomeOf := func(seq uint64) outcome.Outcome {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, out := range o.All() {
				if out.Stream == "IDENTITY" && out.Sequence == seq {
					return out
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no outcome for #%d", seq)
		return outcome.Outcome{}
	}

	hire := publish(handlers.EventKey("hris/workday", "7"), "hris/workday", handlers.Hired, map[string]any{"deptId": dept, "role": 1})
	leave := publish(handlers.EventKey("idp/okta", "7"), "idp/okta", handlers.Disabled, map[string]any{})
	if out := outcomeOf(hire); out.Result != outcome.Applied || out.Source != "hris/workday" {
		t.Errorf("hire: %+v, want applied", out)
	}
	if out := outcomeOf(leave); out.Result != outcome.Applied || out.Source != "idp/okta" {
		t.Errorf("disable from another source with the same id: %+v, want applied", out)
	}
	u, ok := e.sim.User(user)
	if !ok || u.User.Status != 1 {
		t.Fatalf("user after hire and disable: %+v, %v; want disabled", u, ok)
	}
	// The disable again, as a producer that re-sends after the stream's
	// duplicate window would (another Nats-Msg-Id).
	again := publish("resent-after-the-window", "idp/okta", handlers.Disabled, map[string]any{})
	if out := outcomeOf(again); out.Result != outcome.Skipped || out.Reason != outcome.SkipDuplicate {
		t.Errorf("the same event again: %+v, want skipped as a duplicate", out)
	}
}
