// Package guard keeps kdsync's mass-deprovisioning guard: a limit on
// disables and deletes per time window. Past the limit, further
// deprovisioning events are held (not applied, not acknowledged, never
// dropped) until an operator releases or rejects them. The state lives in
// a JetStream KV bucket, so holds survive restarts and are shared by every
// instance:
//
//	window        the times of the deprovisions counted in the window
//	held.<seq>    a held event (stream sequence <seq>) and the operator's decision
//	tripped       present while some held event awaits a decision
//
// The consumer parks held events out of JetStream's ack window (see the
// consumer package's park.go); this package keeps only the holds.
package guard

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Decision is an operator's verdict on a held event.
type Decision string

// Decisions.
const (
	Pending Decision = ""
	Release Decision = "release"
	Reject  Decision = "reject"
)

// Hold is one held event.
type Hold struct {
	Seq      uint64    `json:"seq"`
	EventID  string    `json:"eventId"`
	UserID   string    `json:"userId"`
	Action   string    `json:"action"`
	Subject  string    `json:"subject"`
	Since    time.Time `json:"since"`
	Decision Decision  `json:"decision,omitempty"`
	By       string    `json:"by,omitempty"` // who decided, free text
	At       time.Time `json:"at,omitzero"`
}

// Limit is at most N deprovisions per Window.
type Limit struct {
	N      int
	Window time.Duration
}

// ParseLimit reads "50/10m". An empty string means no limit (zero Limit).
func ParseLimit(s string) (Limit, error) {
	if s == "" || s == "0" || s == "off" {
		return Limit{}, nil
	}
	n, w, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("deprovision limit %q: want N/duration, e.g. 50/10m", s)
	}
	cnt, err := strconv.Atoi(n)
	if err != nil || cnt < 1 {
		return Limit{}, fmt.Errorf("deprovision limit %q: %q is not a positive count", s, n)
	}
	d, err := time.ParseDuration(w)
	if err != nil || d <= 0 {
		return Limit{}, fmt.Errorf("deprovision limit %q: %q is not a positive duration", s, w)
	}
	return Limit{N: cnt, Window: d}, nil
}

// String formats the limit as ParseLimit reads it.
func (l Limit) String() string {
	if l.N == 0 {
		return "off"
	}
	return strconv.Itoa(l.N) + "/" + l.Window.String()
}

// Store is the guard's state in a KV bucket.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// Open creates (or binds, when create is false) the bucket. Each kdsync
// deployment that acts on its own (the active instances, a shadow
// instance) needs its own bucket: holds are keyed by stream sequence and
// Finish deletes them, so two deployments sharing one would count into
// each other's window and clear each other's holds.
func Open(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, create bool) (*Store, error) {
	var kv jetstream.KeyValue
	var err error
	if create {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "kdsync: mass-deprovisioning guard (window and held events)",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    max(replicas, 1),
		})
	} else {
		kv, err = js.KeyValue(ctx, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("guard: bucket %s: %w", bucket, err)
	}
	return &Store{kv: kv, now: time.Now}, nil
}

type window struct {
	Times []time.Time `json:"times"`
}

func holdKey(seq uint64) string { return "held." + strconv.FormatUint(seq, 10) }

// Verdict is what the guard says of one deprovisioning event.
type Verdict int

// Verdicts.
const (
	Admit    Verdict = iota // apply it
	Wait                    // held: ask again later
	Rejected                // an operator rejected it
)

// Check decides on the deprovisioning event h (its Seq, ids and subject
// set). A held event stays held until decided; while any event is held
// every new deprovision is held too (the guard has tripped); otherwise the
// event is counted in the window and admitted below the limit, held at it.
// released is true when the event passes because an operator released it.
func (s *Store) Check(ctx context.Context, l Limit, h Hold) (v Verdict, released bool, err error) {
	cur, err := s.hold(ctx, h.Seq)
	if err != nil {
		return Wait, false, err
	}
	if cur != nil {
		switch cur.Decision {
		case Release:
			return Admit, true, nil
		case Reject:
			return Rejected, false, nil
		}
		return Wait, false, nil
	}
	switch _, err := s.kv.Get(ctx, trippedKey); {
	case err == nil:
		return Wait, false, s.put(ctx, h)
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return Wait, false, fmt.Errorf("guard: read %s: %w", trippedKey, err)
	}
	for range 5 {
		now := s.now()
		e, err := s.kv.Get(ctx, "window")
		var w window
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return Wait, false, fmt.Errorf("guard: read window: %w", err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &w); err != nil {
				w = window{}
			}
		}
		w.Times = slices.DeleteFunc(w.Times, func(t time.Time) bool { return now.Sub(t) >= l.Window })
		if len(w.Times) >= l.N {
			return Wait, false, s.put(ctx, h)
		}
		w.Times = append(w.Times, now)
		b, _ := json.Marshal(w)
		if rev == 0 {
			_, err = s.kv.Create(ctx, "window", b)
		} else {
			_, err = s.kv.Update(ctx, "window", b, rev)
		}
		if err == nil {
			return Admit, false, nil
		}
		// Another instance counted at the same time: read again.
	}
	return Wait, false, errors.New("guard: the window kept changing under us")
}

