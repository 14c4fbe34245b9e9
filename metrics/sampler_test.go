package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/limiter"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func newTestSampler(t testing.TB, opts SamplerOptions) *Sampler {
	t.Helper()
	s, err := NewSampler(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSamplerRates: counters become per-second rates over the real elapsed time, overall and per rule.
func TestSamplerRates(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{Interval: time.Second})
	ctx := context.Background()
	user := &config.Rule{Name: "api.user"}
	userLimits := []*config.Limit{{Name: "api.user#1"}, {Name: "api.user#2"}}
	internal := &config.Rule{Name: "api.internal", Unlimited: true}
	login := &config.Rule{Name: "api.login", Shadow: true}
	loginLimit := &config.Limit{Name: "api.login"}

	s.Observe(&extauthz.Observation{Code: extauthz.OutcomeOK}) // counted before prime: not in the rates
	s.prime(ctx, t0)
	observe := func(n int, o *extauthz.Observation) {
		for i := 0; i < n; i++ {
			s.Observe(o)
		}
	}
	// 10 allowed: both limits of api.user allow, api.internal is unlimited.
	observe(10, &extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOK, Rules: []extauthz.RuleResult{
		{Rule: internal},
		{Rule: user, Limit: userLimits[0], Result: limiter.Result{Allowed: true}},
		{Rule: user, Limit: userLimits[1], Result: limiter.Result{Allowed: true}},
	}})
	// 4 denied: the second limit of api.user denies; the rule counts once, as denied.
	observe(4, &extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOverLimit, Rules: []extauthz.RuleResult{
		{Rule: user, Limit: userLimits[0], Result: limiter.Result{Allowed: true}},
		{Rule: user, Limit: userLimits[1], Result: limiter.Result{Allowed: false}},
	}})
	// 6 shadow: allowed, but api.login would have denied.
	observe(6, &extauthz.Observation{Service: "authz", Domain: "api", Code: extauthz.OutcomeOK, Rules: []extauthz.RuleResult{
		{Rule: login, Limit: loginLimit, Shadow: true, Result: limiter.Result{Allowed: false}},
	}})
	// 2 degraded under allow (no limit evaluated), 2 under local (the fallback denied), with store errors.
	observe(2, &extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeDegraded, FailureMode: "allow",
		StoreErr: context.DeadlineExceeded, Rules: []extauthz.RuleResult{{Rule: user, Limit: userLimits[0]}}})
	observe(2, &extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeDegraded, FailureMode: "local",
		StoreErr: errors.New("connection refused"), Rules: []extauthz.RuleResult{{Rule: user, Limit: userLimits[0], Result: limiter.Result{Allowed: false}}}})
	observe(8, &extauthz.Observation{Service: "ratelimit", Code: extauthz.OutcomeInvalid})

	got := s.sample(ctx, t0.Add(2*time.Second)) // two seconds elapsed: every rate is count/2
	want := DecisionRates{Allowed: 8, Denied: 2, Shadow: 3, Degraded: 2, Invalid: 4, Total: 16}
	if diff := cmp.Diff(want, got.Decisions); diff != "" {
		t.Errorf("decision rates (-want +got):\n%s", diff)
	}
	if got.IntervalSeconds != 2 {
		t.Errorf("interval: got %v, want 2", got.IntervalSeconds)
	}
	if got.Store.ErrorsPerSecond != 2 {
		t.Errorf("store errors/s: got %v, want 2", got.Store.ErrorsPerSecond)
	}
	wantRules := []RuleRates{
		{Domain: "api", Rule: "api.user", Allowed: 5, Denied: 2 + 1, Degraded: 2},
		{Domain: "api", Rule: "api.internal", Allowed: 5},
		{Domain: "api", Rule: "api.login", Shadow: 3},
	}
	if diff := cmp.Diff(wantRules, got.Rules); diff != "" {
		t.Errorf("rule rates, busiest first (-want +got):\n%s", diff)
	}

	// One quiet second later: everything is zero and no rule is listed.
	got = s.sample(ctx, t0.Add(3*time.Second))
	if diff := cmp.Diff(DecisionRates{}, got.Decisions); diff != "" {
		t.Errorf("quiet second (-want +got):\n%s", diff)
	}
	if len(got.Rules) != 0 || got.Rules == nil {
		t.Errorf("quiet second rules: got %#v, want an empty non-nil slice", got.Rules)
	}
	if got.IntervalSeconds != 1 {
		t.Errorf("interval: got %v, want 1", got.IntervalSeconds)
	}
}

