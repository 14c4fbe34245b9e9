package limiter

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/decide.lua
var decideLua string

// DecideScript is the Lua source of the Redis backend (for SCRIPT EXISTS checks and tooling).
func DecideScript() string { return decideLua }

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Prefix starts every storage key (default "fg:"); see StorageKey.
	Prefix string
	// Timeout bounds each Decide call, on top of the caller's context; 0 adds none. go-redis honours it only
	// when the client was built with ContextTimeoutEnabled (NewRedis logs a warning otherwise); the client's
	// MaxRetries should then be -1 or small, as a retry shares the same deadline.
	Timeout time.Duration
	// Logger receives rare operational messages (default slog.Default()).
	Logger *slog.Logger
	// Pipeline is the most script runs one pipelined round trip carries (default 64); -1 sends every
	// request on its own. Concurrent requests queued while a round trip is in flight share the next one;
	// each stays one atomic script run. Not used on a Redis Cluster.
	Pipeline int
	// PipelineWorkers is the number of round trips in flight at once (default 2×GOMAXPROCS+2).
	PipelineWorkers int
}

// Redis is the Redis Store: one EVALSHA of lua/decide.lua per request (EVAL when Redis lost its script
// cache, see redis.Script.Run), all hits decided atomically against Redis TIME.
type Redis struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	script  *redis.Script
	cluster bool
	pipe    *pipeliner // nil: one script call per request
	// inflight counts the script calls under way; up to directMax of them go straight to Redis (no hand-off
	// to a worker, the lowest latency), the ones beyond queue for the pipeliner.
	inflight  atomic.Int64
	directMax int64
	scratch   sync.Pool // *redisScratch
}

type redisScratch struct {
	keys []string
	args []any
	buf  []byte
}

// NewRedis returns a store on client. The caller owns client: Close does not close it.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "fg:"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	_, cluster := client.(*redis.ClusterClient)
	if opts.Timeout > 0 && !contextTimeoutEnabled(client) {
		opts.Logger.Warn("redis client ignores context deadlines: set ContextTimeoutEnabled so the store timeout applies",
			"store_timeout", opts.Timeout)
	}
	r := &Redis{client: client, prefix: opts.Prefix, timeout: opts.Timeout, log: opts.Logger,
		script: redis.NewScript(decideLua), cluster: cluster}
	r.scratch.New = func() any { return &redisScratch{buf: make([]byte, 0, 256)} }
	if opts.Pipeline == 0 {
		opts.Pipeline = 64
	}
	if opts.PipelineWorkers <= 0 {
		opts.PipelineWorkers = 2*runtime.GOMAXPROCS(0) + 2
	}
	if opts.Pipeline > 1 && !cluster {
		r.pipe = newPipeliner(client, r.script, opts.PipelineWorkers, opts.Pipeline, opts.Timeout)
		r.directMax = int64(runtime.GOMAXPROCS(0))
	}
	return r
}

