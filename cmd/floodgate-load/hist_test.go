package main

import (
	"math"
	"testing"
	"time"
)

func TestHistogramQuantilesSmallValuesExact(t *testing.T) {
	var h histogram
	for _, v := range []time.Duration{5, 1, 4, 2, 3} {
		h.record(v)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.01, 1}, {0.2, 1}, {0.21, 2}, {0.5, 3}, {0.8, 4}, {0.99, 5}, {1, 5},
	}
	for _, tt := range tests {
		if got := h.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%g) of 1..5 ns: got %d, want %d", tt.q, got, tt.want)
		}
	}
	if got, want := h.mean(), time.Duration(3); got != want {
		t.Errorf("mean: got %d, want %d", got, want)
	}
}

func TestHistogramQuantilesLargeValuesWithinBound(t *testing.T) {
	// 1 µs, 2 µs, ..., 100 000 µs (0.1 s): the nearest-rank q-quantile is q·100 000 µs.
	var h histogram
	const n = 100_000
	for i := n; i >= 1; i-- { // order must not matter
		h.record(time.Duration(i) * time.Microsecond)
	}
	if got := h.count(); got != n {
		t.Fatalf("count: got %d, want %d", got, n)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		want := time.Duration(math.Ceil(q*n)) * time.Microsecond
		got := h.quantile(q)
		// Reported values are the bucket's upper end: never below the true value, at most 1/128 above.
		if got < want || float64(got) > float64(want)*(1+1.0/subHalf) {
			t.Errorf("quantile(%g): got %s, want %s (+ at most %.2f %%)", q, got, want, 100.0/subHalf)
		}
	}
	if got, want := h.quantile(1), 100*time.Millisecond; got != want {
		t.Errorf("quantile(1) is the max: got %s, want %s", got, want)
	}
	if got, want := h.mean(), (n+1)*time.Microsecond/2; got != want {
		t.Errorf("mean: got %s, want %s", got, want)
	}
}

func TestHistogramSkewedDistribution(t *testing.T) {
	// 990 fast calls at 200 µs and 10 slow at 30 ms: p99 is fast, p99.9 slow.
	var h histogram
	for range 990 {
		h.record(200 * time.Microsecond)
	}
	for range 10 {
		h.record(30 * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 200 * time.Microsecond}, {0.99, 200 * time.Microsecond}, {0.991, 30 * time.Millisecond}, {0.999, 30 * time.Millisecond},
	}
	for _, tt := range tests {
		got := h.quantile(tt.q)
		if got < tt.want || float64(got) > float64(tt.want)*(1+1.0/subHalf) {
			t.Errorf("quantile(%g): got %s, want %s", tt.q, got, tt.want)
		}
	}
}

func TestHistogramMergeEqualsSingle(t *testing.T) {
	var all, a, b histogram
	for i := range 10_000 {
		d := time.Duration(i*i) * time.Nanosecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	var merged histogram
	merged.merge(&a)
	merged.merge(&b)
	merged.merge(&histogram{}) // an empty histogram changes nothing
	if merged.counts != all.counts || merged.n != all.n || merged.sum != all.sum || merged.min != all.min || merged.max != all.max {
		t.Fatalf("merged histogram differs from the one that recorded everything: n %d/%d min %s/%s max %s/%s",
			merged.n, all.n, merged.min, all.min, merged.max, all.max)
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h histogram
	if got := h.quantile(0.99); got != 0 {
		t.Errorf("empty quantile: got %s, want 0", got)
	}
	h.record(-5)
	if got := h.quantile(1); got != 0 {
		t.Errorf("negative sample: got %s, want 0", got)
	}
}

func TestBucketBoundaries(t *testing.T) {
	// Every value lies inside its bucket and buckets are contiguous and increasing.
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<20 + 1, 123_456_789, 1 << 40, math.MaxInt64} {
		i := bucketOf(v)
		if hi := bucketHigh(i); hi < v {
			t.Errorf("value %d in bucket %d: got high %d, want ≥ %d", v, i, hi, v)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Errorf("value %d in bucket %d: previous bucket's high %d, want < %d", v, i, bucketHigh(i-1), v)
		}
		if i >= numBuckets {
			t.Errorf("value %d: got bucket %d, want < %d", v, i, numBuckets)
		}
	}
	for i := 1; i < numBuckets; i++ {
		if bucketOf(bucketHigh(i-1)+1) != i {
			t.Fatalf("bucket %d does not start right after bucket %d's high %d", i, i-1, bucketHigh(i-1))
		}
	}
}
