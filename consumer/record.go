package consumer

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// The per-user record (outcome.Record) as the consumer reads and moves it.

// parked reports whether the user has events in the parking stream not
// yet finished.
func parked(r *outcome.Record) bool { return r.Parked > r.Seq }

const recentIDs = 8

// seen reports whether the event ev finished recently. Records written
// before events were told apart by source and id hold bare event ids:
// those still match ev's id.
func seen(r *outcome.Record, ev *handlers.Event) bool {
	return ev != nil && ev.ID != "" && seenKey(r, ev.Key(), ev.ID)
}

func seenKey(r *outcome.Record, key, id string) bool {
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

// nextRecord returns the record after r once the event ev (nil when it
// could not be decoded) at seq finished, leading to state (nil: no
// change). r is left as it is.
func nextRecord(r outcome.Record, seq uint64, ev *handlers.Event, state *handlers.State, at time.Time) outcome.Record {
	n := r
	n.Seq = seq
	n.At = at
	if n.RetrySeq <= seq {
		n.RetrySeq, n.RetrySince = 0, time.Time{}
	}
	if ev != nil && ev.ID != "" {
		if key := ev.Key(); !seenKey(&r, key, ev.ID) {
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
func staleReplay(r *outcome.Record, original string) bool {
	o, err := strconv.ParseUint(original, 10, 64)
	return err == nil && r.AppliedSeq > o
}

func marshalRecord(r *outcome.Record) []byte {
	b, _ := json.Marshal(r) // cannot fail: plain fields
	return b
}
