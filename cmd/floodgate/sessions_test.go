package main

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// B50 on the real binary: 1,000 dashboards connect while denials flow, half close cleanly, half drop the
// connection without a close frame; the server's sessions, goroutines and heap return to their baseline
// (read from its own /metrics, so the test's client connections do not count).
func TestDashboardSessionsReturnToBaseline(t *testing.T) {
	bin := buildBinary(t)
	t.Setenv("GOGC", "25") // the server collects often, so its live heap is visible in heap_inuse soon
	s := startProcess(t, bin, "--config", writeLimits(t, e2eLimits))
	t.Setenv("GOGC", os.Getenv("GOGC"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Ends when stop is closed: about 100 denials a second (user over its 3/hour).
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				shouldLimit(t, s, rlsRequest("e2e", "user", "flood"))
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	settled := func() (heap, goroutines float64) {
		// Wait for two collections after now, then read the live heap.
		gc := metric(t, s, "go_gc_duration_seconds_count")
		deadline := time.Now().Add(20 * time.Second)
		for metric(t, s, "go_gc_duration_seconds_count") < gc+2 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		return metric(t, s, "go_memstats_heap_inuse_bytes"), metric(t, s, "go_goroutines")
	}
	// Fill the audit ring (10,000 recent events) first, so its growth under the flowing denials does not
	// count as the sessions' heap.
	var fill sync.WaitGroup
	for w := range 16 {
		fill.Go(func() {
			for range 10_500 / 16 {
				shouldLimit(t, s, rlsRequest("e2e", "user", "fill"+strconv.Itoa(w)))
			}
		})
	}
	fill.Wait()
	baseHeap, baseG := settled()

	const n = 1000
	// One cycle: n dashboards connect and read their hello, then half close cleanly and half drop the
	// connection. It returns the server's heap in use while they were connected.
	cycle := func() (peak float64) {
		conns := make([]*websocket.Conn, n)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var dial sync.WaitGroup
		sem := make(chan struct{}, 50)
		for i := range conns {
			dial.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				c, _, err := websocket.Dial(ctx, "ws://"+s.httpAddr+"/ws", nil)
				if err != nil {
					t.Errorf("dial %d: %v", i, err)
					return
				}
				c.SetReadLimit(1 << 24)
				if _, _, err := c.Read(ctx); err != nil { // the hello
					t.Errorf("hello %d: %v", i, err)
				}
				conns[i] = c
			})
		}
		dial.Wait()
		if got := metric(t, s, "floodgate_dashboard_sessions"); got != n {
			t.Fatalf("sessions: got %v, want %d", got, n)
		}
		peak, _ = settled()
		for i, c := range conns {
			if c == nil {
				continue
			}
			if i%2 == 0 {
				c.Close(websocket.StatusNormalClosure, "bye")
			} else {
				c.CloseNow() // no close frame: the connection just goes
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for metric(t, s, "floodgate_dashboard_sessions") != 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := metric(t, s, "floodgate_dashboard_sessions"); got != 0 {
			t.Fatalf("sessions after the clients left: got %v, want 0", got)
		}
		return peak
	}
	peakHeap := cycle()
	heap1, g1 := settled()
	cycle()
	heap, g := settled()
	t.Logf("server heap in use: %.1f MB at baseline, %.1f MB with %d sessions, %.1f MB after one cycle, %.1f MB after two; goroutines %v → %v → %v",
		baseHeap/1e6, peakHeap/1e6, n, heap1/1e6, heap/1e6, baseG, g1, g)
	if g > baseG+5 || g1 > baseG+5 {
		t.Errorf("goroutines: %v and %v after the cycles, baseline %v", g1, g, baseG)
	}
	// The first cycle leaves grown-once structures (connection maps, pools) of a few MB; a leak would
	// add its ~20 MB again with every cycle.
	if heap > baseHeap+5e6 || heap > heap1+1.5e6 {
		t.Errorf("heap in use: %.1f MB after two cycles, %.1f after one, baseline %.1f MB (want ≤ baseline + 5 MB and no growth per cycle)",
			heap/1e6, heap1/1e6, baseHeap/1e6)
	}
	if peakHeap < baseHeap+4e6 {
		t.Errorf("%d sessions held less than 4 MB: the heap check above cannot tell a leak from none", n)
	}
}
