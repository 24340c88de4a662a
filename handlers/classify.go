package handlers

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/kdsync/kdsync/kdapi"
)

// Failure is an error of Apply (or of Decode) classified for the caller's
// decision on the event's fate, so that the caller needs no knowledge of
// the KooDrive client.
type Failure struct {
	// Class names the failure: the Reason of bad input (one of
	// InputReasons), else the KooDrive failure's (one of KooDriveReasons:
	// permanent, retryable, auth, not_found, already_exists).
	Class Reason
	// Retryable: the failure is worth another attempt (KooDrive
	// unreachable, slow, throttling, failing, or refusing credentials,
	// which fails every event alike and is left to the breaker and the
	// operator).
	Retryable bool
	// RetryAfter is the wait KooDrive asked for, zero when none.
	RetryAfter time.Duration
	// Throttled: KooDrive answered 429, it is slower, not down.
	Throttled bool
}

// Classify classifies err, an error returned by Apply or Decode. Errors
// from elsewhere are permanent; test the context's errors before calling
// it.
func Classify(err error) Failure {
	var ie *InputError
	if errors.As(err, &ie) {
		return Failure{Class: ie.Reason}
	}
	class, _ := kdapi.ClassOf(err)
	if !slices.Contains(kdapi.Classes, class) {
		class = kdapi.ClassPermanent // a class this build does not know
	}
	var ae *kdapi.APIError
	return Failure{
		Class:      kooDriveReason(class),
		Retryable:  retried(class),
		RetryAfter: kdapi.RetryAfterOf(err),
		Throttled:  errors.As(err, &ae) && ae.HTTPStatus == http.StatusTooManyRequests,
	}
}

// The Reasons of KooDrive failures, one per kdapi class.
var (
	// KooDriveReasons lists the Reason of every kdapi.Class.
	KooDriveReasons = kooDriveReasons(func(kdapi.Class) bool { return true })
	// RetriedReasons lists those Classify calls Retryable.
	RetriedReasons = kooDriveReasons(retried)
)

// retried reports whether a failure of class is worth another attempt.
func retried(class kdapi.Class) bool {
	return class == kdapi.ClassRetryable || class == kdapi.ClassAuth
}

// kooDriveReason is the Reason of a KooDrive failure of class.
func kooDriveReason(class kdapi.Class) Reason { return Reason(class.String()) }

func kooDriveReasons(keep func(kdapi.Class) bool) []Reason {
	var out []Reason
	for _, c := range kdapi.Classes {
		if keep(c) {
			out = append(out, kooDriveReason(c))
		}
	}
	return out
}

// TraceID is the trace id the KooDrive calls of the event with id carry
// (X-Traceid), for its outcome.
func TraceID(eventID string) string { return kdapi.TraceID(eventID) }

// Deprovisions reports whether ev takes a user's access away: a disable,
// a delete, or a change to status disabled.
func (ev *Event) Deprovisions() bool {
	switch ev.Action {
	case Disabled, Deleted:
		return true
	case Changed:
		return ev.Status != nil && *ev.Status == kdapi.StatusDisabled
	}
	return false
}
