package extauthz

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/floodgate/floodgate/limiter"
)

const rlsLimits = `
domain: api
descriptors:
  - key: user
    rate_limit:
      unit: minute
      requests_per_unit: 3
  - key: five
    rate_limit:
      unit: minute
      requests_per_unit: 5
  - key: api_key
    rate_limit:
      unit: minute
      requests_per_unit: 5
  - key: unl
    rate_limit:
      unlimited: true
  - key: group
    value: bar
    rate_limit:
      unit: minute
      requests_per_unit: 10
    descriptors:
      - key: route
        value: special
        rate_limit:
          unit: minute
          requests_per_unit: 3
  - key: shadowed
    shadow_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: a_b
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: a
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: tier
    value: basic
    rate_limit:
      name: basic
      unit: minute
      requests_per_unit: 1
  - key: plan
    value: vip
    rate_limit:
      name: vip
      unit: minute
      requests_per_unit: 100
      replaces:
        - name: basic
  - key: multi
    rate_limits:
      - unit: minute
        requests_per_unit: 10
      - name: multi_hour
        unit: hour
        requests_per_unit: 4
  - key: five_per_5s
    rate_limit:
      unit: second
      unit_multiplier: 5
      requests_per_unit: 5
  - key: one_per_s
    rate_limit:
      unit: second
      requests_per_unit: 1
  - key: two_per_s
    rate_limit:
      unit: second
      requests_per_unit: 2
`

// rlsKey is the counter key the service builds for limit idx of a descriptor (kv pairs) of domain.
func rlsKey(domain string, idx int, kv ...string) string {
	d := desc(kv...)
	b := appendDescriptorKey(nil, domain, d.GetEntries(), nil)
	return finishKey(appendIndex(b, idx))
}

// counter reads the count field of a fixed window counter in Redis (0 when absent).
func (b *backend) counter(t testing.TB, window time.Duration, key string) int64 {
	t.Helper()
	sk := limiter.StorageKey(b.prefix, limiter.Hit{Key: key,
		Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 1, Window: window}})
	v, err := b.client.HGet(context.Background(), sk, "a").Result()
	if err != nil {
		if err.Error() == "redis: nil" {
			return 0
		}
		t.Fatalf("hget %s: %v", sk, err)
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("counter %s = %q: %v", sk, v, err)
	}
	return int64(n)
}

func code(r *rlsv3.RateLimitResponse, i int) rlsv3.RateLimitResponse_Code {
	return r.GetStatuses()[i].GetCode()
}

func TestShouldRateLimitShape(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Minute, 500*time.Millisecond, 3*time.Second)
		resp := h.callRLS(t, rlsReq("api", desc("user", "u1"), desc("unl", "x"), desc("nomatch", "z")))

		reset := resp.GetStatuses()[0].GetDurationUntilReset().AsDuration()
		if reset <= 0 || reset > time.Minute {
			t.Errorf("got duration_until_reset %s, want (0, 1m]", reset)
		}
		want := &rlsv3.RateLimitResponse{
			OverallCode: rlsv3.RateLimitResponse_OK,
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
				{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{
					Name: "api.user", RequestsPerUnit: 3, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
					LimitRemaining: 2, DurationUntilReset: durationpb.New(reset)},
				{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: math.MaxUint32},
				{Code: rlsv3.RateLimitResponse_OK},
			},
			ResponseHeadersToAdd: []*corev3.HeaderValue{
				{Key: "RateLimit-Policy", Value: `"api.user";q=3;w=60`},
				{Key: "RateLimit", Value: `"api.user";r=2;t=` + strconv.FormatInt(ceilSeconds(reset, 0), 10)},
			},
		}
		if b.clock != nil && reset != 59500*time.Millisecond {
			t.Errorf("got duration_until_reset %s on the fake clock, want 59.5s", reset)
		}
		if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
			t.Errorf("response (-want +got):\n%s", diff)
		}
		if got := h.store.decides.Load(); got != 1 {
			t.Errorf("got %d store calls, want 1 (one per request)", got)
		}

		// Unlimited and unmatched descriptors never reach the store.
		resp = h.callRLS(t, rlsReq("api", desc("unl", "y"), desc("nomatch", "z")))
		if got := h.store.decides.Load(); got != 1 {
			t.Errorf("got %d store calls after an unlimited-only request, want still 1", got)
		}
		if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || resp.GetStatuses()[0].GetLimitRemaining() != math.MaxUint32 {
			t.Errorf("unlimited: got %v", resp)
		}
		if len(resp.GetResponseHeadersToAdd()) != 0 {
			t.Errorf("unlimited: got headers %v, want none", resp.GetResponseHeadersToAdd())
		}
		o := h.obs.last(t)
		if o.Code != OutcomeOK || o.Domain != "api" || len(o.Rules) != 1 || !o.Rules[0].Rule.Unlimited {
			t.Errorf("unlimited observation: got %+v", o)
		}
	})
}

