package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/extauthz"
)

// Defaults of SamplerOptions.
const (
	DefaultSampleInterval   = time.Second
	DefaultSampleHistory    = 15 * time.Minute
	DefaultLatencyWindow    = 10 * time.Second
	DefaultMaxRules         = 1000
	DefaultSnapshotRules    = 100
	DefaultSubscriberBuffer = 8
	// MaxHistorySamples bounds the ring whatever History/Interval asks for (a day of 1 s samples).
	MaxHistorySamples = 86400
)

// OtherRule is the rule name under which decisions are counted once MaxRules distinct rules have been seen.
const OtherRule = "other"

// SamplerOptions configures a Sampler. Zero values take the documented defaults.
type SamplerOptions struct {
	// Interval between samples (default 1 s).
	Interval time.Duration
	// History is how much past the sampler keeps: History/Interval snapshots, at most MaxHistorySamples
	// (default 15 min, 900 samples).
	History time.Duration
	// LatencyWindow is the sliding window of the latency quantiles (default 10 s), rounded up to whole
	// intervals; beyond 60 intervals it advances in steps of window/60.
	LatencyWindow time.Duration
	// Ping checks the store once per sample (e.g. a Redis PING); nil when the store is in-process.
	Ping func(ctx context.Context) error
	// PingTimeout bounds each Ping (default Interval/2).
	PingTimeout time.Duration
	// OnPing, if set, receives each ping's latency and error (e.g. Metrics.ObservePing).
	OnPing func(d time.Duration, err error)
	// FailureMode is the configured store failure mode (allow, deny, local), reported with store health.
	FailureMode string
	// Registry, if set, receives the host CPU and memory gauges and the store ping latency gauge.
	Registry prometheus.Registerer
	// MaxRules bounds the per-rule counters (default 1,000); further rules are counted under OtherRule.
	MaxRules int
	// SnapshotRules bounds the rules one Snapshot lists, the busiest first (default 100).
	SnapshotRules int
	// SubscriberBuffer is each subscriber's channel capacity (default 8); a subscriber whose channel is
	// full when a snapshot is published is dropped.
	SubscriberBuffer int
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Snapshot is one sample. The JSON field names are stable: the dashboard reads them.
type Snapshot struct {
	Time time.Time `json:"time"`
	// IntervalSeconds is the time the rates were measured over (since the previous sample).
	IntervalSeconds float64       `json:"interval_seconds"`
	Host            HostStats     `json:"host"`
	Process         ProcessStats  `json:"process"`
	Decisions       DecisionRates `json:"decisions_per_second"`
	// Rules lists the rules with decisions in the interval, the busiest first, at most SnapshotRules;
	// RulesOmitted counts the active rules left out.
	Rules        []RuleRates  `json:"rules"`
	RulesOmitted int          `json:"rules_omitted"`
	Latency      LatencyStats `json:"latency"`
	Store        StoreHealth  `json:"store"`
}

// DecisionRates are decisions per second by outcome. Allowed, Denied, Degraded and Invalid partition the
// decisions; Shadow counts the allowed decisions that carried a would-be denial (shadow mode).
type DecisionRates struct {
	Allowed  float64 `json:"allowed"`
	Denied   float64 `json:"denied"`
	Shadow   float64 `json:"shadow"`
	Degraded float64 `json:"degraded"`
	Invalid  float64 `json:"invalid"`
	Total    float64 `json:"total"`
}

// RuleRates are one rule's decisions per second. A decision counts once per rule it evaluated: denied if
// any limit of the rule denied it, shadow if one would have, else allowed. Degraded counts decisions the
// store failed for (under the local failure mode they are also counted by the fallback's answer).
type RuleRates struct {
	Domain   string  `json:"domain"`
	Rule     string  `json:"rule"`
	Allowed  float64 `json:"allowed"`
	Denied   float64 `json:"denied"`
	Shadow   float64 `json:"shadow"`
	Degraded float64 `json:"degraded"`
}

// LatencyStats are decision latency quantiles over the sliding window (nearest rank, ±6.25 %).
type LatencyStats struct {
	WindowSeconds float64 `json:"window_seconds"`
	Count         uint64  `json:"count"`
	P50Seconds    float64 `json:"p50_seconds"`
	P95Seconds    float64 `json:"p95_seconds"`
	P99Seconds    float64 `json:"p99_seconds"`
}

// StoreHealth is the result of the sample's store ping and the decision path's store errors.
type StoreHealth struct {
	// Configured is false when there is nothing to ping (the in-process store); Up is then true.
	Configured  bool    `json:"configured"`
	Up          bool    `json:"up"`
	PingSeconds float64 `json:"ping_seconds"`
	Error       string  `json:"error"`
	FailureMode string  `json:"failure_mode"`
	// ErrorsPerSecond counts decisions whose store call failed or timed out.
	ErrorsPerSecond float64 `json:"errors_per_second"`
}

type ruleKey struct{ domain, rule string }

type ruleCounters struct {
	allowed, denied, shadow, degraded atomic.Uint64
	prev                              [4]uint64 // last sampled values; only the sampling goroutine uses it
}

type subscriber struct{ ch chan Snapshot }

// Sampler samples host, process, decision and store figures every Interval and keeps their history.
// Observe is safe for concurrent use and cheap (atomic adds, no allocation once a rule has been seen);
// History, Latest and Subscribe are safe for concurrent use; Run is called once.
type Sampler struct {
	opts    SamplerOptions
	logger  *slog.Logger
	probe   *systemProbe
	latency *latencySketch

	allowed, denied, shadow, degraded, invalid, storeErrors atomic.Uint64
	prev                                                    [6]uint64

	rules   atomic.Pointer[map[ruleKey]*ruleCounters] // copy on write, under rulesMu
	rulesMu sync.Mutex

	hostCPU, hostMem, pingSeconds prometheus.Gauge

	// pinging is the answer channel of a ping still in flight; only the sampling goroutine uses it.
	pinging   chan pingResult
	pingStart time.Time

	mu     sync.RWMutex
	ring   []Snapshot
	head   int // index of the next write
	filled bool
	latest Snapshot
	last   time.Time // time of the previous sample (zero before the first)

	subMu   sync.Mutex
	subs    map[*subscriber]struct{}
	done    bool // Run has returned: new subscribers get a closed channel
	dropped atomic.Uint64
}

// NewSampler builds a Sampler and registers its gauges on opts.Registry.
func NewSampler(ctx context.Context, opts SamplerOptions) (*Sampler, error) {
	if opts.Interval <= 0 {
		opts.Interval = DefaultSampleInterval
	}
	if opts.History <= 0 {
		opts.History = DefaultSampleHistory
	}
	if opts.LatencyWindow <= 0 {
		opts.LatencyWindow = DefaultLatencyWindow
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = opts.Interval / 2
	}
	if opts.MaxRules <= 0 {
		opts.MaxRules = DefaultMaxRules
	}
	if opts.SnapshotRules <= 0 {
		opts.SnapshotRules = DefaultSnapshotRules
	}
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = DefaultSubscriberBuffer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	probe, err := newSystemProbe(ctx)
	if err != nil {
		return nil, err
	}
	size := int(min((opts.History+opts.Interval-1)/opts.Interval, MaxHistorySamples))
	window := int((opts.LatencyWindow + opts.Interval - 1) / opts.Interval)
	s := &Sampler{
		opts:    opts,
		logger:  logger,
		probe:   probe,
		latency: newLatencySketch(window),
		ring:    make([]Snapshot, size),
		subs:    make(map[*subscriber]struct{}),
		hostCPU: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_host_cpu_percent",
			Help: "Busy share of all the host's CPUs over the last sample interval, 0-100.",
		}),
		hostMem: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_host_memory_percent",
			Help: "Share of the host's physical memory in use, 0-100.",
		}),
		pingSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_store_ping_seconds",
			Help: "Latency of the last store health ping, failed or not (a timed-out ping reads as about the ping timeout).",
		}),
	}
	empty := make(map[ruleKey]*ruleCounters)
	s.rules.Store(&empty)
	if opts.Registry != nil {
		for _, c := range []prometheus.Collector{s.hostCPU, s.hostMem, s.pingSeconds} {
			if err := opts.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("register sampler gauges: %w", err)
			}
		}
	}
	return s, nil
}

