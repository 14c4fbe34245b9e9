package extauthz

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
)

const bucketLimits = `
domain: api
descriptors:
  - key: tb
    rate_limit:
      algorithm: token_bucket
      unit: second
      requests_per_unit: 10
      burst: 20
  - key: ten
    rate_limit:
      unit: minute
      requests_per_unit: 10
  - key: blocked
    rate_limit:
      unit: minute
      requests_per_unit: 0
http_rules:
  - name: tb
    match:
      path_prefix: /tb
    key: [client_ip]
    rate_limit:
      algorithm: token_bucket
      unit: second
      requests_per_unit: 10
      burst: 20
  - name: closed
    match:
      path_prefix: /closed
    key: [client_ip]
    rate_limit:
      unit: minute
      requests_per_unit: 0
`

// rlsHeaders returns the response headers of an RLS response as a map.
func rlsHeaders(r *rlsv3.RateLimitResponse) map[string]string {
	m := map[string]string{}
	for _, h := range r.GetResponseHeadersToAdd() {
		m[h.GetKey()] = h.GetValue()
	}
	return m
}

// A token bucket of 10/s with burst 20 advertises its capacity (q=20) and refill time (w=2 s), so the
// RLS limit_remaining and the RateLimit header's r agree; a full bucket says t=0, anything else t >= 1.
func TestTokenBucketHeaders(t *testing.T) {
	b := memoryBackend(t)
	h := serve(t, b, bucketLimits, func(o *Options) { o.Headers = HeadersBoth })
	b.startWindow(t, time.Second, 0, 0) // the fake clock stands still: no refill between steps
	policy := `"api.tb";q=20;w=2`
	tests := []struct {
		name          string
		hits          uint64
		wantCode      rlsv3.RateLimitResponse_Code
		wantRemaining uint32
		wantReset     time.Duration
		wantHeaders   map[string]string
	}{
		{name: "check only, full", hits: 0, wantCode: rlsv3.RateLimitResponse_OK, wantRemaining: 20,
			wantReset: time.Millisecond, wantHeaders: map[string]string{
				"RateLimit-Policy": policy, "RateLimit": `"api.tb";r=20;t=0`,
				"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "20", "X-RateLimit-Reset": "0",
			}},
		{name: "one token", hits: 1, wantCode: rlsv3.RateLimitResponse_OK, wantRemaining: 19,
			wantReset: 100 * time.Millisecond, wantHeaders: map[string]string{
				"RateLimit-Policy": policy, "RateLimit": `"api.tb";r=19;t=1`,
				"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "19", "X-RateLimit-Reset": "1",
			}},
		{name: "empty", hits: 19, wantCode: rlsv3.RateLimitResponse_OK, wantRemaining: 0,
			wantReset: 2 * time.Second, wantHeaders: map[string]string{
				"RateLimit-Policy": policy, "RateLimit": `"api.tb";r=0;t=2`,
				"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2",
			}},
		{name: "over", hits: 1, wantCode: rlsv3.RateLimitResponse_OVER_LIMIT, wantRemaining: 0,
			wantReset: 2 * time.Second, wantHeaders: map[string]string{
				"RateLimit-Policy": policy, "RateLimit": `"api.tb";r=0;t=2`,
				"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2",
				"Retry-After": "1", "content-type": problemJSON,
			}},
	}
	for _, tt := range tests {
		resp := h.callRLS(t, rlsReq("api", withHits(desc("tb", "u1"), tt.hits)))
		st := resp.GetStatuses()[0]
		if st.GetCode() != tt.wantCode || st.GetLimitRemaining() != tt.wantRemaining ||
			st.GetDurationUntilReset().AsDuration() != tt.wantReset {
			t.Errorf("%s: got %v remaining %d reset %s, want %v remaining %d reset %s", tt.name, st.GetCode(),
				st.GetLimitRemaining(), st.GetDurationUntilReset().AsDuration(), tt.wantCode, tt.wantRemaining,
				tt.wantReset)
		}
		if diff := cmp.Diff(tt.wantHeaders, rlsHeaders(resp)); diff != "" {
			t.Errorf("%s: headers (-want +got):\n%s", tt.name, diff)
		}
	}

	// ext_authz renders the same policy.
	c := h.callCheck(t, checkReq{source: "192.0.2.30", path: "/tb", ext: map[string]string{"domain": "api"}})
	if !allowed(t, c) || responseHeader(c, "RateLimit-Policy") != `"tb";q=20;w=2` ||
		responseHeader(c, "RateLimit") != `"tb";r=19;t=1` || responseHeader(c, "X-RateLimit-Limit") != "20" {
		t.Errorf("ext_authz: got %v, want allowed with q=20;w=2, r=19;t=1 and X-RateLimit-Limit 20", c)
	}
}