// TestSamplerRuleCap: rules past MaxRules are counted under "other", so memory is bounded by the cap.
func TestSamplerRuleCap(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{MaxRules: 3, SnapshotRules: 2})
	ctx := context.Background()
	s.prime(ctx, t0)
	for i := range 10 {
		rule := &config.Rule{Name: "r" + string(rune('a'+i))}
		for range i + 1 {
			s.Observe(&extauthz.Observation{Domain: "d", Code: extauthz.OutcomeOK,
				Rules: []extauthz.RuleResult{{Rule: rule, Limit: &config.Limit{}, Result: limiter.Result{Allowed: true}}}})
		}
	}
	if got := len(*s.rules.Load()); got != 4 {
		t.Errorf("rule counters: got %d, want 4 (3 rules + other)", got)
	}
	snap := s.sample(ctx, t0.Add(time.Second))
	// ra, rb, rc got 1+2+3; the other 7 rules 4+...+10 = 49 went to "other". Two listed, two omitted.
	want := []RuleRates{{Domain: "", Rule: OtherRule, Allowed: 49}, {Domain: "d", Rule: "rc", Allowed: 3}}
	if diff := cmp.Diff(want, snap.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if snap.RulesOmitted != 2 {
		t.Errorf("rules omitted: got %d, want 2", snap.RulesOmitted)
	}
	if snap.Decisions.Allowed != 55 {
		t.Errorf("allowed/s: got %v, want 55 (the cap never loses a decision)", snap.Decisions.Allowed)
	}
}

// TestSamplerRing: the ring keeps exactly History/Interval snapshots, oldest first.
func TestSamplerRing(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		history  time.Duration
		samples  int
		want     int
	}{
		{"partly filled", time.Second, 5 * time.Second, 3, 3},
		{"wrapped", time.Second, 5 * time.Second, 12, 5},
		{"exactly full", time.Second, 5 * time.Second, 5, 5},
		{"defaults: 15 minutes of 1 s", 0, 0, 905, 900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSampler(t, SamplerOptions{Interval: tt.interval, History: tt.history})
			ctx := context.Background()
			s.prime(ctx, t0)
			for i := 1; i <= tt.samples; i++ {
				s.sample(ctx, t0.Add(time.Duration(i)*time.Second))
			}
			h := s.History()
			if len(h) != tt.want {
				t.Fatalf("history: got %d snapshots, want %d", len(h), tt.want)
			}
			for i, snap := range h {
				want := t0.Add(time.Duration(tt.samples-tt.want+1+i) * time.Second)
				if !snap.Time.Equal(want) {
					t.Fatalf("history[%d]: got time %v, want %v", i, snap.Time, want)
				}
			}
			if got, want := s.Latest().Time, t0.Add(time.Duration(tt.samples)*time.Second); !got.Equal(want) {
				t.Errorf("latest: got %v, want %v", got, want)
			}
		})
	}
}

// TestLatencyQuantiles: known data gives the exact quantiles within the sketch's bucket error.
func TestLatencyQuantiles(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{Interval: time.Second, LatencyWindow: 3 * time.Second})
	ctx := context.Background()
	s.prime(ctx, t0)
	// 1..1000 µs once each, in random order, spread over two intervals of the window.
	order := rand.Perm(1000)
	for i, v := range order {
		if i == 500 {
			s.sample(ctx, t0.Add(time.Second))
		}
		s.Observe(&extauthz.Observation{Code: extauthz.OutcomeOK, Duration: time.Duration(v+1) * time.Microsecond})
	}
	snap := s.sample(ctx, t0.Add(2*time.Second))
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"p50", snap.Latency.P50Seconds, 500e-6},
		{"p95", snap.Latency.P95Seconds, 950e-6},
		{"p99", snap.Latency.P99Seconds, 990e-6},
	}
	for _, tt := range tests {
		if tt.got < tt.want*(1-1.0/16) || tt.got > tt.want*(1+1.0/16) {
			t.Errorf("%s: got %v, want %v ± 6.25%%", tt.name, tt.got, tt.want)
		}
	}
	if snap.Latency.Count != 1000 || snap.Latency.WindowSeconds != 3 {
		t.Errorf("latency window: got count %d over %v s, want 1000 over 3 s", snap.Latency.Count, snap.Latency.WindowSeconds)
	}
	// The window slides: 500 observations leave after 2 more intervals, the rest after 3.
	counts := []uint64{}
	for i := 3; i <= 5; i++ {
		counts = append(counts, s.sample(ctx, t0.Add(time.Duration(i)*time.Second)).Latency.Count)
	}
	if diff := cmp.Diff([]uint64{1000, 500, 0}, counts); diff != "" {
		t.Errorf("window counts (-want +got):\n%s", diff)
	}
	if snap := s.Latest(); snap.Latency.P99Seconds != 0 {
		t.Errorf("empty window p99: got %v, want 0", snap.Latency.P99Seconds)
	}
}

