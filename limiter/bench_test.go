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

func BenchmarkRedisDecide1(b *testing.B) {
	benchDecide(b, limiter.NewRedis(redistest.Client(b), limiter.RedisOptions{Prefix: redistest.Prefix(b)}), 1)
}

func BenchmarkRedisDecide3(b *testing.B) {
	benchDecide(b, limiter.NewRedis(redistest.Client(b), limiter.RedisOptions{Prefix: redistest.Prefix(b)}), 3)
}
