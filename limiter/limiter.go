package limiter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Algorithm selects how a Limit admits hits.
type Algorithm uint8

// The algorithms. The zero value is invalid so a forgotten field is caught by Validate.
const (
	FixedWindow   Algorithm = 1 // counter per epoch-aligned window
	SlidingWindow Algorithm = 2 // weighted previous + current window counter
	TokenBucket   Algorithm = 3 // GCRA: continuous refill, capacity Burst
)

// String returns the name used in configuration files and metrics.
func (a Algorithm) String() string {
	switch a {
	case FixedWindow:
		return "fixed_window"
	case SlidingWindow:
		return "sliding_window"
	case TokenBucket:
		return "token_bucket"
	}
	return "algorithm(" + strconv.Itoa(int(a)) + ")"
}

// ParseAlgorithm accepts the configuration names of the algorithms ("gcra" is an alias of "token_bucket").
// The empty string means FixedWindow, the envoyproxy/ratelimit behaviour.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "", "fixed_window":
		return FixedWindow, nil
	case "sliding_window":
		return SlidingWindow, nil
	case "token_bucket", "gcra":
		return TokenBucket, nil
	}
	return 0, fmt.Errorf("unknown algorithm %q (want fixed_window, sliding_window or token_bucket)", s)
}

// MaxRequests is the largest quota a Limit may have: counts stay exact in the float64 arithmetic of Lua.
const MaxRequests = 1 << 50

// Limit is one quota: Requests per Window, decided by Algorithm.
type Limit struct {
	Algorithm Algorithm
	// Requests is the number of units admitted per Window. 0 denies every hit that costs something.
	Requests uint64
	// Window is the period of the quota; whole milliseconds, at least 1 ms.
	// Fixed and sliding windows are aligned to multiples of Window since the Unix epoch (store time).
	Window time.Duration
	// Burst is the token bucket capacity; 0 means Requests. Ignored by the window algorithms.
	Burst uint64
}

// Validate reports why l cannot be used, or nil.
func (l Limit) Validate() error {
	switch l.Algorithm {
	case FixedWindow, SlidingWindow, TokenBucket:
	default:
		return fmt.Errorf("invalid algorithm %d", l.Algorithm)
	}
	if l.Window < time.Millisecond || l.Window%time.Millisecond != 0 {
		return fmt.Errorf("window %s must be a whole number of milliseconds, at least 1ms", l.Window)
	}
	if l.Requests > MaxRequests {
		return fmt.Errorf("requests %d above the maximum %d", l.Requests, uint64(MaxRequests))
	}
	if l.Burst > MaxRequests {
		return fmt.Errorf("burst %d above the maximum %d", l.Burst, uint64(MaxRequests))
	}
	return nil
}

// Hit asks for Cost units of one Limit on one counter.
type Hit struct {
	// Key identifies the counter's subject, for example a domain and its descriptor entries. Build it with
	// AppendKeyPart so different part lists never share a key. Hits with the same Key share a Redis hash tag
	// (one Cluster slot); the store adds the algorithm and window, so changing either starts a fresh counter
	// while changing Requests keeps the count.
	Key   string
	Limit Limit
	// Cost is the number of units: 0 checks without consuming, a negative cost refunds (never below empty).
	Cost int64
	// Shadow hits are evaluated and consume when they fit, but never block the request.
	Shadow bool
	// Quota hits (envoyproxy/ratelimit quota_mode) block the request only when every quota hit of the
	// request is over its limit; like any hit, they consume only when they fit and the request is allowed.
	// Shadow wins over Quota. On Redis Cluster the rule holds per slot group, not across groups.
	Quota bool
}

// Result is the outcome for one Hit.
type Result struct {
	// Allowed reports whether this hit alone fits its limit.
	Allowed bool
	// Remaining is what is left of the quota once the request has taken effect; a denied request takes nothing.
	Remaining uint64
	// ResetAfter is the time until the counter is back to full quota (window end, or a full bucket).
	ResetAfter time.Duration
	// RetryAfter is, for a hit that does not fit, the time until it would; 0 when Allowed.
	RetryAfter time.Duration
}

// Store decides hits atomically: either every non-shadow hit fits and all fitting hits are applied, or
// nothing is applied. Implementations must be safe for concurrent use.
type Store interface {
	// Decide evaluates hits and writes one Result per hit into results (len(results) >= len(hits)).
	// It returns whether the request is allowed. On error no result is meaningful.
	Decide(ctx context.Context, hits []Hit, results []Result) (allowed bool, err error)
	// Ping reports whether the store can currently decide.
	Ping(ctx context.Context) error
	Close() error
}

// InProcess is implemented by stores that decide in this process without I/O (Memory, and wrappers of
// such a store): their Decide neither waits nor fails for want of a backend, so a caller needs no timeout
// around it (a context.WithTimeout per decision costs a timer and ~1 µs).
type InProcess interface {
	InProcess() bool
}

// IsInProcess reports whether s implements InProcess and says it is.
func IsInProcess(s Store) bool {
	ip, ok := s.(InProcess)
	return ok && ip.InProcess()
}

// ErrInvalidHit is wrapped by stores when a hit cannot be evaluated (empty key, invalid limit).
var ErrInvalidHit = errors.New("invalid hit")

// AppendKeyPart appends s to b length-prefixed ("<len>:<s>"), so that a list of parts decodes to exactly one
// list: ("a_b","c") and ("a","b_c") give different keys.
func AppendKeyPart(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}
