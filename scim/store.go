package scim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
)

// KV keys: users.<id>, groups.<id>, and the userName index
// usernames.<hash of the lower-cased userName> whose value is a user id.
const (
	userPrefix  = "users."
	groupPrefix = "groups."
	namePrefix  = "usernames."
)

// userRecord is a user's value in the bucket.
type userRecord struct {
	// Resource is the SCIM User as last written (without groups, whose
	// source is the groups' records, and meta.version, the KV revision).
	Resource resource `json:"resource"`
	// Groups are the groups the user is a member of.
	Groups []groupRef `json:"groups,omitempty"`
	// Mapped is what the events published so far make KooDrive hold.
	Mapped mapped `json:"mapped"`
	// MappingError is the mapping's failure for the resource as it is,
	// empty when it maps.
	MappingError string `json:"mappingError,omitempty"`
	// Pending are the messages this write implies, published after the
	// record is stored and cleared once acknowledged (see docs/scim.md).
	Pending []outMsg `json:"pending,omitempty"`
	// Deleted marks a user being deleted: its deletion event is pending.
	Deleted bool `json:"deleted,omitempty"`
}

type groupRef struct {
	ID      string `json:"value"`
	Display string `json:"display"`
}

// groupRecord is a group's value in the bucket.
type groupRecord struct {
	Resource resource `json:"resource"`
	// Sync lists members whose user records still need this group's
	// change (their groups and, through the mapping, their role).
	Sync    []string `json:"sync,omitempty"`
	Deleted bool     `json:"deleted,omitempty"`
}

// mapped is what KooDrive holds for a user as far as kdsync's published
// events go.
type mapped struct {
	Exists bool   `json:"exists,omitempty"`
	UserID string `json:"userId,omitempty"`
	DeptID *int64 `json:"deptId,omitempty,string"`
	Role   *int   `json:"role,omitempty"`
	Status *int   `json:"status,omitempty"`
	// ScopeDisabled: disabled because the user left the mapping's scope.
	ScopeDisabled bool `json:"scopeDisabled,omitempty"`
}

// outMsg is a message to publish: an identity event, or a dead letter
// and its outcome for a mapping failure.
type outMsg struct {
	Subject string              `json:"subject"`
	Header  map[string][]string `json:"header"`
	Data    json.RawMessage     `json:"data"`
	// BestEffort messages (a mapping failure's dead letter and outcome)
	// are dropped, with a warning, when no stream stores their subject:
	// kdsync ingest may run without the consumer's streams.
	BestEffort bool `json:"bestEffort,omitempty"`
}

// store is the bucket with per-key locks, so that one instance's writes
// to a resource queue rather than conflict; across instances the KV
// revision (compare and set) decides.
type store struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	users  [64]sync.Mutex
	groups [64]sync.Mutex
}

func stripe(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % 64)
}

func (s *store) lockUser(id string) func() {
	m := &s.users[stripe(id)]
	m.Lock()
	return m.Unlock
}

func (s *store) lockGroup(id string) func() {
	m := &s.groups[stripe(id)]
	m.Lock()
	return m.Unlock
}

// errConflict is a compare-and-set that lost: the write is tried again.
var errConflict = errors.New("revision conflict")

// get reads key into v; found is false when there is none.
func (s *store) get(ctx context.Context, key string, v any) (rev uint64, found bool, err error) {
	e, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return 0, false, nil
	case err != nil:
		return 0, false, kvErr("read "+key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, false, fmt.Errorf("scim: record %s is corrupt: %w", key, err)
	}
	return e.Revision(), true, nil
}

// put writes v at key: created when rev is 0, else compared and set
// against rev. A lost race is errConflict.
func (s *store) put(ctx context.Context, key string, v any, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	var n uint64
	if rev == 0 {
		n, err = s.kv.Create(ctx, key, b)
	} else {
		n, err = s.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, errConflict
		}
		return 0, kvErr("write "+key, err)
	}
	return n, nil
}

func (s *store) remove(ctx context.Context, key string, rev uint64) error {
	err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return errConflict
	}
	if err != nil {
		return kvErr("delete "+key, err)
	}
	return nil
}

// kvErr classifies a bucket error: every failure to reach JetStream is
// errUnavailable (503).
func kvErr(what string, err error) error {
	if isUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return unavailable("scim: "+what, err)
	}
	var ae *jetstream.APIError
	if errors.As(err, &ae) && ae.Code >= 500 {
		return unavailable("scim: "+what, err)
	}
	return fmt.Errorf("scim: %s: %w", what, err)
}

// publish sends msgs in order, each waiting for its PubAck, so that a
// user's events reach the stream in the order they were made.
func (s *store) publish(ctx context.Context, msgs []outMsg, log *slog.Logger) error {
	for _, m := range msgs {
		msg := &nats.Msg{Subject: m.Subject, Header: nats.Header(m.Header), Data: m.Data}
		_, err := s.js.PublishMsg(ctx, msg)
		switch {
		case err == nil:
		case m.BestEffort && (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)):
			log.Warn("scim: no stream stores a mapping failure's dead letter or outcome; it is only in the SCIM record", "subject", m.Subject)
		case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
			return unavailable("publish on "+m.Subject+" (no stream stores it, or JetStream is down)", err)
		default:
			return unavailable("publish on "+m.Subject, err)
		}
	}
	return nil
}

// userNameKey is the index key of a userName (compared in any case).
func userNameKey(userName string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(userName)))
	return namePrefix + hex.EncodeToString(sum[:16])
}

// eventKey is handlers.EventKey, kept here for the one import.
func eventKey(source, id string) string { return handlers.EventKey(source, id) }

// Errors of the bucket, named where they are used.
var (
	errKeyExists        = jetstream.ErrKeyExists
	errRevisionMismatch = jetstream.ErrKeyRevisionMismatch
	jnoDeletes          = jetstream.IgnoreDeletes()
)

// isKeyGone reports a key that is not (or no longer) in the bucket.
func isKeyGone(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}
