package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
	"github.com/redis/go-redis/v9"
)

// TestExactness: concurrent deciders sharing one counter admit exactly the limit — 4 Redis stores with their
// own clients and pools on one Redis, and one Memory store, 1000 goroutines each time.
func TestExactness(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			l := limiter.Limit{Algorithm: alg, Requests: 100, Window: time.Hour}
			now := time.Now()
			if into := time.Duration(now.UnixNano() % int64(time.Hour)); into > time.Hour-5*time.Second || into < time.Second {
				time.Sleep(time.Hour - into + time.Second)
			}
			prefix := redistest.Prefix(t)
			stores := make([]limiter.Store, 4)
			for i := range stores {
				opts, err := redis.ParseURL(url)
				if err != nil {
					t.Fatal(err)
				}
				c := redis.NewClient(opts)
				t.Cleanup(func() { _ = c.Close() })
				stores[i] = limiter.NewRedis(c, limiter.RedisOptions{Prefix: prefix})
			}
			t.Run("redis", func(t *testing.T) {
				if got := hammer(t, stores, hit("exact", l, 1)); got != 100 {
					t.Errorf("got %d admitted by 4 stores, want exactly 100", got)
				}
			})
			t.Run("memory", func(t *testing.T) {
				m := limiter.NewMemory(limiter.MemoryOptions{})
				if got := hammer(t, []limiter.Store{m}, hit("exact", l, 1)); got != 100 {
					t.Errorf("got %d admitted, want exactly 100", got)
				}
			})
		})
	}
}

// hammer sends 1000 concurrent single-hit requests spread over stores and counts the admitted ones.
func hammer(t *testing.T, stores []limiter.Store, h limiter.Hit) int {
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 1000 {
		wg.Add(1)
		// Ends after its one decision.
		go func() {
			defer wg.Done()
			<-start
			res := make([]limiter.Result, 1)
			ok, err := stores[i%len(stores)].Decide(context.Background(), []limiter.Hit{h}, res)
			if err != nil {
				t.Errorf("decide: %v", err)
				return
			}
			if ok {
				admitted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(admitted.Load())
}

// TestScriptRecoversAfterRestart: B01. A Redis restart empties the script cache; the next call must still
// decide (EVALSHA → NOSCRIPT → EVAL), with no error surfacing.
func TestScriptRecoversAfterRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// The production client settings: no retries, context deadlines honoured.
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	store := limiter.NewRedis(client, limiter.RedisOptions{Prefix: "fg:", Timeout: time.Second})
	ctx := context.Background()
	limits := []limiter.Limit{
		{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Second},
		{Algorithm: limiter.SlidingWindow, Requests: 5, Window: time.Second},
		{Algorithm: limiter.TokenBucket, Requests: 5, Window: time.Second, Burst: 5},
	}
	b := &backend{name: "redis", wait: time.Sleep, now: func(t *testing.T) time.Time { return time.Now() }}
	alignBoundary(t, b, time.Second, 50*time.Millisecond)
	for _, l := range limits {
		for i := range 3 {
			if ok, _ := decide(t, store, hit("remote_address=198.51.100.1", l, 1)); !ok {
				t.Fatalf("%s before restart, hit %d: got denied, want OK", l.Algorithm, i)
			}
		}
	}
	srv.Shutdown()
	srv.Restart()
	alignBoundary(t, b, time.Second, 50*time.Millisecond)
	for _, l := range limits {
		oks := 0
		for i := range 6 {
			ok, r := decide(t, store, hit("remote_address=198.51.100.1", l, 1))
			if ok {
				oks++
			} else if i != 5 {
				t.Errorf("%s: hit %d denied, want the first 5 OK", l.Algorithm, i)
			}
			_ = r
		}
		if oks != 5 {
			t.Errorf("%s after restart: got %d OK of 6, want 5", l.Algorithm, oks)
		}
	}
	exists, err := client.ScriptExists(ctx, store.ScriptSHA()).Result()
	if err != nil || len(exists) != 1 || !exists[0] {
		t.Errorf("SCRIPT EXISTS %s: got %v %v, want [true]", store.ScriptSHA(), exists, err)
	}
}

// TestScriptFlush covers the same recovery after SCRIPT FLUSH on the throwaway server (failover-like).
func TestScriptFlush(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	client := srv.Client()
	store := limiter.NewRedis(client, limiter.RedisOptions{})
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Hour}
	for i := range 4 {
		if err := client.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatalf("script flush: %v", err)
		}
		if ok, r := decide(t, store, hit("k", l, 1)); !ok || r[0].Remaining != uint64(4-i) {
			t.Fatalf("call %d after SCRIPT FLUSH: got %v %+v, want OK remaining %d", i, ok, r[0], 4-i)
		}
	}
}

