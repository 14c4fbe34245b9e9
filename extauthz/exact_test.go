package extauthz

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
)

const exactLimits = `
domain: api
descriptors:
  - key: fixed_window
    rate_limit:
      unit: hour
      requests_per_unit: 100
  - key: sliding_window
    rate_limit:
      algorithm: sliding_window
      unit: hour
      requests_per_unit: 100
  - key: token_bucket
    rate_limit:
      algorithm: token_bucket
      unit: hour
      requests_per_unit: 100
`

// Four replicas (each its own gRPC server and go-redis client) sharing one Redis admit exactly the limit
// under 1000 concurrent calls, for every algorithm.
func TestExactnessAcrossReplicas(t *testing.T) {
	url := redistest.URL(t)
	prefix := redistest.Prefix(t)
	snap := staticLimits{mustParse(t, exactLimits)}
	var clients []rlsv3.RateLimitServiceClient
	for range 4 {
		store := limiter.NewRedis(redisClient(t, url), limiter.RedisOptions{Prefix: prefix, Logger: discard()})
		svc, err := New(Options{Limits: snap, Store: store, StoreTimeout: 20 * time.Second, OnStoreError: FailDeny, Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, rlsv3.NewRateLimitServiceClient(listen(t, svc)))
	}
	for _, alg := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(alg, func(t *testing.T) {
			// No hour boundary during the run; the bucket refills 0.03 token/s, less than 1 in the run.
			(&backend{}).startWindow(t, time.Hour, 0, 4*time.Second)
			var ok, over atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 1000 {
				wg.Add(1)
				// Ends after its one call.
				go func() {
					defer wg.Done()
					<-start
					resp, err := clients[i%4].ShouldRateLimit(ctxT(t), rlsReq("api", desc(alg, "exact")))
					switch {
					case err != nil:
						t.Errorf("call %d: %v", i, err)
					case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
						ok.Add(1)
					default:
						over.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if ok.Load() != 100 || over.Load() != 900 {
				t.Errorf("got %d OK and %d OVER_LIMIT, want exactly 100 and 900", ok.Load(), over.Load())
			}
		})
	}
}
