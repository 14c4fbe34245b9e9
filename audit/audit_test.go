package audit

import (
	"context"
	"fmt"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
)

func TestBound(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "short", give: "alice", want: "alice"},
		{name: "exactly max", give: strings.Repeat("b", MaxValueBytes), want: strings.Repeat("b", MaxValueBytes)},
		{name: "invalid utf8", give: "a\xffb", want: `a\xffb`},
		{name: "NUL", give: "a\x00b", want: `a\x00b`},
		{name: "long", give: long, want: strings.Repeat("a", MaxValueBytes-len("…sha256:")-16) + "…sha256:" + sha16(long)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Bound(tt.give)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(got) > MaxValueBytes {
				t.Errorf("got %d bytes, want at most %d", len(got), MaxValueBytes)
			}
		})
	}
	// Two long values differing only at the end stay distinct.
	if Bound(long+"x") == Bound(long+"y") {
		t.Error("got equal bounded values for different long inputs")
	}
	// A cut never splits a rune.
	if got := Bound(strings.Repeat("é", 200)); !utf8Valid(got) {
		t.Errorf("got invalid UTF-8 %q", got)
	}
}

func TestIDsMonotonic(t *testing.T) {
	var g idGen
	base := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	var prev string
	for i := range 5000 {
		at := base.Add(time.Duration(i%7) * time.Millisecond / 2) // repeats and small steps back
		if i%1000 == 999 {
			base = base.Add(time.Second)
		}
		id := g.next(at)
		if len(id) != 26 {
			t.Fatalf("got id %q of %d chars, want 26", id, len(id))
		}
		if id <= prev {
			t.Fatalf("id %d: got %s after %s, want strictly increasing", i, id, prev)
		}
		prev = id
	}
	id := (&idGen{}).next(base)
	got, ok := ulidTime(id)
	if !ok || !got.Equal(base) {
		t.Errorf("got time %v (%v) from %s, want %v", got, ok, id, base)
	}
}

// N denials at moderate load reach the ring, the Redis stream and PostgreSQL exactly once each, in id
// order, with no drops.
func TestCompleteness(t *testing.T) {
	db := newTestDB(t)
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t)
	reg := prometheus.NewRegistry()
	r, err := New(Options{Replica: "r1", DB: db.pool(t, ""), Redis: rdb, StreamPrefix: prefix, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	const workers, per = 4, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				r.Observe(denial(fmt.Sprintf("192.0.2.%d", (w*per+i)%250)))
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // moderate load
				}
			}
		})
	}
	wg.Wait()
	const n = workers * per
	eventually(t, 20*time.Second, "all rows", func() bool { return db.count(t) == n })
	ring := r.Recent(n + 10)
	if len(ring) != n {
		t.Fatalf("got %d events in the ring, want %d", len(ring), n)
	}
	ringIDs := make([]string, n)
	for i, e := range ring {
		ringIDs[i] = e.ID
	}
	if !slices.IsSorted(ringIDs) {
		t.Error("ring events not in id order")
	}
	if got := db.ids(t); !slices.Equal(got, ringIDs) {
		t.Errorf("PostgreSQL ids differ from the ring's: got %d rows", len(got))
	}
	ctx := context.Background()
	eventually(t, 10*time.Second, "stream entries", func() bool {
		return len(streamEvents(t, rdb, r.streamKey)) == n
	})
	var streamIDs []string
	for _, e := range streamEvents(t, rdb, r.streamKey) {
		streamIDs = append(streamIDs, e.ID)
	}
	if !slices.Equal(streamIDs, ringIDs) {
		t.Errorf("stream ids differ from the ring's (%d entries)", len(streamIDs))
	}
	st := r.Stats()
	want := Stats{Denials: n, Queued: n, Processed: n, StreamWritten: n, PostgresWritten: n}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(counterWith(t, reg, "floodgate_audit_dropped_total", "queue")); got != 0 {
		t.Errorf("got floodgate_audit_dropped_total %v, want 0", got)
	}
	// The row round-trips through Query.
	rows, err := r.Query(ctx, Filter{Client: "192.0.2.7", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3", len(rows))
	}
	byID := map[string]Event{}
	for _, e := range ring {
		byID[e.ID] = e
	}
	for _, got := range rows {
		wantE := byID[got.ID]
		wantE.RetryAfter = wantE.RetryAfter.Truncate(time.Millisecond)
		if diff := cmp.Diff(wantE, got); diff != "" {
			t.Errorf("row %s (-ring +row):\n%s", got.ID, diff)
		}
	}
	if !(rows[0].ID > rows[1].ID) {
		t.Errorf("got ids %s, %s, want newest first", rows[0].ID, rows[1].ID)
	}
}