// TestKeysAlwaysExpire: B08. 64 goroutines hit random keys of every algorithm; afterwards no key lacks an
// expiry and none expires later than its bound (W fixed, 2W sliding, W·B/L bucket).
func TestKeysAlwaysExpire(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	store := limiter.NewRedis(client, limiter.RedisOptions{Prefix: prefix})
	w := time.Minute
	limits := []limiter.Limit{
		{Algorithm: limiter.FixedWindow, Requests: 1000, Window: w},
		{Algorithm: limiter.SlidingWindow, Requests: 1000, Window: w},
		{Algorithm: limiter.TokenBucket, Requests: 1000, Window: w},
	}
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		// Ends after its 30 requests.
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			res := make([]limiter.Result, 2)
			for range 30 {
				l := limits[r.IntN(3)]
				hits := []limiter.Hit{
					hit(fmt.Sprintf("user=u%d", r.IntN(1000)), l, int64(1+r.IntN(5))),
					hit(fmt.Sprintf("ip=%d", r.IntN(1000)), limits[r.IntN(3)], int64(r.IntN(3)-1)),
				}
				if _, err := store.Decide(context.Background(), hits, res); err != nil {
					t.Errorf("decide: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, c := range []struct {
		code  string
		bound time.Duration
	}{{"fw", w}, {"sw", 2 * w}, {"tb", w}} {
		n += assertAllKeysExpire(t, client, prefix+"{*}:"+c.code+":*", c.bound)
	}
	if n < 500 {
		t.Errorf("scanned %d keys, want the run to have written at least 500", n)
	}
}

func TestInvalidHits(t *testing.T) {
	stores := map[string]limiter.Store{"memory": limiter.NewMemory(limiter.MemoryOptions{})}
	stores["redis"] = limiter.NewRedis(redistest.Client(t), limiter.RedisOptions{Prefix: redistest.Prefix(t)})
	ok := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 1, Window: time.Second}
	tests := []struct {
		name string
		hits []limiter.Hit
		res  int
	}{
		{"empty key", []limiter.Hit{{Limit: ok, Cost: 1}}, 1},
		{"no algorithm", []limiter.Hit{{Key: "k", Limit: limiter.Limit{Requests: 1, Window: time.Second}, Cost: 1}}, 1},
		{"sub-millisecond window", []limiter.Hit{{Key: "k", Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 1, Window: time.Microsecond}, Cost: 1}}, 1},
		{"huge cost", []limiter.Hit{{Key: "k", Limit: ok, Cost: 1 << 60}}, 1},
		{"results too short", []limiter.Hit{{Key: "k", Limit: ok, Cost: 1}, {Key: "j", Limit: ok, Cost: 1}}, 1},
	}
	for name, s := range stores {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				_, err := s.Decide(context.Background(), tt.hits, make([]limiter.Result, tt.res))
				if !errors.Is(err, limiter.ErrInvalidHit) {
					t.Errorf("got error %v, want ErrInvalidHit", err)
				}
			})
		}
		if ok, err := s.Decide(context.Background(), nil, nil); !ok || err != nil {
			t.Errorf("%s: no hits: got %v %v, want allowed", name, ok, err)
		}
	}
}

// TestRedisOutage: a stalled or stopped Redis yields an error within the timeout, never a denial.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr())
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	store := limiter.NewRedis(client, limiter.RedisOptions{Timeout: 50 * time.Millisecond})
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Hour}
	if ok, _ := decide(t, store, hit("k", l, 1)); !ok {
		t.Fatalf("got denied before the outage")
	}
	proxy.Blackhole(true)
	for i := range 3 {
		start := time.Now()
		res := make([]limiter.Result, 1)
		_, err := store.Decide(context.Background(), []limiter.Hit{hit("k", l, 1)}, res)
		if err == nil {
			t.Errorf("call %d through a blackhole: got no error, want one", i)
		}
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Errorf("call %d: took %s, want about the 50ms timeout", i, d)
		}
	}
	if err := store.Ping(context.Background()); err == nil {
		t.Errorf("ping through a blackhole: got nil, want an error")
	}
	proxy.Blackhole(false)
	srv.Shutdown()
	if _, err := store.Decide(context.Background(), []limiter.Hit{hit("k", l, 1)}, make([]limiter.Result, 1)); err == nil {
		t.Errorf("decide on a stopped redis: got no error, want one")
	}
	srv.Restart()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := store.Decide(context.Background(), []limiter.Hit{hit("k", l, 1)}, make([]limiter.Result, 1))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("decide after restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisWritesOneKeyPerHit(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	store := limiter.NewRedis(client, limiter.RedisOptions{Prefix: prefix})
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Hour}
	keys := []string{"a{b}c", "x\r\n\x00y", strings.Repeat("v", 8192), "\xff\xfe", "{", "}{"}
	for _, k := range keys {
		decide(t, store, hit(k, l, 1))
		sk := limiter.StorageKey(prefix, hit(k, l, 1))
		if n, err := client.Exists(context.Background(), sk).Result(); err != nil || n != 1 {
			t.Errorf("key for %.20q: got exists %d %v, want 1", k, n, err)
		}
	}
	if n := assertAllKeysExpire(t, client, prefix+"*", time.Hour); n != len(keys) {
		t.Errorf("got %d keys under the prefix, want %d", n, len(keys))
	}
}
