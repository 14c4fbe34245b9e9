package limiter_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
)

// TestClusterCrossSlot: on a Redis Cluster, a request whose keys live in different slots is decided per slot
// and refunded on denial, so the outcome stays all-or-nothing: under 1000 concurrent requests each carrying
// a tight key and a loose key in another slot, exactly the tight limit is admitted and the loose counter
// ends equal to the number admitted (every reservation of a denied request was given back).
func TestClusterCrossSlot(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t, 3, 0)
	client := cluster.Client()
	prefix := redistest.Prefix(t)
	store := limiter.NewRedis(client, limiter.RedisOptions{Prefix: prefix})
	if now := time.Now(); time.Duration(now.UnixNano()%int64(time.Hour)) > time.Hour-10*time.Second {
		time.Sleep(11 * time.Second)
	}
	tight := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 100, Window: time.Hour}
	loose := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 100_000, Window: time.Hour}
	shadow := limiter.Hit{Key: "shadow", Limit: loose, Cost: 1, Shadow: true}
	keys := []string{"tight", "loose", "shadow"}
	for i := range keys {
		for j := range i {
			if limiter.KeySlot(keys[i]) == limiter.KeySlot(keys[j]) {
				t.Fatalf("keys %q and %q share a slot; pick others", keys[i], keys[j])
			}
		}
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		// Ends after its one decision.
		go func() {
			defer wg.Done()
			res := make([]limiter.Result, 3)
			ok, err := store.Decide(context.Background(), []limiter.Hit{hit("loose", loose, 1), hit("tight", tight, 1), shadow}, res)
			if err != nil {
				t.Errorf("decide: %v", err)
				return
			}
			if ok {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := admitted.Load(); got != 100 {
		t.Errorf("got %d admitted, want exactly 100", got)
	}
	b := &backend{client: client, prefix: prefix}
	if got := redisCount(t, b, hit("loose", loose, 1)); got != 100 {
		t.Errorf("got loose counter %v, want 100 (denied requests refunded)", got)
	}
	if got := redisCount(t, b, hit("shadow", loose, 1)); got != 100 {
		t.Errorf("got shadow counter %v, want 100 (shadow hits of denied requests refunded)", got)
	}
	// A denied cross-slot request reports the other hits' quota as before the request.
	ok, r := decide(t, store, hit("loose", loose, 1), hit("tight", tight, 1))
	if ok || !r[0].Allowed || r[0].Remaining != 100_000-100 || r[1].Allowed {
		t.Errorf("got %v %+v, want denied, loose allowed with remaining 99900, tight denied", ok, r)
	}
	assertAllKeysExpire(t, client, prefix+"*", time.Hour)
}
