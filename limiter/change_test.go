package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

func init() {
	scenarios = append(scenarios,
		struct {
			name string
			run  func(t *testing.T, b *backend)
		}{"Reset", scenarioReset},
		struct {
			name string
			run  func(t *testing.T, b *backend)
		}{"LimitChanges", scenarioLimitChanges},
	)
}

// Reset clears a counter: the next hit sees a full quota; other counters keep theirs.
func scenarioReset(t *testing.T, b *backend) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			l := limiter.Limit{Algorithm: alg, Requests: 3, Window: time.Minute}
			key, other := "reset-"+alg.String(), "reset-other-"+alg.String()
			for range 3 {
				decide(t, b.store, hit(key, l, 1))
				decide(t, b.store, hit(other, l, 1))
			}
			if ok, _ := decide(t, b.store, hit(key, l, 1)); ok {
				t.Fatal("fourth hit admitted before the reset")
			}
			if err := b.store.(limiter.Resetter).Reset(context.Background(), []limiter.Hit{hit(key, l, 0)}); err != nil {
				t.Fatal(err)
			}
			if got := remaining(t, b.store, key, l); got != 3 {
				t.Errorf("after reset: got remaining %d, want 3", got)
			}
			if got := remaining(t, b.store, other, l); got != 0 {
				t.Errorf("other counter after reset: got remaining %d, want 0 (untouched)", got)
			}
		})
	}
}

// A changed limit applies to the existing counter at once, in both directions (no stale OVER_LIMIT after a
// raise, no free quota after a cut); a changed window or algorithm starts a fresh counter (the old key
// expires on its own TTL, checked by the backend's cleanup).
func scenarioLimitChanges(t *testing.T, b *backend) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			key := "change-" + alg.String()
			low := limiter.Limit{Algorithm: alg, Requests: 2, Window: time.Hour}
			high := limiter.Limit{Algorithm: alg, Requests: 10, Window: time.Hour}
			if alg == limiter.TokenBucket {
				low.Burst, high.Burst = 2, 10
			}
			for range 2 {
				if ok, _ := decide(t, b.store, hit(key, low, 1)); !ok {
					t.Fatal("hit within the low limit denied")
				}
			}
			if ok, _ := decide(t, b.store, hit(key, low, 1)); ok {
				t.Fatal("third hit admitted under limit 2")
			}
			// Raise: the 2 used count, 8 more fit, the 9th does not (B40's arithmetic).
			admitted := 0
			for range 9 {
				if ok, _ := decide(t, b.store, hit(key, high, 1)); ok {
					admitted++
				}
			}
			if admitted != 8 {
				t.Errorf("after raising 2 → 10: got %d of 9 admitted, want 8", admitted)
			}
			// Cut back: 10 used is over 2, nothing fits.
			if ok, _ := decide(t, b.store, hit(key, low, 1)); ok {
				t.Error("after cutting 10 → 2 with 10 used: a hit was admitted")
			}
			// A new window or algorithm is a new counter.
			other := high
			other.Window = 2 * time.Hour
			if got := remaining(t, b.store, key, other); got != other.Requests {
				t.Errorf("new window: got remaining %d, want a fresh %d", got, other.Requests)
			}
			switched := high
			switched.Algorithm = (alg + 1) % 3
			if switched.Algorithm == 0 {
				switched.Algorithm = limiter.FixedWindow
			}
			if switched.Algorithm == limiter.TokenBucket {
				switched.Burst = 10
			}
			if got := remaining(t, b.store, key, switched); got != 10 {
				t.Errorf("new algorithm %s: got remaining %d, want a fresh 10", switched.Algorithm, got)
			}
		})
	}
}