// TestLatencyBuckets: every duration falls in a bucket whose bounds hold it and whose width is at most
// 1/8 of its lower bound.
func TestLatencyBuckets(t *testing.T) {
	values := []time.Duration{-5, 0, 1, 7, 8, 9, 15, 16, 17, 1000, 1 << 20, time.Second, time.Hour, 1<<63 - 1}
	for range 10000 {
		values = append(values, time.Duration(rand.Int64N(int64(time.Minute))))
	}
	for _, d := range values {
		b := latencyBucket(d)
		if b < 0 || b >= sketchBuckets {
			t.Fatalf("bucket of %d: got %d, want [0,%d)", d, b, sketchBuckets)
		}
		low, width := latencyLow(b)
		v := uint64(max(d, 0))
		if v < low || v-low >= width {
			t.Fatalf("%d in bucket %d: got [%d, %d+%d)", d, b, low, low, width)
		}
		if low >= 8 && width*8 > low {
			t.Fatalf("bucket %d: width %d above 1/8 of %d", b, width, low)
		}
	}
}

// TestSubscribeSlowDropped: a subscriber that never reads neither blocks Run nor the others, and is
// dropped; cancelling Run closes every channel and leaves no goroutine behind.
func TestSubscribeSlowDropped(t *testing.T) {
	before := runtime.NumGoroutine()
	s := newTestSampler(t, SamplerOptions{Interval: 20 * time.Millisecond, History: time.Second, SubscriberBuffer: 4})
	slow, cancelSlow := s.Subscribe()
	defer cancelSlow()
	fast, cancelFast := s.Subscribe()
	defer cancelFast()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Ends when ctx is cancelled.
	go func() { s.Run(ctx); close(done) }()

	// Decisions keep arriving while Run samples (the race detector watches Observe against sample).
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		// Ends when stop is closed.
		go func() {
			defer wg.Done()
			rule := &config.Rule{Name: "api.user"}
			o := &extauthz.Observation{Domain: "api", Code: extauthz.OutcomeOK, Duration: time.Millisecond,
				Rules: []extauthz.RuleResult{{Rule: rule, Limit: &config.Limit{}, Result: limiter.Result{Allowed: true}}}}
			for {
				select {
				case <-stop:
					return
				default:
					s.Observe(o)
				}
			}
		}()
	}

	began := time.Now()
	received := 0
	maxAllowed := 0.0 // the busiest second seen: on a loaded machine one tick may see no observer run
	deadline := time.After(10 * time.Second)
	for received < 20 {
		select {
		case snap, ok := <-fast:
			if !ok {
				t.Fatalf("fast subscriber closed after %d snapshots", received)
			}
			maxAllowed = max(maxAllowed, snap.Decisions.Allowed)
			received++
		case <-deadline:
			t.Fatalf("fast subscriber got %d snapshots in 10 s, want 20", received)
		}
	}
	t.Logf("20 snapshots in %v", time.Since(began))
	n := 0
	for range slow { // the buffered snapshots, then the close
		n++
	}
	if n != 4 {
		t.Errorf("slow subscriber: got %d snapshots before its close, want 4 (its buffer)", n)
	}
	if got := s.DroppedSubscribers(); got != 1 {
		t.Errorf("dropped subscribers: got %d, want 1", got)
	}
	if maxAllowed <= 0 {
		t.Errorf("allowed/s under load: got at most %v in 20 snapshots, want > 0", maxAllowed)
	}
	close(stop)
	wg.Wait()

	cancel()
	<-done
	for range fast { // drain: Run closed it
	}
	late, cancelLate := s.Subscribe()
	if _, ok := <-late; ok {
		t.Error("a subscription after Run returned: got an open channel, want a closed one")
	}
	cancelLate()
	began = time.Now()
	waitGoroutines(t, before)
	t.Logf("goroutines back to %d in %v", before, time.Since(began))
}

