// Package reconcile finds drift between the users KooDrive should have and
// the users it has, and turns the drift into repair events.
//
// Desired state comes from a source file (an HRIS export as CSV or JSON
// Lines, see ReadSource) or from kdsync's own per-user records in the
// KDSYNC_STATE bucket (ReadState). KooDrive's state comes from GET
// /userList, every page (ListUsers), or from one GET /users/{userId} per
// desired user (GetUsers), always through a rate-limited Transport so that
// a reconciliation never throttles the tenant. Diff compares the two and
// Plan turns each drifted user into one repair event of the event
// contract: missing → employee.hired, differing fields → employee.changed
// with those fields, unexpected → employee.disabled. Reconciliation never
// deletes a user and never calls a KooDrive write itself: Publish puts the
// repairs into the identity stream, where the consumer applies them in
// order with every other event, with its retries, outcomes and dead
// letters.
//
// Run does a whole pass (read, compare, plan, and with Options.Apply
// publish); Metrics exports a pass's drift for a periodic mode.
//
// # What "desired" means
//
// A source row is a user who should exist with the fields given; an empty
// field is not managed and never compared. A row with status 1 (disabled)
// is satisfied by a user who is absent from KooDrive: disabled or absent,
// the person has no access, and reconciliation does not create accounts
// for people who are not to use them.
//
// A kdsync record whose state says the user does not exist is a user kdsync
// hard-deleted (employee.deleted with hard deletes on). Such a user is
// desired "disabled or absent": absent is in sync, present and disabled is
// in sync, present and enabled is drift (unexpected) repaired with
// employee.disabled, never with a delete. A record with no applied state
// (only dead letters or skips so far) says nothing and is not compared.
//
// # Unexpected users
//
// A user in KooDrive that the source does not list is drift only when the
// source is complete (Options.Complete, kdsync reconcile -complete): a
// full export of everyone who should have an account. Otherwise such users
// are counted and left alone. Disabled users are never unexpected.
package reconcile
