package metrics

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redistest"
)

// TestSystemProbe: real gopsutil figures are percentages in [0,100], the RSS and goroutines are real, and a
// busy process shows CPU use.
func TestSystemProbe(t *testing.T) {
	ctx := context.Background()
	p, err := newSystemProbe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.read(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	spinUntil := time.Now().Add(200 * time.Millisecond)
	for x := 0; time.Now().Before(spinUntil); x++ {
		_ = x * x
	}
	h, ps, err := p.read(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host %+v process %+v", h, ps)
	tests := []struct {
		name string
		got  float64
		low  float64
		high float64
	}{
		{"host cpu percent", h.CPUPercent, 0, 100},
		{"host memory percent", h.MemoryPercent, 0.001, 100},
		// 200 ms of one busy core over ~200 ms wall time is 100/NumCPU percent of the machine.
		{"process cpu percent", ps.CPUPercent, 0.001, 100},
		{"rss bytes", float64(ps.RSSBytes), 1 << 20, 1 << 40},
		{"goroutines", float64(ps.Goroutines), 1, 1e6},
		{"gc count", float64(ps.GCCount), 1, 1e12},
		{"gc pause", ps.GCPauseLastSeconds, 0, 1},
	}
	for _, tt := range tests {
		if tt.got < tt.low || tt.got > tt.high {
			t.Errorf("%s: got %v, want [%v, %v]", tt.name, tt.got, tt.low, tt.high)
		}
	}
	if h.CPUPercent == 0 {
		t.Error("host cpu percent while this process spun: got 0, want > 0")
	}
}

func TestClampPercent(t *testing.T) {
	nan := 0.0
	tests := []struct {
		give, want float64
	}{{-3, 0}, {0, 0}, {42.5, 42.5}, {100, 100}, {250, 100}, {nan / nan, 0}}
	for _, tt := range tests {
		if got := clampPercent(tt.give); got != tt.want {
			t.Errorf("clampPercent(%v): got %v, want %v", tt.give, got, tt.want)
		}
	}
}

// TestStoreHealthRedis pings the real Redis, then the same Redis behind a proxy that stalls traffic: the
// ping is bounded by PingTimeout and the store reads as down with its error.
func TestStoreHealthRedis(t *testing.T) {
	opts, err := redis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := redistest.NewProxy(t, opts.Addr)
	defer proxy.Close()
	popts := *opts
	popts.Addr = proxy.Addr()
	popts.MaxRetries = -1
	client := redis.NewClient(&popts)
	defer client.Close()

	var lastErr error
	s := newTestSampler(t, SamplerOptions{FailureMode: "local", PingTimeout: 300 * time.Millisecond,
		Ping:   func(ctx context.Context) error { return client.Ping(ctx).Err() },
		OnPing: func(_ time.Duration, err error) { lastErr = err }})
	ctx := context.Background()
	if err := client.Ping(ctx).Err(); err != nil { // open the connection
		t.Fatal(err)
	}
	s.prime(ctx, time.Now())

	up := s.sample(ctx, time.Now()).Store
	if !up.Configured || !up.Up || up.Error != "" || up.FailureMode != "local" || up.PingSeconds <= 0 || up.PingSeconds > 0.3 {
		t.Errorf("healthy store: got %+v, want configured, up, no error, failure mode local, 0 < ping <= 0.3 s", up)
	}

	// The client is built as a careless caller would (no ContextTimeoutEnabled): go-redis then ignores the
	// ping's context and waits for its 3 s socket timeout. The sampler still answers after PingTimeout.
	proxy.Blackhole(true)
	start := time.Now()
	down := s.sample(ctx, time.Now()).Store
	took := time.Since(start)
	if down.Up || !strings.Contains(down.Error, "no answer within 300ms") || lastErr == nil {
		t.Errorf("stalled store: got %+v (OnPing err %v), want down with a no-answer error", down, lastErr)
	}
	if took > time.Second {
		t.Errorf("sample with a stalled store: took %v, want about the 300 ms ping timeout", took)
	}
	if down.PingSeconds < 0.3 {
		t.Errorf("stalled ping latency: got %v s, want at least the 0.3 s timeout", down.PingSeconds)
	}
	// The stalled ping is still in flight: the next sample starts none and reports the store down at once.
	start = time.Now()
	pending := s.sample(ctx, time.Now()).Store
	if took := time.Since(start); pending.Up || !strings.Contains(pending.Error, "unanswered") || took > 50*time.Millisecond {
		t.Errorf("ping in flight: got %+v in %v, want down, unanswered, at once", pending, took)
	}

	proxy.Blackhole(false)
	var again StoreHealth
	for deadline := time.Now().Add(10 * time.Second); !again.Up && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		again = s.sample(ctx, time.Now()).Store
	}
	if !again.Up || again.Error != "" {
		t.Errorf("after the stall: got %+v, want up again", again)
	}
	s.waitPing()
}

// TestStoreHealthInProcess: no pinger means the store is in-process and always up.
func TestStoreHealthInProcess(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{FailureMode: "allow"})
	got := s.sample(context.Background(), time.Now()).Store
	want := StoreHealth{Configured: false, Up: true, FailureMode: "allow"}
	if got != want {
		t.Errorf("in-process store: got %+v, want %+v", got, want)
	}
}
