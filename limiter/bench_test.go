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

// benchKeys are distinct hit keys spread over the shards.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "remote_address=10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	return keys
}

func benchDecide(b *testing.B, s limiter.Store, hitsPerRequest int) {
	benchDecideKeys(b, s, hitsPerRequest, 65536)
}

func benchDecideKeys(b *testing.B, s limiter.Store, hitsPerRequest, distinct int) {
	keys := benchKeys(distinct)
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 1 << 40, Window: time.Hour}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hits := make([]limiter.Hit, hitsPerRequest)
		res := make([]limiter.Result, hitsPerRequest)
		ctx := context.Background()
		i := int(next.Add(1) * 7919)
		for pb.Next() {
			for j := range hits {
				i++
				hits[j] = limiter.Hit{Key: keys[i%len(keys)], Limit: l, Cost: 1}
			}
			if _, err := s.Decide(ctx, hits, res); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMemoryDecide1(b *testing.B) {
	benchDecide(b, limiter.NewMemory(limiter.MemoryOptions{}), 1)
}

// BenchmarkMemoryDecide1Hot uses 1024 keys, which stay in the CPU caches.
func BenchmarkMemoryDecide1Hot(b *testing.B) {
	benchDecideKeys(b, limiter.NewMemory(limiter.MemoryOptions{}), 1, 1024)
}

func BenchmarkMemoryDecide3(b *testing.B) {
	benchDecide(b, limiter.NewMemory(limiter.MemoryOptions{}), 3)
}

func BenchmarkOverLimitCacheMemoryDecide1(b *testing.B) {
	benchDecide(b, limiter.NewOverLimitCache(limiter.NewMemory(limiter.MemoryOptions{}), limiter.CacheOptions{}), 1)
}

// The Redis benchmarks run with b.RunParallel's GOMAXPROCS goroutines (2 here): latency-bound, they show
// the cost of a round trip; -cpu 2 -benchtime with more parallelism (b.SetParallelism) shows batching.
func BenchmarkRedisDecide1(b *testing.B) {
	for _, bb := range redisVariants {
		b.Run(bb.name, func(b *testing.B) {
			s := limiter.NewRedis(redistest.Client(b), limiter.RedisOptions{Prefix: redistest.Prefix(b), Pipeline: bb.pipeline})
			defer s.Close()
			b.SetParallelism(bb.parallelism)
			benchDecide(b, s, 1)
		})
	}
}

func BenchmarkRedisDecide3(b *testing.B) {
	for _, bb := range redisVariants {
		b.Run(bb.name, func(b *testing.B) {
			s := limiter.NewRedis(redistest.Client(b), limiter.RedisOptions{Prefix: redistest.Prefix(b), Pipeline: bb.pipeline})
			defer s.Close()
			b.SetParallelism(bb.parallelism)
			benchDecide(b, s, 3)
		})
	}
}

// redisVariants compare one script call per request (Pipeline -1) with the pipeliner, at 1×GOMAXPROCS
// goroutines and at 25×GOMAXPROCS (50 on 2 cores, the load harness's concurrency).
var redisVariants = []struct {
	name        string
	pipeline    int
	parallelism int
}{
	{"direct/p1", -1, 1},
	{"pipelined/p1", 0, 1},
	{"direct/p25", -1, 25},
	{"pipelined/p25", 0, 25},
}
