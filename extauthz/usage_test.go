package extauthz

import (
	"context"
	"errors"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/floodgate/floodgate/config"
)

// Usage reads the very counters ShouldRateLimit consumes, without consuming; ResetUsage clears them.
func TestUsageAndReset(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		snap := mustParse(t, `
domain: api
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: plan
    value: free
    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: token_bucket, burst: 4}
  - key: health
    rate_limit: {unlimited: true}
`)
		svc, err := New(Options{Limits: staticLimits{snap}, Store: b.store, Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		call := func(kv ...string) rlsv3.RateLimitResponse_Code {
			resp, err := svc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "api",
				Descriptors: []*ratelimitv3.RateLimitDescriptor{desc(kv...)}})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetOverallCode()
		}
		b.startWindow(t, time.Minute, 100*time.Millisecond, 4*time.Second)
		for range 3 {
			call("user", "u1")
		}
		u, err := svc.Usage(ctx, "api", []config.Entry{{Key: "user", Value: "u1"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(u) != 1 || u[0].Used != 3 || u[0].Remaining != 2 || u[0].Requests != 5 || u[0].Rule != "api.user" {
			t.Fatalf("got %+v, want one limit of api.user with 3 used and 2 left of 5", u)
		}
		// Reading did not consume: still 2 requests fit, the third is over.
		if c1, c2, c3 := call("user", "u1"), call("user", "u1"), call("user", "u1"); c1 != rlsv3.RateLimitResponse_OK ||
			c2 != rlsv3.RateLimitResponse_OK || c3 != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("got %s %s %s after Usage, want OK OK OVER_LIMIT", c1, c2, c3)
		}
		before, err := svc.ResetUsage(ctx, "api", []config.Entry{{Key: "user", Value: "u1"}})
		if err != nil {
			t.Fatal(err)
		}
		if before[0].Used != 5 {
			t.Errorf("reset reported %d used before, want 5", before[0].Used)
		}
		if c := call("user", "u1"); c != rlsv3.RateLimitResponse_OK {
			t.Errorf("after reset: got %s, want OK", c)
		}

		call("plan", "free")
		u, err = svc.Usage(ctx, "api", []config.Entry{{Key: "plan", Value: "free"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(u) != 1 || u[0].Algorithm != "token_bucket" || u[0].Used != 1 || u[0].Remaining != 3 {
			t.Errorf("token bucket usage: got %+v, want 1 used, 3 left of burst 4", u)
		}
		u, err = svc.Usage(ctx, "api", []config.Entry{{Key: "health", Value: "x"}})
		if err != nil || len(u) != 1 || !u[0].Unlimited {
			t.Errorf("unlimited rule: got %+v, %v; want one unlimited entry", u, err)
		}
		if _, err := svc.Usage(ctx, "api", []config.Entry{{Key: "nope", Value: "x"}}); !errors.Is(err, ErrNoRule) {
			t.Errorf("unmatched descriptor: got %v, want ErrNoRule", err)
		}
		for _, bad := range [][]config.Entry{nil, {{Key: "", Value: "x"}}, {{Key: "user", Value: string(make([]byte, MaxValueBytes+1))}}} {
			if _, err := svc.Usage(ctx, "api", bad); !errors.Is(err, ErrInvalidDescriptor) {
				t.Errorf("entries %d long: got %v, want ErrInvalidDescriptor", len(bad), err)
			}
		}
	})
}