// Observe implements extauthz.Observer: it counts the decision and its rules and records its latency.
// It does not retain o.
func (s *Sampler) Observe(o *extauthz.Observation) {
	s.latency.observe(o.Duration)
	switch o.Code {
	case extauthz.OutcomeOK:
		s.allowed.Add(1)
	case extauthz.OutcomeOverLimit:
		s.denied.Add(1)
	case extauthz.OutcomeDegraded:
		s.degraded.Add(1)
	case extauthz.OutcomeInvalid:
		s.invalid.Add(1)
	}
	if o.StoreErr != nil {
		s.storeErrors.Add(1)
	}
	domain := o.Domain
	if domain == "" {
		domain = "unknown"
	}
	degraded := o.Code == extauthz.OutcomeDegraded
	evaluated := !degraded || o.FailureMode == extauthz.FailLocal // allow/deny modes evaluated no limit
	shadowed := false
	rules := *s.rules.Load()
	// A rule with several limits has consecutive results; it counts once, by its worst outcome.
	for i := 0; i < len(o.Rules); {
		rule := o.Rules[i].Rule
		worst := 0 // 0 allowed, 1 shadow, 2 denied
		for ; i < len(o.Rules) && o.Rules[i].Rule == rule; i++ {
			r := &o.Rules[i]
			switch {
			case r.Result.Allowed || (r.Limit == nil && rule != nil && rule.Unlimited):
			case r.Shadow:
				worst = max(worst, 1)
			default:
				worst = 2
			}
		}
		if rule == nil {
			continue
		}
		c := rules[ruleKey{domain, rule.Name}]
		if c == nil {
			c = s.addRule(ruleKey{domain, rule.Name})
			rules = *s.rules.Load()
		}
		if degraded {
			c.degraded.Add(1)
		}
		if !evaluated {
			continue
		}
		switch worst {
		case 0:
			c.allowed.Add(1)
		case 1:
			c.shadow.Add(1)
			shadowed = true
		default:
			c.denied.Add(1)
		}
	}
	if shadowed && o.Code == extauthz.OutcomeOK {
		s.shadow.Add(1)
	}
}

