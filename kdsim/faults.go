package kdsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// Faults configures fault injection. The zero value injects nothing. Faults
// apply to API requests that passed authentication, never to the admin API.
type Faults struct {
	// Latency delays every API request; Jitter adds a uniformly random
	// delay in [0, Jitter).
	Latency time.Duration
	Jitter  time.Duration

	// ErrorRate is the probability (0..1) that a request is answered with an
	// error instead of being handled. Its status is drawn uniformly from
	// ErrorStatuses: any of 429, 500 and 503; empty means 500.
	ErrorRate     float64
	ErrorStatuses []int
	// ErrorRates gives a probability per status (429, 500 or 503), e.g.
	// {503: 0.05, 429: 0.01}: that share of requests is answered with that
	// status instead of being handled. It adds to ErrorRate: a status's
	// rate is its ErrorRates entry plus its share of ErrorRate, and the
	// rates together must not exceed 1.
	ErrorRates map[int]float64
	// RetryAfter is sent in whole seconds (rounded up) as Retry-After on
	// injected 429 and 503 answers. Zero means one second.
	RetryAfter time.Duration

	// OutageFrom and OutageUntil bound an outage: every API request in
	// [OutageFrom, OutageUntil) is answered 503, with Retry-After set to the
	// time left. A zero OutageFrom means the outage has begun; a zero
	// OutageUntil means there is no outage.
	OutageFrom  time.Time
	OutageUntil time.Time

	// SlowRate is the probability that a request is handled (a write is
	// applied) but answered only after SlowFor, which should be longer than
	// the client's timeout. The wait ends when the request's context ends,
	// and nothing is answered then.
	SlowRate float64
	SlowFor  time.Duration

	// FailAfterWriteRate is the probability that a write (POST, PUT,
	// DELETE) is applied to the store and then answered 500: the ambiguous
	// case a client cannot tell from a failed write.
	FailAfterWriteRate float64

	// Quota accepts at most this many API requests per one-second window
	// and answers the others 429 with Retry-After; MaxConcurrent at most
	// this many in progress at once (see quota.go). Zero: none.
	Quota         float64
	MaxConcurrent int
}

// Validate reports the first setting out of range.
func (f Faults) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"latency", f.Latency}, {"jitter", f.Jitter}, {"retryAfter", f.RetryAfter}, {"slowFor", f.SlowFor}} {
		if d.v < 0 {
			return fmt.Errorf("faults: %s must not be negative", d.name)
		}
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"errorRate", f.ErrorRate}, {"slowRate", f.SlowRate}, {"failAfterWriteRate", f.FailAfterWriteRate}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("faults: %s must be within 0..1", r.name)
		}
	}
	for _, st := range f.ErrorStatuses {
		if !injectable(st) {
			return fmt.Errorf("faults: error status %d: want 429, 500 or 503", st)
		}
	}
	total := f.ErrorRate
	for _, st := range slices.Sorted(maps.Keys(f.ErrorRates)) {
		r := f.ErrorRates[st]
		if !injectable(st) {
			return fmt.Errorf("faults: errorRates: status %d: want 429, 500 or 503", st)
		}
		if math.IsNaN(r) || r < 0 || r > 1 {
			return fmt.Errorf("faults: errorRates: rate of %d must be within 0..1", st)
		}
		total += r
	}
	if total > 1+1e-9 {
		return fmt.Errorf("faults: errorRate and errorRates add up to %g, more than 1", total)
	}
	if f.SlowRate > 0 && f.SlowFor == 0 {
		return errors.New("faults: slowRate needs slowFor")
	}
	if !f.OutageFrom.IsZero() && !f.OutageUntil.IsZero() && !f.OutageFrom.Before(f.OutageUntil) {
		return errors.New("faults: outageFrom must be before outageUntil")
	}
	return validateQuota(f)
}

// injectable reports whether an error of this status can be injected.
func injectable(status int) bool { return status == 429 || status == 500 || status == 503 }

