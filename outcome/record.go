package outcome

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/kdsync/kdsync/handlers"
)

// Record is what kdsync keeps per user in its KV bucket (KVKey): the
// stream sequence of the last event it finished (the watermark), the keys
// of the last few events (handlers.EventKey: source and id), and the
// KooDrive state it last applied. Events at or below the watermark are
// skipped; the state is what reconciliation compares KooDrive with.
type Record struct {
	Seq uint64 `json:"seq"`
	// AppliedSeq is the sequence of the last event applied to KooDrive
	// (Seq also moves for skips and dead letters).
	AppliedSeq uint64         `json:"appliedSeq,omitempty"`
	Recent     []string       `json:"recent,omitempty"`
	State      handlers.State `json:"state"`
	At         time.Time      `json:"at"`
	// Parked is the stream sequence of the last event of this user parked
	// in the parking stream (see consumer/park.go): while it is above Seq
	// the user has parked events, and every later event of theirs is
	// parked behind them, in order, until they are released or rejected
	// and drained.
	Parked uint64 `json:"parked,omitempty"`
	// RetrySeq and RetrySince are the event being retried (the user's
	// head) and when its first attempt was made: its retry budget is
	// counted from then, across redeliveries, restarts and handovers.
	// Written at its first retryable failure; void once Seq reaches it.
	RetrySeq   uint64    `json:"retrySeq,omitempty"`
	RetrySince time.Time `json:"retrySince,omitzero"`
}

// DecodeRecord reads a record from its KV value, the JSON encoding/json
// writes: the one reader of records, for the consumer, usertrace and
// reconcile. A record that does not decode is the zero record and the
// error.
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// KVKey maps a user id (the consumer's lane key) to a valid KV key. Digits
// pass as they are; anything else is hashed, so no subject token can form
// a bad key.
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