// addRule returns the counters of k, creating them (or falling back to OtherRule past MaxRules).
func (s *Sampler) addRule(k ruleKey) *ruleCounters {
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	old := *s.rules.Load()
	if c := old[k]; c != nil {
		return c
	}
	if len(old) >= s.opts.MaxRules {
		k = ruleKey{"", OtherRule}
		if c := old[k]; c != nil {
			return c
		}
	}
	next := make(map[ruleKey]*ruleCounters, len(old)+1)
	for kk, c := range old {
		next[kk] = c
	}
	c := &ruleCounters{}
	next[k] = c
	s.rules.Store(&next)
	return c
}

// Run samples every Interval until ctx ends, then closes every subscriber's channel.
func (s *Sampler) Run(ctx context.Context) {
	defer s.closeSubscribers()
	defer s.waitPing()
	s.prime(ctx, s.opts.Now())
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample(ctx, s.opts.Now())
		}
	}
}

// prime takes the baseline the first sample's rates and CPU percentages are measured from.
func (s *Sampler) prime(ctx context.Context, now time.Time) {
	if _, _, err := s.probe.read(ctx, now); err != nil {
		s.logger.Warn("system sample", "err", err)
	}
	s.mu.Lock()
	s.last = now
	s.mu.Unlock()
	s.prev = [6]uint64{s.allowed.Load(), s.denied.Load(), s.shadow.Load(), s.degraded.Load(), s.invalid.Load(), s.storeErrors.Load()}
	for _, c := range *s.rules.Load() {
		c.prev = [4]uint64{c.allowed.Load(), c.denied.Load(), c.shadow.Load(), c.degraded.Load()}
	}
}

