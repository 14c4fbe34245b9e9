package limiter

import (
	"context"
	"fmt"
)

// Resetter is implemented by stores whose counters an operator can clear (the admin API's usage reset).
type Resetter interface {
	// Reset deletes the counters of hits (Cost and flags are ignored): the next hit starts from a full quota.
	Reset(ctx context.Context, hits []Hit) error
}

// Reset implements Resetter.
func (m *Memory) Reset(_ context.Context, hits []Hit) error {
	for i := range hits {
		k := newMemKey(&hits[i])
		sh := &m.shards[m.shardOf(hits[i].Key)]
		sh.mu.Lock()
		delete(sh.m, k)
		sh.mu.Unlock()
	}
	return nil
}

// Reset implements Resetter: one DEL per counter key (on a Cluster the keys of different slots cannot
// share a command, so each is deleted on its own, pipelined).
func (r *Redis) Reset(ctx context.Context, hits []Hit) error {
	if len(hits) == 0 {
		return nil
	}
	pipe := r.client.Pipeline()
	for _, h := range hits {
		if h.Key == "" {
			return fmt.Errorf("reset: %w: empty key", ErrInvalidHit)
		}
		pipe.Del(ctx, StorageKey(r.prefix, h))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("reset %d counters: %w", len(hits), err)
	}
	return nil
}

// Reset implements Resetter: it forgets this process's remembered denials of the counters (whatever quota
// they were remembered for) and resets the counters in the wrapped store, which must be a Resetter. Other
// replicas' caches keep their entries until these expire (at most the RetryAfter they were answered with).
func (c *OverLimitCache) Reset(ctx context.Context, hits []Hit) error {
	r, ok := c.next.(Resetter)
	if !ok {
		return fmt.Errorf("reset: the store %T cannot reset counters", c.next)
	}
	for i := range hits {
		k := newMemKey(&hits[i])
		sh := c.shard(&hits[i])
		sh.mu.Lock()
		for ck := range sh.m {
			if ck.memKey == k {
				delete(sh.m, ck)
			}
		}
		sh.mu.Unlock()
	}
	return r.Reset(ctx, hits)
}
