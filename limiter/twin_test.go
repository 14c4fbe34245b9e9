package limiter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

// TestLuaTwinOfMemory runs random requests through the real Lua script on real Redis — with Redis TIME
// replaced by a time passed in, so both sides see the same microsecond — and through Memory on a fake
// clock, and requires identical decisions and results. This is what keeps the two backends from drifting at
// window edges, refill fractions and retry times.
func TestLuaTwinOfMemory(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	ctx := context.Background()
	const timeLine = "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])"
	src := limiter.DecideScript()
	if !strings.Contains(src, timeLine) {
		t.Fatalf("decide.lua no longer contains %q; update this test", timeLine)
	}
	script := redis.NewScript(strings.Replace(src, timeLine, "local now = tonumber(ARGV[#ARGV])", 1))

	// Fake time starts ahead of Redis's clock and only moves forward, so Redis never expires a key earlier
	// than the memory store would consider it gone.
	redisNow, err := client.Time(ctx).Result()
	if err != nil {
		t.Fatalf("time: %v", err)
	}
	clock := &fakeClock{t: redisNow.Add(time.Minute).Truncate(time.Second).Add(987 * time.Millisecond)}
	mem := limiter.NewMemory(limiter.MemoryOptions{Now: clock.Now, Shards: 4})

	r := rand.New(rand.NewPCG(42, 7))
	windows := []time.Duration{time.Second, 2500 * time.Millisecond, 10 * time.Second, 333 * time.Millisecond}
	requests := []uint64{0, 1, 3, 7, 10}
	keys := []string{"a", "b", "c"}
	mismatches := 0
	for step := range 1500 {
		clock.Advance(time.Duration(r.IntN(250_000)) * time.Microsecond)
		// One script run decides 1-4 requests in order (as the pipeliner sends them); memory decides them
		// one after another at the same instant.
		reqs := make([][]limiter.Hit, 1+r.IntN(4))
		var redisKeys []string
		args := []any{len(reqs)}
		for q := range reqs {
			n := 1 + r.IntN(3)
			hits := make([]limiter.Hit, n)
			for i := range hits {
				hits[i] = limiter.Hit{
					Key: keys[r.IntN(len(keys))],
					Limit: limiter.Limit{Algorithm: algorithms[r.IntN(3)], Requests: requests[r.IntN(len(requests))],
						Window: windows[r.IntN(len(windows))], Burst: uint64(r.IntN(3) * 4)},
					Cost:   int64(r.IntN(9) - 2),
					Shadow: r.IntN(8) == 0,
					Quota:  r.IntN(5) == 0,
				}
			}
			reqs[q] = hits
			args = append(args, n)
			for _, h := range hits {
				redisKeys = append(redisKeys, limiter.StorageKey(prefix, h))
				mode := 0
				if h.Shadow {
					mode = 1
				} else if h.Quota {
					mode = 2
				}
				args = append(args, int(h.Limit.Algorithm), h.Limit.Requests, h.Limit.Window.Microseconds(), h.Limit.Burst, h.Cost, mode)
			}
		}
		args = append(args, clock.Now().UnixMicro())
		vals, err := script.Run(ctx, client, redisKeys, args...).Int64Slice()
		if err != nil {
			t.Fatalf("step %d: lua: %v", step, err)
		}
		off := 0
		for q, hits := range reqs {
			n := len(hits)
			want := make([]limiter.Result, n)
			wantOK, err := mem.Decide(ctx, hits, want)
			if err != nil {
				t.Fatalf("memory decide: %v", err)
			}
			if off+1+4*n > len(vals) {
				t.Fatalf("step %d: script returned %d values, want more for request %d", step, len(vals), q)
			}
			got := make([]limiter.Result, n)
			for i := range got {
				v := vals[off+1+4*i:]
				got[i] = limiter.Result{Allowed: v[0] == 1, Remaining: uint64(v[1]), ResetAfter: time.Duration(v[2]) * time.Microsecond}
				if v[0] != 1 {
					got[i].RetryAfter = time.Duration(v[3]) * time.Microsecond
				}
			}
			if diff := cmp.Diff(want, got); diff != "" || (vals[off] == 1) != wantOK {
				mismatches++
				t.Errorf("step %d request %d/%d at %s, hits %s: memory allowed %v, lua %v; results (-memory +lua):\n%s",
					step, q+1, len(reqs), clock.Now().Format("15:04:05.000000"), describe(hits), wantOK, vals[off] == 1, diff)
				if mismatches > 5 {
					t.FailNow()
				}
			}
			off += 1 + 4*n
		}
		if off != len(vals) {
			t.Errorf("step %d: script returned %d values, want %d", step, len(vals), off)
		}
	}
}

func describe(hits []limiter.Hit) string {
	var b strings.Builder
	for _, h := range hits {
		fmt.Fprintf(&b, "[%s %s %d/%s b%d c%d s%v q%v] ", h.Key, h.Limit.Algorithm, h.Limit.Requests, h.Limit.Window, h.Limit.Burst, h.Cost, h.Shadow, h.Quota)
	}
	return b.String()
}
