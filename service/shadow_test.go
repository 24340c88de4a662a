package service_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/service"
)

// TestApplyShadow: names not given become the shadow's own, names given
// win unless they are the active instances' defaults (each reported), and
// periodic reconciliation never publishes repairs in shadow mode.
func TestApplyShadow(t *testing.T) {
	t.Parallel()
	active := consumer.Options{Consumer: outcome.DefaultDurable, OutcomeStream: outcome.DefaultOutcomeStream,
		OutcomePrefix: outcome.DefaultOutcomePrefix, StateBucket: outcome.DefaultStateBucket, GuardBucket: outcome.DefaultGuardBucket,
		ParkStream: outcome.DefaultParkStream, ParkPrefix: outcome.DefaultParkPrefix}
	given := func(names ...string) func(string) bool {
		return func(s string) bool {
			for _, n := range names {
				if n == s {
					return true
				}
			}
			return false
		}
	}

	var logged bytes.Buffer
	o := service.Options{Consumer: active, Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	o.Reconcile.Apply = true
	if err := o.ApplyShadow(given()); err != nil {
		t.Fatal(err)
	}
	c := o.Consumer
	want := consumer.Options{Consumer: outcome.ShadowDurable, OutcomeStream: outcome.ShadowOutcomeStream,
		OutcomePrefix: outcome.ShadowOutcomePrefix, StateBucket: outcome.ShadowStateBucket, GuardBucket: outcome.ShadowGuardBucket,
		ParkStream: outcome.ShadowParkStream, ParkPrefix: outcome.ShadowParkPrefix, MembersBucket: outcome.ShadowMembersBucket}
	if c.Consumer != want.Consumer || c.OutcomeStream != want.OutcomeStream || c.OutcomePrefix != want.OutcomePrefix ||
		c.StateBucket != want.StateBucket || c.GuardBucket != want.GuardBucket || c.ParkStream != want.ParkStream ||
		c.ParkPrefix != want.ParkPrefix || c.MembersBucket != want.MembersBucket {
		t.Errorf("names not given: %+v", c)
	}
	if !o.Shadow || o.Reconcile.Apply || !strings.Contains(logged.String(), "reconcile-apply is ignored") {
		t.Errorf("shadow %v, reconcile apply %v, logged %q", o.Shadow, o.Reconcile.Apply, logged.String())
	}

	o = service.Options{Consumer: active}
	o.Consumer.Consumer, o.Consumer.StateBucket = "canary", "S"
	if err := o.ApplyShadow(given("consumer", "state-bucket")); err != nil || o.Consumer.Consumer != "canary" || o.Consumer.StateBucket != "S" {
		t.Errorf("names given: %v, %+v", err, o.Consumer)
	}

	o = service.Options{Consumer: active}
	err := o.ApplyShadow(given("consumer", "outcome-prefix", "park-stream"))
	for _, w := range []string{`consumer "kdsync" would share`, "KDSYNC_CONSUMER", `outcome-prefix "kdsync.outcome"`, "KDSYNC_OUTCOME_PREFIX", "KDSYNC_PARK_STREAM"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("the active names given: %v; want %q", err, w)
		}
	}
}
