package limiter

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// CacheOptions configures NewOverLimitCache.
type CacheOptions struct {
	// MaxEntries bounds the number of remembered denials (default 100_000).
	MaxEntries int
	// Now is the clock (default time.Now). Entries are compared with it; there are no timers.
	Now func() time.Time
}

// OverLimitCache is a Store in front of another that remembers counters known to be exhausted and denies
// hits on them locally until their retry time, saving a store call per denied request.
//
// An entry is made when next denies a non-shadow hit of cost 1 with Remaining 0: nothing of that hit's quota
// is left until now+RetryAfter. It is keyed by the storage key, Requests and Burst, so a changed limit never
// reuses it. A later request with a non-shadow hit of cost >= 1 on a valid entry is denied without calling
// next; its result for that hit is {Allowed: false, Remaining: 0, RetryAfter = ResetAfter = time left}. The
// request's other hits were not evaluated: they are reported Allowed with Remaining 0 and the same
// ResetAfter (placeholders that never advertise quota the caller does not know about). A request with a
// refund (negative cost) bypasses the cache and drops the entries of its refunded keys. Entries are checked
// against absolute time, swept a few at a time on insert, and bounded by MaxEntries.
type OverLimitCache struct {
	next     Store
	now      func() time.Time
	shards   [cacheShards]cacheShard
	perShard int
	seed     maphash.Seed // shard choice only
}

// cacheKey identifies a remembered denial: the counter (as its storage key does) and the quota.
type cacheKey struct {
	memKey
	requests, burst uint64
}

const cacheShards = 16

type cacheShard struct {
	mu     sync.Mutex
	m      map[cacheKey]int64 // denied until, Unix µs
	writes uint32
	_      [44]byte
}

// NewOverLimitCache wraps next.
func NewOverLimitCache(next Store, opts CacheOptions) *OverLimitCache {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &OverLimitCache{next: next, now: opts.Now, perShard: max(1, opts.MaxEntries/cacheShards), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]int64)
	}
	return c
}

func newCacheKey(h *Hit) cacheKey {
	return cacheKey{memKey: newMemKey(h), requests: h.Limit.Requests, burst: h.Limit.Burst}
}

func (c *OverLimitCache) shard(h *Hit) *cacheShard {
	return &c.shards[maphash.String(c.seed, h.Key)%cacheShards]
}

// Decide implements Store.
func (c *OverLimitCache) Decide(ctx context.Context, hits []Hit, results []Result) (bool, error) {
	if err := validateHits(hits, results); err != nil {
		return false, err
	}
	now := c.now().UnixMicro()

	refund := false
	for i := range hits {
		if hits[i].Cost < 0 {
			refund = true
		}
	}
	if refund {
		for i := range hits {
			h := &hits[i]
			if h.Cost < 0 {
				sh := c.shard(h)
				sh.mu.Lock()
				delete(sh.m, newCacheKey(h))
				sh.mu.Unlock()
			}
		}
	} else {
		for i := range hits {
			h := &hits[i]
			if h.Shadow || h.Quota || h.Cost < 1 {
				continue
			}
			k := newCacheKey(h)
			sh := c.shard(h)
			sh.mu.Lock()
			until, ok := sh.m[k]
			if ok && until <= now {
				delete(sh.m, k)
				ok = false
			}
			sh.mu.Unlock()
			if ok {
				left := time.Duration(until-now) * time.Microsecond
				for j := range hits {
					results[j] = Result{Allowed: true, ResetAfter: left}
				}
				results[i] = Result{ResetAfter: left, RetryAfter: left}
				return false, nil
			}
		}
	}

	allowed, err := c.next.Decide(ctx, hits, results)
	if err != nil || allowed {
		return allowed, err
	}
	for i := range hits {
		h, r := &hits[i], &results[i]
		if h.Shadow || h.Quota || h.Cost != 1 || r.Allowed || r.Remaining != 0 || r.RetryAfter <= 0 {
			continue
		}
		c.shard(h).put(newCacheKey(h), now+r.RetryAfter.Microseconds(), now, c.perShard)
	}
	return false, nil
}

// put remembers key until the given µs, sweeping a few expired entries and keeping the shard bounded.
func (sh *cacheShard) put(key cacheKey, until, now int64, limit int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.writes++; sh.writes%sweepEvery == 0 {
		n := 0
		for k, u := range sh.m {
			if u <= now {
				delete(sh.m, k)
			}
			if n++; n >= sweepSample {
				break
			}
		}
	}
	if _, ok := sh.m[key]; !ok && len(sh.m) >= limit {
		victim, soonest, n := cacheKey{}, int64(0), 0
		for k, u := range sh.m {
			if n == 0 || u < soonest {
				victim, soonest = k, u
			}
			if u <= now {
				break
			}
			if n++; n >= evictSample {
				break
			}
		}
		delete(sh.m, victim)
	}
	sh.m[key] = until
}

// Len is the number of remembered denials (for a gauge). It first drops the expired ones, a shard at a time,
// so a periodically read gauge keeps the cache small after traffic stops, without timers.
func (c *OverLimitCache) Len() int {
	now := c.now().UnixMicro()
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, u := range sh.m {
			if u <= now {
				delete(sh.m, k)
			}
		}
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Ping implements Store by asking next.
func (c *OverLimitCache) Ping(ctx context.Context) error { return c.next.Ping(ctx) }

// Close implements Store by closing next.
func (c *OverLimitCache) Close() error { return c.next.Close() }

// InProcess implements InProcess: as in-process as next.
func (c *OverLimitCache) InProcess() bool { return IsInProcess(c.next) }
