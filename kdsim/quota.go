package kdsim

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// A quota, as a SaaS API gateway keeps one: at most Faults.Quota API
// requests are accepted per one-second window (fixed windows from the
// server's start), and at most Faults.MaxConcurrent are in progress at
// once; beyond either a request is answered 429 with a Retry-After (the
// seconds left in the window, rounded up: 1; 1 for the concurrency cap)
// after the configured latency. Refused requests count against neither.

// quotaState is the window count behind Faults.Quota and the in-progress
// count behind Faults.MaxConcurrent.
type quotaState struct {
	start time.Time

	mu       sync.Mutex
	window   int64 // the window's index since start
	accepted int   // in the window
	inFlight int
}

// admit decides one request against the quota and the cap. On true the
// caller must call release when the request is done.
func (q *quotaState) admit(now time.Time, perSec float64, maxConc int) (ok bool, retryAfter int64) {
	w := int64(now.Sub(q.start) / time.Second)
	q.mu.Lock()
	defer q.mu.Unlock()
	if w != q.window {
		q.window, q.accepted = w, 0
	}
	if perSec > 0 && float64(q.accepted) >= perSec {
		left := q.start.Add(time.Duration(w+1) * time.Second).Sub(now)
		return false, ceilSeconds(left)
	}
	if maxConc > 0 && q.inFlight >= maxConc {
		return false, 1
	}
	q.accepted++
	q.inFlight++
	return true, 0
}

func (q *quotaState) release() {
	q.mu.Lock()
	q.inFlight--
	q.mu.Unlock()
}

// SetQuota sets the quota (requests per second; 0 none) and the cap on
// requests in progress (0 none), keeping the other fault settings. It is
// safe to call while requests are served.
func (s *Server) SetQuota(perSec float64, maxConcurrent int) error {
	return s.updateFaults(func(f *Faults) { f.Quota, f.MaxConcurrent = perSec, maxConcurrent })
}

func validateQuota(f Faults) error {
	if math.IsNaN(f.Quota) || f.Quota < 0 || math.IsInf(f.Quota, 0) {
		return errors.New("faults: quota must be a number of requests per second, 0 for none")
	}
	if f.MaxConcurrent < 0 {
		return errors.New("faults: maxConcurrent must not be negative")
	}
	return nil
}

// adminQuota serves PUT /_admin/quota?rate=N&concurrency=M: either may be
// left out to keep its setting; 0 removes it.
func (s *Server) adminQuota(r *http.Request) error {
	q := r.URL.Query()
	f := s.Faults()
	perSec, maxConc := f.Quota, f.MaxConcurrent
	if v := q.Get("rate"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("rate: %w", err)
		}
		perSec = n
	}
	if v := q.Get("concurrency"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("concurrency: %w", err)
		}
		maxConc = n
	}
	return s.SetQuota(perSec, maxConc)
}
