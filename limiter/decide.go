package limiter

import (
	"fmt"
	"time"
)

// keyState is one distinct storage key of a request while it is being decided.
type keyState struct {
	st     state // as loaded from the store
	exists bool
	w      write // the tentative value after the hits evaluated so far
	dirty  bool  // w must be written if the request is allowed
}

// validateHits checks what every store needs before deciding.
func validateHits(hits []Hit, results []Result) error {
	if len(results) < len(hits) {
		return fmt.Errorf("%d results for %d hits: %w", len(results), len(hits), ErrInvalidHit)
	}
	for i := range hits {
		h := &hits[i]
		if h.Key == "" {
			return fmt.Errorf("hit %d: empty key: %w", i, ErrInvalidHit)
		}
		if err := h.Limit.Validate(); err != nil {
			return fmt.Errorf("hit %d: %w: %w", i, err, ErrInvalidHit)
		}
		if h.Cost > MaxRequests || h.Cost < -MaxRequests {
			return fmt.Errorf("hit %d: cost %d beyond ±%d: %w", i, h.Cost, int64(MaxRequests), ErrInvalidHit)
		}
	}
	return nil
}

// windowMicros is the window of l in µs.
func windowMicros(l Limit) float64 { return float64(l.Window / time.Microsecond) }

// decideAll decides a request: phase 1 evaluates every hit in order on the tentative state of its key (so a
// key listed twice accumulates); the request is allowed when every non-shadow hit fits. Phase 2 is the
// caller's: when allowed (and, if the request has quota hits, at least one of them fits), write ks[j].w
// for every dirty key. When denied nothing is written, and each hit's
// Remaining and ResetAfter are re-evaluated on the stored state (the request took nothing). slot[i] is the
// index in ks of hit i's key. lua/decide.lua implements the same two phases.
func decideAll(now float64, hits []Hit, slot []int, ks []keyState, results []Result) bool {
	allowed := true
	quotas, quotaFits := 0, 0
	for i := range hits {
		h := &hits[i]
		k := &ks[slot[i]]
		quota := h.Quota && !h.Shadow
		if quota {
			quotas++
		}
		st, exists := k.st, k.exists
		if k.dirty {
			st, exists = k.w.next, !k.w.del
		}
		o, w := evaluate(now, h.Limit.Algorithm, float64(h.Limit.Requests), windowMicros(h.Limit),
			float64(h.Limit.Burst), float64(h.Cost), st, exists)
		results[i] = Result{Allowed: o.fits, Remaining: uint64(o.remaining), ResetAfter: micros(o.reset)}
		if !o.fits {
			results[i].RetryAfter = micros(o.retry)
			if !h.Shadow && !quota {
				allowed = false
			}
		} else {
			if quota {
				quotaFits++
			}
			if h.Cost != 0 {
				k.w, k.dirty = w, true
			}
		}
	}
	if quotas > 0 && quotaFits == 0 {
		allowed = false
	}
	if allowed {
		return true
	}
	for i := range hits {
		h := &hits[i]
		k := &ks[slot[i]]
		k.dirty = false
		o, _ := evaluate(now, h.Limit.Algorithm, float64(h.Limit.Requests), windowMicros(h.Limit),
			float64(h.Limit.Burst), 0, k.st, k.exists)
		results[i].Remaining, results[i].ResetAfter = uint64(o.remaining), micros(o.reset)
	}
	return false
}

// nowMicros converts a wall-clock time to the µs the algorithms use.
func nowMicros(t time.Time) float64 { return float64(t.UnixMicro()) }