// faultsJSON is the JSON form of Faults: durations as Go duration strings
// ("250ms"), times in RFC 3339.
type faultsJSON struct {
	Latency            string          `json:"latency"`
	Jitter             string          `json:"jitter"`
	ErrorRate          float64         `json:"errorRate"`
	ErrorStatuses      []int           `json:"errorStatuses"`
	ErrorRates         map[int]float64 `json:"errorRates"`
	RetryAfter         string          `json:"retryAfter"`
	OutageFrom         *time.Time      `json:"outageFrom,omitempty"`
	OutageUntil        *time.Time      `json:"outageUntil,omitempty"`
	SlowRate           float64         `json:"slowRate"`
	SlowFor            string          `json:"slowFor"`
	FailAfterWriteRate float64         `json:"failAfterWriteRate"`
	Quota              float64         `json:"quota"`
	MaxConcurrent      int             `json:"maxConcurrent"`
}

// MarshalJSON writes durations as strings such as "250ms".
func (f Faults) MarshalJSON() ([]byte, error) {
	j := faultsJSON{
		Latency: f.Latency.String(), Jitter: f.Jitter.String(),
		ErrorRate: f.ErrorRate, ErrorStatuses: f.ErrorStatuses, ErrorRates: f.ErrorRates, RetryAfter: f.RetryAfter.String(),
		SlowRate: f.SlowRate, SlowFor: f.SlowFor.String(), FailAfterWriteRate: f.FailAfterWriteRate,
		Quota: f.Quota, MaxConcurrent: f.MaxConcurrent,
	}
	if j.ErrorStatuses == nil {
		j.ErrorStatuses = []int{}
	}
	if j.ErrorRates == nil {
		j.ErrorRates = map[int]float64{}
	}
	if !f.OutageFrom.IsZero() {
		j.OutageFrom = &f.OutageFrom
	}
	if !f.OutageUntil.IsZero() {
		j.OutageUntil = &f.OutageUntil
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the form MarshalJSON writes. Absent fields are zero;
// unknown fields are an error, so that a misspelt setting is not ignored.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	var out Faults
	for _, d := range []struct {
		name string
		s    string
		dst  *time.Duration
	}{{"latency", j.Latency, &out.Latency}, {"jitter", j.Jitter, &out.Jitter}, {"retryAfter", j.RetryAfter, &out.RetryAfter}, {"slowFor", j.SlowFor, &out.SlowFor}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("faults: %s: %w", d.name, err)
		}
		*d.dst = v
	}
	out.ErrorRate, out.ErrorStatuses, out.SlowRate, out.FailAfterWriteRate = j.ErrorRate, j.ErrorStatuses, j.SlowRate, j.FailAfterWriteRate
	out.Quota, out.MaxConcurrent = j.Quota, j.MaxConcurrent
	if len(j.ErrorRates) > 0 {
		out.ErrorRates = j.ErrorRates
	}
	if j.OutageFrom != nil {
		out.OutageFrom = *j.OutageFrom
	}
	if j.OutageUntil != nil {
		out.OutageUntil = *j.OutageUntil
	}
	*f = out
	return nil
}

// faultState is a validated Faults with what the hot path needs.
type faultState struct {
	f          Faults
	active     bool       // some fault may apply
	errTotal   float64    // probability of an injected error
	errCuts    []errorCut // cumulative, ending at errTotal
	retryAfter []string   // the Retry-After header of injected 429/503
}

// errorCut maps one draw u in [0, errTotal) to a status: the first cut
// with u < upTo.
type errorCut struct {
	upTo   float64
	status int
}