// B19: hits_addend 0 at request level means 1; a present per-descriptor wrapper wins, 0 = check only.
func TestHitsAddendB19(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		key := rlsKey("api", 0, "user", "u1")
		step := func(name string, req *rlsv3.RateLimitRequest, wantCode rlsv3.RateLimitResponse_Code, wantRem uint32) {
			t.Helper()
			resp := h.callRLS(t, req)
			if resp.GetOverallCode() != wantCode || code(resp, 0) != wantCode {
				t.Errorf("%s: got overall %v status %v, want %v", name, resp.GetOverallCode(), code(resp, 0), wantCode)
			}
			if got := resp.GetStatuses()[0].GetLimitRemaining(); got != wantRem {
				t.Errorf("%s: got remaining %d, want %d", name, got, wantRem)
			}
		}
		step("1a unset", rlsReq("api", desc("user", "u1")), rlsv3.RateLimitResponse_OK, 2)
		step("1b unset", rlsReq("api", desc("user", "u1")), rlsv3.RateLimitResponse_OK, 1)
		for i := range 5 {
			step("2 wrapper 0 #"+strconv.Itoa(i), rlsReq("api", withHits(desc("user", "u1"), 0)), rlsv3.RateLimitResponse_OK, 1)
		}
		if b.client != nil {
			if got := b.counter(t, time.Minute, key); got != 2 {
				t.Errorf("after check-only calls: got redis counter %d, want 2", got)
			}
		}
		req := rlsReq("api", desc("user", "u1"))
		req.HitsAddend = 0
		step("3 request-level 0", req, rlsv3.RateLimitResponse_OK, 0)
		step("4 wrapper 0 at the limit", rlsReq("api", withHits(desc("user", "u1"), 0)), rlsv3.RateLimitResponse_OK, 0)
		if b.client != nil {
			if got := b.counter(t, time.Minute, key); got != 3 {
				t.Errorf("before step 5: got redis counter %d, want 3", got)
			}
		}
		step("5 unset", rlsReq("api", desc("user", "u1")), rlsv3.RateLimitResponse_OVER_LIMIT, 0)
		if b.client != nil {
			if got := b.counter(t, time.Minute, key); got != 3 {
				t.Errorf("after the denial: got redis counter %d, want 3", got)
			}
		}
	})
}

