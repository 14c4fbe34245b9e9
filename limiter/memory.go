package limiter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// MemoryOptions configures NewMemory.
type MemoryOptions struct {
	// MaxEntries bounds the number of counters held (default 1_000_000). At the bound a shard evicts an
	// expired counter, else the one nearest its expiry among a small sample, which forgets its count.
	MaxEntries int
	// Shards is the number of independently locked maps (default 64; rounded down to a power of two).
	Shards int
	// Now is the clock. Tests inject a fake one. The default is the wall clock read once at NewMemory plus
	// the monotonic time elapsed since: one clock read per decision instead of two, and time never steps
	// back when the wall clock is adjusted (window boundaries may drift from the wall clock by the NTP slew,
	// parts per million).
	Now func() time.Time
}

// Memory is the in-process Store: the semantics of the Redis script, in sharded maps. Expired counters are
// treated as absent when read and removed by an incremental sweep on writes; there are no timers.
type Memory struct {
	now      func() time.Time
	seed     maphash.Seed // shard choice only; never leaves the process
	shards   []memShard
	perShard int
	scratch  sync.Pool // *memScratch
}

type memShard struct {
	mu     sync.Mutex
	m      map[memKey]*memEntry
	writes uint32
	_      [36]byte // keep hot shards on separate cache lines
}

type memEntry struct {
	st  state
	exp float64 // µs; the entry is absent from this instant on
}

// memKey identifies a counter exactly as its storage key does (see StorageKey), without building the string.
type memKey struct {
	key    string // Hit.Key, or "h:" + hex(sha256(Hit.Key)) when StorageKey hashes it
	alg    Algorithm
	window time.Duration
}

func newMemKey(h *Hit) memKey {
	k := memKey{key: h.Key, alg: h.Limit.Algorithm, window: h.Limit.Window}
	if len(h.Key) > maxRawKey || strings.HasPrefix(h.Key, "h:") {
		sum := sha256.Sum256([]byte(h.Key))
		k.key = "h:" + hex.EncodeToString(sum[:]) // bounded memory per entry whatever the value's size
	}
	return k
}

// memScratch is the per-call working memory of Decide, pooled.
type memScratch struct {
	keys   []memKey    // distinct keys of the request
	shard  []int       // shard of each distinct key
	slot   []int       // distinct key index of each hit
	ks     []keyState  // state of each distinct key
	entry  []*memEntry // the live entry of each distinct key, nil when absent
	locked []int       // distinct shards, ascending
}

// Sweep tuning: every sweepEvery-th write to a shard looks at sweepSample of its entries and drops the
// expired ones; at the bound, eviction looks at evictSample entries.
const (
	sweepEvery  = 32
	sweepSample = 16
	evictSample = 8
)

// monotonicClock returns a clock reading the wall time once and the monotonic clock afterwards.
func monotonicClock() func() time.Time {
	base := time.Now()
	wall := base.Round(0) // without its monotonic reading: Add keeps it wall-only
	return func() time.Time { return wall.Add(time.Since(base)) }
}

// NewMemory returns an empty in-memory store.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 1_000_000
	}
	if opts.Shards <= 0 {
		opts.Shards = 64
	}
	opts.Shards = min(opts.Shards, opts.MaxEntries)
	for opts.Shards&(opts.Shards-1) != 0 { // a power of two, so the shard is a mask away
		opts.Shards &= opts.Shards - 1
	}
	if opts.Now == nil {
		opts.Now = monotonicClock()
	}
	m := &Memory{now: opts.Now, seed: maphash.MakeSeed(), shards: make([]memShard, opts.Shards),
		perShard: opts.MaxEntries / opts.Shards}
	for i := range m.shards {
		m.shards[i].m = make(map[memKey]*memEntry)
	}
	m.scratch.New = func() any { return &memScratch{} }
	return m
}

