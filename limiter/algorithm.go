package limiter

import (
	"math"
	"time"
)

// state is one counter's stored value. Units: microseconds of store time and request units.
//   - FixedWindow: win = window index (floor(now/W)), a = count.
//   - SlidingWindow: win = window index, a = current window's count, b = previous window's count.
//   - TokenBucket: a = theoretical arrival time (TAT, µs since the epoch), b = the emission interval (µs per
//     unit) it was written with, so a changed limit converts the debt (0 in states written before b was kept).
//
// lua/decide.lua stores the same three numbers in a Redis hash (fields w, a, b).
type state struct {
	win, a, b float64
}

// outcome is the evaluation of one hit against one state.
type outcome struct {
	fits      bool
	remaining float64 // request units, already floored and clamped to >= 0
	reset     float64 // µs until the counter is back to full quota
	retry     float64 // µs until the hit would fit; 0 when it fits
}

// write is what applying a fitting hit does to its key.
type write struct {
	next     state
	expireAt float64 // absolute µs; the key's expiry, never later than the window's (or bucket's) natural end
	del      bool    // the counter is back to empty: delete the key instead
}

// evaluate decides one hit of cost c against st (exists reports whether the key was present) at time now.
// It is a pure function, twin of evaluate() in lua/decide.lua: both use float64 arithmetic in the same
// order so the memory and Redis backends agree to the microsecond. now, window are µs; limit, burst, c units.
func evaluate(now float64, alg Algorithm, limit, window, burst, c float64, st state, exists bool) (outcome, write) {
	switch alg {
	case SlidingWindow:
		return evalSliding(now, limit, window, c, st, exists)
	case TokenBucket:
		return evalBucket(now, limit, window, burst, c, st, exists)
	default:
		return evalFixed(now, limit, window, c, st, exists)
	}
}

func evalFixed(now, limit, window, c float64, st state, exists bool) (outcome, write) {
	i := math.Floor(now / window)
	n := 0.0
	if exists && st.win == i {
		n = st.a
	}
	end := (i + 1) * window
	o := outcome{reset: end - now}
	if c < 0 {
		n2 := math.Max(0, n+c)
		o.fits, o.remaining = true, math.Max(0, limit-n2)
		return o, write{next: state{win: i, a: n2}, expireAt: end}
	}
	if n+c <= limit {
		o.fits, o.remaining = true, limit-n-c
		return o, write{next: state{win: i, a: n + c}, expireAt: end}
	}
	o.remaining = math.Max(0, limit-n)
	o.retry = end - now
	return o, write{}
}

func evalSliding(now, limit, window, c float64, st state, exists bool) (outcome, write) {
	i := math.Floor(now / window)
	start := i * window
	end := start + window
	curr, prev := 0.0, 0.0
	if exists {
		if st.win == i {
			curr, prev = st.a, st.b
		} else if st.win == i-1 {
			prev = st.a
		}
	}
	elapsed := now - start
	weight := (window - elapsed) / window
	est := prev*weight + curr
	o := outcome{}
	if c < 0 {
		curr2 := math.Max(0, curr+c)
		o.fits = true
		o.remaining = math.Max(0, math.Floor(limit-(prev*weight+curr2)))
		o.reset = slidingReset(now, end, window, curr2)
		return o, write{next: state{win: i, a: curr2, b: prev}, expireAt: end + window}
	}
	if est+c <= limit {
		o.fits = true
		o.remaining = math.Max(0, math.Floor(limit-est-c))
		o.reset = slidingReset(now, end, window, curr+c)
		return o, write{next: state{win: i, a: curr + c, b: prev}, expireAt: end + window}
	}
	o.remaining = math.Max(0, math.Floor(limit-est))
	o.reset = slidingReset(now, end, window, curr)
	need := limit - c
	switch {
	case need < 0: // never fits: report the time until the counter is empty
		o.retry = end - now + window
	case need-curr >= 0 && prev > 0: // fits later in this window, as the previous window's weight decays
		o.retry = (window - elapsed) - (need-curr)*window/prev
	case curr <= need:
		o.retry = end - now
	default: // fits in the next window, as this window's count (then previous) decays
		o.retry = end - now + window - need*window/curr
	}
	o.retry = math.Max(1, o.retry)
	return o, write{}
}

// slidingReset is the time until the sliding estimate reaches 0: the end of this window if the current
// window holds nothing, else the end of the next one.
func slidingReset(now, end, window, curr float64) float64 {
	if curr > 0 {
		return end - now + window
	}
	return end - now
}

func evalBucket(now, limit, window, burst, c float64, st state, exists bool) (outcome, write) {
	if limit == 0 {
		if c > 0 {
			return outcome{reset: window, retry: window}, write{}
		}
		return outcome{fits: true}, write{del: true}
	}
	if burst == 0 {
		burst = limit
	}
	t := window / limit     // emission interval, µs per unit
	tau := t * burst        // the bucket's depth in µs
	eps := math.Min(1, t/2) // tolerance for float rounding of absolute times (ULP at 1.7e15 µs is 0.25)
	tat := now
	if exists && st.a > now {
		tat = st.a
		// The state records the emission interval it was written with (b); after a limit change the debt
		// is converted at the new rate, so the tokens already taken carry over (a raise frees quota at once,
		// a cut takes it away) instead of the time-denominated debt meaning more or fewer tokens.
		if st.b > 0 && st.b != t {
			tat = now + (tat-now)/st.b*t
		}
	}
	remaining := func(at float64) float64 {
		return math.Min(burst, math.Max(0, math.Floor((tau-(at-now)+eps)/t)))
	}
	if c < 0 {
		tat2 := math.Max(now, tat+c*t)
		o := outcome{fits: true, remaining: remaining(tat2), reset: tat2 - now}
		return o, write{next: state{a: tat2, b: t}, expireAt: tat2, del: tat2 <= now}
	}
	next := tat + c*t
	if next-now <= tau+eps {
		o := outcome{fits: true, remaining: remaining(next), reset: next - now}
		return o, write{next: state{a: next, b: t}, expireAt: next, del: next <= now}
	}
	return outcome{remaining: remaining(tat), reset: tat - now, retry: next - now - tau}, write{}
}

// micros converts a non-negative µs amount to a Duration, rounding up to the microsecond so that a positive
// amount never becomes 0.
func micros(us float64) time.Duration {
	return time.Duration(math.Ceil(us)) * time.Microsecond
}