// B20: is_negative_hits refunds, also at remaining 0, and never below empty.
func TestNegativeHitsB20(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		hit := func(user string) rlsv3.RateLimitResponse_Code {
			return h.callRLS(t, rlsReq("api", desc("five", user))).GetOverallCode()
		}
		refund := func(user string, n uint64) rlsv3.RateLimitResponse_Code {
			d := withHits(desc("five", user), n)
			d.IsNegativeHits = true
			return h.callRLS(t, rlsReq("api", d)).GetOverallCode()
		}
		var got []rlsv3.RateLimitResponse_Code
		for range 6 {
			got = append(got, hit("u1"))
		}
		got = append(got, refund("u1", 2))
		for range 3 {
			got = append(got, hit("u1"))
		}
		got = append(got, refund("u2", 10))
		if b.client != nil {
			if c := b.counter(t, time.Minute, rlsKey("api", 0, "five", "u2")); c != 0 {
				t.Errorf("u2 after refund 10: got counter %d, want 0", c)
			}
		}
		for range 6 {
			got = append(got, hit("u2"))
		}
		const ok, over = rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT
		want := []rlsv3.RateLimitResponse_Code{ok, ok, ok, ok, ok, over, ok, ok, ok, over, ok, ok, ok, ok, ok, ok, over}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("codes (-want +got):\n%s", diff)
		}
		if b.client != nil {
			if c := b.counter(t, time.Minute, rlsKey("api", 0, "five", "u1")); c != 5 {
				t.Errorf("u1: got counter %d, want 5", c)
			}
		}
	})
}

// B21: a request denied by one descriptor consumes nothing of the others.
func TestAllOrNothingB21(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		special, other := 0, 0
		for range 5 {
			resp := h.callRLS(t, rlsReq("api", desc("group", "bar"), desc("group", "bar", "route", "special")))
			if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
				special++
			} else if code(resp, 0) != rlsv3.RateLimitResponse_OK || code(resp, 1) != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Errorf("denied special call: got statuses %v, want [OK OVER_LIMIT]", resp.GetStatuses())
			}
		}
		for range 8 {
			if h.callRLS(t, rlsReq("api", desc("group", "bar"))).GetOverallCode() == rlsv3.RateLimitResponse_OK {
				other++
			}
		}
		if special != 3 || other != 7 {
			t.Errorf("got special %d OK and other %d OK, want 3 and 7", special, other)
		}
		if got := h.store.decides.Load(); got != 13 {
			t.Errorf("got %d store calls, want 13 (one per request)", got)
		}
		if b.client != nil {
			g := b.counter(t, time.Minute, rlsKey("api", 0, "group", "bar"))
			s := b.counter(t, time.Minute, rlsKey("api", 0, "group", "bar", "route", "special"))
			if g != 10 || s != 3 {
				t.Errorf("got redis counters group %d special %d, want 10 and 3", g, s)
			}
		}
	})
}

func TestShadow(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		t.Run("rule", func(t *testing.T) {
			h := serve(t, b, rlsLimits, nil)
			b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
			for i := range 3 {
				resp := h.callRLS(t, rlsReq("api", desc("shadowed", "s1")))
				if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || code(resp, 0) != rlsv3.RateLimitResponse_OK {
					t.Errorf("call %d: got %v, want OK", i, resp)
				}
				if len(resp.GetResponseHeadersToAdd()) > 0 || len(resp.GetRawBody()) > 0 {
					t.Errorf("call %d: a shadow-only response sent headers %v or a body", i, resp.GetResponseHeadersToAdd())
				}
				o := h.obs.last(t)
				wouldDeny := i > 0
				if o.Code != OutcomeOK || len(o.Rules) != 1 || !o.Rules[0].Shadow || o.Rules[0].Result.Allowed == wouldDeny {
					t.Errorf("call %d: got observation %+v, want shadow with would-be denial %v", i, o, wouldDeny)
				}
			}
		})
		t.Run("global", func(t *testing.T) {
			h := serve(t, b, rlsLimits, func(o *Options) { o.Shadow = true })
			b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
			denied := 0
			for i := range 5 {
				resp := h.callRLS(t, rlsReq("api", desc("user", "g1")))
				if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
					t.Errorf("call %d: got %v, want OK under global shadow", i, resp.GetOverallCode())
				}
				if r := h.obs.last(t).Rules[0]; r.Shadow && !r.Result.Allowed {
					denied++
				}
			}
			if denied != 2 {
				t.Errorf("got %d would-be denials, want 2", denied)
			}
		})
	})
}

