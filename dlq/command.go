package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Command is one kdsync dlq command, as its flags say it.
type Command struct {
	Verb   string // list, show, replay or purge
	Ref    string // show: a DLQ sequence, an event id or the original Nats-Msg-Id
	Sel    Selector
	All    bool // replay, purge: every dead letter, no selector given
	JSON   bool
	DryRun bool // replay: list what would be replayed, replay nothing
	Replay ReplayOptions
	Yes    bool // purge: really remove
}

// Verbs are the commands of kdsync dlq.
var Verbs = []string{"list", "show", "replay", "purge"}

// ErrNoSelector is a replay or purge that names no dead letters: it needs
// a selector, or All to mean every one.
var ErrNoSelector = errors.New("give a selector (-seq, -id, -user, -reason, -action, -since, -until) or -all")

// Validate reports a command that cannot run: show without Ref, or
// ErrNoSelector.
func (c *Command) Validate() error {
	switch {
	case c.Verb == "show" && c.Ref == "":
		return errors.New("give a DLQ sequence, an event id or the original Nats-Msg-Id")
	case (c.Verb == "replay" || c.Verb == "purge") && c.Sel.Empty() && !c.All:
		return ErrNoSelector
	}
	return nil
}

// Run validates c, then does it on store, its report written to w.
func (c *Command) Run(ctx context.Context, w io.Writer, store *Store) error {
	if err := c.Validate(); err != nil {
		return err
	}
	switch c.Verb {
	case "list":
		ls, err := store.List(ctx, c.Sel)
		if err != nil {
			return err
		}
		return PrintLetters(w, ls, c.JSON)
	case "show":
		return Show(ctx, w, store, c.Ref, c.JSON)
	case "replay":
		return ReplayReport(ctx, w, store, c.Sel, c.Replay, c.DryRun, c.JSON)
	case "purge":
		return PurgeReport(ctx, w, store, c.Sel, c.Yes, c.JSON)
	}
	return fmt.Errorf("dlq: unknown command %q", c.Verb)
}
