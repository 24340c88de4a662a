package kdapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class says what a caller should do about a failed call.
type Class int

// The classes of failure, from the caller's point of view.
const (
	// ClassPermanent: the request will fail the same way again (bad input,
	// a 4xx other than 408/429, a non-zero code the client does not know).
	ClassPermanent Class = iota
	// ClassRetryable: transport errors, timeouts, 408, 429 and 5xx. The same
	// request may succeed later.
	ClassRetryable
	// ClassAuth: the credentials were refused (401, 403).
	ClassAuth
	// ClassNotFound: the user or department does not exist.
	ClassNotFound
	// ClassAlreadyExists: a create found the user already there.
	ClassAlreadyExists
)

// Classes lists every Class.
var Classes = []Class{ClassPermanent, ClassRetryable, ClassAuth, ClassNotFound, ClassAlreadyExists}

var classNames = [...]string{"permanent", "retryable", "auth", "not_found", "already_exists"}

// String returns the class as a short snake_case word, fit for a metric label.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Sentinel errors, one per class. Every error the client returns matches
// exactly one of them with errors.Is.
var (
	// ErrPermanent matches failures that will not succeed on retry.
	ErrPermanent = errors.New("kdapi: permanent failure")
	// ErrRetryable matches failures worth retrying later.
	ErrRetryable = errors.New("kdapi: retryable failure")
	// ErrAuth matches refused credentials.
	ErrAuth = errors.New("kdapi: authentication refused")
	// ErrNotFound matches a user or department that does not exist.
	ErrNotFound = errors.New("kdapi: not found")
	// ErrAlreadyExists matches a create of a user that already exists.
	ErrAlreadyExists = errors.New("kdapi: already exists")
)

func (c Class) sentinel() error {
	switch c {
	case ClassRetryable:
		return ErrRetryable
	case ClassAuth:
		return ErrAuth
	case ClassNotFound:
		return ErrNotFound
	case ClassAlreadyExists:
		return ErrAlreadyExists
	default:
		return ErrPermanent
	}
}

// APIError is KooDrive's answer to a failed call: a non-2xx HTTP status or a
// 2xx envelope whose code is not 0.
type APIError struct {
	HTTPStatus int
	// Code is the envelope's code (KooDrive types it as a string on some
	// pages and a number on others), normalised so that 13000501,
	// "13000501" and "013000501" all read "13000501"; empty when the body
	// had none.
	Code   string
	Msg    string
	Method string
	Path   string
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
	// Class is how the client classified the failure.
	Class Class
}

// Error reports method, path, status, code and message. It never contains
// credentials: the path is the request path without query and the client
// signs in headers only.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kdapi: %s %s: HTTP %d", e.Method, e.Path, e.HTTPStatus)
	if e.Code != "" {
		fmt.Fprintf(&b, " code %s", e.Code)
	}
	if e.Msg != "" {
		fmt.Fprintf(&b, ": %s", e.Msg)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is reports whether target is the sentinel of e's class.
func (e *APIError) Is(target error) bool { return target == e.Class.sentinel() }

// TransportError is a failure before KooDrive answered: connection refused,
// reset, a timeout, a body that could not be read. It is always retryable.
// When the caller's context ended, the client returns the context's error
// instead.
type TransportError struct {
	Method string
	Path   string
	Err    error
}

// Error reports the operation and the cause.
func (e *TransportError) Error() string {
	return fmt.Sprintf("kdapi: %s %s: %v", e.Method, e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *TransportError) Unwrap() error { return e.Err }

// Is matches ErrRetryable.
func (e *TransportError) Is(target error) bool { return target == ErrRetryable }

// ClassOf classifies any error the client returned. nil is not an error and
// reports ClassPermanent with ok false; errors from elsewhere are permanent.
// That includes the context errors the client returns when the caller's
// context ends: test errors.Is(err, context.Canceled) and
// context.DeadlineExceeded before calling ClassOf.
func ClassOf(err error) (c Class, ok bool) {
	if err == nil {
		return ClassPermanent, false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Class, true
	}
	if errors.Is(err, ErrRetryable) {
		return ClassRetryable, true
	}
	return ClassPermanent, true
}

// RetryAfterOf returns the Retry-After carried by err, zero when none.
func RetryAfterOf(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// ParseRetryAfter reads a Retry-After value in either RFC 9110 form: delay
// seconds or an HTTP-date. A date in the past, a negative number or an
// unreadable value yield zero.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(365 * 24 * 3600)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// classify maps an HTTP status and envelope code to a class. codes holds the
// configured code lists.
func (c *Client) classify(status int, code string) Class {
	if code != "" && code != "0" {
		if _, ok := c.alreadyExistsCodes[code]; ok {
			return ClassAlreadyExists
		}
		if _, ok := c.notFoundCodes[code]; ok {
			return ClassNotFound
		}
		if _, ok := c.authCodes[code]; ok {
			return ClassAuth
		}
		if _, ok := c.retryableCodes[code]; ok {
			return ClassRetryable
		}
	}
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return ClassRetryable
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ClassAuth
	case status == http.StatusNotFound:
		return ClassNotFound
	case status == http.StatusConflict:
		return ClassAlreadyExists
	}
	return ClassPermanent
}