func TestReplaces(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		for i := range 3 {
			resp := h.callRLS(t, rlsReq("api", desc("tier", "basic"), desc("plan", "vip")))
			if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Errorf("call %d: got %v, want OK (basic replaced by vip)", i, resp.GetOverallCode())
			}
			if cl := resp.GetStatuses()[0].GetCurrentLimit(); cl != nil {
				t.Errorf("call %d: replaced descriptor reports %v, want no current_limit", i, cl)
			}
			if got := resp.GetStatuses()[1].GetCurrentLimit().GetName(); got != "vip" {
				t.Errorf("call %d: got limit %q, want vip", i, got)
			}
		}
		var got []rlsv3.RateLimitResponse_Code
		for range 2 {
			got = append(got, h.callRLS(t, rlsReq("api", desc("tier", "basic"))).GetOverallCode())
		}
		want := []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("basic alone (-want +got):\n%s", diff)
		}
	})
}

// Several limits on one descriptor: the status shows the most constrained one.
func TestSeveralLimits(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Hour, 100*time.Millisecond, 3*time.Second)
		var rem []uint32
		var names []string
		for range 5 {
			resp := h.callRLS(t, rlsReq("api", desc("multi", "m1")))
			rem = append(rem, resp.GetStatuses()[0].GetLimitRemaining())
			names = append(names, resp.GetStatuses()[0].GetCurrentLimit().GetName())
			if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT && code(resp, 0) != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Errorf("status code %v on an OVER_LIMIT response", code(resp, 0))
			}
		}
		if diff := cmp.Diff([]uint32{3, 2, 1, 0, 0}, rem); diff != "" {
			t.Errorf("remaining (-want +got):\n%s", diff)
		}
		for _, n := range names {
			if n != "multi_hour" {
				t.Errorf("got limit %q, want multi_hour (the most constrained)", n)
			}
		}
	})
}

func TestOverride(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		over := func(n uint32, kv ...string) *ratelimitv3.RateLimitDescriptor {
			d := desc(kv...)
			d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: n, Unit: typev3.RateLimitUnit_MINUTE}
			return d
		}
		count := func(n int, d *ratelimitv3.RateLimitDescriptor) (ok int) {
			for range n {
				resp := h.callRLS(t, rlsReq("api", d))
				if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
					ok++
				}
				if cl := resp.GetStatuses()[0].GetCurrentLimit(); cl.GetName() != "override" || cl.GetRequestsPerUnit() != d.GetLimit().GetRequestsPerUnit() {
					t.Errorf("got current_limit %v, want the override", cl)
				}
			}
			return ok
		}
		// The override wins over the configured 3/min, and applies to unconfigured descriptors too.
		if got := count(3, over(2, "user", "o1")); got != 2 {
			t.Errorf("override 2/min: got %d OK of 3, want 2", got)
		}
		// Raising the override keeps the count (B40): 2 used, 8 more fit in 10.
		if got := count(9, over(10, "user", "o1")); got != 8 {
			t.Errorf("override raised to 10/min: got %d OK of 9, want 8", got)
		}
		if got := count(2, over(1, "nomatch", "x")); got != 1 {
			t.Errorf("override on an unconfigured descriptor: got %d OK of 2, want 1", got)
		}
	})
}

// Key collision: (a_b=c) and (a=b_c) must not share a counter.
func TestKeyCollision(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		first := []*ratelimitv3.RateLimitDescriptor{desc("a_b", "c"), desc("a", "b_c")}
		for _, d := range first {
			if got := h.callRLS(t, rlsReq("api", d)).GetOverallCode(); got != rlsv3.RateLimitResponse_OK {
				t.Errorf("first call %v: got %v, want OK (separate counters)", d, got)
			}
		}
		for _, d := range first {
			if got := h.callRLS(t, rlsReq("api", d)).GetOverallCode(); got != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Errorf("second call %v: got %v, want OVER_LIMIT", d, got)
			}
		}
		if rlsKey("api", 0, "a_b", "c") == rlsKey("api", 0, "a", "b_c") {
			t.Error("keys of (a_b=c) and (a=b_c) are equal")
		}
	})
}

