package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// setup creates or binds the streams, the KV bucket and the consumer.
func (c *Consumer) setup(ctx context.Context) error {
	o := c.opts
	if o.Manage {
		if err := c.ensureStream(ctx, jetstream.StreamConfig{
			Name:             o.Stream,
			Subjects:         o.StreamSubjects,
			Storage:          jetstream.FileStorage,
			Replicas:         o.Replicas,
			MaxMsgSize:       o.MaxMsgSize,
			Duplicates:       2 * time.Minute,
			Retention:        jetstream.LimitsPolicy,
			Description:      "identity events for kdsync",
			SubjectTransform: c.parts.transform(),
		}); err != nil {
			return err
		}
		if err := c.ensureStream(ctx, jetstream.StreamConfig{
			Name:        o.OutcomeStream,
			Subjects:    []string{o.OutcomePrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.OutcomeMaxAge,
			Duplicates:  o.DedupWindow,
			Retention:   jetstream.LimitsPolicy,
			Description: "kdsync: one outcome per identity event",
		}); err != nil {
			return err
		}
		if err := c.ensureStream(ctx, jetstream.StreamConfig{
			Name:        o.DLQStream,
			Subjects:    []string{o.DLQPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DedupWindow,
			Retention:   jetstream.LimitsPolicy,
			Description: "kdsync: dead-lettered identity events, unchanged, with reason headers",
		}); err != nil {
			return err
		}
		kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      o.StateBucket,
			Description: "kdsync: per-user watermark and last applied state",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
		})
		if err != nil {
			return fmt.Errorf("consumer: state bucket %s: %w", o.StateBucket, err)
		}
		c.kv = kv
	} else {
		// Binding only: what kdsync will publish to must be stored by
		// someone, or every event would wait forever on its outcome.
		need := [][2]string{{outcome.Subject(o.OutcomePrefix, outcome.Applied, handlers.Hired, "0"), o.OutcomeStream}}
		if !o.NoDLQ {
			need = append(need, [2]string{outcome.DeadLetterSubject(o.DLQPrefix, "permanent", handlers.Hired, "0"), o.DLQStream})
		}
		var errs []error
		for _, n := range need {
			subj, want := n[0], n[1]
			name, err := c.js.StreamNameBySubject(ctx, subj)
			if err != nil {
				errs = append(errs, fmt.Errorf("no stream stores %s (expected %s): %w", subj, want, err))
				continue
			}
			if name != want {
				c.log.Warn("a stream of another name stores kdsync's subjects", "subject", subj, "stream", name, "expected", want)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("consumer: not managing streams (create them, or let kdsync manage them): %w", err)
		}
		kv, err := c.js.KeyValue(ctx, o.StateBucket)
		if err != nil {
			return fmt.Errorf("consumer: bind state bucket %s: %w", o.StateBucket, err)
		}
		c.kv = kv
	}
	if c.parts.n > 0 {
		kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      o.MembersBucket,
			Description: "kdsync: live instances sharing the stream",
			History:     1,
			// A holder's fence falls two heartbeats after its last
			// renewal (leaseValidity); its lease lapses a heartbeat and
			// the grace later (lease.go).
			TTL:      3*o.Heartbeat + o.LapseGrace,
			Storage:  jetstream.MemoryStorage,
			Replicas: o.Replicas,
		})
		if err != nil {
			return fmt.Errorf("consumer: members bucket %s: %w", o.MembersBucket, err)
		}
		c.membersKV = kv
	}
	if o.DeprovisionLimit.N > 0 {
		g, err := guard.Open(ctx, c.js, o.GuardBucket, o.Replicas, o.Manage)
		if err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		c.guard = g
		c.log.Info("mass-deprovisioning guard on", "limit", o.DeprovisionLimit.String(), "bucket", o.GuardBucket)
	}
	if err := c.setupParking(ctx); err != nil {
		return err
	}
	return c.bindSources(ctx)
}

// ensureStream creates cfg's stream, or uses an existing one as it is,
// warning where its settings differ from kdsync's.
func (c *Consumer) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	s, err := c.js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = c.js.CreateStream(ctx, cfg)
		if err == nil {
			c.log.Info("stream created", "stream", cfg.Name, "subjects", cfg.Subjects)
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("consumer: create stream %s: %w", cfg.Name, err)
		}
		// Someone else (a publisher, another instance) created it in
		// between: use theirs.
		s, err = c.js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return fmt.Errorf("consumer: look up stream %s: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	var diffs []string
	for _, subj := range cfg.Subjects {
		if !slices.Contains(have.Subjects, subj) {
			diffs = append(diffs, fmt.Sprintf("subjects %v lack %s", have.Subjects, subj))
		}
	}
	if have.Storage != cfg.Storage {
		diffs = append(diffs, "storage "+have.Storage.String())
	}
	if have.Replicas != cfg.Replicas {
		diffs = append(diffs, fmt.Sprintf("replicas %d", have.Replicas))
	}
	if len(diffs) > 0 {
		c.log.Warn("stream exists with other settings; using it as it is", "stream", cfg.Name, "differences", diffs)
	}
	if cfg.SubjectTransform != nil && (have.SubjectTransform == nil || *have.SubjectTransform != *cfg.SubjectTransform) {
		// Partitioning needs the transform: add it (it changes only the
		// subjects of events stored from now on).
		have.SubjectTransform = cfg.SubjectTransform
		if _, err := c.js.UpdateStream(ctx, have); err != nil {
			return fmt.Errorf("consumer: add the partition transform to stream %s: %w", cfg.Name, err)
		}
		c.log.Warn("stream updated: events are partitioned by user from now on", "stream", cfg.Name,
			"transform", cfg.SubjectTransform.Destination)
	}
	return nil
}