func newFaultState(f Faults) *faultState {
	f.ErrorStatuses = slices.Clone(f.ErrorStatuses)
	f.ErrorRates = maps.Clone(f.ErrorRates)
	fs := &faultState{f: f}
	add := func(rate float64, status int) {
		if rate > 0 {
			fs.errTotal += rate
			fs.errCuts = append(fs.errCuts, errorCut{upTo: fs.errTotal, status: status})
		}
	}
	if f.ErrorRate > 0 {
		statuses := f.ErrorStatuses
		if len(statuses) == 0 {
			statuses = []int{500}
		}
		for _, st := range statuses {
			add(f.ErrorRate/float64(len(statuses)), st)
		}
	}
	for _, st := range slices.Sorted(maps.Keys(f.ErrorRates)) {
		add(f.ErrorRates[st], st)
	}
	if n := len(fs.errCuts); n > 0 {
		fs.errCuts[n-1].upTo = math.Inf(1) // no gap from rounding
	}
	ra := f.RetryAfter
	if ra <= 0 {
		ra = time.Second
	}
	fs.retryAfter = []string{strconv.FormatInt(ceilSeconds(ra), 10)}
	fs.active = f.Latency > 0 || f.Jitter > 0 || fs.errTotal > 0 || !f.OutageUntil.IsZero() ||
		f.SlowRate > 0 || f.FailAfterWriteRate > 0 || f.Quota > 0 || f.MaxConcurrent > 0
	return fs
}

// errorStatus returns the status of an injected error for a draw u below
// errTotal.
func (fs *faultState) errorStatus(u float64) int {
	for _, c := range fs.errCuts {
		if u < c.upTo {
			return c.status
		}
	}
	return fs.errCuts[len(fs.errCuts)-1].status // not reached
}

// outageLeft returns how long the outage lasts from now, zero when none.
func (fs *faultState) outageLeft(now time.Time) time.Duration {
	if fs.f.OutageUntil.IsZero() || now.Before(fs.f.OutageFrom) || !now.Before(fs.f.OutageUntil) {
		return 0
	}
	return fs.f.OutageUntil.Sub(now)
}

func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// decision is what the fault injector chose for one request.
type decision struct {
	delay     time.Duration
	errStatus int // inject this error instead of handling; 0 = none
	after     faultKind
}

// decide draws the faults of one request from the server's random source.
func (s *Server) decide(fs *faultState, isWrite bool) decision {
	f := &fs.f
	d := decision{delay: f.Latency}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	if f.Jitter > 0 {
		d.delay += time.Duration(s.rng.Int64N(int64(f.Jitter)))
	}
	if fs.errTotal > 0 {
		// One draw decides both whether and which: below errTotal, u is
		// uniform, so each status gets its own rate.
		if u := s.rng.Float64(); u < fs.errTotal {
			d.errStatus = fs.errorStatus(u)
			return d
		}
	}
	if f.SlowRate > 0 && s.rng.Float64() < f.SlowRate {
		d.after = faultSlow
	}
	if isWrite && f.FailAfterWriteRate > 0 && s.rng.Float64() < f.FailAfterWriteRate {
		d.after = faultFailAfterWrite
	}
	return d
}

// SetFaults replaces the fault configuration. It is safe to call while
// requests are served.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.faultsMu.Lock()
	s.faults.Store(newFaultState(f))
	s.faultsMu.Unlock()
	s.log.Info("faults set", "faults", f)
	return nil
}

// Faults returns the current fault configuration.
func (s *Server) Faults() Faults {
	f := s.faults.Load().f
	f.ErrorStatuses = slices.Clone(f.ErrorStatuses)
	f.ErrorRates = maps.Clone(f.ErrorRates)
	return f
}

// StartOutage makes every API request fail with 503 from now for d, keeping
// the other fault settings. d must be positive.
func (s *Server) StartOutage(d time.Duration) error {
	if d <= 0 {
		return errors.New("outage duration must be positive")
	}
	now := s.now()
	return s.updateFaults(func(f *Faults) { f.OutageFrom, f.OutageUntil = now, now.Add(d) })
}

// StopOutage ends any outage, keeping the other fault settings.
func (s *Server) StopOutage() {
	_ = s.updateFaults(func(f *Faults) { f.OutageFrom, f.OutageUntil = time.Time{}, time.Time{} })
}

func (s *Server) updateFaults(change func(*Faults)) error {
	s.faultsMu.Lock()
	defer s.faultsMu.Unlock()
	f := s.faults.Load().f
	change(&f)
	if err := f.Validate(); err != nil {
		return err
	}
	s.faults.Store(newFaultState(f))
	s.log.Info("faults set", "faults", f)
	return nil
}