// Under an overload of a tiny queue the dropped counter equals the events missing, exactly.
func TestOverloadDropsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, err := New(Options{QueueSize: 8, RingSize: 200000, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	const workers, per = 4, 20000
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			o := denial("203.0.113.9")
			for range per {
				r.Observe(o)
			}
		})
	}
	wg.Wait()
	stop()
	st := r.Stats()
	got := len(r.Recent(workers * per))
	if st.Dropped == 0 {
		t.Fatalf("got 0 drops, want a flood of %d to overflow a queue of 8", workers*per)
	}
	if uint64(got)+st.Dropped != workers*per {
		t.Errorf("got %d events + %d dropped = %d, want %d", got, st.Dropped, uint64(got)+st.Dropped, workers*per)
	}
	if m := testutil.ToFloat64(counterWith(t, reg, "floodgate_audit_dropped_total", "queue")); uint64(m) != st.Dropped {
		t.Errorf("got metric %v, want %d", m, st.Dropped)
	}
	t.Logf("flood of %d: %d recorded, %d dropped", workers*per, got, st.Dropped)
}

// Outages and OK decisions produce no events; shadow would-be denials are flagged; a local-fallback
// denial during an outage is flagged degraded.
func TestWhichObservationsAreRecorded(t *testing.T) {
	lim := &config.Limit{Limit: limiter.Limit{Algorithm: limiter.SlidingWindow, Requests: 3, Window: time.Second}, Name: "n"}
	rule := &config.Rule{Name: "api.user"}
	denied := limiter.Result{Allowed: false, RetryAfter: time.Second}
	tests := []struct {
		name string
		give extauthz.Observation
		want []Event // ID, Time and Replica ignored
	}{
		{name: "ok", give: extauthz.Observation{Code: extauthz.OutcomeOK,
			Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim, Result: limiter.Result{Allowed: true}}}}},
		{name: "outage allow", give: extauthz.Observation{Code: extauthz.OutcomeDegraded, FailureMode: "allow",
			StoreErr: context.DeadlineExceeded, Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim}}}},
		{name: "outage deny", give: extauthz.Observation{Code: extauthz.OutcomeDegraded, FailureMode: "deny",
			StoreErr: context.DeadlineExceeded, Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim}}}},
		{name: "invalid", give: extauthz.Observation{Code: extauthz.OutcomeInvalid}},
		{name: "over limit", give: extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOverLimit,
			Rules: []extauthz.RuleResult{{Rule: &config.Rule{Name: "free", Unlimited: true}, Result: limiter.Result{Allowed: true}},
				{Rule: rule, Limit: lim, Result: denied}}},
			want: []Event{{Kind: KindDenial, Service: "ratelimit", Domain: "api", Rule: "api.user",
				Limit: Limit{Name: "n", Requests: 3, Window: time.Second, Algorithm: "sliding_window"}, RetryAfter: time.Second}}},
		{name: "shadow would-be denial", give: extauthz.Observation{Service: "authz", Domain: "edge", Code: extauthz.OutcomeOK,
			Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim, Result: denied, Shadow: true}}, ClientIP: "198.51.100.1"},
			want: []Event{{Kind: KindDenial, Service: "authz", Domain: "edge", Rule: "api.user", ClientIP: "198.51.100.1",
				Limit: Limit{Name: "n", Requests: 3, Window: time.Second, Algorithm: "sliding_window"}, RetryAfter: time.Second, Shadow: true}}},
		{name: "rls denial carries its descriptor's entries and the config version", give: extauthz.Observation{
			Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOverLimit, ConfigVersion: 7,
			RLSDescriptors: []*ratelimitv3.RateLimitDescriptor{
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "plan", Value: "free"}}},
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "u\xff1"}, {Key: "path", Value: "/x"}}},
			},
			Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim, Result: denied, Descriptor: 1}}},
			want: []Event{{Kind: KindDenial, Service: "ratelimit", Domain: "api", Rule: "api.user", ConfigVersion: 7,
				Entries: []Entry{{Key: "user", Value: `u\xff1`}, {Key: "path", Value: "/x"}},
				Limit:   Limit{Name: "n", Requests: 3, Window: time.Second, Algorithm: "sliding_window"}, RetryAfter: time.Second}}},
		{name: "rls denial: the client is the remote_address entry (denied descriptor first)", give: extauthz.Observation{
			Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOverLimit,
			RLSDescriptors: []*ratelimitv3.RateLimitDescriptor{
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.1"}}},
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.77"}, {Key: "path", Value: "/x"}}},
			},
			Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim, Result: denied, Descriptor: 1}}},
			want: []Event{{Kind: KindDenial, Service: "ratelimit", Domain: "api", Rule: "api.user", ClientIP: "192.0.2.77",
				Entries: []Entry{{Key: "remote_address", Value: "192.0.2.77"}, {Key: "path", Value: "/x"}},
				Limit:   Limit{Name: "n", Requests: 3, Window: time.Second, Algorithm: "sliding_window"}, RetryAfter: time.Second}}},
		{name: "rls denial: a remote_address entry of another descriptor", give: extauthz.Observation{
			Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOverLimit,
			RLSDescriptors: []*ratelimitv3.RateLimitDescriptor{
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.1"}}},
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "u1"}}},
			},
			Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim, Result: denied, Descriptor: 1}}},
			want: []Event{{Kind: KindDenial, Service: "ratelimit", Domain: "api", Rule: "api.user", ClientIP: "192.0.2.1",
				Entries: []Entry{{Key: "user", Value: "u1"}},
				Limit:   Limit{Name: "n", Requests: 3, Window: time.Second, Algorithm: "sliding_window"}, RetryAfter: time.Second}}},
		{name: "local fallback denial", give: extauthz.Observation{Service: "authz", Domain: "edge", Code: extauthz.OutcomeOverLimit,
			StoreErr: context.DeadlineExceeded, FailureMode: "local",
			Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim, Result: denied}}},
			want: []Event{{Kind: KindDenial, Service: "authz", Domain: "edge", Rule: "api.user",
				Limit: Limit{Name: "n", Requests: 3, Window: time.Second, Algorithm: "sliding_window"}, RetryAfter: time.Second, Degraded: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(Options{Replica: "r"})
			if err != nil {
				t.Fatal(err)
			}
			stop := start(t, r)
			o := tt.give
			r.Observe(&o)
			stop()
			got := r.Recent(10)
			for i := range got {
				got[i].ID, got[i].Time, got[i].Replica = "", time.Time{}, ""
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// A slow subscriber is dropped (its channel closed) without blocking the pipeline; others keep receiving.
func TestSlowSubscriberDropped(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	slow, cancelSlow := r.Subscribe(1)
	defer cancelSlow()
	fast, cancelFast := r.Subscribe(100)
	defer cancelFast()
	for range 10 {
		r.Observe(denial("192.0.2.1"))
	}
	for i := range 10 {
		select {
		case <-fast:
		case <-time.After(5 * time.Second):
			t.Fatalf("fast subscriber got %d events, want 10", i)
		}
	}
	n := 0
	for range slow {
		n++
	}
	if n != 1 {
		t.Errorf("slow subscriber got %d events before being dropped, want 1", n)
	}
}

// Two replicas sharing Redis: each live feed sees its own and the other's events exactly once.
func TestTwoReplicasShareFeed(t *testing.T) {
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t)
	a, err := New(Options{Replica: "a", Redis: rdb, StreamPrefix: prefix, FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Replica: "b", Redis: rdb, StreamPrefix: prefix, FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	feedA, cancelA := a.Subscribe(1000)
	defer cancelA()
	feedB, cancelB := b.Subscribe(1000)
	defer cancelB()
	start(t, a)
	start(t, b)
	time.Sleep(300 * time.Millisecond) // let both tailers find the stream's end
	for range 100 {
		a.Observe(denial("198.51.100.1"))
	}
	for range 50 {
		b.Observe(denial("198.51.100.2"))
	}
	collect := func(feed <-chan Event) map[string]int {
		got := map[string]int{}
		timeout := time.After(10 * time.Second)
		for n := 0; n < 150; n++ {
			select {
			case e := <-feed:
				got[e.Replica]++
			case <-timeout:
				return got
			}
		}
		return got
	}
	want := map[string]int{"a": 100, "b": 50}
	if diff := cmp.Diff(want, collect(feedA)); diff != "" {
		t.Errorf("replica a's feed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, collect(feedB)); diff != "" {
		t.Errorf("replica b's feed (-want +got):\n%s", diff)
	}
	// Top offenders are fleet-wide.
	top := b.TopOffenders(time.Minute, 2)
	wantTop := []Count{{Key: "198.51.100.1", Count: 100}, {Key: "198.51.100.2", Count: 50}}
	if diff := cmp.Diff(wantTop, top.Clients); diff != "" {
		t.Errorf("top clients (-want +got):\n%s", diff)
	}
}

// PostgreSQL is down when the recorder starts: events are buffered, then written when it comes back,
// none lost.
func TestPostgresDownAtStart(t *testing.T) {
	db := newTestDB(t)
	proxy := newDelayProxy(t, "127.0.0.1:5432", 0)
	proxy.SetDown(true)
	r, err := New(Options{DB: db.pool(t, proxy.Addr()), FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	const n = 3000
	for i := range n {
		r.Observe(denial(fmt.Sprintf("192.0.2.%d", i%200)))
	}
	eventually(t, 10*time.Second, "a failed write", func() bool { return r.Stats().PostgresErrors >= 2 })
	if got := r.Stats().PostgresPending; got != n {
		t.Fatalf("got %d pending, want %d buffered while PostgreSQL is down", got, n)
	}
	proxy.SetDown(false)
	eventually(t, 15*time.Second, "rows after recovery", func() bool { return db.count(t) == n })
	st := r.Stats()
	if st.PostgresDropped != 0 || st.Dropped != 0 || st.PostgresWritten != n {
		t.Errorf("got %+v, want %d written and nothing dropped", st, n)
	}
}

// Past PostgresBuffer events are dropped for PostgreSQL only, and counted.
func TestPostgresBufferBound(t *testing.T) {
	db := newTestDB(t)
	proxy := newDelayProxy(t, "127.0.0.1:5432", 0)
	proxy.SetDown(true)
	r, err := New(Options{DB: db.pool(t, proxy.Addr()), PostgresBuffer: 100, FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	for range 150 {
		r.Observe(denial("192.0.2.1"))
	}
	eventually(t, 5*time.Second, "drops", func() bool { return r.Stats().PostgresDropped == 50 })
	proxy.SetDown(false)
	eventually(t, 15*time.Second, "rows after recovery", func() bool { return db.count(t) == 100 })
	if got := len(r.Recent(1000)); got != 150 {
		t.Errorf("got %d events in the ring, want 150", got)
	}
}

func TestTopOffendersWindows(t *testing.T) {
	now := time.Date(2030, 1, 1, 10, 0, 30, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	r, err := New(Options{Now: clock, TopK: 16})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	base := now
	// 10 minutes ago: c1 ×30; 3 minutes ago: c2 ×20; now: c3 ×10.
	for _, step := range []struct {
		ago    time.Duration
		client string
		n      int
	}{{10 * time.Minute, "c1", 30}, {3 * time.Minute, "c2", 20}, {0, "c3", 10}} {
		set(base.Add(-step.ago))
		for range step.n {
			r.Observe(denial(step.client))
		}
	}
	set(base)
	stop()
	tests := []struct {
		window time.Duration
		want   []Count
	}{
		{time.Minute, []Count{{Key: "c3", Count: 10}}},
		{5 * time.Minute, []Count{{Key: "c2", Count: 20}, {Key: "c3", Count: 10}}},
		{15 * time.Minute, []Count{{Key: "c1", Count: 30}, {Key: "c2", Count: 20}, {Key: "c3", Count: 10}}},
	}
	for _, tt := range tests {
		got := r.TopOffenders(tt.window, 5)
		if diff := cmp.Diff(tt.want, got.Clients); diff != "" {
			t.Errorf("window %s clients (-want +got):\n%s", tt.window, diff)
		}
		if got.Rules[0].Key != "api.user" {
			t.Errorf("window %s: got top rule %v, want api.user", tt.window, got.Rules)
		}
	}
}
