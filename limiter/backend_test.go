package limiter_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
	"github.com/redis/go-redis/v9"
)

// backend is one Store under test plus its notion of time. Memory runs on a fake clock (align and wait move
// it instantly); Redis runs on real time (align and wait sleep, reading Redis TIME for window boundaries).
type backend struct {
	name  string
	store limiter.Store
	// now is the store's current time.
	now func(t *testing.T) time.Time
	// wait lets d pass.
	wait func(d time.Duration)
	// ttl is the remaining lifetime of hit's key: -2 when absent, -1 when it has no expiry.
	ttl func(t *testing.T, h limiter.Hit) time.Duration
	// redis is set for the Redis backend.
	client redis.UniversalClient
	prefix string
}

// fakeClock is a settable clock for Memory and the over-limit cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// A fixed instant on a whole hour, far from the real clock, so tests cannot depend on the real time.
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newMemoryBackend(t *testing.T) *backend {
	clock := newFakeClock()
	m := limiter.NewMemory(limiter.MemoryOptions{Now: clock.Now, Shards: 8})
	return &backend{
		name:  "memory",
		store: m,
		now:   func(*testing.T) time.Time { return clock.Now() },
		wait:  clock.Advance,
		ttl: func(t *testing.T, h limiter.Hit) time.Duration {
			d, ok := limiter.MemoryExpiry(m, h)
			if !ok {
				return -2
			}
			return d
		},
	}
}

func newRedisBackend(t *testing.T) *backend {
	return newRedisBackendOn(t, "redis", redistest.Client(t), redistest.Prefix(t))
}

// newRedisBackendOn is a Redis backend on client (a single node or a Cluster) with keys under prefix.
func newRedisBackendOn(t *testing.T, name string, client redis.UniversalClient, prefix string) *backend {
	b := &backend{
		name:   name,
		store:  limiter.NewRedis(client, limiter.RedisOptions{Prefix: prefix}),
		client: client,
		prefix: prefix,
		now: func(t *testing.T) time.Time {
			tm, err := client.Time(context.Background()).Result()
			if err != nil {
				t.Fatalf("redis TIME: %v", err)
			}
			return tm
		},
		wait: time.Sleep,
		ttl: func(t *testing.T, h limiter.Hit) time.Duration {
			d, err := client.PTTL(context.Background(), limiter.StorageKey(prefix, h)).Result()
			if err != nil {
				t.Fatalf("pttl: %v", err)
			}
			if d < 0 {
				return d / time.Nanosecond // go-redis returns -1 and -2 as raw durations
			}
			return d
		},
	}
	// Every key the store wrote must carry an expiry; checked before the prefix is deleted.
	t.Cleanup(func() { assertAllKeysExpire(t, client, prefix+"*", 0) })
	return b
}

// assertAllKeysExpire scans the keys matching pattern (on every master of a Cluster) and fails for a key
// without expiry or one expiring later than bound (bound 0: no upper bound checked). It returns the count.
func assertAllKeysExpire(t *testing.T, c redis.UniversalClient, pattern string, bound time.Duration) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	check := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			n++
			d, err := node.PTTL(ctx, iter.Val()).Result()
			if err != nil {
				return fmt.Errorf("pttl %q: %w", iter.Val(), err)
			}
			if d == -1 {
				t.Errorf("key %q has no expiry (PTTL -1)", iter.Val())
			}
			if bound > 0 && d > bound {
				t.Errorf("key %q expires in %s, want at most %s", iter.Val(), d, bound)
			}
		}
		return iter.Err()
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return check(ctx, node)
		})
	case *redis.Client:
		err = check(ctx, c)
	default:
		t.Fatalf("assertAllKeysExpire: unsupported client %T", c)
	}
	if err != nil {
		t.Errorf("scan: %v", err)
	}
	return n
}

// forEachBackend runs f once per backend, in parallel subtests: memory, redis, and redis-cluster when
// cluster is not nil.
func forEachBackend(t *testing.T, cluster *redistest.Cluster, f func(t *testing.T, b *backend)) {
	t.Helper()
	backends := []struct {
		name string
		mk   func(*testing.T) *backend
	}{{"memory", newMemoryBackend}, {"redis", newRedisBackend}}
	if cluster != nil {
		backends = append(backends, struct {
			name string
			mk   func(*testing.T) *backend
		}{"cluster", func(t *testing.T) *backend {
			return newRedisBackendOn(t, "cluster", cluster.Client(), redistest.Prefix(t))
		}})
	}
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			f(t, bk.mk(t))
		})
	}
}

// alignWindow waits until the current window of length w has at least left to run, starting just after
// a boundary (+offset) when it has not; it returns the store time at return. Memory jumps to boundary+offset.
func alignWindow(t *testing.T, b *backend, w, left, offset time.Duration) {
	t.Helper()
	now := b.now(t)
	into := time.Duration(now.UnixMicro()%w.Microseconds()) * time.Microsecond
	if b.name == "memory" {
		b.wait(w - into + offset)
		return
	}
	if w-into >= left+offset {
		return
	}
	b.wait(w - into + offset)
}

// alignBoundary waits until the store time is exactly (Redis: about) boundary+offset of a window of
// length w (offset may be negative: just before the next boundary).
func alignBoundary(t *testing.T, b *backend, w, offset time.Duration) {
	t.Helper()
	now := b.now(t)
	into := time.Duration(now.UnixMicro()%w.Microseconds()) * time.Microsecond
	d := w - into + offset
	for d <= 5*time.Millisecond {
		d += w
	}
	b.wait(d)
}

// decide runs one request and fails the test on an error.
func decide(t *testing.T, s limiter.Store, hits ...limiter.Hit) (bool, []limiter.Result) {
	t.Helper()
	results := make([]limiter.Result, len(hits))
	ok, err := s.Decide(context.Background(), hits, results)
	if err != nil {
		t.Fatalf("decide: %v", err)
	}
	return ok, results
}

// remaining returns what a check-only hit reports for l on key: the counter, without consuming.
func remaining(t *testing.T, s limiter.Store, key string, l limiter.Limit) uint64 {
	t.Helper()
	_, r := decide(t, s, limiter.Hit{Key: key, Limit: l, Cost: 0})
	return r[0].Remaining
}

func hit(key string, l limiter.Limit, cost int64) limiter.Hit {
	return limiter.Hit{Key: key, Limit: l, Cost: cost}
}

var algorithms = []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.TokenBucket}
