package redistest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestPrefixIsolatesAndCleansUp(t *testing.T) {
	c := Client(t)
	ctx := context.Background()
	var prefix string
	t.Run("inner", func(t *testing.T) {
		prefix = Prefix(t)
		if err := c.Set(ctx, prefix+"k", "v", time.Minute).Err(); err != nil {
			t.Fatalf("set: %v", err)
		}
		if other := Prefix(t); other == prefix {
			t.Fatalf("got the same prefix twice: %q", prefix)
		}
	})
	n, err := c.Exists(ctx, prefix+"k").Result()
	if err != nil {
		t.Fatalf("exists: %v", err)
	}
	if n != 0 {
		t.Errorf("got %d keys under %q after the test ended, want 0", n, prefix)
	}
}

func TestServerShutdownRestart(t *testing.T) {
	s := Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: 0})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	s.Shutdown()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatalf("ping after Shutdown succeeded, want an error")
	}
	s.Restart()
	if err := s.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
	if n := s.Client().Exists(ctx, "k").Val(); n != 0 {
		t.Errorf("got %d keys after SHUTDOWN NOSAVE + restart, want 0", n)
	}
}

func TestProxyBlackhole(t *testing.T) {
	s := Start(t)
	p := NewProxy(t, s.Addr())
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: 100 * time.Millisecond,
		WriteTimeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping through proxy: %v", err)
	}
	p.Blackhole(true)
	start := time.Now()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatalf("ping through a blackholed proxy succeeded, want a timeout")
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("blackholed ping failed after %s, want it to stall until the 100ms read timeout", d)
	}
	// A fresh connection is accepted but stalls too.
	c2 := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: 100 * time.Millisecond,
		DialTimeout: 100 * time.Millisecond, Protocol: 2})
	defer c2.Close()
	if err := c2.Ping(ctx).Err(); err == nil {
		t.Fatalf("ping on a new connection through a blackholed proxy succeeded, want a timeout")
	}
	p.Blackhole(false)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after the blackhole ended: %v", err)
	}
	p.Close()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatalf("ping through a closed proxy succeeded, want an error")
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, 3, 0)
	cl := c.Client()
	ctx := context.Background()
	for i := range 50 {
		key := "k" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if err := cl.Set(ctx, key, i, time.Minute).Err(); err != nil {
			t.Fatalf("set %s: %v", key, err)
		}
	}
	var masters atomic.Int32
	err := cl.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { // runs concurrently
		n, err := m.DBSize(ctx).Result()
		if n > 0 {
			masters.Add(1)
		}
		return err
	})
	if err != nil || masters.Load() != 3 {
		t.Errorf("got keys on %d masters (%v), want 3", masters.Load(), err)
	}
}
