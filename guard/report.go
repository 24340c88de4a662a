package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
)

// What kdsync guard prints.

// StatusOptions say what PrintStatus reports on.
type StatusOptions struct {
	Bucket     string
	ParkStream string
	Limit      Limit // zero: the window's count is not shown
	JSON       bool
	// ParkKey is the key a hold's user's events are parked under;
	// required.
	ParkKey func(Hold) string
}

// PrintStatus prints the held events, the window's count and what is
// parked: the held events and their users' later events, out of kdsync's
// ack window (kdsync guard status).
func PrintStatus(ctx context.Context, stdout io.Writer, js jetstream.JetStream, st *Store, c StatusOptions) error {
	held, err := st.Held(ctx)
	if err != nil {
		return err
	}
	counted := -1
	if c.Limit.N > 0 {
		if counted, err = st.Counted(ctx, c.Limit); err != nil {
			return err
		}
	}
	parked, perr := ReadParked(ctx, js, c.ParkStream)
	if perr != nil && !errors.Is(perr, jetstream.ErrStreamNotFound) {
		return perr
	}
	if parked == nil {
		parked = &Parked{Stream: c.ParkStream}
	}
	parkedOf := func(h Hold) uint64 { return parked.ByUser[c.ParkKey(h)] }
	if c.JSON {
		type heldJSON struct {
			Hold
			Parked uint64 `json:"parked"`
		}
		hs := make([]heldJSON, 0, len(held))
		for _, h := range held {
			hs = append(hs, heldJSON{h, parkedOf(h)})
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"bucket": c.Bucket, "held": hs, "counted": counted,
			"limit": c.Limit.String(), "parked": parked})
	}
	fmt.Fprintf(stdout, "bucket: %s\n", c.Bucket)
	if counted >= 0 {
		fmt.Fprintf(stdout, "window: %d of %s\n", counted, c.Limit)
	} else {
		fmt.Fprintln(stdout, "window: not shown (give -deprovision-limit or KDSYNC_DEPROVISION_LIMIT)")
	}
	pending := 0
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tHELD SINCE\tACTION\tUSER\tEVENT ID\tDECISION\tPARKED")
	for _, h := range held {
		d := string(h.Decision)
		if d == "" {
			d, pending = "pending", pending+1
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", h.Seq, h.Since.UTC().Format("2006-01-02T15:04:05Z"), h.Action, h.UserID, h.EventID, d, parkedOf(h))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d held, %d pending a decision\n", len(held), pending)
	if perr != nil {
		fmt.Fprintf(stdout, "parked: none (no parking stream %s yet; see -park-stream)\n", c.ParkStream)
	} else {
		fmt.Fprintf(stdout, "parked: %d events of %d users in %s, out of kdsync's ack window (other users flow); each user's are applied in order once decided\n",
			parked.Events, parked.Users, parked.Stream)
	}
	return nil
}

// DecideReport records d, by whom, on the held events seqs (nil: every
// one pending), prints each, and says which of seqs were not pending a
// decision (kdsync guard release|reject).
func DecideReport(ctx context.Context, stdout io.Writer, st *Store, seqs []uint64, d Decision, by string) error {
	done, err := st.Decide(ctx, seqs, d, by)
	past := map[Decision]string{Release: "released", Reject: "rejected"}[d]
	for _, h := range done {
		fmt.Fprintf(stdout, "%s %d (%s %s)\n", past, h.Seq, h.Action, h.UserID)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d held events %s; kdsync acts on them within seconds\n", len(done), past)
	var missing []uint64
	for _, s := range seqs {
		if !slices.ContainsFunc(done, func(h Hold) bool { return h.Seq == s }) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not pending a decision (not held, or decided already): %v (see kdsync guard status)", missing)
	}
	return nil
}
