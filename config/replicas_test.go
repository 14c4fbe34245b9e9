package config

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/floodgate/floodgate/internal/redistest"
)

// testReplicasConformance: reports come back sorted by name with LastSeen set; a replica's later report
// replaces its earlier one.
func testReplicasConformance(t *testing.T, r Replicas) {
	ctx := context.Background()
	applied := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	reports := []ReplicaStatus{
		{Replica: "b", Version: 3, Digest: "d3", Source: "api", AppliedAt: applied, LagSeconds: 0.25},
		{Replica: "a", Version: 2, Digest: "d2", Source: "api", AppliedAt: applied,
			LastError: "bad", LastErrorAt: applied.Add(time.Second)},
		{Replica: "b", Version: 4, Digest: "d4", Source: "api", AppliedAt: applied.Add(time.Minute)},
	}
	before := time.Now().Add(-time.Minute)
	for _, s := range reports {
		if err := r.Report(ctx, s); err != nil {
			t.Fatalf("Report(%s): %v", s.Replica, err)
		}
	}
	got, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ReplicaStatus{reports[1], reports[2]}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(ReplicaStatus{}, "LastSeen")); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	for _, s := range got {
		if s.LastSeen.Before(before) || s.LastSeen.After(time.Now().Add(time.Minute)) {
			t.Errorf("replica %s: got LastSeen %v, want about now", s.Replica, s.LastSeen)
		}
	}
}

func TestMemoryReplicas(t *testing.T) {
	testReplicasConformance(t, NewMemoryReplicas())

	r := &MemoryReplicas{ttl: 50 * time.Millisecond, m: map[string]ReplicaStatus{}}
	ctx := context.Background()
	_ = r.Report(ctx, ReplicaStatus{Replica: "gone"})
	time.Sleep(100 * time.Millisecond)
	_ = r.Report(ctx, ReplicaStatus{Replica: "alive"})
	got, _ := r.List(ctx)
	if len(got) != 1 || got[0].Replica != "alive" {
		t.Errorf("List after the window: got %v, want only alive", got)
	}
	if _, ok := r.m["gone"]; ok {
		t.Error("the expired replica is still held")
	}
}

func TestRedisReplicas(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	testReplicasConformance(t, NewRedisReplicas(client, prefix, 0))

	// Entries older than the window, or unreadable, are dropped from the list and deleted.
	ctx := context.Background()
	key := prefix + "{config}:replicas"
	old, _ := json.Marshal(ReplicaStatus{Replica: "old", LastSeen: time.Now().Add(-time.Minute)})
	client.HSet(ctx, key, "old", old, "junk", "{not json")
	got, err := NewRedisReplicas(client, prefix, 0).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Replica)
	}
	if diff := cmp.Diff([]string{"a", "b"}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	for _, f := range []string{"old", "junk"} {
		if ok, _ := client.HExists(ctx, key, f).Result(); ok {
			t.Errorf("stale field %q still in the hash", f)
		}
	}
	if ttl, _ := client.PTTL(ctx, key).Result(); ttl <= 0 || ttl > 10*replicasTTL {
		t.Errorf("hash TTL: got %v, want (0, %v]", ttl, 10*replicasTTL)
	}
}