func TestUnknownDomain(t *testing.T) {
	h := serve(t, memoryBackend(t), rlsLimits, nil)
	d := desc("user", "u1")
	d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 0, Unit: typev3.RateLimitUnit_SECOND}
	for range 3 {
		resp := h.callRLS(t, rlsReq("nope", d, desc("x", "y")))
		want := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK}, {Code: rlsv3.RateLimitResponse_OK}}}
		if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
			t.Errorf("unknown domain (-want +got):\n%s", diff)
		}
	}
	if got := h.store.decides.Load(); got != 0 {
		t.Errorf("got %d store calls for an unknown domain, want 0", got)
	}
	if o := h.obs.last(t); o.Domain != "" || o.Code != OutcomeOK {
		t.Errorf("got observation domain %q code %v, want \"\" and ok", o.Domain, o.Code)
	}
}

func TestValidation(t *testing.T) {
	h := serve(t, memoryBackend(t), rlsLimits, nil)
	many := func(n int) []*ratelimitv3.RateLimitDescriptor {
		ds := make([]*ratelimitv3.RateLimitDescriptor, n)
		for i := range ds {
			ds[i] = desc("user", "v"+strconv.Itoa(i))
		}
		return ds
	}
	wide := &ratelimitv3.RateLimitDescriptor{}
	for i := range 65 {
		wide.Entries = append(wide.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: "k" + strconv.Itoa(i), Value: "v"})
	}
	noUnit := desc("user", "u1")
	noUnit.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 5}
	zeroMult := desc("user", "u1")
	zeroMult.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 5,
		Unit: typev3.RateLimitUnit_SECOND, UnitMultiplier: wrapperspb.UInt32(0)}
	hugeMult := desc("user", "u1")
	hugeMult.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 5,
		Unit: typev3.RateLimitUnit_YEAR, UnitMultiplier: wrapperspb.UInt32(math.MaxUint32)}
	tests := []struct {
		name string
		give *rlsv3.RateLimitRequest
		want string // substring of the message
	}{
		{"empty domain", rlsReq("", desc("user", "u1")), "domain is empty"},
		{"no descriptors", rlsReq("api"), "no descriptors"},
		{"descriptor without entries", rlsReq("api", desc("user", "u1"), &ratelimitv3.RateLimitDescriptor{}), "descriptors[1] has no entries"},
		{"empty key", rlsReq("api", desc("", "u1")), "descriptors[0].entries[0].key is empty"},
		{"override without unit", rlsReq("api", desc("a", "b"), noUnit), "descriptors[1].limit.unit"},
		{"override multiplier 0", rlsReq("api", zeroMult), "descriptors[0].limit.unit_multiplier is 0"},
		{"override window too long", rlsReq("api", hugeMult), "descriptors[0].limit window"},
		{"too many descriptors", rlsReq("api", many(MaxDescriptors+1)...), "1025 descriptors"},
		{"too many entries", rlsReq("api", wide), "descriptors[0] has 65 entries"},
		{"value too long", rlsReq("api", desc("user", strings.Repeat("x", MaxValueBytes+1))), "descriptors[0].entries[0] is longer"},
		{"hits too large", rlsReq("api", withHits(desc("user", "u1"), limiter.MaxRequests+1)), "descriptors[0].hits_addend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.rls.ShouldRateLimit(ctxT(t), tt.give)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Errorf("got %v, want InvalidArgument containing %q", err, tt.want)
			}
			if o := h.obs.last(t); o.Code != OutcomeInvalid {
				t.Errorf("got outcome %v, want invalid", o.Code)
			}
		})
	}
	if got := h.store.decides.Load(); got != 0 {
		t.Errorf("got %d store calls for invalid requests, want 0", got)
	}

	// The largest valid request is answered in full with one store call.
	resp := h.callRLS(t, rlsReq("api", many(MaxDescriptors)...))
	if len(resp.GetStatuses()) != MaxDescriptors || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("got %d statuses, overall %v; want %d, OK", len(resp.GetStatuses()), resp.GetOverallCode(), MaxDescriptors)
	}
	if got := h.store.decides.Load(); got != 1 {
		t.Errorf("got %d store calls for %d descriptors, want 1", got, MaxDescriptors)
	}
}