// sample takes one snapshot at time now, stores it and publishes it. Only Run's goroutine (or a test) calls it.
func (s *Sampler) sample(ctx context.Context, now time.Time) Snapshot {
	snap := Snapshot{Time: now, Rules: []RuleRates{}}
	snap.Store = s.pingStore(ctx)

	host, proc, err := s.probe.read(ctx, now)
	if err != nil {
		s.logger.Debug("system sample", "err", err)
	}
	snap.Host, snap.Process = host, proc

	s.mu.RLock()
	last := s.last
	s.mu.RUnlock()
	elapsed := now.Sub(last).Seconds()
	if last.IsZero() || elapsed <= 0 {
		elapsed = s.opts.Interval.Seconds()
	}
	snap.IntervalSeconds = elapsed

	cur := [6]uint64{s.allowed.Load(), s.denied.Load(), s.shadow.Load(), s.degraded.Load(), s.invalid.Load(), s.storeErrors.Load()}
	rate := func(i int) float64 { return float64(cur[i]-s.prev[i]) / elapsed }
	snap.Decisions = DecisionRates{Allowed: rate(0), Denied: rate(1), Shadow: rate(2), Degraded: rate(3), Invalid: rate(4)}
	snap.Decisions.Total = snap.Decisions.Allowed + snap.Decisions.Denied + snap.Decisions.Degraded + snap.Decisions.Invalid
	snap.Store.ErrorsPerSecond = rate(5)
	s.prev = cur

	for k, c := range *s.rules.Load() {
		rc := [4]uint64{c.allowed.Load(), c.denied.Load(), c.shadow.Load(), c.degraded.Load()}
		d := [4]uint64{rc[0] - c.prev[0], rc[1] - c.prev[1], rc[2] - c.prev[2], rc[3] - c.prev[3]}
		c.prev = rc
		if d == [4]uint64{} {
			continue
		}
		snap.Rules = append(snap.Rules, RuleRates{Domain: k.domain, Rule: k.rule,
			Allowed: float64(d[0]) / elapsed, Denied: float64(d[1]) / elapsed,
			Shadow: float64(d[2]) / elapsed, Degraded: float64(d[3]) / elapsed})
	}
	slices.SortFunc(snap.Rules, func(a, b RuleRates) int {
		ta, tb := a.Allowed+a.Denied+a.Shadow+a.Degraded, b.Allowed+b.Denied+b.Shadow+b.Degraded
		if c := cmp.Compare(tb, ta); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Domain, b.Domain), cmp.Compare(a.Rule, b.Rule))
	})
	if len(snap.Rules) > s.opts.SnapshotRules {
		snap.RulesOmitted = len(snap.Rules) - s.opts.SnapshotRules
		snap.Rules = slices.Clip(snap.Rules[:s.opts.SnapshotRules])
	}

	var q [3]time.Duration
	count := s.latency.rotate([]float64{0.50, 0.95, 0.99}, q[:])
	snap.Latency = LatencyStats{
		WindowSeconds: float64(s.latency.windowIntervals()) * s.opts.Interval.Seconds(),
		Count:         count,
		P50Seconds:    q[0].Seconds(), P95Seconds: q[1].Seconds(), P99Seconds: q[2].Seconds(),
	}

	s.hostCPU.Set(host.CPUPercent)
	s.hostMem.Set(host.MemoryPercent)

	s.mu.Lock()
	s.last = now
	s.ring[s.head] = snap
	s.head = (s.head + 1) % len(s.ring)
	if s.head == 0 {
		s.filled = true
	}
	s.latest = snap
	s.mu.Unlock()

	s.publish(snap)
	return snap
}

type pingResult struct {
	d   time.Duration
	err error
}

