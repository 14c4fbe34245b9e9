package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram records durations in log-linear buckets, the way HdrHistogram does: values below subCount
// nanoseconds are kept exactly; above, each power of two is split into subCount/2 equal buckets, so a
// reported value is at most 1/(subCount/2) (0.78 %) above the true one. Its size is fixed (~60 KB) whatever
// the number of samples. Not safe for concurrent use: each load worker owns one and they are merged after.
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

const (
	subBits    = 8
	subCount   = 1 << subBits // 256
	subHalf    = subCount / 2 // buckets per power of two above subCount
	numBuckets = subCount + (64-subBits)*subHalf
)

// bucketOf maps v ≥ 0 nanoseconds to its bucket index.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits // ≥ 1
	top := v >> uint(shift)          // in [subHalf, subCount)
	return subCount + (shift-1)*subHalf + int(top-subHalf)
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := (i-subCount)/subHalf + 1
	top := uint64((i-subCount)%subHalf + subHalf)
	if shift+bits.Len64(top+1) > 64 { // (top+1)<<shift would overflow: the last bucket
		return math.MaxUint64
	}
	return (top+1)<<uint(shift) - 1
}

// record adds one sample; negative durations count as 0.
func (h *histogram) record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
	h.sum += d
}

// merge adds every sample of o to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// count is the number of samples recorded.
func (h *histogram) count() uint64 { return h.n }

// mean is the exact arithmetic mean (0 without samples).
func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// quantile returns the nearest-rank q-quantile (0 < q ≤ 1): the smallest recorded value v such that at least
// q·n samples are ≤ v, reported as the upper end of v's bucket and clamped to [min, max]. 0 without samples.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketHigh(i)
			if v > uint64(h.max) {
				return h.max
			}
			return max(time.Duration(v), h.min)
		}
	}
	return h.max
}
