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
// epochs after it, as a hill climber does: in each, the accepted calls per
// second must rise by at least payShare of the growth over the rate before
// it. Slow start doubles the limit each half-second epoch that pays (at
// least 50% more calls per second): from 64 to 512 in 1.5 s at 100 ms of
// latency. After it, growth is by a quarter, judged by two epochs of a
// second (each at least 12.5% more): a single epoch passes by chance too
// often, as at zero latency the rate of one second varies by ±15% on a
// busy machine. An epoch also waits for 100 answers, up to three seconds.
// A growth that does not pay is undone, ends slow start and holds growth
// for holdGrowth, after which one step is tried again, so that a KooDrive
// that got faster, or a quota that was raised, is found. A rate that falls
// by more than fallShare meanwhile means the conditions changed (a latency
// step, a pause): nothing is judged, the epoch becomes the new reference.
// The limit grows only while it is used (at least half of it in flight for
// most answers).
const (
	slowEpochLen    = 500 * time.Millisecond
	epochLen        = time.Second
	epochMaxLen     = 3 * time.Second
	epochMinAnswers = 100
	payShare        = 0.5
	fallShare       = 0.8
	growthStep      = 1.25
	holdGrowth      = 5 * time.Second
	judgeEpochs     = 2
)

// epoch is the Limiter's record of the current epoch and the reference
// the next growth is judged against.
type epoch struct {
	start    time.Time
	accepted int     // calls accepted in the epoch
	busy     int     // of which answered while at least half the limit was in flight
	limit    float64 // the limit at its start
	judged   int     // epochs that judged the last growth so far; 0: none under way

	refLimit, refRate float64   // the last epoch that stands as reference; 0: none
	holdTil           time.Time // no growth before
}

// epochLocked ends the epoch once it is long enough: it judges the growth
// the epoch began with, and grows the limit for the next one when it may.
func (l *Limiter) epochLocked(now time.Time) {
	ep := &l.ep
	el := now.Sub(ep.start)
	length, judges := epochLen, judgeEpochs
	if l.slowStart {
		length, judges = slowEpochLen, 1
	}
	if el < length || (ep.accepted < epochMinAnswers && el < epochMaxLen) {
		return
	}
	rate := float64(ep.accepted) / el.Seconds()
	busy := 2*ep.busy >= ep.accepted
	cut := l.lastCut.After(ep.start)
	judging := ep.judged > 0 && ep.refRate > 0
	switch {
	case cut:
		// The limit was cut (a timeout, a quota): this epoch's rate
		// belongs to neither limit.
		ep.refLimit, ep.refRate, ep.judged = 0, 0, 0
	case judging && rate < fallShare*ep.refRate:
		// Slower than before at a higher limit: the conditions changed.
		ep.refLimit, ep.refRate, ep.judged = ep.limit, rate, 0
	case judging && rate/ep.refRate-1 < payShare*(ep.limit/ep.refLimit-1):
		// The growth did not pay: undo it, hold.
		l.limit = max(float64(l.o.Min), min(l.limit, ep.refLimit))
		l.slowStart = false
		ep.holdTil = now.Add(holdGrowth)
		ep.judged = 0
	case judging && ep.judged < judges:
		ep.judged++ // paid once; once more
	default:
		ep.refLimit, ep.refRate, ep.judged = ep.limit, rate, 0
	}
	if ep.judged == 0 && busy && !cut && now.After(ep.holdTil) && l.limit < float64(l.o.Max) {
		f := growthStep
		if l.slowStart {
			f = 2
		}
		l.limit = min(float64(l.o.Max), max(l.limit+1, l.limit*f))
		ep.judged = 1
	}
	ep.start, ep.accepted, ep.busy, ep.limit = now, 0, 0, l.limit
}