// B14: 5 per 5 s admits exactly 5 with remaining 4..0 (RLS and ext_authz legacy headers); 1/s admits 1.
func TestOffByOneB14(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits+authzB14, func(o *Options) { o.Headers = HeadersLegacy })
		b.startWindow(t, 5*time.Second, 100*time.Millisecond, 3*time.Second)
		var rls, authz []string
		for range 7 {
			resp := h.callRLS(t, rlsReq("api", desc("five_per_5s", "u1")))
			rls = append(rls, resp.GetOverallCode().String()+":"+strconv.Itoa(int(resp.GetStatuses()[0].GetLimitRemaining())))
			c := h.callCheck(t, checkReq{source: "192.0.2.14", ext: map[string]string{"domain": "api"}})
			authz = append(authz, strconv.FormatBool(allowed(t, c))+":"+responseHeader(c, "X-RateLimit-Remaining"))
		}
		wantRLS := []string{"OK:4", "OK:3", "OK:2", "OK:1", "OK:0", "OVER_LIMIT:0", "OVER_LIMIT:0"}
		if diff := cmp.Diff(wantRLS, rls); diff != "" {
			t.Errorf("RLS code:remaining (-want +got):\n%s", diff)
		}
		wantAuthz := []string{"true:4", "true:3", "true:2", "true:1", "true:0", "false:0", "false:0"}
		if diff := cmp.Diff(wantAuthz, authz); diff != "" {
			t.Errorf("ext_authz allowed:X-RateLimit-Remaining (-want +got):\n%s", diff)
		}
		b.startWindow(t, time.Second, 50*time.Millisecond, 700*time.Millisecond)
		var one []rlsv3.RateLimitResponse_Code
		for range 2 {
			one = append(one, h.callRLS(t, rlsReq("api", desc("one_per_s", "u1"))).GetOverallCode())
		}
		if diff := cmp.Diff([]rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}, one); diff != "" {
			t.Errorf("1/s (-want +got):\n%s", diff)
		}
	})
}

const authzB14 = `
http_rules:
  - name: five_per_5s
    key: [client_ip]
    rate_limit:
      unit: second
      unit_multiplier: 5
      requests_per_unit: 5
`

