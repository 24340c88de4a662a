// Package metrics holds kdsync's Prometheus collectors. New builds them on
// the registerer it is given (never the default one), with every label
// combination created at start so that rates begin at 0 rather than being
// absent. *Metrics implements consumer.Observer; its ObserveCall has the
// signature of handlers.Handler.Observe; NATSConnected is the onChange
// callback of consumer.Connect; SetStats and PollConsumer feed the lane
// and lag gauges. Handler serves the exposition.
//
// Labels are bounded: action, result, reason, operation, code_class and
// class take values from fixed sets (see below), and anything outside a set
// is reported as "other" (action: "unknown"). No label ever carries a user
// id or an event id.
//
// Metric families, and the question each answers:
//
// # Events
//
//   - kdsync_events_received_total: how many messages is kdsync taking in
//     (redeliveries included)?
//   - kdsync_events_finished_total{action,result,reason}: how did events
//     end: how many were applied, skipped (and why) or dead-lettered (and
//     why)? result is applied, skipped or deadlettered; reason is "none"
//     for applied, duplicate/stale/noop/guard_rejected for skipped, and for dead letters a
//     bad-input reason (too_large, invalid_utf8, malformed_json,
//     unsupported_specversion, unknown_type, missing_field, invalid_field,
//     mismatch, bad_input), a KooDrive class (permanent, retryable, auth,
//     not_found, already_exists), retry_budget_exhausted or panic.
//   - kdsync_event_latency_seconds{action}: how long from an event's time
//     to its change being applied in KooDrive: the onboarding/offboarding
//     SLO figure. Only applied events with a time are observed; skips
//     (a redelivered duplicate would report its original age) and dead
//     letters are counted in kdsync_events_finished_total instead.
//
// # KooDrive
//
//   - kdsync_koodrive_requests_total{operation,code_class}: how many calls
//     of each kind (create, update, get, delete) did KooDrive answer, and
//     how (ok, retryable, auth, not_found, already_exists, permanent)?
//   - kdsync_koodrive_request_duration_seconds{operation}: how fast is
//     KooDrive answering each kind of call (failures included)?
//   - kdsync_retries_total{class}: how often do attempts fail transiently
//     and get retried, by the failure's class?
//   - kdsync_retry_after_seconds_total: how much waiting has KooDrive
//     imposed through Retry-After (are we being throttled)?
//   - kdsync_breaker_state: is the circuit breaker in front of KooDrive
//     closed (0), half-open (1) or open (2)?
//
// # Backlog, sampled at scrape time
//
//   - kdsync_lanes_busy: how many users have events held in kdsync now?
//   - kdsync_events_in_flight: how many events are held, not yet
//     acknowledged?
//   - kdsync_guard_held_events: how many disables and deletes does the
//     mass-deprovisioning guard hold for an operator's decision?
//   - kdsync_parked_events: how many events are parked out of the ack
//     window (the held ones and their users' later events)?
//   - kdsync_oldest_unapplied_event_age_seconds: how long has the oldest
//     held event been waiting since kdsync received it (is a lane stuck)?
//
// # Per-user records, sampled at scrape time
//
//   - kdsync_state_reads_total, kdsync_state_writes_total: how many
//     per-user records does kdsync read from and write to the state bucket?
//   - kdsync_state_cache_entries, kdsync_state_cache_bytes: how many
//     records are cached, taking how much memory, within the budget?
//   - kdsync_state_cache_hits_total, kdsync_state_cache_misses_total,
//     kdsync_state_cache_evictions_total: how often was an event's record
//     cached, and how many were evicted past the budget?
//
// # JetStream consumer, polled by PollConsumer
//
//   - kdsync_consumer_pending_events: how many events wait in the stream,
//     not yet delivered to kdsync (the lag)?
//   - kdsync_consumer_ack_pending_events: how many delivered events are
//     awaiting kdsync's acknowledgement?
//   - kdsync_consumer_redelivered_events: how many delivered events are
//     being redelivered at the moment?
//   - kdsync_consumer_info_errors_total: are the lag figures above stale
//     because asking the server for them fails?
//
// # NATS and process
//
//   - kdsync_nats_connected: is kdsync connected to NATS right now (1/0)?
//   - kdsync_nats_reconnects_total: how often has the NATS connection
//     dropped and come back?
//   - kdsync_build_info{version,revision,goversion}: which build is
//     running (always 1)?
//   - go_* and process_*: the Go runtime's and the process's own figures
//     (memory, goroutines, GC, CPU, open files).
package metrics