// waitGoroutines waits up to 5 s for the goroutine count to fall back to want.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: got %d, want <= %d\n%s", got, want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSubscribeCancel: cancel closes the channel once and is safe to repeat.
func TestSubscribeCancel(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{})
	ch, cancel := s.Subscribe()
	other, cancelOther := s.Subscribe()
	defer cancelOther()
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Error("after cancel: got an open channel, want closed")
	}
	s.prime(context.Background(), t0)
	s.sample(context.Background(), t0.Add(time.Second))
	select {
	case snap := <-other:
		if !snap.Time.Equal(t0.Add(time.Second)) {
			t.Errorf("published snapshot time: got %v, want %v", snap.Time, t0.Add(time.Second))
		}
	default:
		t.Error("the remaining subscriber got nothing, want the snapshot")
	}
}

// TestSnapshotJSON pins the field names the dashboard reads.
func TestSnapshotJSON(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{FailureMode: "allow"})
	ctx := context.Background()
	s.prime(ctx, t0)
	s.Observe(&extauthz.Observation{Domain: "api", Code: extauthz.OutcomeOK,
		Rules: []extauthz.RuleResult{{Rule: &config.Rule{Name: "api.user"}, Limit: &config.Limit{}, Result: limiter.Result{Allowed: true}}}})
	b, err := json.Marshal(s.sample(ctx, t0.Add(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, vv := range v {
				walk(prefix+"."+k, vv)
			}
		case []any:
			for _, vv := range v {
				walk(prefix+"[]", vv)
			}
		default:
			got = append(got, strings.TrimPrefix(prefix, "."))
		}
	}
	walk("", m)
	sort.Strings(got)
	got = slices.Compact(got)
	want := []string{
		"decisions_per_second.allowed", "decisions_per_second.degraded", "decisions_per_second.denied",
		"decisions_per_second.invalid", "decisions_per_second.shadow", "decisions_per_second.total",
		"host.cpu_percent", "host.memory_percent", "interval_seconds",
		"latency.count", "latency.p50_seconds", "latency.p95_seconds", "latency.p99_seconds", "latency.window_seconds",
		"process.cpu_percent", "process.gc_count", "process.gc_pause_last_seconds", "process.goroutines", "process.rss_bytes",
		"rules[].allowed", "rules[].degraded", "rules[].denied", "rules[].domain", "rules[].rule", "rules[].shadow",
		"rules_omitted",
		"store.configured", "store.error", "store.errors_per_second", "store.failure_mode", "store.ping_seconds", "store.up",
		"time",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot JSON fields (-want +got):\n%s\n%s", diff, b)
	}
}

// TestSamplerGauges: the host and store ping gauges are registered and follow the samples.
func TestSamplerGauges(t *testing.T) {
	reg := NewRegistry()
	New(reg) // the sampler's gauges coexist with the Prometheus collectors
	var pings int
	s := newTestSampler(t, SamplerOptions{Registry: reg,
		Ping:   func(ctx context.Context) error { time.Sleep(2 * time.Millisecond); return nil },
		OnPing: func(time.Duration, error) { pings++ }})
	ctx := context.Background()
	s.prime(ctx, time.Now())
	time.Sleep(20 * time.Millisecond)
	snap := s.sample(ctx, time.Now())
	if got := testutil.ToFloat64(s.hostMem); got != snap.Host.MemoryPercent || got <= 0 {
		t.Errorf("floodgate_host_memory_percent: got %v, want %v (> 0)", got, snap.Host.MemoryPercent)
	}
	if got := testutil.ToFloat64(s.hostCPU); got != snap.Host.CPUPercent {
		t.Errorf("floodgate_host_cpu_percent: got %v, want %v", got, snap.Host.CPUPercent)
	}
	if got := testutil.ToFloat64(s.pingSeconds); got < 0.002 {
		t.Errorf("floodgate_store_ping_seconds: got %v, want >= 0.002", got)
	}
	if pings != 1 {
		t.Errorf("OnPing calls: got %d, want 1", pings)
	}
	if _, err := NewSampler(ctx, SamplerOptions{Registry: reg}); err == nil {
		t.Error("a second sampler on the same registry: got no error, want a registration error")
	}
}