// A request that can never fit (cost above the capacity, or a limit of 0) is still OVER_LIMIT / 429, but
// without Retry-After and with a body saying that waiting will not help.
func TestNeverFits(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, bucketLimits, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 4*time.Second)
		u := b.name // distinct counters per backend run
		tests := []struct {
			name       string
			pre        []*rlsv3.RateLimitRequest // sent first, ignored
			req        *rlsv3.RateLimitRequest
			wantCode   rlsv3.RateLimitResponse_Code
			wantRetry  bool   // Retry-After present and retry_after in the body
			wantDetail string // "" = no body
			prefix     bool   // wantDetail is a prefix (the retry time depends on Redis's clock)
		}{
			{name: "window cost above quota",
				req:      &rlsv3.RateLimitRequest{Domain: "api", HitsAddend: 4294967295, Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("ten", u+"1")}},
				wantCode: rlsv3.RateLimitResponse_OVER_LIMIT,
				wantDetail: `request costs 4294967295 units, more than rate limit "api.ten" allows at all ` +
					`(10 requests per 1m0s, at most 10 at once); it can never be admitted, retrying will not help`},
			{name: "window cost at quota", req: rlsReq("api", withHits(desc("ten", u+"2"), 10)),
				wantCode: rlsv3.RateLimitResponse_OK},
			{name: "window exhausted", pre: []*rlsv3.RateLimitRequest{rlsReq("api", withHits(desc("ten", u+"3"), 10))},
				req: rlsReq("api", desc("ten", u+"3")), wantCode: rlsv3.RateLimitResponse_OVER_LIMIT, wantRetry: true,
				wantDetail: `rate limit "api.ten" exceeded: 10 requests per 1m0s; retry in `, prefix: true},
			{name: "bucket cost above burst", req: rlsReq("api", withHits(desc("tb", u+"4"), 21)),
				wantCode: rlsv3.RateLimitResponse_OVER_LIMIT,
				wantDetail: `request costs 21 units, more than rate limit "api.tb" allows at all ` +
					`(10 requests per 1s, burst 20, at most 20 at once); it can never be admitted, retrying will not help`},
			{name: "bucket cost at burst", req: rlsReq("api", withHits(desc("tb", u+"5"), 20)),
				wantCode: rlsv3.RateLimitResponse_OK},
			{name: "blocked", req: rlsReq("api", desc("blocked", u+"6")), wantCode: rlsv3.RateLimitResponse_OVER_LIMIT,
				wantDetail: `rate limit "api.blocked" blocks this route entirely (0 requests per 1m0s); retrying will not help`},
			{name: "blocked check only", req: rlsReq("api", withHits(desc("blocked", u+"7"), 0)),
				wantCode: rlsv3.RateLimitResponse_OK},
			{name: "never beside exhausted",
				pre: []*rlsv3.RateLimitRequest{rlsReq("api", withHits(desc("ten", u+"8"), 10))},
				req: rlsReq("api", desc("ten", u+"8"), withHits(desc("tb", u+"8"), 25)), wantCode: rlsv3.RateLimitResponse_OVER_LIMIT,
				wantDetail: `request costs 25 units, more than rate limit "api.tb" allows at all ` +
					`(10 requests per 1s, burst 20, at most 20 at once); it can never be admitted, retrying will not help`},
		}
		for _, tt := range tests {
			for _, p := range tt.pre {
				h.callRLS(t, p)
			}
			resp := h.callRLS(t, tt.req)
			if got := resp.GetOverallCode(); got != tt.wantCode {
				t.Errorf("%s: got %v, want %v", tt.name, got, tt.wantCode)
			}
			if got := rlsHeader(resp, "Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("%s: got Retry-After %q, want present %v", tt.name, rlsHeader(resp, "Retry-After"), tt.wantRetry)
			}
			if tt.wantDetail == "" {
				if len(resp.GetRawBody()) != 0 {
					t.Errorf("%s: got body %s, want none", tt.name, resp.GetRawBody())
				}
				continue
			}
			var p problem
			if err := json.Unmarshal(resp.GetRawBody(), &p); err != nil {
				t.Fatalf("%s: body %q: %v", tt.name, resp.GetRawBody(), err)
			}
			detailOK := p.Detail == tt.wantDetail || tt.prefix && strings.HasPrefix(p.Detail, tt.wantDetail)
			if p.Status != 429 || !detailOK || (p.RetryAfter > 0) != tt.wantRetry {
				t.Errorf("%s: got problem %+v, want status 429, detail %q, retry_after present %v", tt.name, p,
					tt.wantDetail, tt.wantRetry)
			}
		}

		// ext_authz: a rule of 0 requests per minute is a 429 without Retry-After.
		c := h.callCheck(t, checkReq{source: "192.0.2.31", path: "/closed", ext: map[string]string{"domain": "api"}})
		var p problem
		if err := json.Unmarshal([]byte(c.GetDeniedResponse().GetBody()), &p); err != nil {
			t.Fatalf("closed: body %q: %v", c.GetDeniedResponse().GetBody(), err)
		}
		wantP := problem{Type: "about:blank", Title: "Too Many Requests", Status: 429,
			Detail: `rate limit "closed" blocks this route entirely (0 requests per 1m0s); retrying will not help`}
		if allowed(t, c) || responseHeader(c, "Retry-After") != "" || responseHeader(c, "content-type") != problemJSON {
			t.Errorf("closed: got %v, want 429 with a problem body and no Retry-After", c)
		}
		if diff := cmp.Diff(wantP, p); diff != "" {
			t.Errorf("closed: problem (-want +got):\n%s", diff)
		}
	})
}
