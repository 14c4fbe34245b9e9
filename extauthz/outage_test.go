package extauthz

import (
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
)

const outageLimits = `
domain: api
descriptors:
  - key: user
    rate_limit:
      unit: minute
      requests_per_unit: 10
  - key: burst
    rate_limit:
      unit: minute
      requests_per_unit: 100
http_rules:
  - name: per_ip
    key: [client_ip]
    rate_limit:
      unit: minute
      requests_per_unit: 10
`

// B32, B33, B35: a stopped or blackholed Redis is answered per the failure mode within the store timeout,
// never as over the limit; after the restore, decisions come from Redis again.
func TestOutage(t *testing.T) {
	// B32: an answer within the store timeout + 20 ms. The race detector slows everything several times,
	// so under -race both get more room; the relation under test (timeout, then the failure mode) is the same.
	timeout, slack := 50*time.Millisecond, 20*time.Millisecond
	if raceEnabled {
		timeout, slack = 100*time.Millisecond, 60*time.Millisecond
	}
	budget := timeout + slack
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr())
	client := redisClient(t, "redis://"+proxy.Addr()+"/0")
	store := limiter.NewRedis(client, limiter.RedisOptions{Prefix: "fgtest:outage:", Logger: discard()})
	ext := map[string]string{"domain": "api"}

	faults := []struct {
		name            string
		inject, restore func()
	}{
		{"stopped", srv.Shutdown, srv.Restart},
		{"blackholed", func() { proxy.Blackhole(true) }, func() { proxy.Blackhole(false) }},
	}
	for _, mode := range []string{FailAllow, FailDeny, FailLocal} {
		for _, fault := range faults {
			t.Run(mode+"/"+fault.name, func(t *testing.T) {
				b := &backend{name: "redis", client: client, store: store}
				h := serve(t, b, outageLimits, func(o *Options) {
					o.StoreTimeout = timeout
					o.OnStoreError = mode
					o.Fallback = limiter.NewMemory(limiter.MemoryOptions{})
					o.LocalShare = 0.5
				})
				tag := mode + fault.name // fresh counters per run
				b.startWindow(t, time.Minute, 100*time.Millisecond, 4*time.Second)
				if !allowed(t, h.callCheck(t, checkReq{source: "192.0.2.1", ext: ext})) {
					t.Fatal("healthy check denied")
				}

				fault.inject()
				checkOK, rlsOK := 0, 0
				for i := range 20 {
					start := time.Now()
					c := h.callCheck(t, checkReq{source: "192.0.2.2", ext: ext, path: "/" + tag})
					if d := time.Since(start); d > budget {
						t.Errorf("check %d took %s, want <= %s", i, d, budget)
					}
					switch mode {
					case FailAllow:
						if c.GetStatus().GetCode() != 0 || responseHeader(c, HeaderDegraded) != "1" {
							t.Errorf("check %d: got %v, want allowed with %s: 1", i, c, HeaderDegraded)
						}
					case FailDeny:
						if c.GetStatus().GetCode() != 14 || c.GetDeniedResponse().GetStatus().GetCode() != 503 {
							t.Errorf("check %d: got %v, want status 14 with HTTP 503", i, c)
						}
					case FailLocal:
						if allowed(t, c) {
							checkOK++
						}
						if responseHeader(c, HeaderDegraded) != "1" {
							t.Errorf("check %d: no %s header in local mode", i, HeaderDegraded)
						}
					}
					if o := h.obs.last(t); o.Code != OutcomeDegraded || o.FailureMode != mode || o.StoreErr == nil {
						t.Errorf("check %d: got observation code %v mode %q err %v, want degraded %s", i, o.Code, o.FailureMode, o.StoreErr, mode)
					}
				}
				for i := range 10 {
					start := time.Now()
					resp, err := h.rls.ShouldRateLimit(ctxT(t), rlsReq("api", desc("user", tag)))
					if d := time.Since(start); d > budget {
						t.Errorf("rls %d took %s, want <= %s", i, d, budget)
					}
					switch mode {
					case FailAllow:
						if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || rlsHeader(resp, HeaderDegraded) != "1" {
							t.Errorf("rls %d: got %v %v, want OK with %s: 1", i, resp, err, HeaderDegraded)
						}
					case FailDeny:
						if status.Code(err) != codes.Unavailable {
							t.Errorf("rls %d: got %v %v, want gRPC UNAVAILABLE", i, resp, err)
						}
					case FailLocal:
						if err != nil {
							t.Fatalf("rls %d: %v", i, err)
						}
						if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
							rlsOK++
						}
						if rlsHeader(resp, HeaderDegraded) != "1" {
							t.Errorf("rls %d: no %s header in local mode", i, HeaderDegraded)
						}
					}
				}
				if mode == FailLocal && (checkOK != 5 || rlsOK != 5) {
					// LocalShare 0.5 of 10 per minute: the fallback admits 5.
					t.Errorf("local fallback: got %d checks and %d rls allowed, want 5 and 5", checkOK, rlsOK)
				}

				fault.restore()
				waitHealthy(t, h, tag)
				b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
				ok, over := 0, 0
				for range 110 {
					resp := h.callRLS(t, rlsReq("api", desc("burst", tag)))
					if rlsHeader(resp, HeaderDegraded) != "" {
						t.Fatalf("degraded after the restore: %v", resp)
					}
					if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
						ok++
					} else {
						over++
					}
				}
				if ok != 100 || over != 10 {
					t.Errorf("after the restore: got %d OK %d OVER_LIMIT, want 100 and 10", ok, over)
				}
			})
		}
	}
}

// waitHealthy polls until a decision comes from the store again.
func waitHealthy(t *testing.T, h *harness, tag string) {
	t.Helper()
	// Healthy means several decisions in a row from the store: the pool may still hold connections that
	// died with the server, and each of those fails once.
	deadline := time.Now().Add(5 * time.Second)
	for streak := 0; time.Now().Before(deadline); {
		resp, err := h.rls.ShouldRateLimit(ctxT(t), rlsReq("api", withHits(desc("user", "probe"+tag), 0)))
		if err == nil && rlsHeader(resp, HeaderDegraded) == "" {
			if streak++; streak == 10 {
				return
			}
			continue
		}
		streak = 0
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("store not healthy 5 s after the restore")
}
