package outcome

// Default names of the streams, buckets and subject prefixes kdsync uses;
// every one can be changed by configuration.
const (
	// DefaultStream is the JetStream stream of identity events.
	DefaultStream = "IDENTITY"
	// DefaultDurable is the name of kdsync's durable consumers on it.
	DefaultDurable = "kdsync"
	// DefaultOutcomeStream and DefaultOutcomePrefix: where outcomes are
	// published (Subject).
	DefaultOutcomeStream = "KDSYNC_OUTCOMES"
	DefaultOutcomePrefix = "kdsync.outcome"
	// DefaultDLQStream and DefaultDLQPrefix: where dead letters are
	// stored (DeadLetterSubject).
	DefaultDLQStream = "KDSYNC_DLQ"
	DefaultDLQPrefix = "kdsync.dlq"
	// DefaultStateBucket is the KV bucket of the per-user Records.
	DefaultStateBucket = "KDSYNC_STATE"
	// DefaultMembersBucket is the KV bucket of instance membership and
	// partition leases.
	DefaultMembersBucket = "KDSYNC_MEMBERS"
	// DefaultGuardBucket is the KV bucket of the mass-deprovisioning
	// guard.
	DefaultGuardBucket = "KDSYNC_GUARD"
	// DefaultParkStream and DefaultParkPrefix: where held events, and
	// their users' later events, are parked until decided.
	DefaultParkStream = "KDSYNC_PARKED"
	DefaultParkPrefix = "kdsync.parked"
)

// The names a shadow instance (kdsync run -shadow) uses in place of the
// defaults above, so that it shares nothing it writes or leases with the
// active instances.
const (
	ShadowDurable       = "kdsync-shadow"
	ShadowOutcomeStream = "KDSYNC_SHADOW"
	ShadowOutcomePrefix = "kdsync.shadow"
	ShadowStateBucket   = "KDSYNC_SHADOW_STATE"
	ShadowMembersBucket = "KDSYNC_SHADOW_MEMBERS"
	ShadowGuardBucket   = "KDSYNC_SHADOW_GUARD"
	ShadowParkStream    = "KDSYNC_SHADOW_PARKED"
	ShadowParkPrefix    = "kdsync.shadow-parked"
)