func (s *Store) put(ctx context.Context, h Hold) error {
	if h.Since.IsZero() {
		h.Since = s.now().UTC()
	}
	b, _ := json.Marshal(h)
	if _, err := s.kv.Create(ctx, holdKey(h.Seq), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("guard: hold %d: %w", h.Seq, err)
	}
	if _, err := s.kv.Put(ctx, trippedKey, []byte(strconv.FormatUint(h.Seq, 10))); err != nil {
		return fmt.Errorf("guard: mark tripped: %w", err)
	}
	return nil
}

// trippedKey is present while some held event awaits a decision: every
// new deprovision is held too, without listing the holds.
const trippedKey = "tripped"

func (s *Store) hold(ctx context.Context, seq uint64) (*Hold, error) {
	e, err := s.kv.Get(ctx, holdKey(seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("guard: read hold %d: %w", seq, err)
	}
	var h Hold
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return nil, fmt.Errorf("guard: hold %d unreadable: %w", seq, err)
	}
	return &h, nil
}

// Held lists the held events (pending and decided, not yet finished), in
// stream order.
// It reads them in one pass (a watch of their current values), so that
// the consumer can list thousands every few seconds.
func (s *Store) Held(ctx context.Context) ([]Hold, error) {
	w, err := s.kv.Watch(ctx, "held.>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("guard: list holds: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []Hold
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("guard: list holds: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("guard: list holds: the watch ended early")
			}
			if e == nil { // the current values are all in
				slices.SortFunc(out, func(a, b Hold) int { return cmp.Compare(a.Seq, b.Seq) })
				return out, nil
			}
			if _, err := strconv.ParseUint(strings.TrimPrefix(e.Key(), "held."), 10, 64); err != nil {
				continue
			}
			var h Hold
			if err := json.Unmarshal(e.Value(), &h); err != nil {
				return nil, fmt.Errorf("guard: hold %s unreadable: %w", e.Key(), err)
			}
			out = append(out, h)
		}
	}
}

// Decide records an operator's decision on the held events seqs (all
// pending ones when seqs is empty) and returns those decided. Releasing
// also clears the window, so that the released events and what follows
// are not held again at once.
func (s *Store) Decide(ctx context.Context, seqs []uint64, d Decision, by string) ([]Hold, error) {
	if d != Release && d != Reject {
		return nil, fmt.Errorf("guard: decision %q: want release or reject", d)
	}
	held, err := s.Held(ctx)
	if err != nil {
		return nil, err
	}
	var done []Hold
	for _, h := range held {
		if h.Decision != Pending || len(seqs) > 0 && !slices.Contains(seqs, h.Seq) {
			continue
		}
		h.Decision, h.By, h.At = d, by, s.now().UTC()
		b, _ := json.Marshal(h)
		if _, err := s.kv.Put(ctx, holdKey(h.Seq), b); err != nil {
			return done, fmt.Errorf("guard: decide %d: %w", h.Seq, err)
		}
		done = append(done, h)
	}
	if d == Release && len(done) > 0 {
		if err := s.kv.Delete(ctx, "window"); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return done, fmt.Errorf("guard: reset window: %w", err)
		}
	}
	return done, s.untrip(ctx)
}

// untrip clears the tripped mark when no hold awaits a decision; a hold
// made meanwhile marks it again.
func (s *Store) untrip(ctx context.Context) error {
	held, err := s.Held(ctx)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(held, func(x Hold) bool { return x.Decision == Pending }) {
		return nil
	}
	if err := s.kv.Delete(ctx, trippedKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("guard: clear %s: %w", trippedKey, err)
	}
	again, err := s.Held(ctx)
	if err != nil {
		return err
	}
	for _, h := range again {
		if h.Decision == Pending {
			_, err := s.kv.Put(ctx, trippedKey, []byte(strconv.FormatUint(h.Seq, 10)))
			return err
		}
	}
	return nil
}

// Finish forgets a held event once its outcome is stored.
func (s *Store) Finish(ctx context.Context, seq uint64) error {
	if err := s.kv.Delete(ctx, holdKey(seq)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("guard: finish %d: %w", seq, err)
	}
	return nil
}

// Counted is the number of deprovisions in the current window.
func (s *Store) Counted(ctx context.Context, l Limit) (int, error) {
	e, err := s.kv.Get(ctx, "window")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("guard: read window: %w", err)
	}
	var w window
	_ = json.Unmarshal(e.Value(), &w)
	now := s.now()
	n := 0
	for _, t := range w.Times {
		if now.Sub(t) < l.Window {
			n++
		}
	}
	return n, nil
}
