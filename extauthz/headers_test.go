package extauthz

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
	q := quota{name: "per_ip", requests: 100, window: time.Minute, remaining: 50, reset: 29300 * time.Millisecond}
	tests := []struct {
		mode string
		give quota
		want []header
	}{
		{mode: HeadersDraft, give: q, want: []header{
			{"RateLimit-Policy", `"per_ip";q=100;w=60`},
			{"RateLimit", `"per_ip";r=50;t=30`},
		}},
		{mode: HeadersLegacy, give: q, want: []header{
			{"X-RateLimit-Limit", "100"},
			{"X-RateLimit-Remaining", "50"},
			{"X-RateLimit-Reset", "30"},
		}},
		{mode: HeadersBoth, give: q, want: []header{
			{"RateLimit-Policy", `"per_ip";q=100;w=60`},
			{"RateLimit", `"per_ip";r=50;t=30`},
			{"X-RateLimit-Limit", "100"},
			{"X-RateLimit-Remaining", "50"},
			{"X-RateLimit-Reset", "30"},
		}},
		{mode: HeadersDraft, give: quota{name: "a\"b\\c\x00ü", requests: 2, window: 300 * time.Millisecond,
			remaining: 7, reset: -time.Second}, want: []header{
			{"RateLimit-Policy", `"a\"b\\c";q=2;w=1`},
			{"RateLimit", `"a\"b\\c";r=2;t=0`}, // remaining clamped to the quota, reset never negative
		}},
		{mode: HeadersDraft, give: quota{requests: 0, window: time.Hour}, want: []header{
			{"RateLimit-Policy", `"default";q=0;w=3600`},
			{"RateLimit", `"default";r=0;t=0`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.give.name, func(t *testing.T) {
			got := appendQuotaHeaders(nil, tt.mode, tt.give)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(header{})); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProblemBody(t *testing.T) {
	body := problemBody(quota{name: "login", requests: 5, window: time.Minute}, 57700*time.Millisecond)
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