// Decide implements Store. It locks the shards of the request's keys in ascending order, decides, writes
// all or nothing, and unlocks.
func (m *Memory) Decide(_ context.Context, hits []Hit, results []Result) (bool, error) {
	if err := validateHits(hits, results); err != nil {
		return false, err
	}
	switch len(hits) {
	case 0:
		return true, nil
	case 1:
		return m.decideOne(hits[:1], results[:1]), nil
	}
	s := m.scratch.Get().(*memScratch)
	defer m.scratch.Put(s)
	clear(s.keys)
	clear(s.entry)
	s.keys, s.shard, s.slot, s.ks, s.entry, s.locked = s.keys[:0], s.shard[:0], s.slot[:0], s.ks[:0], s.entry[:0], s.locked[:0]

	// Distinct keys, their shards, and each hit's key index.
	for i := range hits {
		k := newMemKey(&hits[i])
		j := 0
		for j < len(s.keys) && s.keys[j] != k {
			j++
		}
		if j == len(s.keys) {
			s.keys = append(s.keys, k)
			s.shard = append(s.shard, m.shardOf(hits[i].Key))
		}
		s.slot = append(s.slot, j)
	}
	for _, sh := range s.shard {
		s.locked = insertSorted(s.locked, sh)
	}
	for _, sh := range s.locked {
		m.shards[sh].mu.Lock()
	}
	now := nowMicros(m.now())
	for j := range s.keys {
		ks := keyState{}
		e := m.shards[s.shard[j]].m[s.keys[j]]
		if e != nil && e.exp > now {
			ks.st, ks.exists = e.st, true
		} else {
			e = nil
		}
		s.ks = append(s.ks, ks)
		s.entry = append(s.entry, e)
	}
	allowed := decideAll(now, hits, s.slot, s.ks, results[:len(hits)])
	if allowed {
		// Live entries are updated in place first; inserting new keys may evict, so it comes last.
		for j := range s.ks {
			if e := s.entry[j]; s.ks[j].dirty && e != nil && !s.ks[j].w.del && s.ks[j].w.expireAt > now {
				e.st, e.exp = s.ks[j].w.next, s.ks[j].w.expireAt
				s.ks[j].dirty = false
			}
		}
		for j := range s.ks {
			if s.ks[j].dirty {
				m.shards[s.shard[j]].apply(s.keys[j], s.ks[j].w, now, m.perShard)
			}
		}
	}
	for _, sh := range s.locked {
		m.shards[sh].mu.Unlock()
	}
	return allowed, nil
}

// decideOne is Decide for the common single-hit request, without the scratch bookkeeping.
func (m *Memory) decideOne(hits []Hit, results []Result) bool {
	h := &hits[0]
	k := newMemKey(h)
	sh := &m.shards[m.shardOf(h.Key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := nowMicros(m.now())
	var ks [1]keyState
	e := sh.m[k]
	if e != nil && e.exp > now {
		ks[0].st, ks[0].exists = e.st, true
	} else {
		e = nil
	}
	slot := [1]int{0}
	allowed := decideAll(now, hits, slot[:], ks[:], results)
	if allowed && ks[0].dirty {
		if w := ks[0].w; e != nil && !w.del && w.expireAt > now {
			e.st, e.exp = w.next, w.expireAt
		} else {
			sh.apply(k, w, now, m.perShard)
		}
	}
	return allowed
}

// shardOf picks the shard of every counter of a Hit.Key, so a request's limits on one key lock one shard.
func (m *Memory) shardOf(hitKey string) int {
	return int(maphash.String(m.seed, hitKey) & uint64(len(m.shards)-1))
}

// insertSorted adds v to the ascending set xs.
func insertSorted(xs []int, v int) []int {
	i := 0
	for ; i < len(xs); i++ {
		if xs[i] == v {
			return xs
		}
		if xs[i] > v {
			break
		}
	}
	xs = append(xs, 0)
	copy(xs[i+1:], xs[i:])
	xs[i] = v
	return xs
}

// apply writes w to key, which is absent or expired unless w deletes it; the shard is locked by the caller.
func (sh *memShard) apply(key memKey, w write, now float64, limit int) {
	sh.sweep(now)
	if w.del || w.expireAt <= now {
		delete(sh.m, key)
		return
	}
	if e := sh.m[key]; e != nil {
		e.st, e.exp = w.next, w.expireAt
		return
	}
	if len(sh.m) >= limit {
		sh.evict(now)
	}
	sh.m[key] = &memEntry{st: w.next, exp: w.expireAt}
}

// sweep drops the expired entries among a few visited ones (map iteration starts at a random place).
func (sh *memShard) sweep(now float64) {
	if sh.writes++; sh.writes%sweepEvery != 0 {
		return
	}
	n := 0
	for k, e := range sh.m {
		if e.exp <= now {
			delete(sh.m, k)
		}
		if n++; n >= sweepSample {
			return
		}
	}
}

// evict removes one entry: the first expired one in a sample, else the sampled one nearest its expiry.
func (sh *memShard) evict(now float64) {
	victim, soonest, n := memKey{}, 0.0, 0
	for k, e := range sh.m {
		if e.exp <= now {
			delete(sh.m, k)
			return
		}
		if n == 0 || e.exp < soonest {
			victim, soonest = k, e.exp
		}
		if n++; n >= evictSample {
			break
		}
	}
	if n > 0 {
		delete(sh.m, victim)
	}
}

// Len is the number of live counters (for a gauge). It first drops the expired ones, a shard at a time, so a
// periodically read gauge frees memory after traffic stops, without timers.
func (m *Memory) Len() int {
	now := nowMicros(m.now())
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.exp <= now {
				delete(sh.m, k)
			}
		}
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Ping implements Store; memory is always available.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store; it releases nothing.
func (m *Memory) Close() error { return nil }

// InProcess implements InProcess: Memory never waits on anything but its own shard locks.
func (m *Memory) InProcess() bool { return true }
