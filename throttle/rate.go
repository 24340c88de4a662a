package throttle

// The learnt rate: what a 429 says of the quota, the hold before a probe,
// the token bucket that paces calls, and the count of accepted calls.

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// learnLocked sets the learnt rate at a 429 (the first of an episode) and
// the hold before the next probe. prevPause is when the pause before this
// one ended.
//
// What the 429 says of the quota depends on how the calls went out. In
// overload (no rate yet) the window that refused was full: the calls
// accepted in the last second are the quota (and calls still in flight
// then add to it as they are answered). Within a second of a pause the
// same count is a lower bound (the window may have had calls before the
// pause). Paced at a steady rate, the count is the pace, and says only
// that the quota is under it: a probe meeting the quota near the old
// estimate confirms it; a probe meeting it far above means the quota rose
// to about the count (which may hold the end of the window before);
// a steady rate meeting it means the quota fell, and the rate is cut by a
// quarter until a 429 right after a pause counts it; unless the estimate
// is still the first count, which more likely overshot: then by firstCut.
func (l *Limiter) learnLocked(now, prevPause time.Time) {
	// The first count, of calls sent as fast as they went (no pace yet),
	// can hold the end of the window before the one that refused: up to
	// twice the quota. It paces, but is no "higher estimate seen lately"
	// (high), which would have every later, right estimate probed as a
	// quota that was lowered and should come back.
	first, wasFirst := l.learnt == 0, l.firstCount
	l.firstCount = first
	all, _ := l.acceptedLocked(now)
	count := float64(all)
	base := rateMargin * l.estimate
	probing := l.learnt > 0 && !now.Before(l.holdTil) && l.learnt > base*1.001
	var est float64
	counted := false
	switch {
	case l.learnt == 0 || now.Sub(prevPause) < window:
		est, counted = count, true
	case probing && l.learnt < 1.2*base:
		est = l.estimate
	case probing:
		est = min(count, l.learnt/1.1)
	case wasFirst:
		// A steady pace met the quota while the estimate was still the
		// first count: more likely that count overshot (by a few percent,
		// the tail of the window before) than the quota fell. A cut of a
		// quarter would hold three quarters of the quota until a probe.
		est = l.learnt * firstCut / rateMargin
	default:
		est = l.learnt * 0.75 / rateMargin
	}
	l.lateFrom, l.lateTo = time.Time{}, time.Time{}
	if counted {
		l.lateFrom, l.lateTo = now.Add(-window), now
		if prevPause.After(l.lateFrom) {
			l.lateFrom = prevPause
		}
	}
	if est < 1 {
		if l.learnt > 0 {
			l.learnt = max(l.learnt/2, 1)
			l.hold, l.holdTil, l.grownAt = holdConfirm, now.Add(holdConfirm), now
			l.applyRateLocked(now)
		}
		return
	}
	if now.Sub(l.highAt) > highMemory {
		l.high = 0
	}
	prev := l.estimate
	switch {
	case prev > 0 && est >= (1-agree)*prev && est <= (1+agree)*prev && est >= (1-agree)*l.high:
		l.hold = min(max(2*l.hold, holdFirstAgree), holdMax)
	case est < (1-agree)*l.high:
		l.hold = holdBelow
	default:
		l.hold = holdConfirm
	}
	if est >= l.high && !first {
		l.high, l.highAt = est, now
	}
	l.estimate = est
	l.learnt = rateMargin * est
	// The hold counts from the end of the pause.
	from := now
	if l.paused.After(from) {
		from = l.paused
	}
	l.holdTil, l.grownAt = from.Add(l.hold), from
	l.applyRateLocked(now)
}

// lateOK adds a call accepted after the 429 that set the estimate, sent
// within the second counted then, to the estimate.
func (l *Limiter) lateOK(sentAt, now time.Time) {
	if l.learnt == 0 || !sentAt.After(l.lateFrom) || sentAt.After(l.lateTo) {
		return
	}
	l.estimate++
	if l.estimate > l.high && !l.firstCount {
		l.high = l.estimate
	}
	l.learnt += rateMargin
	l.applyRateLocked(now)
}

// growLocked probes above the learnt rate once the hold is over.
func (l *Limiter) growLocked(now time.Time) {
	if l.learnt == 0 || now.Before(l.holdTil) || now.Sub(l.grownAt) < 50*time.Millisecond {
		return
	}
	from := l.grownAt
	if l.holdTil.After(from) {
		from = l.holdTil
	}
	dt := now.Sub(from).Seconds()
	l.grownAt = now
	// Gently up to 10% over the estimate (a quota that did not move is met
	// just over it, so that the estimate made then is close), then fast;
	// fast at once under a higher estimate seen lately.
	g := probeGrowth
	if l.learnt < probeGentleTo*l.estimate && l.estimate >= (1-agree)*l.high {
		g = probeGentle
	}
	l.learnt *= math.Pow(g, dt)
	if l.learnt > dropAfter*l.estimate {
		l.learnt, l.estimate, l.hold = 0, 0, 0 // the quota is gone
		l.slowStart = true
	}
	l.applyRateLocked(now)
}

// applyRateLocked gives the token bucket the lower of the learnt rate and
// the known quota's share. The learnt rate gets a burst of 1% (with the
// 99% margin a second never holds more than the estimate); the known
// quota a burst of one, so that no second exceeds it. The burst also says
// whether paced calls leave on a grid (Limiter.grid).
func (l *Limiter) applyRateLocked(now time.Time) {
	r, burst := math.Inf(1), 1
	if l.learnt > 0 {
		r, burst = l.learnt, max(1, int(l.learnt/100))
	}
	if l.o.Rate > 0 {
		if k := l.o.Rate * l.share; k <= r {
			r, burst = max(k, 0.1), 1
		}
	}
	if r == l.applied {
		return
	}
	l.applied = r
	lim := rate.Limit(r)
	if math.IsInf(r, 1) {
		lim = rate.Inf
	}
	l.rl.SetLimitAt(now, lim)
	l.rl.SetBurstAt(now, burst)
}

// countOK records an accepted call sent at t.
func (l *Limiter) countOK(t time.Time) {
	tick := t.UnixNano() / int64(bucket)
	l.advance(tick)
	if age := l.okTick - tick; age >= 0 && age < int64(nBuckets) {
		l.ok[tick%int64(nBuckets)]++
	}
}

// advance moves the ring to tick, clearing the buckets passed.
func (l *Limiter) advance(tick int64) {
	if tick <= l.okTick {
		return
	}
	for i := l.okTick + 1; i <= tick && i <= l.okTick+int64(nBuckets); i++ {
		l.ok[i%int64(nBuckets)] = 0
	}
	l.okTick = tick
}

// acceptedLocked returns the number of accepted calls sent in the last
// second, and of them those sent in the last quarter second.
func (l *Limiter) acceptedLocked(now time.Time) (all, recent int) {
	tick := now.UnixNano() / int64(bucket)
	l.advance(tick)
	for i := range int64(nBuckets) {
		v := l.ok[(tick-i)%int64(nBuckets)]
		all += v
		if i < int64(nBuckets/4) {
			recent += v
		}
	}
	return all, recent
}
