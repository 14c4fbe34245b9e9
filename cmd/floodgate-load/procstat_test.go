package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		name  string
		give  string
		ticks int64
		want  time.Duration
	}{
		{"plain", "42 (floodgate) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 8 0 12345 0 0", 100, 2 * time.Second},
		{"comm with spaces and parens", "7 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 3 4 0 0", 100, 70 * time.Millisecond},
		{"other tick rate", "7 (x) R 1 2 3 4 5 6 7 8 9 10 1000 0 0 0", 1000, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStatCPU([]byte(tt.give), tt.ticks)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 2 3 4 5 6 7 8 9 10 abc 4 0"} {
		if _, err := parseProcStatCPU([]byte(bad), 100); err == nil {
			t.Errorf("parse %q: got no error, want one", bad)
		}
	}
}

func TestClockTicks(t *testing.T) {
	// Linux exports USER_HZ = 100 on every architecture Go runs on; the auxv reader must find it.
	if got, want := clockTicks(), int64(100); got != want {
		t.Errorf("clock ticks: got %d, want %d", got, want)
	}
}

func TestProcCPUIncreasesForBusyProcess(t *testing.T) {
	ticks := clockTicks()
	pid := os.Getpid()
	before, err := procCPU(pid, ticks)
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged at least 100 ms more CPU to this process, or give up after 5 s.
	deadline := time.Now().Add(5 * time.Second)
	x := uint64(1)
	after := before
	for after-before < 100*time.Millisecond && time.Now().Before(deadline) {
		for range 1_000_000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if after, err = procCPU(pid, ticks); err != nil {
			t.Fatal(err)
		}
	}
	if after-before < 100*time.Millisecond {
		t.Fatalf("cpu after 5 s of spinning: got +%s, want ≥ +100ms (x=%d)", after-before, x)
	}
	if _, err := procCPU(1<<30, ticks); err == nil {
		t.Error("cpu of a pid that does not exist: got no error, want one")
	}
}

func TestProcRSS(t *testing.T) {
	got, err := procRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got < 1<<20 || got > 4<<30 {
		t.Errorf("rss of the test process: got %d bytes, want between 1 MiB and 4 GiB", got)
	}
}

func TestParseRedisInfo(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.000000\r\n\r\n" +
		"# Stats\r\ntotal_connections_received:42\r\ntotal_commands_processed:7\r\n"
	got, err := parseRedisInfo(info)
	if err != nil {
		t.Fatal(err)
	}
	if want := (redisSample{CPU: 3750 * time.Millisecond, Conns: 42}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"# CPU\r\nused_cpu_sys:1.5\r\n", "used_cpu_sys:x\r\nused_cpu_user:1\r\n",
		"used_cpu_sys:1\r\nused_cpu_user:1\r\ntotal_connections_received:many\r\n"} {
		if _, err := parseRedisInfo(bad); err == nil {
			t.Errorf("parse %q: got no error, want one", bad)
		}
	}
}

// testRedis connects to FLOODGATE_TEST_REDIS_URL (default redis://127.0.0.1:6379/0); without an answering
// Redis the test fails under CI and skips loudly elsewhere.
func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("FLOODGATE_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("FLOODGATE_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Redis at %s: %v", redactURL(url), err)
		}
		t.Skipf("SKIPPED: NO REDIS at %s (%v); set FLOODGATE_TEST_REDIS_URL or start redis-server", redactURL(url), err)
	}
	return c
}

func TestRedisCPUAndDeleteKeys(t *testing.T) {
	c := testRedis(t)
	ctx := context.Background()
	prefix := "fgload-test:" + strings.ReplaceAll(t.Name(), "/", "_") + ":" + time.Now().Format("150405.000000000") + ":"
	other := prefix[:len(prefix)-1] + "-other"
	t.Cleanup(func() { c.Del(context.Background(), other) })

	before, err := redisStats(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	pipe := c.Pipeline()
	for i := range 2500 {
		pipe.Set(ctx, prefix+strconv.Itoa(i), i, time.Minute)
	}
	pipe.Set(ctx, other, 1, time.Minute) // shares the text before the prefix's last byte, must survive
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// A new client's connection is counted, and the writes cost Redis some CPU.
	c2 := redis.NewClient(c.Options())
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	after, err := redisStats(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= before.CPU {
		t.Errorf("redis cpu after 2500 writes: got %s, want > %s", after.CPU, before.CPU)
	}
	if after.Conns <= before.Conns {
		t.Errorf("redis connections after a new client connected: got %d, want > %d", after.Conns, before.Conns)
	}

	n, err := deleteKeys(ctx, c, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2500 {
		t.Errorf("deleted: got %d keys, want 2500", n)
	}
	if left := c.Scan(ctx, 0, prefix+"*", 1000).Iterator(); left.Next(ctx) {
		t.Errorf("keys left under prefix: got %q, want none", left.Val())
	}
	if got := c.Exists(ctx, other).Val(); got != 1 {
		t.Errorf("key outside the prefix: got exists=%d, want 1", got)
	}
	if _, err := deleteKeys(ctx, c, "fg*"); err == nil {
		t.Error("delete with a glob in the prefix: got no error, want one")
	}
}
