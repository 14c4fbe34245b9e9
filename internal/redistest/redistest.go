package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is the Redis used when FLOODGATE_TEST_REDIS_URL is not set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// unavailable fails the test under CI and skips it otherwise, so a missing service is loud either way.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("REDIS UNAVAILABLE (CI is set, so this fails): "+format, args...)
	}
	t.Skipf("!!! SKIPPED: REDIS UNAVAILABLE — start Redis or set FLOODGATE_TEST_REDIS_URL: "+format, args...)
}

// URL returns the shared test Redis URL after checking that it answers PING.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("FLOODGATE_TEST_REDIS_URL")
	if url == "" {
		url = DefaultURL
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse FLOODGATE_TEST_REDIS_URL %q: %v", url, err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unavailable(t, "ping %s: %v", url, err)
	}
	return url
}

// Client returns a client of the shared test Redis, closed when the test ends.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	opts, err := redis.ParseURL(URL(t))
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix unique to this test ("fgtest:<random>:"). When the test ends every key of the
// shared Redis starting with it is deleted (best effort: a Redis that is down by then is ignored).
func Prefix(t testing.TB) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "fgtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { deletePrefix(prefix) })
	return prefix
}

// deletePrefix removes the keys of one test prefix from the shared Redis.
func deletePrefix(prefix string) {
	url := os.Getenv("FLOODGATE_TEST_REDIS_URL")
	if url == "" {
		url = DefaultURL
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	DeleteMatching(ctx, c, prefix+"*")
}

// DeleteMatching deletes every key matching pattern (SCAN + UNLINK, one key at a time so it also works when
// the keys hash to different Cluster slots). Errors end it silently: it is cleanup.
func DeleteMatching(ctx context.Context, c redis.UniversalClient, pattern string) {
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, del)
		return
	}
	if rc, ok := c.(*redis.Client); ok {
		_ = del(ctx, rc)
	}
}