// B23: Retry-After is whole seconds rounded up; duration_until_reset is exact (fake clock).
func TestRetryAfterB23(t *testing.T) {
	b := memoryBackend(t)
	h := serve(t, b, rlsLimits+authzB23, func(o *Options) { o.Headers = HeadersBoth })
	b.startWindow(t, time.Minute, 2300*time.Millisecond, 0)
	var resp *rlsv3.RateLimitResponse
	for range 6 {
		resp = h.callRLS(t, rlsReq("api", desc("five", "b23")))
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("6th call: got %v, want OVER_LIMIT", resp.GetOverallCode())
	}
	if got := resp.GetStatuses()[0].GetDurationUntilReset().AsDuration(); got != 57700*time.Millisecond {
		t.Errorf("got duration_until_reset %s, want 57.7s", got)
	}
	wantHeaders := map[string]string{
		"Retry-After":           "58",
		"RateLimit":             `"api.five";r=0;t=58`,
		"RateLimit-Policy":      `"api.five";q=5;w=60`,
		"X-RateLimit-Reset":     "58",
		"X-RateLimit-Remaining": "0",
		"X-RateLimit-Limit":     "5",
		"content-type":          "application/problem+json",
	}
	gotHeaders := map[string]string{}
	for _, hv := range resp.GetResponseHeadersToAdd() {
		gotHeaders[hv.GetKey()] = hv.GetValue()
	}
	if diff := cmp.Diff(wantHeaders, gotHeaders); diff != "" {
		t.Errorf("RLS headers (-want +got):\n%s", diff)
	}
	var body problem
	if err := json.Unmarshal(resp.GetRawBody(), &body); err != nil || body.Status != 429 || body.RetryAfter != 58 || body.Title != "Too Many Requests" {
		t.Errorf("got raw_body %s (%v), want a 429 problem with retry_after 58", resp.GetRawBody(), err)
	}

	// ext_authz: the same 58.
	var c = h.callCheck(t, checkReq{source: "192.0.2.23", ext: map[string]string{"domain": "api"}})
	for range 5 {
		c = h.callCheck(t, checkReq{source: "192.0.2.23", ext: map[string]string{"domain": "api"}})
	}
	if allowed(t, c) || responseHeader(c, "Retry-After") != "58" || responseHeader(c, "X-RateLimit-Reset") != "58" {
		t.Errorf("ext_authz 6th: got %v, want 429 with Retry-After 58 and X-RateLimit-Reset 58", c)
	}

	// Sub-second: 2/s, denied 0.3 s into the second → "1".
	b.startWindow(t, time.Second, 300*time.Millisecond, 0)
	for range 3 {
		resp = h.callRLS(t, rlsReq("api", desc("two_per_s", "b23")))
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || rlsHeader(resp, "Retry-After") != "1" {
		t.Errorf("2/s at +0.3s: got %v Retry-After %q, want OVER_LIMIT and 1", resp.GetOverallCode(), rlsHeader(resp, "Retry-After"))
	}
	if got := resp.GetStatuses()[0].GetDurationUntilReset().AsDuration(); got != 700*time.Millisecond {
		t.Errorf("2/s at +0.3s: got duration_until_reset %s, want 700ms", got)
	}
}

const authzB23 = `
http_rules:
  - name: five_per_min
    key: [client_ip]
    rate_limit:
      unit: minute
      requests_per_unit: 5
`

// B31: odd values are their own buckets, never an error; Redis keys stay <= 512 bytes.
func TestOddValuesB31(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits+authzB31, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 4*time.Second)
		values := []string{
			"ключ-😀",
			strings.Repeat("v", 8192),
			"a\r\nb\x00c d{e}f",
			"{tag}",
			"e\u0301",
			"\u00e9",
		}
		for _, v := range values {
			ok, over := 0, 0
			for range 6 {
				resp, err := h.rls.ShouldRateLimit(ctxT(t), rlsReq("api", desc("api_key", v)))
				if err != nil {
					t.Fatalf("value %.20q: got error %v", v, err)
				}
				switch resp.GetOverallCode() {
				case rlsv3.RateLimitResponse_OK:
					ok++
				case rlsv3.RateLimitResponse_OVER_LIMIT:
					over++
				}
			}
			if ok != 5 || over != 1 {
				t.Errorf("value %.20q: got %d OK %d OVER_LIMIT, want 5 and 1", v, ok, over)
			}
		}
		auth := checkReq{source: "192.0.2.31", ext: map[string]string{"domain": "api"},
			headers: map[string]string{"authorization": "Bearer abc…def"}}
		if got := h.countChecks(t, 6, auth); got != 5 {
			t.Errorf("Authorization with U+2026: got %d allowed of 6, want 5", got)
		}
		if b.client != nil {
			keys := b.keys(t)
			if len(keys) < len(values)+1 {
				t.Errorf("got %d redis keys, want at least %d", len(keys), len(values)+1)
			}
			for _, k := range keys {
				if len(k) > 512 {
					t.Errorf("redis key of %d bytes: %.60q…", len(k), k)
				}
				if strings.Contains(k, "abc…def") {
					t.Errorf("redis key %q holds the Authorization header in clear", k)
				}
			}
		}
	})
}

