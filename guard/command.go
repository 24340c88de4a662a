package guard

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// Command is one kdsync guard command, as its flags say it.
type Command struct {
	Verb   string        // status, release or reject
	Status StatusOptions // Bucket for every verb
	// Seqs names the held events to release or reject; All means every
	// one pending a decision. One of them, for release and reject only.
	Seqs []uint64
	All  bool
	By   string // who decides, recorded with the decision
}

// Verbs are the commands of kdsync guard.
var Verbs = []string{"status", "release", "reject"}

// Validate reports a command that names held events where it should not,
// or names none where it must.
func (c *Command) Validate() error {
	switch c.Verb {
	case "release", "reject":
		if (len(c.Seqs) == 0) == !c.All {
			return errors.New("name the held events with -seq, or give -all (see kdsync guard status)")
		}
	default:
		if len(c.Seqs) > 0 || c.All {
			return fmt.Errorf("-seq and -all go with release and reject, not %s", c.Verb)
		}
	}
	return nil
}

// Run validates c, then does it on the guard bucket in js, its report
// written to w: PrintStatus, or DecideReport.
func (c *Command) Run(ctx context.Context, w io.Writer, js jetstream.JetStream) error {
	if err := c.Validate(); err != nil {
		return err
	}
	st, err := Open(ctx, js, c.Status.Bucket, 1, false)
	if err != nil {
		return fmt.Errorf("%w (is kdsync running with KDSYNC_DEPROVISION_LIMIT? a shadow instance's guard needs -shadow)", err)
	}
	if c.Verb == "status" {
		return PrintStatus(ctx, w, js, st, c.Status)
	}
	seqs := c.Seqs
	if c.All {
		seqs = nil
	}
	return DecideReport(ctx, w, st, seqs, Decision(c.Verb), c.By)
}
