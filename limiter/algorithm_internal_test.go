package limiter

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Exact edges of the pure algorithms (µs). The Lua twin is held to the same numbers by TestLuaTwinOfMemory.
func TestEvaluateEdges(t *testing.T) {
	const w = 10_000_000.0 // 10 s
	const t0 = 1_000 * w   // a window start
	tests := []struct {
		name      string
		now       float64
		alg       Algorithm
		limit     float64
		burst     float64
		c         float64
		st        state
		exists    bool
		want      outcome
		wantWrite write
	}{
		{"fixed first hit", t0 + 2_500_000, FixedWindow, 5, 0, 1, state{}, false,
			outcome{fits: true, remaining: 4, reset: 7_500_000}, write{next: state{win: 1000, a: 1}, expireAt: t0 + w}},
		{"fixed full, denied until the window ends", t0 + w - 1, FixedWindow, 5, 0, 1, state{win: 1000, a: 5}, true,
			outcome{remaining: 0, reset: 1, retry: 1}, write{}},
		{"fixed new window forgets the old count", t0 + w, FixedWindow, 5, 0, 5, state{win: 1000, a: 5}, true,
			outcome{fits: true, remaining: 0, reset: w}, write{next: state{win: 1001, a: 5}, expireAt: t0 + 2*w}},
		{"fixed refund floors at 0", t0, FixedWindow, 5, 0, -9, state{win: 1000, a: 2}, true,
			outcome{fits: true, remaining: 5, reset: w}, write{next: state{win: 1000, a: 0}, expireAt: t0 + w}},
		{"fixed limit 0", t0, FixedWindow, 0, 0, 1, state{}, false, outcome{reset: w, retry: w}, write{}},
		{"sliding previous window full at its end", t0, SlidingWindow, 10, 0, 1, state{win: 999, a: 10}, true,
			outcome{remaining: 0, reset: w, retry: 1_000_000}, write{}},
		{"sliding previous weight 0.4", t0 + 6_000_000, SlidingWindow, 10, 0, 1, state{win: 999, a: 10}, true,
			outcome{fits: true, remaining: 5, reset: 2*w - 6_000_000}, write{next: state{win: 1000, a: 1, b: 10}, expireAt: t0 + 2*w}},
		{"sliding current full: retry in the next window", t0 + 5_000_000, SlidingWindow, 10, 0, 1, state{win: 1000, a: 10}, true,
			outcome{remaining: 0, reset: 5_000_000 + w, retry: 5_000_000 + 1_000_000}, write{}},
		{"sliding cost above the limit never fits", t0, SlidingWindow, 3, 0, 4, state{}, false,
			outcome{remaining: 3, reset: w, retry: 2 * w}, write{}},
		{"bucket full", t0, TokenBucket, 5, 0, 1, state{}, false,
			outcome{fits: true, remaining: 4, reset: 2_000_000}, write{next: state{a: t0 + 2_000_000, b: 2_000_000}, expireAt: t0 + 2_000_000}},
		{"bucket empty: retry one interval", t0, TokenBucket, 5, 0, 1, state{a: t0 + w}, true,
			outcome{remaining: 0, reset: w, retry: 2_000_000}, write{}},
		{"bucket burst 8 over rate 5", t0, TokenBucket, 5, 8, 8, state{}, false,
			outcome{fits: true, remaining: 0, reset: 16_000_000}, write{next: state{a: t0 + 16_000_000, b: 2_000_000}, expireAt: t0 + 16_000_000}},
		{"bucket refund to full deletes", t0, TokenBucket, 5, 0, -3, state{a: t0 + 2_000_000}, true,
			outcome{fits: true, remaining: 5, reset: 0}, write{next: state{a: t0, b: 2_000_000}, expireAt: t0, del: true}},
		{"bucket rate raised: debt converted", t0, TokenBucket, 10, 0, 1, state{a: t0 + 4_000_000, b: 2_000_000}, true,
			outcome{fits: true, remaining: 7, reset: 3_000_000}, write{next: state{a: t0 + 3_000_000, b: 1_000_000}, expireAt: t0 + 3_000_000}},
		{"bucket limit 0", t0, TokenBucket, 0, 0, 1, state{}, false, outcome{reset: w, retry: w}, write{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gotWrite := evaluate(tt.now, tt.alg, tt.limit, w, tt.burst, tt.c, tt.st, tt.exists)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(outcome{})); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantWrite, gotWrite, cmp.AllowUnexported(write{}, state{})); diff != "" {
				t.Errorf("write (-want +got):\n%s", diff)
			}
		})
	}
}
