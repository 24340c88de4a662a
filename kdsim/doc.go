// Package kdsim is a KooDrive simulator: an in-memory implementation of the
// part of KooDrive's enterprise API (/koodrive/ose/v1) that kdsync calls,
// for tests and local runs.
//
// A *Server is an http.Handler. It verifies app authentication (HMAC-SHA256)
// with kdapi's signer, so one piece of code defines the algorithm, and/or a
// bearer token; it keeps users in memory with an append-only log of the writes
// applied to each; and it injects faults (latency, errors, outages, slow
// answers, writes applied then answered 500) on demand. An admin API under
// /_admin/ and the equivalent Go methods let tests inspect and steer it.
//
// Order of processing for an API request: body read (at most 1 MiB),
// authentication, routing, outage, latency, injected error, the handler
// (which applies writes), fail-after-write, slow answer. Admin requests are
// never authenticated with the API credentials and never faulted.
package kdsim
