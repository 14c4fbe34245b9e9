package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/limiter"
)

func TestHTTPRulesCompile(t *testing.T) {
	s, err := Parse("edge.yaml", []byte(doc(
		"domain: edge",
		"http_rules:",
		"  - name: all",
		"    rate_limit: {unit: minute, requests_per_unit: 100}",
		"  - name: login",
		"    match: {host: API.Example.com, path_prefix: /login, methods: [post, PUT]}",
		"    key: [client_ip, {header: X-Tenant}, {header: authorization, hash: true}, path, method, host, {jwt_claim: sub}]",
		"    on_missing: deny",
		"    shadow_mode: true",
		"    rate_limits:",
		"      - {unit: minute, requests_per_unit: 5, algorithm: sliding_window}",
		"      - {window: 1h, requests_per_unit: 20, algorithm: token_bucket, burst: 3, name: hourly}",
	)))
	if err != nil {
		t.Fatal(err)
	}
	got := s.HTTPRules("edge")
	want := []*HTTPRule{
		{
			Rule: Rule{Name: "all", Path: "edge.http_rules.all", Limits: []Limit{{
				Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 100, Window: time.Minute},
				Name:  "all", RequestsPerUnit: 100, Unit: UnitMinute, UnitMultiplier: 1,
			}}},
			Domain: "edge", Key: []KeySource{{Kind: KeyClientIP}}, OnMissing: OnMissingClientIP,
		},
		{
			Rule: Rule{Name: "login", Path: "edge.http_rules.login", Shadow: true, Limits: []Limit{
				{Limit: limiter.Limit{Algorithm: limiter.SlidingWindow, Requests: 5, Window: time.Minute},
					Name: "login#1", RequestsPerUnit: 5, Unit: UnitMinute, UnitMultiplier: 1},
				{Limit: limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 20, Window: time.Hour, Burst: 3},
					Name: "hourly", RequestsPerUnit: 20, Unit: UnitHour, UnitMultiplier: 1},
			}},
			Domain: "edge", Host: "api.example.com", PathPrefix: "/login", Methods: []string{"POST", "PUT"},
			Key: []KeySource{
				{Kind: KeyClientIP}, {Kind: KeyHeader, Name: "x-tenant"}, {Kind: KeyHeader, Name: "authorization", Hash: true},
				{Kind: KeyPath}, {Kind: KeyMethod}, {Kind: KeyHost}, {Kind: KeyJWTClaim, Name: "sub"},
			},
			OnMissing: OnMissingDeny,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("http rules (-want +got):\n%s", diff)
	}
	if r, ok := s.Match("edge", entries("k", "v")); ok {
		t.Errorf("got descriptor rule %+v from a domain with only http rules, want none", r)
	}
}

func TestHTTPRuleMatches(t *testing.T) {
	r := &HTTPRule{Host: "api.example.com", PathPrefix: "/login", Methods: []string{"POST"}}
	anyRule := &HTTPRule{}
	withPort := &HTTPRule{Host: "api.example.com:8443"}
	tests := []struct {
		name               string
		rule               *HTTPRule
		host, path, method string
		want               bool
	}{
		{"all match", r, "api.example.com", "/login", "POST", true},
		{"host case-insensitive", r, "API.example.COM", "/login", "POST", true},
		{"host with port", r, "api.example.com:443", "/login/x", "POST", true},
		{"query ignored", r, "api.example.com", "/login?next=/", "POST", true},
		{"prefix in query only", r, "api.example.com", "/x?/login", "POST", false},
		{"other host", r, "www.example.com", "/login", "POST", false},
		{"host suffix is not a port", r, "api.example.com:x", "/login", "POST", false},
		{"other path", r, "api.example.com", "/logout", "POST", false},
		{"other method", r, "api.example.com", "/login", "GET", false},
		{"empty rule matches anything", anyRule, "", "", "", true},
		{"rule port must match", withPort, "api.example.com:8443", "/", "GET", true},
		{"rule port differs", withPort, "api.example.com:443", "/", "GET", false},
	}
	for _, tt := range tests {
		if got := tt.rule.Matches(tt.host, tt.path, tt.method); got != tt.want {
			t.Errorf("%s: Matches(%q, %q, %q): got %v, want %v", tt.name, tt.host, tt.path, tt.method, got, tt.want)
		}
	}
	if a := testing.AllocsPerRun(100, func() { r.Matches("api.example.com:443", "/login?x", "POST") }); a != 0 {
		t.Errorf("Matches: got %v allocations, want 0", a)
	}
}

func TestStripPort(t *testing.T) {
	tests := []struct{ give, want string }{
		{"a.com", "a.com"},
		{"a.com:80", "a.com"},
		{"[::1]:80", "[::1]"},
		{"[::1]", "[::1]"},
		{"::1", "::1"},
		{"a.com:", "a.com"},
	}
	for _, tt := range tests {
		if got := stripPort(tt.give); got != tt.want {
			t.Errorf("stripPort(%q): got %q, want %q", tt.give, got, tt.want)
		}
	}
}
