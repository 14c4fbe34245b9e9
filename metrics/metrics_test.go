package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/limiter"
)

func TestObserve(t *testing.T) {
	reg := NewRegistry()
	m := New(reg)
	user := &config.Rule{Name: "api.user"}
	internal := &config.Rule{Name: "api.internal", Unlimited: true}
	limit := &config.Limit{Name: "api.user"}

	m.Observe(&extauthz.Observation{Service: "ratelimit", Domain: "api", Duration: 300 * time.Microsecond, Code: extauthz.OutcomeOK,
		StoreDuration: 200 * time.Microsecond,
		Rules: []extauthz.RuleResult{
			{Rule: user, Limit: limit, Result: limiter.Result{Allowed: true, Remaining: 3}},
			{Rule: internal},
		}})
	m.Observe(&extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOverLimit,
		Rules: []extauthz.RuleResult{{Rule: user, Limit: limit, Result: limiter.Result{Allowed: false}}}})
	m.Observe(&extauthz.Observation{Service: "authz", Domain: "api", Code: extauthz.OutcomeOK,
		Rules: []extauthz.RuleResult{{Rule: user, Limit: limit, Shadow: true, Result: limiter.Result{Allowed: false}}}})
	// A store timeout under the allow mode: degraded, counted as a timeout, no rule outcome invented.
	m.Observe(&extauthz.Observation{Service: "authz", Domain: "", Code: extauthz.OutcomeDegraded, FailureMode: "allow",
		StoreErr: fmt.Errorf("redis decide: %w", context.DeadlineExceeded),
		Rules:    []extauthz.RuleResult{{Rule: user, Limit: limit}}})
	m.Observe(&extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeDegraded, FailureMode: "deny",
		StoreErr: errors.New("connection refused")})
	// go-redis reports a socket deadline as a net.Error, not as context.DeadlineExceeded.
	m.Observe(&extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeDegraded, FailureMode: "deny",
		StoreErr: fmt.Errorf("redis decide: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})})

	tests := []struct {
		name string
		give float64
		want float64
	}{
		{"ok decisions", testutil.ToFloat64(m.decisions.WithLabelValues("ratelimit", "api", "ok")), 1},
		{"over-limit decisions", testutil.ToFloat64(m.decisions.WithLabelValues("ratelimit", "api", "over_limit")), 1},
		{"unknown domain", testutil.ToFloat64(m.decisions.WithLabelValues("authz", "unknown", "degraded")), 1},
		{"rule ok", testutil.ToFloat64(m.ruleDecisions.WithLabelValues("api", "api.user", "ok")), 1},
		{"rule over", testutil.ToFloat64(m.ruleDecisions.WithLabelValues("api", "api.user", "over_limit")), 1},
		{"rule shadow", testutil.ToFloat64(m.ruleDecisions.WithLabelValues("api", "api.user", "shadow_over_limit")), 1},
		{"rule unlimited", testutil.ToFloat64(m.ruleDecisions.WithLabelValues("api", "api.internal", "unlimited")), 1},
		{"degraded allow", testutil.ToFloat64(m.degraded.WithLabelValues("authz", "allow")), 1},
		{"degraded deny", testutil.ToFloat64(m.degraded.WithLabelValues("ratelimit", "deny")), 2},
		{"store timeout", testutil.ToFloat64(m.storeErrors.WithLabelValues("timeout")), 2},
		{"store error", testutil.ToFloat64(m.storeErrors.WithLabelValues("error")), 1},
	}
	for _, tt := range tests {
		if tt.give != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.give, tt.want)
		}
	}
	// The degraded allow observation carried a rule but no result: nothing may be counted as over_limit for it.
	if got := testutil.CollectAndCount(m.ruleDecisions); got != 4 {
		t.Errorf("rule series: got %d, want 4", got)
	}
}

// TestSeriesBounded: many distinct clients and descriptor values never create series (B43's kind).
func TestSeriesBounded(t *testing.T) {
	reg := NewRegistry()
	m := New(reg)
	rule := &config.Rule{Name: "api.remote_address"}
	limit := &config.Limit{Name: "api.remote_address"}
	observe := func(n int) int {
		for i := 0; i < n; i++ {
			m.Observe(&extauthz.Observation{Service: "authz", Domain: "api", Code: extauthz.OutcomeOK,
				ClientIP: fmt.Sprintf("198.51.%d.%d", i/256, i%256), Path: fmt.Sprintf("/u/%d", i),
				Rules: []extauthz.RuleResult{{Rule: rule, Limit: limit, Result: limiter.Result{Allowed: true}}}})
		}
		count, err := testutil.GatherAndCount(reg)
		if err != nil {
			t.Fatal(err)
		}
		return count
	}
	before := observe(10)
	after := observe(20000)
	if after != before {
		t.Errorf("series grew with distinct clients: %d before, %d after", before, after)
	}
	out, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range out {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if strings.HasPrefix(l.GetValue(), "198.51.") || strings.HasPrefix(l.GetValue(), "/u/") {
					t.Fatalf("%s carries a request value as label %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestTrackEntriesAndConfig(t *testing.T) {
	reg := NewRegistry()
	m := New(reg)
	n := 7
	m.TrackEntries("memory", func() int { return n })
	m.SetConfig(config.Info{Version: 42, LoadedAt: time.Unix(1700000000, 0)})
	m.ObservePing(time.Millisecond, nil)
	want := `
# HELP floodgate_local_entries Entries held by an in-process store.
# TYPE floodgate_local_entries gauge
floodgate_local_entries{store="memory"} 7
# HELP floodgate_config_version Version of the limits configuration in force.
# TYPE floodgate_config_version gauge
floodgate_config_version 42
# HELP floodgate_store_up 1 when the last store health ping succeeded.
# TYPE floodgate_store_up gauge
floodgate_store_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "floodgate_local_entries", "floodgate_config_version", "floodgate_store_up"); err != nil {
		t.Error(err)
	}
	m.ObservePing(time.Millisecond, errors.New("down"))
	if got := testutil.ToFloat64(m.storeUp); got != 0 {
		t.Errorf("store_up after a failed ping: got %v, want 0", got)
	}
}

// The store error and degraded-decision counters exist at 0 before the first failure, so that an alert on
// their rate has a series to work on from the first scrape.
func TestFailureCountersStartAtZero(t *testing.T) {
	reg := NewRegistry()
	New(reg)
	if n := testutil.CollectAndCount(reg, "floodgate_store_errors_total"); n != 2 {
		t.Errorf("floodgate_store_errors_total: %d series before any error, want 2 (timeout, error)", n)
	}
	if n := testutil.CollectAndCount(reg, "floodgate_degraded_decisions_total"); n != 6 {
		t.Errorf("floodgate_degraded_decisions_total: %d series before any outage, want 6 (2 services × 3 modes)", n)
	}
}
