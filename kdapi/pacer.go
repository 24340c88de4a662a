package kdapi

import (
	"context"
	"errors"
	"net/http"
)

// Pacer decides when the client may send a call: how many are in flight,
// how many per second, and whether KooDrive asked everyone to wait
// (throttle.Limiter is one). Acquire blocks until a call may go, or ctx
// ends; done is then told how the call ended: the response (its status
// and headers; the body is read later), or the error of a call KooDrive
// did not answer. When the caller's context ended first, done gets
// context.Canceled.
type Pacer interface {
	Acquire(ctx context.Context) (done func(*http.Response, error), err error)
}

// WithPacer makes every call wait for p before it is sent. The wait is not
// part of the call's timeout (WithTimeout), which starts when the call is
// sent; it ends with the call's context.
func WithPacer(p Pacer) Option {
	return func(o *options) error {
		if p == nil {
			return errors.New("pacer is nil")
		}
		o.pacer = p
		return nil
	}
}
