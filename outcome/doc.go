// Package outcome is kdsync's outcome contract, shared by the pipeline and
// the tools that read what it did: the Outcome published once per event,
// its Result and Reason, the dead-letter headers and attempt log, the
// subjects outcomes and dead letters are stored under, the per-user Record
// kept in the state bucket and its key, and the default stream, bucket and
// subject names.
//
// It holds data and pure functions only; it knows no NATS connection.
// dlq, reconcile, metrics, usertrace, console and the checker read
// outcomes through it, not through the consumer that writes them.
package outcome
