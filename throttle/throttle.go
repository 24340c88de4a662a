// Package throttle paces kdsync's calls to KooDrive so that a quota makes
// kdsync slower, never stuck. A Limiter combines three brakes, each with
// its own signal:
//
//   - KooDrive's Retry-After. When 429s look like a quota (three in a row,
//     or 15% of the last 50 answers), a 429 pauses new calls for everyone
//     until its Retry-After (one second when absent) has passed, as Entra's
//     provisioning does: calls already sent finish, none starts. A lone 429
//     among accepted calls only delays its own call (the consumer waits
//     its Retry-After before retrying): pausing everyone for each of a few
//     percent of scattered 429s would bring kdsync to a crawl.
//
//   - A request rate learnt from the 429s (and capped by a known quota,
//     Options.Rate). At a 429 the Limiter counts the calls KooDrive
//     accepted in the second before it (what the quota let through) and
//     paces calls at 99% of that. It then holds that rate and, after a hold,
//     probes above it, doubling each second until KooDrive refuses again.
//     The hold is short (2 s) after a first or a higher estimate, to confirm
//     it; it grows (20 s, 40 s, 60 s) while the estimates agree, so that a
//     steady quota is probed rarely (each probe costs one Retry-After); it
//     is 4 s while the estimate is under a higher one seen in the last five
//     minutes, because a quota that was lowered tends to come back. A rate
//     that doubles past eight times the last estimate without a 429 is
//     dropped: the quota is gone.
//
//   - An adaptive number of calls in flight, grown only where growth pays
//     (epoch.go): doubling (slow start) from Options.Initial, then by a
//     quarter, each growth kept only if the calls' round trip after it
//     says it raised the calls per second (Little's law; a hill climber):
//     past the point where KooDrive answers calls in parallel, more in
//     flight only queue. A timeout cuts it to 90% of the calls in flight then, a
//     429 that opens an episode to 90% of itself (the learnt rate does
//     the pacing); never below Options.Min nor above Options.Max.
//
// github.com/platinummonkey/go-concurrency-limits was considered: its
// limits (AIMD, Vegas, Gradient2) adapt concurrency to latency and drops,
// but a rate quota with Retry-After needs a paced rate and a shared pause,
// which it does not offer; at 20 ms a concurrency limit alone moves in
// steps of 5% of the rate and overshoots within a round trip.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/kdsync/kdsync/kdapi"
)

// Options configure a Limiter. Zero values take the defaults.
type Options struct {
	// Max is the ceiling of calls in flight; default 512.
	Max int
	// Min is the floor the limit is never cut below; default 4 (at most
	// Max).
	Min int
	// Initial is the limit at start; default 64 (within Min..Max).
	Initial int
	// Rate is a known quota in requests per second, never exceeded; 0
	// means none. Share scales it.
	Rate float64
	// MaxPause bounds the pause one Retry-After asks for; default 1m.
	MaxPause time.Duration
}

func (o *Options) setDefaults() {
	if o.Max == 0 {
		o.Max = 512
	}
	if o.Min == 0 {
		o.Min = min(4, o.Max)
	}
	if o.Initial == 0 {
		o.Initial = 64
	}
	o.Initial = min(max(o.Initial, o.Min), o.Max)
	if o.MaxPause == 0 {
		o.MaxPause = time.Minute
	}
}

// Validate reports every setting out of range, with the defaults filled in.
func (o Options) Validate() error {
	o.setDefaults()
	var errs []error
	if o.Max < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", o.Max))
	}
	if o.Min < 1 || o.Min > o.Max {
		errs = append(errs, fmt.Errorf("concurrency floor %d: must be 1 to the concurrency %d", o.Min, o.Max))
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		errs = append(errs, fmt.Errorf("API rate %g: must be a number of requests per second, 0 for none", o.Rate))
	}
	if o.MaxPause < 0 {
		errs = append(errs, fmt.Errorf("max pause %s: must not be negative", o.MaxPause))
	}
	return errors.Join(errs...)
}

