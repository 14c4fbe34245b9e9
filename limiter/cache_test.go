package limiter_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
)

// countingStore counts the calls that reach the wrapped store.
type countingStore struct {
	limiter.Store
	calls atomic.Int64
}

func (c *countingStore) Decide(ctx context.Context, hits []limiter.Hit, results []limiter.Result) (bool, error) {
	c.calls.Add(1)
	return c.Store.Decide(ctx, hits, results)
}

func TestOverLimitCacheAnswersLocally(t *testing.T) {
	clock := newFakeClock()
	next := &countingStore{Store: limiter.NewMemory(limiter.MemoryOptions{Now: clock.Now})}
	c := limiter.NewOverLimitCache(next, limiter.CacheOptions{Now: clock.Now})
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 2, Window: time.Second}
	for range 3 {
		decide(t, c, hit("u", l, 1))
	}
	if got := next.calls.Load(); got != 3 {
		t.Fatalf("got %d store calls, want 3", got)
	}
	clock.Advance(300 * time.Millisecond)
	ok, r := decide(t, c, hit("other", l, 1), hit("u", l, 1))
	if ok || r[1].Allowed || r[1].RetryAfter != 700*time.Millisecond || r[1].ResetAfter <= 0 || !r[0].Allowed {
		t.Errorf("cached denial: got %v %+v, want denied, retry 700ms, the other hit a placeholder allowed", ok, r)
	}
	if got := next.calls.Load(); got != 3 {
		t.Errorf("got %d store calls, want the cached denial not to call the store", got)
	}
	if ok, _ := decide(t, c, hit("u", l, 0)); !ok || next.calls.Load() != 4 {
		t.Errorf("check-only hit: got allowed %v calls %d, want it to bypass the cache", ok, next.calls.Load())
	}
	if ok, _ := decide(t, c, limiter.Hit{Key: "u", Limit: l, Cost: 1, Shadow: true}); !ok {
		t.Errorf("shadow hit on a cached key: got denied, want the cache to ignore shadow hits")
	}
	// A refund bypasses the cache and drops the entry.
	if ok, _ := decide(t, c, hit("u", l, -1)); !ok {
		t.Fatalf("refund: got denied")
	}
	if ok, r := decide(t, c, hit("u", l, 1)); !ok || r[0].Remaining != 0 {
		t.Errorf("after a refund: got %v %+v, want OK with remaining 0", ok, r[0])
	}
}

func TestOverLimitCacheExpires(t *testing.T) { // B25
	clock := newFakeClock()
	c := limiter.NewOverLimitCache(limiter.NewMemory(limiter.MemoryOptions{Now: clock.Now}), limiter.CacheOptions{Now: clock.Now})
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Second}
	for i := range 6 {
		ok, r := decide(t, c, hit("user=u1", l, 1))
		if ok != (i < 5) {
			t.Errorf("hit %d: got allowed %v, want %v", i, ok, i < 5)
		}
		if r[0].ResetAfter <= 0 || (!ok && r[0].RetryAfter <= 0) {
			t.Errorf("hit %d: got reset %s retry %s, want > 0", i, r[0].ResetAfter, r[0].RetryAfter)
		}
	}
	if c.Len() != 1 {
		t.Fatalf("got %d cache entries, want the denial cached", c.Len())
	}
	clock.Advance(2 * time.Second) // the process was stopped: no timer fired, the entry is merely stale
	ok, r := decide(t, c, hit("user=u1", l, 1))
	if !ok || r[0].ResetAfter <= 0 || r[0].Remaining != 4 {
		t.Errorf("after the window: got allowed %v %+v, want OK with remaining 4 and reset > 0", ok, r[0])
	}
}

func scenarioOverLimitCacheKeyedByLimit(t *testing.T, b *backend) { // B40 at store level
	c := limiter.NewOverLimitCache(b.store, limiter.CacheOptions{})
	alignWindow(t, b, time.Hour, 10*time.Second, time.Second)
	two := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 2, Window: time.Hour}
	for range 3 {
		decide(t, c, hit("path=/p", two, 1))
	}
	ten := two
	ten.Requests = 10
	oks := 0
	for i := range 9 {
		ok, _ := decide(t, c, hit("path=/p", ten, 1))
		if ok {
			oks++
		} else if i != 8 {
			t.Errorf("hit %d after raising the limit: got denied", i)
		}
	}
	if oks != 8 {
		t.Errorf("after raising 2 → 10: got %d OK of 9, want 8", oks)
	}
}

// denyingStore denies every hit with nothing left for a minute, at no cost.
type denyingStore struct{ limiter.Store }

func (denyingStore) Decide(_ context.Context, hits []limiter.Hit, results []limiter.Result) (bool, error) {
	for i := range hits {
		results[i] = limiter.Result{ResetAfter: time.Minute, RetryAfter: time.Minute}
	}
	return false, nil
}