// TestObserveAllocs: Observe allocates nothing once a rule has been seen.
func TestObserveAllocs(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{})
	o := benchObservation()
	s.Observe(o)
	if got := testing.AllocsPerRun(1000, func() { s.Observe(o) }); got != 0 {
		t.Errorf("allocations per Observe: got %v, want 0", got)
	}
}

func benchObservation() *extauthz.Observation {
	user := &config.Rule{Name: "api.user"}
	limit := &config.Limit{Name: "api.user"}
	return &extauthz.Observation{Service: "authz", Domain: "api", Code: extauthz.OutcomeOverLimit, Duration: 180 * time.Microsecond,
		Rules: []extauthz.RuleResult{
			{Rule: &config.Rule{Name: "api.internal", Unlimited: true}},
			{Rule: user, Limit: limit, Result: limiter.Result{Allowed: false}},
		}}
}

func BenchmarkSamplerObserve(b *testing.B) {
	s := newTestSampler(b, SamplerOptions{})
	o := benchObservation()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Observe(o)
		}
	})
}

func BenchmarkSamplerSample(b *testing.B) {
	s := newTestSampler(b, SamplerOptions{})
	ctx := context.Background()
	o := benchObservation()
	s.prime(ctx, t0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Observe(o)
		s.sample(ctx, t0.Add(time.Duration(i+1)*time.Second))
	}
}

// TestLatencySketchSize: a window of many intervals advances in steps so the sketch stays within
// maxLatencySlots histograms, and still covers at least the window asked for.
func TestLatencySketchSize(t *testing.T) {
	tests := []struct {
		name      string
		window    int
		wantSlots int
		wantCover int
	}{
		{"default 10 intervals", 10, 11, 10},
		{"one", 1, 2, 1},
		{"at the cap", 60, 61, 60},
		{"5000 intervals (10 s at 2 ms)", 5000, 61, 5040},
		{"121 intervals", 121, 42, 123},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLatencySketch(tt.window)
			if got := len(l.slots); got != tt.wantSlots {
				t.Errorf("slots: got %d, want %d", got, tt.wantSlots)
			}
			if got := l.windowIntervals(); got != tt.wantCover || got < tt.window {
				t.Errorf("window: got %d intervals, want %d (>= %d)", got, tt.wantCover, tt.window)
			}
		})
	}
	// With a slot of 3 samples, observations are reported once their slot closes and kept for the window.
	l := newLatencySketch(180) // every = 3, 60 completed slots
	l.observe(time.Millisecond)
	var q [1]time.Duration
	counts := []uint64{}
	for range 4 {
		counts = append(counts, l.rotate([]float64{0.5}, q[:]))
	}
	if diff := cmp.Diff([]uint64{0, 0, 1, 1}, counts); diff != "" {
		t.Errorf("counts per sample (-want +got):\n%s", diff)
	}
}

// TestObserveConcurrentRules: goroutines racing to add rules never lose a decision, and the cap holds.
func TestObserveConcurrentRules(t *testing.T) {
	s := newTestSampler(t, SamplerOptions{MaxRules: 100, SnapshotRules: 1000})
	ctx := context.Background()
	s.prime(ctx, t0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		// Ends after its 50 rules × 20 decisions.
		go func() {
			defer wg.Done()
			for i := range 50 {
				rule := &config.Rule{Name: fmt.Sprintf("g%d.r%d", g, i)}
				o := &extauthz.Observation{Domain: "api", Code: extauthz.OutcomeOverLimit,
					Rules: []extauthz.RuleResult{{Rule: rule, Limit: &config.Limit{}}}}
				for range 20 {
					s.Observe(o)
				}
			}
		}()
	}
	wg.Wait()
	snap := s.sample(ctx, t0.Add(time.Second))
	if got := len(*s.rules.Load()); got != 101 {
		t.Errorf("rule counters: got %d, want 101 (100 + other)", got)
	}
	var sum float64
	for _, r := range snap.Rules {
		sum += r.Denied
	}
	if sum != 4000 || snap.Decisions.Denied != 4000 {
		t.Errorf("denied: got %v over rules and %v overall, want 4000 and 4000", sum, snap.Decisions.Denied)
	}
}