// pingStore pings the store, waiting at most PingTimeout. The ping runs in its own goroutine so that a
// pinger which ignores its context (a go-redis client without ContextTimeoutEnabled waits for its socket
// timeout, seconds) cannot stall the sampler; at most one ping is in flight, and while it is the store reads
// as down without a new one being started.
func (s *Sampler) pingStore(ctx context.Context) StoreHealth {
	h := StoreHealth{FailureMode: s.opts.FailureMode, Up: true}
	if s.opts.Ping == nil {
		return h
	}
	h.Configured = true
	if s.pinging != nil {
		select {
		case <-s.pinging: // the stalled ping ended; its late answer is stale
			s.pinging = nil
		default:
			h.Up = false
			h.PingSeconds = time.Since(s.pingStart).Seconds()
			h.Error = fmt.Sprintf("ping unanswered for %v", time.Since(s.pingStart).Round(time.Millisecond))
			s.reportPing(h, errPingPending)
			return h
		}
	}
	done := make(chan pingResult, 1)
	start := time.Now()
	s.pinging, s.pingStart = done, start
	// Ends when the pinger returns; its context is cancelled after PingTimeout, and Run waits for it.
	go func() {
		pctx, cancel := context.WithTimeout(ctx, s.opts.PingTimeout)
		defer cancel()
		err := s.opts.Ping(pctx)
		done <- pingResult{time.Since(start), err}
	}()
	timer := time.NewTimer(s.opts.PingTimeout + s.opts.PingTimeout/10)
	defer timer.Stop()
	var r pingResult
	select {
	case r = <-done:
		s.pinging = nil
	case <-timer.C:
		r = pingResult{time.Since(start), fmt.Errorf("ping: no answer within %v", s.opts.PingTimeout)}
	}
	h.PingSeconds = r.d.Seconds()
	if r.err != nil {
		h.Up = false
		h.Error = r.err.Error()
	}
	s.reportPing(h, r.err)
	return h
}

var errPingPending = errors.New("ping: previous ping still unanswered")

func (s *Sampler) reportPing(h StoreHealth, err error) {
	s.pingSeconds.Set(h.PingSeconds)
	if s.opts.OnPing != nil {
		s.opts.OnPing(time.Duration(h.PingSeconds*float64(time.Second)), err)
	}
}

// waitPing waits for a ping still in flight when Run ends (its context is already cancelled).
func (s *Sampler) waitPing() {
	if s.pinging != nil {
		<-s.pinging
		s.pinging = nil
	}
}

// History returns the kept snapshots, oldest first: at most History/Interval of them.
func (s *Sampler) History() []Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.filled {
		return slices.Clone(s.ring[:s.head])
	}
	out := make([]Snapshot, 0, len(s.ring))
	out = append(out, s.ring[s.head:]...)
	return append(out, s.ring[:s.head]...)
}

// Latest returns the most recent snapshot (the zero Snapshot before the first sample).
func (s *Sampler) Latest() Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.latest
}

// Subscribe returns a channel that receives each new snapshot, and a cancel func that unsubscribes and
// closes it (safe to call more than once). The channel holds SubscriberBuffer snapshots; a subscriber that
// lets it fill is dropped: its channel is closed without waiting for it. The channel is also closed when
// Run returns. Snapshots share their Rules slices: treat them as read-only.
func (s *Sampler) Subscribe() (<-chan Snapshot, func()) {
	sub := &subscriber{ch: make(chan Snapshot, s.opts.SubscriberBuffer)}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.done {
		close(sub.ch)
		return sub.ch, func() {}
	}
	s.subs[sub] = struct{}{}
	return sub.ch, func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		if _, ok := s.subs[sub]; ok {
			delete(s.subs, sub)
			close(sub.ch)
		}
	}
}

// DroppedSubscribers counts subscribers dropped for not keeping up.
func (s *Sampler) DroppedSubscribers() uint64 { return s.dropped.Load() }

func (s *Sampler) publish(snap Snapshot) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- snap:
		default:
			delete(s.subs, sub)
			close(sub.ch)
			s.dropped.Add(1)
			s.logger.Warn("telemetry subscriber dropped", "reason", "buffer full", "buffer", cap(sub.ch))
		}
	}
}

func (s *Sampler) closeSubscribers() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.done = true
	for sub := range s.subs {
		delete(s.subs, sub)
		close(sub.ch)
	}
}
