package throttle

import "time"

// Growth of the limit must pay. More calls in flight help only while
// KooDrive answers them in parallel: past that point (KooDrive, or the
// machine kdsync shares with it, is busy) each extra call only waits in a
// queue, and kdsync holds its memory and connections for nothing. At zero
// latency a ceiling of 512 cost 20% of the throughput and 14 MiB of RSS
// against 64 (docs/performance.md).
//
// So the limit grows one epoch at a time, and each growth is judged by the
// epochs after it, by the calls' mean round trip: by Little's law the
// calls per second the limit allows are the limit over the round trip, so
// a growth by a factor f that lengthens the round trip by r gains f/r - 1
// in capacity. It pays when that gain is at least payShare of the growth:
// doubling must not lengthen the round trip by more than a third (a gain
// of at least 50%), a quarter more by more than 11% (12.5%). The round
// trip, unlike the calls per second, does not fall when events run short
// for a moment or kdsync's own work elsewhere stalls, so a judgement is
// not thrown by the second it happens to fall in.
//
// Slow start doubles the limit each epoch that pays. Its epochs last a
// quarter of a second, or five round trips when that is longer, so that
// the calls a growth added have filled their slots (one round trip) and
// are counted several times: from 64 to 256 in 0.5 s at 20 ms of latency,
// to 512 in 1.5 s at 100 ms. A growth that does not pay in full
// ends slow start and holds growth for holdGrowth, after which one step (a
// quarter, judged by two epochs of a second) is tried again, so that a
// KooDrive that got faster, or a quota that was raised, is found. The
// limit kept is where the gain says the capacity was reached: the old
// limit times one plus the gain, and a tenth (doubling 128 for 28% more
// keeps 180); a gain under a tenth keeps the old limit, so that probes
// that fail do not ratchet it up. A round trip that grows by more than
// twice the limit's growth undoes the growth at once and measures afresh
// at the old limit: the conditions changed (a latency step). A growth
// whose calls in flight (on average, by Little's law: the rate times the
// round trip) stayed below halfway to the new limit was not used in full
// (too few events ready, or kdsync's own work is what holds it back): the
// limit keeps what was used, with a tenth more, never less than the old
// limit, and growth holds. An epoch also waits for 100 answers, up to
// three seconds; the limit grows only while it is used (at least half of
// it in flight for most answers).
const (
	slowEpochLen    = 250 * time.Millisecond
	slowEpochRTTs   = 5
	epochLen        = time.Second
	epochMaxLen     = 3 * time.Second
	epochMinAnswers = 100
	payShare        = 0.5
	changedShare    = 2.0
	growthStep      = 1.25
	holdGrowth      = 5 * time.Second
	judgeEpochs     = 2
	kneeMargin      = 1.1
)

// epoch is the Limiter's record of the current epoch and the reference
// the next growth is judged against.
type epoch struct {
	start    time.Time
	accepted int           // calls accepted in the epoch
	rtt      time.Duration // their round trips, summed
	busy     int           // of which answered while at least half the limit was in flight
	limit    float64       // the limit at its start
	judged   int           // epochs that judged the last growth so far; 0: none under way

	refLimit float64       // the last epoch that stands as reference; 0: none
	refRTT   time.Duration // its mean round trip
	holdTil  time.Time     // no growth before
}

// epochLocked ends the epoch once it is long enough: it judges the growth
// the epoch began with, and grows the limit for the next one when it may.
func (l *Limiter) epochLocked(now time.Time) {
	ep := &l.ep
	el := now.Sub(ep.start)
	length, judges := epochLen, judgeEpochs
	if l.slowStart {
		// Long enough for the calls a growth added to fill their slots
		// (a round trip) and be counted several times over.
		length, judges = max(slowEpochLen, slowEpochRTTs*ep.rtt/time.Duration(max(ep.accepted, 1))), 1
	}
	if el < length || (ep.accepted < epochMinAnswers && el < epochMaxLen) {
		return
	}
	rtt := ep.rtt / time.Duration(max(ep.accepted, 1))
	// The calls in flight on average (Little's law: the rate times the
	// round trip).
	used := float64(ep.accepted) / el.Seconds() * rtt.Seconds()
	busy := 2*ep.busy >= ep.accepted
	cut := l.lastCut.After(ep.start)
	judging := ep.judged > 0 && ep.refLimit > 0 && ep.refRTT > 0
	var growth, gain float64
	if judging {
		growth = ep.limit / ep.refLimit
		gain = growth/(float64(rtt)/float64(ep.refRTT)) - 1
	}
	switch {
	case cut:
		// The limit was cut (a timeout, a quota): this epoch belongs to
		// neither limit.
		ep.refLimit, ep.refRTT, ep.judged = 0, 0, 0
	case judging && used < (ep.refLimit+ep.limit)/2:
		// The growth was not used in full: what holds kdsync back is not
		// the limit (too few events, or its own work). Keep what was
		// used, with a tenth more, never below the old limit, and hold.
		l.settleLocked(now, max(ep.refLimit, used*kneeMargin))
	case judging && float64(rtt) > changedShare*growth*float64(ep.refRTT):
		// The round trip grew far more than the limit: the conditions
		// changed. Undo the growth and measure afresh at the old limit.
		l.limit = max(float64(l.o.Min), min(l.limit, ep.refLimit))
		ep.refLimit, ep.refRTT, ep.judged = 0, 0, 0
	case judging && gain < payShare*(growth-1):
		// The growth did not pay in full: capacity is reached between
		// the two limits, at refLimit × (1 + gain). Keep that, with a
		// tenth more, and hold; a probe that gained little keeps the
		// old limit (no drift upwards).
		knee := ep.refLimit * (1 + max(gain, 0))
		if knee >= ep.refLimit*kneeMargin {
			knee *= kneeMargin
		} else {
			knee = ep.refLimit
		}
		l.settleLocked(now, knee)
	case judging && ep.judged < judges:
		ep.judged++ // paid once; once more
	default:
		ep.refLimit, ep.refRTT, ep.judged = ep.limit, rtt, 0
	}
	if ep.judged == 0 && busy && !cut && now.After(ep.holdTil) && l.limit < float64(l.o.Max) {
		f := growthStep
		if l.slowStart {
			f = 2
		}
		l.limit = min(float64(l.o.Max), max(l.limit+1, l.limit*f))
		ep.judged = 1
	}
	ep.start, ep.accepted, ep.rtt, ep.busy, ep.limit = now, 0, 0, 0, l.limit
}

// settleLocked ends a growth that did not pay: the limit goes down to at
// most to (never below Options.Min), slow start ends, and growth holds.
func (l *Limiter) settleLocked(now time.Time, to float64) {
	l.limit = max(float64(l.o.Min), min(l.limit, to))
	l.slowStart = false
	l.ep.holdTil = now.Add(holdGrowth)
	l.ep.judged = 0
}