func TestOverLimitCacheBounded(t *testing.T) { // B36: 1,000,000 distinct keys, each denied
	keys, maxEntries := 1_000_000, 100_000
	if raceEnabled {
		keys, maxEntries = 200_000, 20_000 // same ratio, 5x fewer under -race
	}
	clock := newFakeClock()
	c := limiter.NewOverLimitCache(denyingStore{}, limiter.CacheOptions{Now: clock.Now, MaxEntries: maxEntries})
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 1, Window: time.Minute}
	ctx := context.Background()
	hits := make([]limiter.Hit, 1)
	res := make([]limiter.Result, 1)
	var buf []byte
	for i := range keys {
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		hits[0] = limiter.Hit{Key: string(buf), Limit: l, Cost: 1}
		if ok, err := c.Decide(ctx, hits, res); err != nil || ok {
			t.Fatalf("key %d: got %v %v, want denied", i, ok, err)
		}
		if i%(keys/10) == 0 {
			if n := c.Len(); n > maxEntries {
				t.Fatalf("after %d keys: got %d cache entries, want <= %d", i, n, maxEntries)
			}
			clock.Advance(time.Second)
		}
	}
	if n := c.Len(); n > maxEntries || n < maxEntries/2 {
		t.Errorf("got %d cache entries, want between %d and %d", n, maxEntries/2, maxEntries)
	}
	clock.Advance(2 * time.Minute)
	if n := c.Len(); n != 0 {
		t.Errorf("2 minutes after the traffic: got %d cache entries, want 0", n)
	}
}

func TestMemoryBounded(t *testing.T) { // 1,000,000 distinct keys stay within MaxEntries and expire
	keys, maxEntries := 1_000_000, 100_000
	if raceEnabled {
		keys, maxEntries = 200_000, 20_000 // same ratio, 5x fewer under -race
	}
	clock := newFakeClock()
	mem := limiter.NewMemory(limiter.MemoryOptions{Now: clock.Now, MaxEntries: maxEntries})
	l := limiter.Limit{Algorithm: limiter.SlidingWindow, Requests: 5, Window: time.Minute}
	ctx := context.Background()
	hits := make([]limiter.Hit, 1)
	res := make([]limiter.Result, 1)
	var buf []byte
	for i := range keys {
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		hits[0] = limiter.Hit{Key: string(buf), Limit: l, Cost: 1}
		if ok, err := mem.Decide(ctx, hits, res); err != nil || !ok {
			t.Fatalf("key %d: got %v %v, want OK", i, ok, err)
		}
		if i%(keys/10) == 0 {
			if n := mem.Len(); n > maxEntries {
				t.Fatalf("after %d keys: got %d entries, want <= %d", i, n, maxEntries)
			}
			clock.Advance(time.Second)
		}
	}
	if n := mem.Len(); n > maxEntries || n < maxEntries/2 {
		t.Errorf("got %d entries, want between %d and %d", n, maxEntries/2, maxEntries)
	}
	clock.Advance(2 * time.Minute) // sliding keys live two windows
	if n := mem.Len(); n != 0 {
		t.Errorf("after the windows: got %d entries, want 0", n)
	}
}

func TestOverLimitCacheOverRedis(t *testing.T) {
	next := &countingStore{Store: limiter.NewRedis(redistest.Client(t), limiter.RedisOptions{Prefix: redistest.Prefix(t)})}
	c := limiter.NewOverLimitCache(next, limiter.CacheOptions{})
	l := limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 2, Window: time.Hour}
	for i := range 5 {
		if ok, _ := decide(t, c, hit("k", l, 1)); ok != (i < 2) {
			t.Errorf("hit %d: got allowed %v, want %v", i, ok, i < 2)
		}
	}
	if got := next.calls.Load(); got != 3 {
		t.Errorf("got %d redis calls for 5 hits, want 3 (two cached denials)", got)
	}
}

// Only stores without I/O say they are in-process (their callers then skip the per-decision timeout);
// a wrapper is as in-process as what it wraps.
func TestInProcess(t *testing.T) {
	mem := limiter.NewMemory(limiter.MemoryOptions{})
	red := limiter.NewRedis(redistest.Client(t), limiter.RedisOptions{Prefix: redistest.Prefix(t)})
	for _, tt := range []struct {
		name  string
		store limiter.Store
		want  bool
	}{
		{"memory", mem, true},
		{"cache over memory", limiter.NewOverLimitCache(mem, limiter.CacheOptions{}), true},
		{"redis", red, false},
		{"cache over redis", limiter.NewOverLimitCache(red, limiter.CacheOptions{}), false},
		{"unknown wrapper", &countingStore{Store: mem}, false},
	} {
		if got := limiter.IsInProcess(tt.store); got != tt.want {
			t.Errorf("%s: IsInProcess = %v, want %v", tt.name, got, tt.want)
		}
	}
}