// Tuning of the learnt rate; see the package doc.
const (
	rateMargin     = 0.99             // pace at this share of the estimate
	holdConfirm    = 2 * time.Second  // after a first or a higher estimate
	holdFirstAgree = 20 * time.Second // after the first agreeing one; doubles
	holdMax        = 60 * time.Second
	holdBelow      = 4 * time.Second // under a higher estimate seen lately
	highMemory     = 5 * time.Minute
	agree          = 0.07 // estimates within 7% agree
	firstCut       = 0.92 // a first count met at a steady pace: cut by 8% (learnLocked)
	probeGentle    = 1.1  // growth per second once the hold is over,
	probeGentleTo  = 1.25 // up to this many times the estimate,
	probeGrowth    = 2.0  // then this
	dropAfter      = 8.0  // a rate this many times the estimate is dropped
	window         = time.Second
	bucket         = 10 * time.Millisecond
	nBuckets       = int(window / bucket)
)

// Limiter paces calls. Create it with New; it is safe for concurrent use.
// It satisfies kdapi.Pacer.
type Limiter struct {
	o  Options
	rl *rate.Limiter

	mu        sync.Mutex
	limit     float64 // calls in flight allowed
	slowStart bool
	held      int             // slots taken (calls waiting for a token or sent)
	sent      int             // calls sent and not answered
	waitq     []chan struct{} // callers waiting for a slot, in order
	paused    time.Time       // no call starts before
	lastCut   time.Time       // the last decrease: answers to calls sent before it are old news

	// The learnt rate: 0 when none.
	learnt   float64
	estimate float64 // calls accepted in the second before the last 429
	high     float64 // the highest estimate within highMemory
	highAt   time.Time
	// firstCount: the estimate is the first count of an episode (see
	// learnLocked), which does not set high.
	firstCount bool
	hold       time.Duration
	holdTil    time.Time
	grownAt    time.Time
	// Calls sent in (lateFrom, lateTo] and accepted after the 429 that
	// counted that period add to the estimate.
	lateFrom, lateTo time.Time
	share            float64 // of Options.Rate
	applied          float64 // the rate the token bucket has

	// ok counts accepted calls by the time they were sent, in buckets of
	// 10 ms over the last second.
	ok     [nBuckets]int
	okTick int64 // the bucket index (time/bucket) of ok's newest entry

	// The last answers, in the order they came: whether each was a 429,
	// and how many 429s in a row ended them (see quotaLike).
	answers    [answerWindow]bool
	answered   int // answers recorded, up to answerWindow
	answerNext int
	streak     int

	// Growth of the limit, judged one epoch at a time (epoch.go).
	ep epoch

	// Counters.
	throttled, timeouts uint64
	waiting             int       // callers waiting on the pause or the rate
	waitSince           time.Time // when waiting became non-zero
	waited              time.Duration
}

// New returns a Limiter.
func New(o Options) (*Limiter, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("throttle: %w", err)
	}
	o.setDefaults()
	l := &Limiter{o: o, limit: float64(o.Initial), slowStart: true, share: 1, rl: rate.NewLimiter(rate.Inf, 1)}
	l.ep.start, l.ep.limit = time.Now(), l.limit
	l.applyRateLocked(time.Now())
	return l, nil
}

// Stats is a snapshot of the Limiter, for metrics.
type Stats struct {
	Limit    int     // calls in flight allowed
	InFlight int     // calls sent and not yet answered
	Rate     float64 // requests per second allowed now; 0: no rate limit
	Learnt   float64 // the rate learnt from 429s; 0: none
	Paused   bool    // a Retry-After holds every call back
	// Throttled counts 429 answers; Timeouts calls that timed out.
	Throttled, Timeouts uint64
	// ThrottledSeconds is the time during which some call waited for a
	// Retry-After, the learnt rate or the known quota.
	ThrottledSeconds float64
}

// Stats returns the current figures.
func (l *Limiter) Stats() Stats {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.waited
	if l.waiting > 0 {
		w += now.Sub(l.waitSince)
	}
	s := Stats{Limit: int(l.limit), InFlight: l.sent, Learnt: l.learnt, Paused: now.Before(l.paused),
		Throttled: l.throttled, Timeouts: l.timeouts, ThrottledSeconds: w.Seconds()}
	if !math.IsInf(l.applied, 1) {
		s.Rate = l.applied
	}
	return s
}

