package consumer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/kdsync/kdsync/handlers"
)

// Record is what kdsync keeps per user in its KV bucket: the stream
// sequence of the last event it finished (the watermark), the keys of the
// last few events (handlers.EventKey: source and id), and the KooDrive
// state it last applied. Events at or
// below the watermark are skipped; the state is what reconciliation
// compares KooDrive with.
type Record struct {
	Seq uint64 `json:"seq"`
	// AppliedSeq is the sequence of the last event applied to KooDrive
	// (Seq also moves for skips and dead letters).
	AppliedSeq uint64         `json:"appliedSeq,omitempty"`
	Recent     []string       `json:"recent,omitempty"`
	State      handlers.State `json:"state"`
	At         time.Time      `json:"at"`
	// Parked is the stream sequence of the last event of this user parked
	// in the parking stream (see park.go): while it is above Seq the user
	// has parked events, and every later event of theirs is parked behind
	// them, in order, until they are released or rejected and drained.
	Parked uint64 `json:"parked,omitempty"`
	// RetrySeq and RetrySince are the event being retried (the user's
	// head) and when its first attempt was made: its retry budget is
	// counted from then, across redeliveries, restarts and handovers.
	// Written at its first retryable failure; void once Seq reaches it.
	RetrySeq   uint64    `json:"retrySeq,omitempty"`
	RetrySince time.Time `json:"retrySince,omitzero"`
}

// parked reports whether the user has events in the parking stream not
// yet finished.
func (r *Record) parked() bool { return r.Parked > r.Seq }

const recentIDs = 8

// seen reports whether the event ev finished recently. Records written
// before events were told apart by source and id hold bare event ids:
// those still match ev's id.
func (r *Record) seen(ev *handlers.Event) bool {
	return ev != nil && ev.ID != "" && r.seenKey(ev.Key(), ev.ID)
}

func (r *Record) seenKey(key, id string) bool {
	for _, k := range r.Recent {
		if k == key || k == id && !isEventKey(k) {
			return true
		}
	}
	return false
}

func isEventKey(k string) bool {
	return len(k) == len(handlers.KeyPrefix)+32 && strings.HasPrefix(k, handlers.KeyPrefix)
}

// next returns the record after the event ev (nil when it could not be
// decoded) at seq finished, leading to state (nil: no change). r is left
// as it is.
func (r Record) next(seq uint64, ev *handlers.Event, state *handlers.State, at time.Time) Record {
	n := r
	n.Seq = seq
	n.At = at
	if n.RetrySeq <= seq {
		n.RetrySeq, n.RetrySince = 0, time.Time{}
	}
	if ev != nil && ev.ID != "" {
		if key := ev.Key(); !r.seenKey(key, ev.ID) {
			keep := r.Recent[max(0, len(r.Recent)-(recentIDs-1)):]
			n.Recent = append(append(make([]string, 0, len(keep)+1), keep...), key)
		}
	}
	if state != nil {
		n.State = r.State.Merge(*state)
		n.AppliedSeq = seq
	}
	return n
}

// staleReplay reports whether a replay of the event first stored at
// original (a decimal sequence) is older than the last event applied. A
// replay that does not say where it came from is not judged stale.
func (r *Record) staleReplay(original string) bool {
	o, err := strconv.ParseUint(original, 10, 64)
	return err == nil && r.AppliedSeq > o
}

func (r *Record) marshal() []byte {
	b, _ := json.Marshal(r) // cannot fail: plain fields
	return b
}

// KVKey maps a lane key (a user id) to a valid KV key. Digits pass as they
// are; anything else is hashed, so no subject token can form a bad key.
func KVKey(user string) string {
	ok := user != "" && len(user) <= 128
	for i := 0; ok && i < len(user); i++ {
		c := user[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_'
	}
	if ok {
		return "u." + user
	}
	s := sha256.Sum256([]byte(user))
	return "h." + hex.EncodeToString(s[:16])
}
