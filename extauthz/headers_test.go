package extauthz

import (
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/limiter"
)

func TestRetryAfterValue(t *testing.T) {
	tests := []struct {
		give time.Duration
		want string
	}{
		{57700 * time.Millisecond, "58"}, // B23
		{700 * time.Millisecond, "1"},    // B23 sub-second
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{0, "1"},
		{-5 * time.Second, "1"},
		{90 * time.Minute, "5400"},
	}
	valid := regexp.MustCompile(`^[0-9]+$`)
	for _, tt := range tests {
		got := retryAfterValue(tt.give)
		if got != tt.want || !valid.MatchString(got) {
			t.Errorf("retryAfterValue(%s): got %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestAppendQuotaHeaders(t *testing.T) {
	fixed := func(n uint64, w time.Duration) limiter.Limit {
		return limiter.Limit{Algorithm: limiter.FixedWindow, Requests: n, Window: w}
	}
	bucket := func(n uint64, w time.Duration, burst uint64) limiter.Limit {
		return limiter.Limit{Algorithm: limiter.TokenBucket, Requests: n, Window: w, Burst: burst}
	}
	q := quota{name: "per_ip", limit: fixed(100, time.Minute), remaining: 50, reset: 29300 * time.Millisecond}
	tests := []struct {
		name string
		mode string
		give quota
		want []header
	}{
		{name: "draft", mode: HeadersDraft, give: q, want: []header{
			{"RateLimit-Policy", `"per_ip";q=100;w=60`},
			{"RateLimit", `"per_ip";r=50;t=30`},
		}},
		{name: "legacy", mode: HeadersLegacy, give: q, want: []header{
			{"X-RateLimit-Limit", "100"},
			{"X-RateLimit-Remaining", "50"},
			{"X-RateLimit-Reset", "30"},
		}},
		{name: "both", mode: HeadersBoth, give: q, want: []header{
			{"RateLimit-Policy", `"per_ip";q=100;w=60`},
			{"RateLimit", `"per_ip";r=50;t=30`},
			{"X-RateLimit-Limit", "100"},
			{"X-RateLimit-Remaining", "50"},
			{"X-RateLimit-Reset", "30"},
		}},
		{name: "odd name", mode: HeadersDraft, give: quota{name: "a\"b\\c\x00ü", limit: fixed(2, 300*time.Millisecond),
			remaining: 7, reset: -time.Second}, want: []header{
			{"RateLimit-Policy", `"a\"b\\c";q=2;w=1`},
			{"RateLimit", `"a\"b\\c";r=2;t=0`}, // remaining clamped to the quota, reset never negative
		}},
		{name: "zero", mode: HeadersDraft, give: quota{limit: fixed(0, time.Hour)}, want: []header{
			{"RateLimit-Policy", `"default";q=0;w=3600`},
			{"RateLimit", `"default";r=0;t=0`},
		}},
		// Token bucket: q is the capacity (burst), w the time to refill it from empty, so a full bucket's
		// r=20 is not clamped to the rate of 10.
		{name: "bucket full", mode: HeadersBoth, give: quota{name: "tb", limit: bucket(10, time.Second, 20),
			remaining: 20}, want: []header{
			{"RateLimit-Policy", `"tb";q=20;w=2`},
			{"RateLimit", `"tb";r=20;t=0`}, // exactly 0: full now
			{"X-RateLimit-Limit", "20"},
			{"X-RateLimit-Remaining", "20"},
			{"X-RateLimit-Reset", "0"},
		}},
		{name: "bucket 1ms", mode: HeadersBoth, give: quota{name: "tb", limit: bucket(10, time.Second, 20),
			remaining: 19, reset: time.Millisecond}, want: []header{
			{"RateLimit-Policy", `"tb";q=20;w=2`},
			{"RateLimit", `"tb";r=19;t=1`}, // any non-zero reset rounds up to >= 1
			{"X-RateLimit-Limit", "20"},
			{"X-RateLimit-Remaining", "19"},
			{"X-RateLimit-Reset", "1"},
		}},
		{name: "bucket 1ns", mode: HeadersDraft, give: quota{name: "tb", limit: bucket(10, time.Second, 20),
			remaining: 19, reset: time.Nanosecond}, want: []header{
			{"RateLimit-Policy", `"tb";q=20;w=2`},
			{"RateLimit", `"tb";r=19;t=1`},
		}},
		{name: "bucket 100/min burst 150", mode: HeadersDraft, give: quota{name: "tb",
			limit: bucket(100, time.Minute, 150), remaining: 0, reset: 90 * time.Second}, want: []header{
			{"RateLimit-Policy", `"tb";q=150;w=90`},
			{"RateLimit", `"tb";r=0;t=90`},
		}},
		{name: "bucket 3/s burst 1", mode: HeadersDraft, give: quota{name: "tb",
			limit: bucket(3, time.Second, 1), remaining: 1}, want: []header{
			{"RateLimit-Policy", `"tb";q=1;w=1`}, // 333.3 ms rounded up
			{"RateLimit", `"tb";r=1;t=0`},
		}},
		{name: "bucket without burst", mode: HeadersLegacy, give: quota{name: "tb",
			limit: bucket(5, time.Minute, 0), remaining: 9, reset: 12 * time.Second}, want: []header{
			{"X-RateLimit-Limit", "5"},
			{"X-RateLimit-Remaining", "5"},
			{"X-RateLimit-Reset", "12"},
		}},
		{name: "bucket blocked", mode: HeadersDraft, give: quota{name: "tb",
			limit: bucket(0, time.Minute, 5), reset: time.Minute}, want: []header{
			{"RateLimit-Policy", `"tb";q=0;w=60`},
			{"RateLimit", `"tb";r=0;t=60`},
		}},
		{name: "bucket saturates", mode: HeadersDraft, give: quota{name: "tb",
			limit: bucket(1, 3650*24*time.Hour, limiter.MaxRequests), remaining: 1}, want: []header{
			{"RateLimit-Policy", `"tb";q=1125899906842624;w=9223372037`},
			{"RateLimit", `"tb";r=1;t=0`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendQuotaHeaders(nil, tt.mode, tt.give)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(header{})); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProblemBody(t *testing.T) {
	body := problemBody(quota{name: "login", limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5,
		Window: time.Minute}}, 57700*time.Millisecond)
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := map[string]any{
		"type":        "about:blank",
		"title":       "Too Many Requests",
		"status":      float64(429),
		"detail":      `rate limit "login" exceeded: 5 requests per 1m0s; retry in 58 s`,
		"retry_after": float64(58),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}
	if !json.Valid([]byte(unavailableBody)) {
		t.Errorf("unavailableBody is not JSON: %s", unavailableBody)
	}
}

// problemBody is hand-appended; it must decode to exactly what encoding/json makes of the same problem,
// whatever the rule's name and limit.
func TestProblemBodyMatchesEncodingJSON(t *testing.T) {
	names := []string{"login", `a"b`, `back\slash`, "ctl\x01\n", "<script>&", "µ✓", "bad\xffbyte", ""}
	limits := []limiter.Limit{
		{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Minute},
		{Algorithm: limiter.SlidingWindow, Requests: 1 << 40, Window: 1500 * time.Millisecond},
		{Algorithm: limiter.TokenBucket, Requests: 10, Burst: 25, Window: time.Second},
		{Algorithm: limiter.TokenBucket, Requests: 3, Window: 250 * time.Microsecond},
	}
	for _, name := range names {
		for _, l := range limits {
			for _, retry := range []time.Duration{0, time.Nanosecond, 57700 * time.Millisecond, 100 * time.Hour} {
				q := quota{name: name, limit: l}
				secs := ceilSeconds(retry, 1)
				want := marshalProblem(problem{Type: "about:blank", Title: "Too Many Requests", Status: 429,
					Detail: fmt.Sprintf("rate limit %s exceeded: %s; retry in %d s", sfString(name),
						describeLimit(l), secs), RetryAfter: secs})
				got := problemBody(q, retry)
				var g, w map[string]any
				if err := json.Unmarshal(got, &g); err != nil {
					t.Fatalf("%q %v: body %s: %v", name, l, got, err)
				}
				if err := json.Unmarshal(want, &w); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(w, g); diff != "" {
					t.Fatalf("%q %v %v (-encoding/json +problemBody):\n%s", name, l, retry, diff)
				}
			}
		}
	}
}

func BenchmarkProblemBody(b *testing.B) {
	q := quota{name: "api_key", limit: limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 100, Burst: 200,
		Window: time.Minute}}
	for b.Loop() {
		_ = problemBody(q, 1700*time.Millisecond)
	}
}
