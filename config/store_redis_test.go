package config

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redistest"
)

// newRedisClient is a client of the shared test Redis of its own (not shared with other stores), closed
// when the test ends. name is its CLIENT SETNAME.
func newRedisClient(t *testing.T, name string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.ClientName = name
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisStore(t *testing.T) {
	client := redistest.Client(t)
	testStoreConformance(t, 5, func(t *testing.T) Store {
		return NewRedisStore(RedisStoreOptions{Client: client, Prefix: redistest.Prefix(t), Keep: 5})
	})
}

func TestRedisStoreCluster(t *testing.T) {
	client := redistest.StartCluster(t, 3, 0).Client()
	n := 0
	testStoreConformance(t, 5, func(t *testing.T) Store {
		n++
		return NewRedisStore(RedisStoreOptions{Client: client, Prefix: "fg" + string(rune('a'+n)) + ":", Keep: 5})
	})
}

// TestRedisStoreLayout: the keys the package doc promises, trimmed revisions deleted.
func TestRedisStoreLayout(t *testing.T) {
	ctx := context.Background()
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	s := NewRedisStore(RedisStoreOptions{Client: client, Prefix: prefix, Keep: 2})
	for i := range 3 {
		if _, err := s.Put(ctx, uint64(i), Revision{Files: storeDoc(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := client.Get(ctx, prefix+"{config}:version").Result(); err != nil || v != "3" {
		t.Errorf("version key: got %q, %v; want 3", v, err)
	}
	if h, err := client.LRange(ctx, prefix+"{config}:history", 0, -1).Result(); err != nil || len(h) != 2 || h[0] != "3" || h[1] != "2" {
		t.Errorf("history key: got %v, %v; want [3 2]", h, err)
	}
	for v, want := range map[string]int64{"1": 0, "2": 1, "3": 1} {
		if n, _ := client.Exists(ctx, prefix+"{config}:rev:"+v).Result(); n != want {
			t.Errorf("rev:%s exists: got %d, want %d", v, n, want)
		}
	}
}

// TestRedisStoreChangesAcrossClients: a Put through another store instance and connection reaches Changes
// within 1 s, and every goroutine (ours and go-redis's pub/sub ones) is gone after ctx ends.
func TestRedisStoreChangesAcrossClients(t *testing.T) {
	prefix := redistest.Prefix(t)
	a := NewRedisStore(RedisStoreOptions{Client: newRedisClient(t, "fgtest-changes-a"), Prefix: prefix})
	b := NewRedisStore(RedisStoreOptions{Client: newRedisClient(t, "fgtest-changes-b"), Prefix: prefix})
	bg := context.Background()
	if _, err := a.Current(bg); err != nil { // warm the pool, so the baseline counts its goroutines
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(bg)
	ch := a.Changes(ctx)
	for i := range 3 {
		start := time.Now()
		rev, err := b.Put(bg, uint64(i), Revision{Files: storeDoc(i)})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-ch:
			if v != rev.Version {
				t.Errorf("Changes: got version %d, want %d", v, rev.Version)
			}
			t.Logf("version %d seen after %v", v, time.Since(start))
		case <-time.After(time.Second):
			t.Fatalf("Changes: version %d not seen within 1 s", rev.Version)
		}
	}
	if runtime.NumGoroutine() <= baseline {
		t.Errorf("got %d goroutines while subscribed, want more than the baseline %d (is Changes subscribed?)",
			runtime.NumGoroutine(), baseline)
	}
	cancel()
	waitGoroutines(t, baseline)
	if _, ok := <-ch; ok {
		t.Error("Changes: channel open after ctx ended")
	}
}

// waitGoroutines waits up to 3 s for the goroutine count to fall to at most want.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("got %d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisStoreChangesResubscribe: after the pub/sub connection is killed, go-redis reconnects and the
// current version is delivered, covering anything published while the connection was down.
func TestRedisStoreChangesResubscribe(t *testing.T) {
	srv := redistest.Start(t)
	bg := context.Background()
	a := NewRedisStore(RedisStoreOptions{Client: srv.Client(), Prefix: "fg:"})
	admin := srv.Client()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	ch := a.Changes(ctx)
	if _, err := a.Put(bg, 0, Revision{Files: storeDoc(0)}); err != nil {
		t.Fatal(err)
	}
	if v := <-ch; v != 1 {
		t.Fatalf("got version %d, want 1", v)
	}
	if err := admin.Do(bg, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(bg, 1, Revision{Files: storeDoc(1)}); err != nil { // likely published to nobody
		t.Fatal(err)
	}
	select {
	case v := <-ch:
		if v != 2 {
			t.Errorf("got version %d, want 2", v)
		}
	case <-time.After(8 * time.Second): // go-redis notices the dead connection at its next read or ping
		t.Fatal("version 2 not delivered within 8 s of the subscription being killed")
	}
}

// TestRedisStoreUnreachable: errors, not hangs or panics, when Redis is down.
func TestRedisStoreUnreachable(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	s := NewRedisStore(RedisStoreOptions{Client: client})
	ctx := context.Background()
	if _, err := s.Current(ctx); err == nil {
		t.Error("Current: got nil error, want one")
	}
	if _, err := s.Put(ctx, 0, Revision{Files: storeDoc(0)}); err == nil || errors.Is(err, ErrConflict) {
		t.Errorf("Put: got %v, want a connection error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	ch := s.Changes(cctx)
	cancel()
	for range ch {
	}
}

// TestPutScriptDates: the script's RFC 3339 formatting of the Redis clock (civil date from Unix days)
// is right across leap days, month and year ends. The script runs with TIME replaced by fixed values.
func TestPutScriptDates(t *testing.T) {
	ctx := context.Background()
	client := redistest.Client(t)
	fixed := strings.Replace(putLua, "redis.call('TIME')", "{ARGV[6], ARGV[7]}", 1)
	if fixed == putLua {
		t.Fatal("put.lua no longer calls TIME as the test expects")
	}
	script := redis.NewScript(fixed)
	tests := []time.Time{
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 12, 30, 45, 1000, time.UTC),
		time.Date(2024, 2, 29, 23, 59, 59, 999999000, time.UTC),
		time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 500000000, time.UTC),
		time.Date(2100, 3, 1, 7, 8, 9, 10000, time.UTC),
	}
	for _, want := range tests {
		prefix := redistest.Prefix(t)
		s := NewRedisStore(RedisStoreOptions{Client: client, Prefix: prefix})
		res, err := script.Run(ctx, client, []string{s.version, s.history}, "0", `"digest":"d","files":[],"source":"api"`,
			5, s.revKey, s.channel, want.Unix(), want.Nanosecond()/1000).Slice()
		if err != nil {
			t.Fatal(err)
		}
		rev, err := decodeRevision(res[1].(string))
		if err != nil {
			t.Fatal(err)
		}
		if !rev.CreatedAt.Equal(want) {
			t.Errorf("got CreatedAt %v, want %v", rev.CreatedAt, want)
		}
	}
}