// Limit returns the calls in flight allowed now.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// SetShare scales the known quota (Options.Rate) to held of total parts:
// with partitions, each instance gets the share of the quota of the
// partitions it holds. total < 1 means the whole quota.
func (l *Limiter) SetShare(held, total int) {
	s := 1.0
	if total >= 1 {
		s = float64(max(held, 0)) / float64(total)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s != l.share {
		l.share = s
		l.applyRateLocked(time.Now())
	}
}

// Acquire waits until a call may be sent: a slot among the calls in flight,
// the end of any pause, a token of the rate. done must be called with how
// the call ended (kdapi.Pacer).
func (l *Limiter) Acquire(ctx context.Context) (done func(*http.Response, error), err error) {
	if err := l.acquireSlot(ctx); err != nil {
		return nil, err
	}
	waiting := false
	defer func() {
		if waiting {
			l.setWaiting(false)
		}
	}()
	for {
		now := time.Now()
		l.mu.Lock()
		l.growLocked(now)
		pause := l.paused.Sub(now)
		l.mu.Unlock()
		if pause > 0 {
			if !waiting {
				waiting = true
				l.setWaiting(true)
			}
			if err := sleep(ctx, pause); err != nil {
				l.releaseSlot()
				return nil, err
			}
			continue
		}
		r := l.rl.Reserve()
		if d := r.Delay(); d > 0 {
			d = onTick(now, d, l.grid())
			if !waiting {
				waiting = true
				l.setWaiting(true)
			}
			if err := sleep(ctx, d); err != nil {
				r.Cancel()
				l.releaseSlot()
				return nil, err
			}
			l.mu.Lock()
			again := time.Now().Before(l.paused)
			l.mu.Unlock()
			if again {
				continue // a pause began meanwhile
			}
		}
		break
	}
	sentAt := time.Now()
	l.mu.Lock()
	l.sent++
	l.mu.Unlock()
	return func(resp *http.Response, err error) { l.done(sentAt, resp, err) }, nil
}

func (l *Limiter) setWaiting(on bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		if l.waiting == 0 {
			l.waitSince = now
		}
		l.waiting++
		return
	}
	l.waiting--
	if l.waiting == 0 {
		l.waited += now.Sub(l.waitSince)
	}
}

// maxTick is the coarsest grid that paced calls are released on: a call
// whose token of the rate is due in d waits until the first tick at or
// after then, never before its token and less than a tick after it.
// Rounding up to a grid never puts more tokens into any window whose
// length is a multiple of the tick; but a bunch that reaches KooDrive
// late, across the edge of its quota's window, counts in the next one.
// A learnt pace (99% of the quota) leaves a hundredth of the rate per
// second of room: 10 ms of calls; a bunch is at most half of it. A pace
// with a burst of one (a known quota, with no room; a learnt pace under
// 200/s) has no grid. At a learnt 1,000/s calls leave five at a time
// every 5 ms instead of one every millisecond, and kdsync wakes 200 times
// a second where it woke a thousand: under a quota most of its CPU went
// to waking (timers, idle threads, a write to NATS per event) rather than
// to the calls (docs/performance.md, "Under a quota, per event").
const maxTick = 5 * time.Millisecond

// grid is the grid paced calls leave on: maxTick where the token bucket
// has a burst (a learnt pace from 200/s on, where burst/rate >= 5 ms, so
// that the grid is never coarser than the burst), none otherwise.
func (l *Limiter) grid() time.Duration {
	if l.rl.Burst() > 1 && l.rl.Limit() != rate.Inf {
		return maxTick
	}
	return 0
}