const authzB31 = `
http_rules:
  - name: per_token
    key: [{header: authorization, hash: true}]
    on_missing: skip
    rate_limit:
      unit: minute
      requests_per_unit: 5
`

// share_threshold (envoyproxy/ratelimit): every value matching the wildcard shares one counter; without it
// each value has its own.
func TestShareThreshold(t *testing.T) {
	const limits = `
domain: api
descriptors:
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: docs
    value: docs/*
    rate_limit: {unit: hour, requests_per_unit: 3}
`
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, limits, nil)
		b.startWindow(t, time.Hour, 100*time.Millisecond, 5*time.Second)
		var shared, own []rlsv3.RateLimitResponse_Code
		for _, v := range []string{"a", "b", "c", "d"} {
			shared = append(shared, h.callRLS(t, rlsReq("api", desc("files", "files/"+v))).GetOverallCode())
			own = append(own, h.callRLS(t, rlsReq("api", desc("docs", "docs/"+v))).GetOverallCode())
		}
		ok, over := rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT
		if diff := cmp.Diff([]rlsv3.RateLimitResponse_Code{ok, ok, ok, over}, shared); diff != "" {
			t.Errorf("share_threshold values (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]rlsv3.RateLimitResponse_Code{ok, ok, ok, ok}, own); diff != "" {
			t.Errorf("per-value counters (-want +got):\n%s", diff)
		}
	})
}

// quota_mode (envoyproxy/ratelimit): an over-limit quota descriptor blocks only when every quota descriptor of
// the request is over; a normal descriptor over its limit still blocks. Its status reports OVER_LIMIT.
func TestQuotaMode(t *testing.T) {
	const limits = `
domain: api
descriptors:
  - key: q1
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: q2
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: plain
    rate_limit: {unit: hour, requests_per_unit: 10}
`
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, limits, nil)
		b.startWindow(t, time.Hour, 100*time.Millisecond, 5*time.Second)
		ok, over := rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT
		steps := []struct {
			name        string
			want        rlsv3.RateLimitResponse_Code
			wantQ1      rlsv3.RateLimitResponse_Code
			wantPlainRm uint32
		}{
			{"both quotas fit", ok, ok, 9},
			{"q1 over, q2 fits", ok, over, 8},
			{"both quotas over", over, over, 8}, // denied: plain consumes nothing
			{"still both over", over, over, 8},
		}
		for _, st := range steps {
			resp := h.callRLS(t, rlsReq("api", desc("q1", "u"), desc("q2", "u"), desc("plain", "u")))
			if resp.GetOverallCode() != st.want || code(resp, 0) != st.wantQ1 {
				t.Errorf("%s: got overall %v q1 %v, want %v and %v", st.name, resp.GetOverallCode(), code(resp, 0), st.want, st.wantQ1)
			}
			if got := resp.GetStatuses()[2].GetLimitRemaining(); got != st.wantPlainRm {
				t.Errorf("%s: plain remaining got %d, want %d", st.name, got, st.wantPlainRm)
			}
		}
		// A quota descriptor alone, over its limit, blocks (every quota descriptor of the request is over).
		if got := h.callRLS(t, rlsReq("api", desc("q1", "u"))).GetOverallCode(); got != over {
			t.Errorf("lone quota over its limit: got %v, want OVER_LIMIT", got)
		}
		// A normal descriptor over its limit blocks even when a quota fits.
		for range 10 {
			h.callRLS(t, rlsReq("api", desc("plain", "v")))
		}
		if got := h.callRLS(t, rlsReq("api", desc("q2", "v"), desc("plain", "v"))).GetOverallCode(); got != over {
			t.Errorf("plain over with a fitting quota: got %v, want OVER_LIMIT", got)
		}
	})
}
