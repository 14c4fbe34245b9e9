package config

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// replicasTTL is the default liveness window: a replica that has not reported for this long is gone.
const replicasTTL = 15 * time.Second

// MemoryReplicas is the Replicas registry of one process (no Redis). Safe for concurrent use.
type MemoryReplicas struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]ReplicaStatus
}

// NewMemoryReplicas returns an empty registry with a 15 s liveness window.
func NewMemoryReplicas() *MemoryReplicas {
	return &MemoryReplicas{ttl: replicasTTL, m: map[string]ReplicaStatus{}}
}

// Report records s with LastSeen set to now.
func (r *MemoryReplicas) Report(ctx context.Context, s ReplicaStatus) error {
	s.LastSeen = time.Now().UTC()
	r.mu.Lock()
	r.m[s.Replica] = s
	r.mu.Unlock()
	return nil
}

// List returns the replicas seen within the liveness window, sorted by name, and forgets the others.
func (r *MemoryReplicas) List(ctx context.Context) ([]ReplicaStatus, error) {
	cutoff := time.Now().Add(-r.ttl)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ReplicaStatus, 0, len(r.m))
	for name, s := range r.m {
		if s.LastSeen.Before(cutoff) {
			delete(r.m, name)
			continue
		}
		out = append(out, s)
	}
	sortReplicas(out)
	return out, nil
}

var (
	//go:embed lua/replicas_drop.lua
	replicasDropLua    string
	replicasDropScript = redis.NewScript(replicasDropLua)
)

// RedisReplicas is the Replicas registry of the whole fleet: one Redis hash, Prefix{config}:replicas,
// field = replica name, value = its ReplicaStatus as JSON. LastSeen is the Redis server's clock, so
// replicas' clocks do not decide liveness. Safe for concurrent use.
type RedisReplicas struct {
	client redis.UniversalClient
	key    string
	ttl    time.Duration
}

// NewRedisReplicas returns a registry in client's Redis under prefix. ttl is the liveness window
// (default 15 s; replicas report every few seconds). It does not contact Redis.
func NewRedisReplicas(client redis.UniversalClient, prefix string, ttl time.Duration) *RedisReplicas {
	if ttl <= 0 {
		ttl = replicasTTL
	}
	return &RedisReplicas{client: client, key: prefix + "{config}:replicas", ttl: ttl}
}

// Report records s with LastSeen set to the Redis server's time. The hash expires when no replica has
// reported for 10 liveness windows, so an abandoned prefix does not stay forever.
func (r *RedisReplicas) Report(ctx context.Context, s ReplicaStatus) error {
	now, err := r.client.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("report replica %s: %w", s.Replica, err)
	}
	s.LastSeen = now.UTC()
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("report replica %s: %w", s.Replica, err)
	}
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.key, s.Replica, b)
		p.PExpire(ctx, r.key, 10*r.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("report replica %s: %w", s.Replica, err)
	}
	return nil
}

// List returns the replicas seen within the liveness window (by the Redis clock), sorted by name, and
// deletes the entries of the others (unless they reported again meanwhile).
func (r *RedisReplicas) List(ctx context.Context) ([]ReplicaStatus, error) {
	now, err := r.client.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	all, err := r.client.HGetAll(ctx, r.key).Result()
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	cutoff := now.Add(-r.ttl)
	out := make([]ReplicaStatus, 0, len(all))
	var stale []any // field, value pairs
	for name, v := range all {
		var s ReplicaStatus
		if err := json.Unmarshal([]byte(v), &s); err != nil || s.LastSeen.Before(cutoff) {
			stale = append(stale, name, v)
			continue
		}
		out = append(out, s)
	}
	if len(stale) > 0 {
		if err := replicasDropScript.Run(ctx, r.client, []string{r.key}, stale...).Err(); err != nil {
			return nil, fmt.Errorf("list replicas: drop stale entries: %w", err)
		}
	}
	sortReplicas(out)
	return out, nil
}

func sortReplicas(rs []ReplicaStatus) {
	slices.SortFunc(rs, func(a, b ReplicaStatus) int { return cmp.Compare(a.Replica, b.Replica) })
}
