package metrics

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency sketch is a log-linear histogram of nanoseconds: values below 8 ns have a bucket each, and
// every power of two above is cut into 8 equal sub-buckets, so a bucket is at most 1/8 of its lower bound
// wide. Quantiles report the bucket's midpoint: relative error at most 1/16 (6.25 %).
const (
	latencySubBits = 3
	latencySub     = 1 << latencySubBits
	sketchBuckets  = (63 - latencySubBits + 1) * latencySub // 488: a Duration is below 2^63, so its top exponent is 62
)

type latencyHist [sketchBuckets]atomic.Uint64

// maxLatencySlots bounds the sketch's memory (each slot is about 4 KiB) and the work of one sample when the
// window holds many intervals (a 10 s window sampled every 2 ms).
const maxLatencySlots = 60

// latencySketch keeps one histogram per slot in a ring: observations go to the current slot; closing a slot
// opens a cleared one, and the window is every other slot (the last len(slots)-1 completed slots). A slot
// lasts `every` samples: one interval, or more when the window holds more than maxLatencySlots intervals.
type latencySketch struct {
	slots []latencyHist
	cur   atomic.Int32
	every int
	// samples and merged belong to the sampling goroutine.
	samples int
	merged  [sketchBuckets]uint64
}

// newLatencySketch covers a window of `window` sample intervals.
func newLatencySketch(window int) *latencySketch {
	window = max(window, 1)
	every := (window + maxLatencySlots - 1) / maxLatencySlots
	return &latencySketch{slots: make([]latencyHist, (window+every-1)/every+1), every: every}
}

// windowIntervals is the number of sample intervals the quantiles cover.
func (l *latencySketch) windowIntervals() int { return (len(l.slots) - 1) * l.every }

// observe records one duration without allocating. Negative durations count as 0.
func (l *latencySketch) observe(d time.Duration) {
	l.slots[l.cur.Load()][latencyBucket(d)].Add(1)
}

// rotate is called once per sample: every `every` samples it closes the current slot and opens a cleared
// one. It returns the quantiles of the completed slots. An observation racing with the switch lands in the
// slot just closed or in the new one; neither is lost unless its goroutine stalled for a whole window.
func (l *latencySketch) rotate(qs []float64, out []time.Duration) (count uint64) {
	l.samples++
	if l.samples%l.every == 0 {
		next := (int(l.cur.Load()) + 1) % len(l.slots)
		for i := range l.slots[next] {
			l.slots[next][i].Store(0)
		}
		l.cur.Store(int32(next))
	}
	cur := int(l.cur.Load())
	clear(l.merged[:])
	for s := range l.slots {
		if s == cur {
			continue
		}
		for i := range l.slots[s] {
			if n := l.slots[s][i].Load(); n > 0 {
				l.merged[i] += n
				count += n
			}
		}
	}
	quantiles(&l.merged, count, qs, out)
	return count
}

// quantiles fills out[i] with the qs[i] quantile (qs ascending) of a histogram holding count values.
func quantiles(h *[sketchBuckets]uint64, count uint64, qs []float64, out []time.Duration) {
	for i := range out {
		out[i] = 0
	}
	if count == 0 {
		return
	}
	var seen uint64
	qi := 0
	for b := 0; b < sketchBuckets && qi < len(qs); b++ {
		seen += h[b]
		for qi < len(qs) && seen >= rank(qs[qi], count) {
			out[qi] = latencyMid(b)
			qi++
		}
	}
}

// rank is the 1-based rank of quantile q among count values (nearest-rank method).
func rank(q float64, count uint64) uint64 {
	r := uint64(math.Ceil(q * float64(count)))
	if r < 1 {
		r = 1
	}
	if r > count {
		r = count
	}
	return r
}

func latencyBucket(d time.Duration) int {
	if d < latencySub {
		if d < 0 {
			return 0
		}
		return int(d)
	}
	v := uint64(d)
	e := bits.Len64(v) - 1 // v is in [2^e, 2^(e+1)), e >= latencySubBits
	m := int(v>>(e-latencySubBits)) & (latencySub - 1)
	return (e-latencySubBits+1)*latencySub + m
}

// latencyLow returns the smallest value of bucket b and latencyWidth its width, in nanoseconds.
func latencyLow(b int) (low, width uint64) {
	if b < latencySub {
		return uint64(b), 1
	}
	e := b/latencySub + latencySubBits - 1
	m := uint64(b % latencySub)
	shift := e - latencySubBits
	return (latencySub + m) << shift, 1 << shift
}

func latencyMid(b int) time.Duration {
	low, width := latencyLow(b)
	return time.Duration(low + width/2)
}