// contextTimeoutEnabled reports whether go-redis will honour the Decide deadline: without
// ContextTimeoutEnabled it only applies its own socket timeouts (seconds by default).
func contextTimeoutEnabled(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

// ScriptSHA is the SHA-1 of the decide script, as SCRIPT EXISTS expects it.
func (r *Redis) ScriptSHA() string { return r.script.Hash() }

// Decide implements Store with one script call. On a Redis Cluster, a request whose keys hash to several
// slots is decided per slot (see decideSlots): all-or-nothing still holds for the outcome, but not atomically.
func (r *Redis) Decide(ctx context.Context, hits []Hit, results []Result) (bool, error) {
	if err := validateHits(hits, results); err != nil {
		return false, err
	}
	if len(hits) == 0 {
		return true, nil
	}
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	if r.cluster {
		slot := keySlot(hits[0].Key)
		for i := 1; i < len(hits); i++ {
			if keySlot(hits[i].Key) != slot {
				return r.decideSlots(ctx, hits, results)
			}
		}
	}
	return r.run(ctx, hits, results)
}

// run decides hits with one call of the script; their keys must share a slot on a Cluster.
func (r *Redis) run(ctx context.Context, hits []Hit, results []Result) (bool, error) {
	s := r.scratch.Get().(*redisScratch)
	defer func() {
		clear(s.keys)
		clear(s.args)
		r.scratch.Put(s)
	}()
	s.keys, s.args = s.keys[:0], append(s.args[:0], len(hits))
	for i := range hits {
		h := &hits[i]
		s.buf = AppendStorageKey(s.buf[:0], r.prefix, *h)
		s.keys = append(s.keys, string(s.buf))
		shadow := 0 // the script's "mode" argument: 0 normal, 1 shadow, 2 quota
		if h.Shadow {
			shadow = 1
		} else if h.Quota {
			shadow = 2
		}
		s.args = append(s.args, int(h.Limit.Algorithm), h.Limit.Requests, int64(h.Limit.Window/time.Microsecond),
			h.Limit.Burst, h.Cost, shadow)
	}
	vals, err := r.call(ctx, s.keys, s.args)
	if err != nil {
		return false, fmt.Errorf("redis decide: %w", err)
	}
	if len(vals) != 1+4*len(hits) {
		return false, fmt.Errorf("redis decide: script returned %d values for %d hits", len(vals), len(hits))
	}
	for i := range hits {
		v := vals[1+4*i:]
		results[i] = Result{Allowed: v[0] == 1, Remaining: uint64(max(0, v[1])),
			ResetAfter: time.Duration(max(0, v[2])) * time.Microsecond}
		if v[0] != 1 {
			results[i].RetryAfter = time.Duration(max(0, v[3])) * time.Microsecond
		}
	}
	return vals[0] == 1, nil
}

// decideSlots decides a request whose keys span Cluster slots: one script call per slot group, run
// concurrently, each reserving (writing) its hits when its group fits. If any group is denied or fails, the
// groups that reserved are refunded with a second call (negative costs of their written hits) and the
// request is denied (or the error returned). This is not atomic: between reserve and refund, concurrent
// requests see the reserved units, and a refund of a sliding window that crossed a window boundary, or of a
// request that itself carried refunds, is approximate. Remaining of refunded hits is reported as before the
// request (their cost added back, capped at the quota).
func (r *Redis) decideSlots(ctx context.Context, hits []Hit, results []Result) (bool, error) {
	var groups []*slotGroup
	bySlot := map[uint16]*slotGroup{}
	for i := range hits {
		slot := keySlot(hits[i].Key)
		g := bySlot[slot]
		if g == nil {
			g = &slotGroup{}
			bySlot[slot] = g
			groups = append(groups, g)
		}
		g.index = append(g.index, i)
		g.hits = append(g.hits, hits[i])
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		g.results = make([]Result, len(g.hits))
		wg.Add(1)
		// Ends when its script call returns (bounded by ctx).
		go func() {
			defer wg.Done()
			g.allowed, g.err = r.run(ctx, g.hits, g.results)
		}()
	}
	wg.Wait()
	allowed := true
	var err error
	for _, g := range groups {
		if g.err != nil && err == nil {
			err = g.err
		}
		allowed = allowed && g.allowed && g.err == nil
	}
	if !allowed {
		r.refund(ctx, groups)
	}
	if err != nil {
		return false, err
	}
	for _, g := range groups {
		for k, i := range g.index {
			results[i] = g.results[k]
		}
	}
	return allowed, nil
}

// slotGroup is the part of a cross-slot request that lives in one Cluster slot.
type slotGroup struct {
	index   []int // positions of the hits in the request
	hits    []Hit
	results []Result
	allowed bool
	err     error
}

// refund gives back what the allowed groups of a denied cross-slot request wrote. It runs even when ctx has
// expired (with its own deadline) so a timeout does not leak reservations; a failure is logged, as the
// request is answered anyway.
func (r *Redis) refund(ctx context.Context, groups []*slotGroup) {
	// At least a second: a refund that times out leaves units reserved until the window ends, so it gets
	// more room than a decision does (the request's answer is already known: denied).
	timeout := max(r.timeout, time.Second)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	for _, g := range groups {
		if !g.allowed || g.err != nil {
			continue
		}
		var back []Hit
		for k, h := range g.hits {
			if g.results[k].Allowed && h.Cost > 0 {
				back = append(back, Hit{Key: h.Key, Limit: h.Limit, Cost: -h.Cost})
				quota := h.Limit.Requests
				if h.Limit.Algorithm == TokenBucket && h.Limit.Burst > 0 {
					quota = h.Limit.Burst
				}
				g.results[k].Remaining = min(quota, g.results[k].Remaining+uint64(h.Cost))
			}
		}
		if len(back) == 0 {
			continue
		}
		if _, err := r.run(ctx, back, make([]Result, len(back))); err != nil {
			r.log.Warn("refund a cross-slot reservation", "hits", len(back), "err", err)
		}
	}
}

// call decides one request: keys are its storage keys, args its hit count followed by 6 arguments per hit
// (see lua/decide.lua). It runs the script once for this request alone, or through the pipeliner, which
// decides the requests queued together in one script run.
func (r *Redis) call(ctx context.Context, keys []string, args []any) ([]int64, error) {
	if r.pipe != nil {
		n := r.inflight.Add(1)
		defer r.inflight.Add(-1)
		if n > r.directMax {
			return r.pipelined(ctx, keys, args)
		}
	}
	full := make([]any, 0, len(args)+1)
	full = append(append(full, 1), args...)
	return r.script.Run(ctx, r.client, keys, full...).Int64Slice()
}

// pipelined hands one request to the pipeliner and waits for its answer.
func (r *Redis) pipelined(ctx context.Context, keys []string, args []any) ([]int64, error) {
	c := callPool.Get().(*call)
	c.keys, c.args = append(c.keys[:0], keys...), append(c.args[:0], args...)
	if !r.pipe.do(ctx, c) {
		return nil, ctx.Err() // c stays with the worker; it is not reused
	}
	vals, err := c.vals, c.err
	clear(c.keys)
	clear(c.args)
	c.ctx, c.vals, c.err = nil, nil, nil
	callPool.Put(c)
	return vals, err
}

// Ping implements Store with PING.
func (r *Redis) Ping(ctx context.Context) error {
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Close implements Store: it stops the pipeline workers (after the round trips in flight). It does not
// close the client: the caller owns the client passed to NewRedis, and closes it after the store.
func (r *Redis) Close() error {
	if r.pipe != nil {
		r.pipe.close()
	}
	return nil
}

// keySlot is the Redis Cluster slot of every storage key built for a hit with this Hit.Key: CRC16 of the
// hash tag, modulo 16384.
func keySlot(hitKey string) uint16 {
	var tag [16]byte
	appendHex64(tag[:0], fnv64(hitKey))
	return crc16(tag[:]) % 16384
}

// crc16 is CRC-16/XMODEM, the Redis Cluster key hash.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
