package consumer

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
)

// partitioning describes how the stream is split by user when several
// instances share the work. With n == 0 there is one consumer.
type partitioning struct {
	n      int
	source []string // tokens of the source pattern, e.g. identity employee * *
}

// transform maps identity.employee.<action>.<user> to
// identity.part.<p>.employee.<action>.<user>, p a hash of the user token.
// The last two tokens stay action and user, so decoding is unchanged.
func (p partitioning) transform() *jetstream.SubjectTransformConfig {
	if p.n == 0 {
		return nil
	}
	dst := []string{p.source[0], "part", fmt.Sprintf("{{partition(%d,%d)}}", p.n, p.wildcards())}
	w := 0
	for _, t := range p.source[1:] {
		if t == "*" {
			w++
			t = fmt.Sprintf("{{wildcard(%d)}}", w)
		}
		dst = append(dst, t)
	}
	return &jetstream.SubjectTransformConfig{Source: strings.Join(p.source, "."), Destination: strings.Join(dst, ".")}
}

func (p partitioning) wildcards() int {
	n := 0
	for _, t := range p.source {
		if t == "*" {
			n++
		}
	}
	return n
}

// filter is the filter subject of partition i.
func (p partitioning) filter(i int) string {
	toks := []string{p.source[0], "part", strconv.Itoa(i)}
	for _, t := range p.source[1:] {
		if t == "*" {
			break
		}
		toks = append(toks, t)
	}
	return strings.Join(append(toks, ">"), ".")
}

func newPartitioning(o Options) (partitioning, error) {
	if o.Partitions == 0 {
		return partitioning{}, nil
	}
	toks := strings.Split(o.PartitionSource, ".")
	if len(toks) < 3 || toks[len(toks)-1] != "*" || toks[len(toks)-2] != "*" || toks[0] == "*" {
		return partitioning{}, fmt.Errorf("partition source %q: want <prefix>.*.* (action and user last)", o.PartitionSource)
	}
	return partitioning{n: o.Partitions, source: toks}, nil
}

// laneKey is the ordering key of a subject: its user id token, or the whole
// subject (prefixed so it cannot collide with a user) when it has none.
func laneKey(subject string) string {
	if _, user, ok := handlers.ParseSubject(subject); ok {
		return user
	}
	return "!" + subject
}
