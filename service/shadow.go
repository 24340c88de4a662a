package service

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/outcome"
)

// shadowNames are the names a shadow instance takes in place of the
// active instances' defaults: its own consumer, outcome stream, state,
// members and guard buckets and park stream. The members bucket holds the
// partition leases (p.<n>): shared, a shadow instance would take
// partitions from active ones. The guard gets its own bucket rather than
// being asked without holding, which would need a second code path in
// the consumer: shared, shadow would count into the active window,
// collide on held.<seq> and, finishing its holds, delete the active ones
// (a rejected disable could then be applied). In its own bucket it holds
// and counts as the active guard would, which is what a canary should
// show; kdsync guard -shadow reaches those holds.
var shadowNames = []struct {
	setting        string // as kdsync names it: -<setting>, KDSYNC_<SETTING>
	active, shadow string
	field          func(*consumer.Options) *string
}{
	{"consumer", outcome.DefaultDurable, outcome.ShadowDurable, func(c *consumer.Options) *string { return &c.Consumer }},
	{"outcome-stream", outcome.DefaultOutcomeStream, outcome.ShadowOutcomeStream, func(c *consumer.Options) *string { return &c.OutcomeStream }},
	{"outcome-prefix", outcome.DefaultOutcomePrefix, outcome.ShadowOutcomePrefix, func(c *consumer.Options) *string { return &c.OutcomePrefix }},
	{"state-bucket", outcome.DefaultStateBucket, outcome.ShadowStateBucket, func(c *consumer.Options) *string { return &c.StateBucket }},
	{"guard-bucket", outcome.DefaultGuardBucket, outcome.ShadowGuardBucket, func(c *consumer.Options) *string { return &c.GuardBucket }},
	{"park-stream", outcome.DefaultParkStream, outcome.ShadowParkStream, func(c *consumer.Options) *string { return &c.ParkStream }},
	{"park-prefix", outcome.DefaultParkPrefix, outcome.ShadowParkPrefix, func(c *consumer.Options) *string { return &c.ParkPrefix }},
	{"members-bucket", outcome.DefaultMembersBucket, outcome.ShadowMembersBucket, func(c *consumer.Options) *string { return &c.MembersBucket }},
}

// ApplyShadow readies o to run in shadow mode (it sets o.Shadow) beside
// the active instances. Each name of the consumer's that the operator did
// not give (given reports whether a setting, named as kdsync's flags name
// it, was set) becomes the shadow's own (outcome.Shadow*); one given as
// the active instances' default is an error, most likely their
// environment copied: sharing their consumer would take their events
// away. Every such name is reported. Repairs are events published into
// the stream, a write: periodic reconciliation only reports and exports,
// and a reconcile-apply given is dropped with a warning on o.Logger.
func (o *Options) ApplyShadow(given func(setting string) bool) error {
	o.Shadow = true
	var errs []error
	for _, n := range shadowNames {
		name := n.field(&o.Consumer)
		switch {
		case !given(n.setting):
			*name = n.shadow
		case *name == n.active:
			errs = append(errs, fmt.Errorf("shadow mode with %s %q would share the active instance's: unset it (KDSYNC_%s) or name another",
				n.setting, *name, strings.ToUpper(strings.ReplaceAll(n.setting, "-", "_"))))
		}
	}
	if o.Reconcile.Apply {
		o.Reconcile.Apply = false
		if o.Logger != nil {
			o.Logger.Warn("shadow mode writes nothing: reconcile-apply is ignored, periodic reconciliation only reports and exports the drift")
		}
	}
	return errors.Join(errs...)
}
