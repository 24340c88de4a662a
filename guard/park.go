package guard

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Parked is what the consumer's parking stream holds: the events the guard
// holds and the later events of their users, kept out of JetStream's ack
// window until an operator decides (see the consumer package's park.go).
type Parked struct {
	Stream string `json:"stream"`
	Events uint64 `json:"events"`
	Users  int    `json:"users"`
	// ByUser counts the parked events per user key (the last tokens of the
	// parking subject, consumer.ParkToken of the event's subject).
	ByUser map[string]uint64 `json:"-"`
}

// ReadParked counts the events in the parking stream. It returns
// jetstream.ErrStreamNotFound (wrapped) when there is none.
func ReadParked(ctx context.Context, js jetstream.JetStream, stream string) (*Parked, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("guard: parking stream %s: %w", stream, err)
	}
	cfg := s.CachedInfo().Config
	if len(cfg.Subjects) != 1 || !strings.HasSuffix(cfg.Subjects[0], ".>") {
		return nil, fmt.Errorf("guard: parking stream %s: subjects %v, want one <prefix>.>", stream, cfg.Subjects)
	}
	prefix := strings.TrimSuffix(cfg.Subjects[0], ">")
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(cfg.Subjects[0]))
	if err != nil {
		return nil, fmt.Errorf("guard: parking stream %s: %w", stream, err)
	}
	p := &Parked{Stream: stream, ByUser: make(map[string]uint64, len(info.State.Subjects))}
	for subj, n := range info.State.Subjects {
		p.ByUser[strings.TrimPrefix(subj, prefix)] += n
		p.Events += n
	}
	p.Users = len(p.ByUser)
	return p, nil
}
