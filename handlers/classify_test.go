package handlers_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// TestClassify: every error Apply or Decode returns gets a Reason from
// the enumerations (InputReasons, KooDriveReasons), and exactly the
// classes in RetriedReasons are retryable.
func TestClassify(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		err       error
		class     handlers.Reason
		retryable bool
		after     time.Duration
		throttled bool
	}{
		"bad input":         {err: &handlers.InputError{Reason: handlers.ReasonMismatch}, class: handlers.ReasonMismatch},
		"wrapped bad input": {err: fmt.Errorf("x: %w", &handlers.InputError{Reason: handlers.ReasonTooLarge}), class: handlers.ReasonTooLarge},
		"not found":         {err: &kdapi.APIError{HTTPStatus: 404, Class: kdapi.ClassNotFound}, class: "not_found"},
		"already exists":    {err: &kdapi.APIError{HTTPStatus: 409, Class: kdapi.ClassAlreadyExists}, class: "already_exists"},
		"5xx":               {err: &kdapi.APIError{HTTPStatus: 503, Class: kdapi.ClassRetryable}, class: "retryable", retryable: true},
		"429":               {err: &kdapi.APIError{HTTPStatus: 429, Class: kdapi.ClassRetryable, RetryAfter: 2 * time.Second}, class: "retryable", retryable: true, after: 2 * time.Second, throttled: true},
		"auth":              {err: &kdapi.APIError{HTTPStatus: 401, Class: kdapi.ClassAuth}, class: "auth", retryable: true},
		"transport":         {err: &kdapi.TransportError{Err: errors.New("reset")}, class: "retryable", retryable: true},
		"elsewhere":         {err: errors.New("boom"), class: "permanent"},
		"unknown class":     {err: &kdapi.APIError{HTTPStatus: 400, Class: kdapi.Class(9)}, class: "permanent"},
	} {
		t.Run(name, func(t *testing.T) {
			f := handlers.Classify(tc.err)
			want := handlers.Failure{Class: tc.class, Retryable: tc.retryable, RetryAfter: tc.after, Throttled: tc.throttled}
			if f != want {
				t.Errorf("Classify(%v) = %+v, want %+v", tc.err, f, want)
			}
			if !slices.Contains(handlers.InputReasons, f.Class) && !slices.Contains(handlers.KooDriveReasons, f.Class) {
				t.Errorf("class %q is in no enumeration", f.Class)
			}
			if slices.Contains(handlers.RetriedReasons, f.Class) != f.Retryable {
				t.Errorf("class %q: retryable %v, RetriedReasons %v", f.Class, f.Retryable, handlers.RetriedReasons)
			}
		})
	}
}

// TestKooDriveReasons: one Reason per kdapi class, named as the class.
func TestKooDriveReasons(t *testing.T) {
	t.Parallel()
	if len(handlers.KooDriveReasons) != len(kdapi.Classes) {
		t.Fatalf("KooDriveReasons %v, kdapi.Classes %v", handlers.KooDriveReasons, kdapi.Classes)
	}
	for _, c := range kdapi.Classes {
		got := handlers.Classify(&kdapi.APIError{Class: c}).Class
		if got != handlers.Reason(c.String()) || !slices.Contains(handlers.KooDriveReasons, got) {
			t.Errorf("class %v: reason %q (KooDriveReasons %v)", c, got, handlers.KooDriveReasons)
		}
	}
}
