package audit

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// With 1,000,000 distinct clients in a minute the summary keeps k counters, and a heavy hitter among
// them is found with its exact count.
func TestTopOffendersBoundedMemory(t *testing.T) {
	const k = 1024
	top := newTopOffenders(k)
	at := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const distinct, every = 1_000_000, 100
	heavy := 0
	for i := range distinct {
		if i%every == 0 {
			top.add(at, "203.0.113.66", "login")
			heavy++
		}
		top.add(at, "c"+strconv.Itoa(i), "login")
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b := top.buckets[(at.Unix()/60)%bucketCount]
	if got := len(b.clients.index); got != k {
		t.Errorf("got %d tracked clients, want %d", got, k)
	}
	if got := len(b.clients.heap); got != k {
		t.Errorf("got %d counters, want %d", got, k)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if grown > 2<<20 {
		t.Errorf("got heap growth %d bytes, want under 2 MiB for %d counters", grown, k)
	}
	got := top.query(at, time.Minute, 3)
	if len(got.Clients) == 0 || got.Clients[0] != (Count{Key: "203.0.113.66", Count: uint64(heavy)}) {
		t.Errorf("got top clients %+v, want 203.0.113.66 with exactly %d", got.Clients, heavy)
	}
	if want := (Count{Key: "login", Count: uint64(distinct + heavy)}); len(got.Rules) != 1 || got.Rules[0] != want {
		t.Errorf("got rules %+v, want [%+v]", got.Rules, want)
	}
	t.Logf("1M distinct clients: heap growth %d bytes, min counter %d", grown, b.clients.heap[0].count)
}

// A window covers at least what it says: a denial 4 s ago is in the 1-minute window even across a minute
// boundary, and one 61 s ago still is while the current minute has just begun; one 2 minutes ago is not.
func TestTopOffendersWindowCoversAtLeastItsLength(t *testing.T) {
	top := newTopOffenders(8)
	now := time.Date(2030, 1, 1, 10, 5, 3, 0, time.UTC)
	top.add(now.Add(-4*time.Second), "recent", "r")    // 10:04:59
	top.add(now.Add(-61*time.Second), "minute", "r")   // 10:04:02
	top.add(now.Add(-124*time.Second), "earlier", "r") // 10:02:59
	got := top.query(now, time.Minute, 5)
	keys := map[string]bool{}
	for _, c := range got.Clients {
		keys[c.Key] = true
	}
	if !keys["recent"] || !keys["minute"] || keys["earlier"] {
		t.Errorf("1-minute window at 10:05:03: got %+v, want recent and minute, not earlier", got.Clients)
	}
	if got.Window < time.Minute || got.Window > 2*time.Minute {
		t.Errorf("window covered %s, want 1 to 2 minutes", got.Window)
	}
}

// Buckets older than the 15-minute window are reused, not accumulated.
func TestTopOffendersExpire(t *testing.T) {
	top := newTopOffenders(8)
	at := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	top.add(at, "old", "r")
	later := at.Add(16 * time.Minute)
	top.add(later, "new", "r")
	got := top.query(later, 15*time.Minute, 5)
	if len(got.Clients) != 1 || got.Clients[0].Key != "new" {
		t.Errorf("got %+v, want only new", got.Clients)
	}
}