// onTick lengthens the wait d from now so that it ends on a multiple of
// tick (none when tick is 0).
func onTick(now time.Time, d, tick time.Duration) time.Duration {
	if tick <= 0 {
		return d
	}
	due := now.Add(d).UnixNano()
	if r := due % int64(tick); r != 0 {
		due += int64(tick) - r
	}
	return time.Duration(due - now.UnixNano())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// acquireSlot takes one of the limit's slots, waiting in order.
func (l *Limiter) acquireSlot(ctx context.Context) error {
	l.mu.Lock()
	if len(l.waitq) == 0 && l.held < int(l.limit) {
		l.held++
		l.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	l.waitq = append(l.waitq, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		if i := slices.Index(l.waitq, ch); i >= 0 {
			l.waitq = slices.Delete(l.waitq, i, i+1)
			l.mu.Unlock()
			return ctx.Err()
		}
		l.mu.Unlock()
		l.releaseSlot() // granted meanwhile: give it back
		return ctx.Err()
	}
}

func (l *Limiter) releaseSlot() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held--
	l.grantLocked()
}

// grantLocked hands free slots to waiters, oldest first.
func (l *Limiter) grantLocked() {
	for len(l.waitq) > 0 && l.held < int(l.limit) {
		ch := l.waitq[0]
		l.waitq = l.waitq[1:]
		l.held++
		close(ch)
	}
}

// done learns from one call sent at sentAt.
func (l *Limiter) done(sentAt time.Time, resp *http.Response, err error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent--
	l.held--
	defer l.grantLocked()
	fresh := sentAt.After(l.lastCut)
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		// The caller gave up: nothing learnt.
	case err != nil:
		if !isTimeout(err) {
			return // refused or reset: the breaker's business
		}
		l.timeouts++
		if fresh {
			l.cutLocked(now)
		}
	case resp == nil:
	case resp.StatusCode == http.StatusTooManyRequests:
		l.throttled++
		l.recordAnswer(true)
		if !l.quotaLike(now) {
			// A lone 429 among accepted calls (a busy node behind a load
			// balancer, say): its own call waits its Retry-After (the
			// consumer's retry); pausing everyone for each of them would
			// bring kdsync to a crawl at a few percent of 429s.
			return
		}
		ra := kdapi.ParseRetryAfter(resp.Header.Get("Retry-After"), now)
		if ra <= 0 {
			ra = time.Second
		}
		prevPause := l.paused
		if until := now.Add(min(ra, l.o.MaxPause)); until.After(l.paused) {
			l.paused = until
		}
		if fresh {
			l.learnLocked(now, prevPause)
			// The learnt rate paces; the limit only backs off a little,
			// so that slow answers under a rate do not starve it.
			l.slowStart, l.lastCut = false, now
			l.limit = max(float64(l.o.Min), l.limit*0.9)
		}
	case resp.StatusCode >= 500:
		// KooDrive failing is the breaker's business, not a quota.
	default:
		l.recordAnswer(false)
		l.countOK(sentAt)
		if !fresh {
			l.lateOK(sentAt, now)
		}
		l.ep.accepted++
		l.ep.rtt += now.Sub(sentAt)
		if float64(l.sent+1) >= l.limit/2 {
			l.ep.busy++
		}
		l.epochLocked(now)
	}
}

// answerWindow is how many of the last answers quotaLike looks at.
const answerWindow = 50

// recordAnswer notes an answer: a 429 or an accepted call.
func (l *Limiter) recordAnswer(throttled bool) {
	l.answers[l.answerNext] = throttled
	l.answerNext = (l.answerNext + 1) % answerWindow
	l.answered = min(l.answered+1, answerWindow)
	if throttled {
		l.streak++
	} else {
		l.streak = 0
	}
}

// quotaLike reports whether the 429s look like a quota being hit, which
// pauses everyone and teaches the rate: 429s in a row (a quota's window
// spent refuses every call after it), at least 15% of the last answers
// (a smoother quota a little exceeded), or a pause already under way.
// Scattered 429s among accepted calls are not a quota's signature.
func (l *Limiter) quotaLike(now time.Time) bool {
	if l.streak >= 3 || now.Before(l.paused) {
		return true
	}
	n := 0
	for i := range l.answered {
		if l.answers[i] {
			n++
		}
	}
	return l.answered >= 20 && float64(n) >= 0.15*float64(l.answered)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// cutLocked lowers the limit to 90% of the calls in flight.
func (l *Limiter) cutLocked(now time.Time) {
	l.slowStart = false
	l.lastCut = now
	l.limit = max(float64(l.o.Min), min(l.limit, float64(l.sent+1))*0.9)
}
