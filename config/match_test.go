package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/limiter"
)

func loadConformance(t testing.TB) *Snapshot {
	t.Helper()
	data, err := os.ReadFile("testdata/conformance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse("testdata/conformance.yaml", data)
	if err != nil {
		t.Fatalf("parse conformance config: %v", err)
	}
	return s
}

func entries(kv ...string) []Entry {
	var es []Entry
	for i := 0; i+1 < len(kv); i += 2 {
		es = append(es, Entry{Key: kv[i], Value: kv[i+1]})
	}
	return es
}

// TestMatchConformance checks envoyproxy/ratelimit's documented matching: exact > wildcard > key-only
// default, several wildcards, depth must match, allow-listed nodes, unlimited, shadow.
func TestMatchConformance(t *testing.T) {
	s := loadConformance(t)
	type want struct {
		name      string // "" = no match
		requests  uint64
		window    time.Duration
		unlimited bool
		shadow    bool
	}
	tests := []struct {
		name   string
		domain string
		give   []Entry
		want   want
	}{
		{"key-only default", "conf", entries("user", "alice"), want{name: "conf.user", requests: 10, window: time.Minute}},
		{"exact beats default and wildcard", "conf", entries("user", "vip"), want{name: "vip", requests: 100, window: time.Minute}},
		{"values are case-sensitive", "conf", entries("user", "VIP"), want{name: "conf.user", requests: 10, window: time.Minute}},
		{"trailing wildcard beats default", "conf", entries("user", "bot-7"), want{name: "conf.user_bot*", requests: 1, window: time.Minute}},
		{"wildcard star matches empty run", "conf", entries("user", "bot"), want{name: "conf.user_bot*", requests: 1, window: time.Minute}},
		{"empty value falls to default", "conf", entries("user", ""), want{name: "conf.user", requests: 10, window: time.Minute}},
		{"several wildcards", "conf", entries("route", "/api/v1/items/42"), want{name: "conf.route_/api/*/items/*", requests: 3, window: time.Second}},
		{"several wildcards anchored", "conf", entries("route", "/api/v1/items"), want{name: "conf.route_*", requests: 4, window: time.Second}},
		{"star alone beats key-only", "conf", entries("route", "/other"), want{name: "conf.route_*", requests: 4, window: time.Second}},
		{"star alone matches empty value", "conf", entries("route", ""), want{name: "conf.route_*", requests: 4, window: time.Second}},
		{"allow-listed exact node", "conf", entries("allow", "me"), want{}},
		{"allow key default still limits", "conf", entries("allow", "you"), want{name: "conf.allow", requests: 7, window: time.Hour}},
		{"unlimited", "conf", entries("internal", "batch"), want{name: "conf.internal", unlimited: true}},
		{"shadow", "conf", entries("trial", "t1"), want{name: "conf.trial", requests: 8, window: 24 * time.Hour, shadow: true}},
		{"parent alone", "conf", entries("parent", "p"), want{name: "conf.parent", requests: 9, window: time.Second}},
		{"nested exact", "conf", entries("parent", "p", "child", "exact"), want{name: "conf.parent.child_exact", requests: 11, window: time.Hour}},
		{"nested default", "conf", entries("parent", "p", "child", "x"), want{name: "conf.parent.child", requests: 12, window: time.Hour}},
		{"exact parent without limit: no fallback to default parent", "conf", entries("parent", "special"), want{}},
		{"exact parent child default", "conf", entries("parent", "special", "child", "x"), want{name: "conf.parent_special.child", requests: 13, window: 7 * 24 * time.Hour}},
		{"no backtracking from exact parent", "conf", entries("parent", "special", "child", "exact"), want{name: "conf.parent_special.child", requests: 13, window: 7 * 24 * time.Hour}},
		{"request deeper than config", "conf", entries("parent", "p", "child", "x", "extra", "y"), want{}},
		{"leaf without children, deeper request", "conf", entries("user", "alice", "child", "x"), want{}},
		{"node with only children", "conf", entries("mid", "x"), want{}},
		{"node with only children, full depth", "conf", entries("mid", "x", "leaf", "y"), want{name: "conf.mid.leaf", requests: 14, window: 30 * 24 * time.Hour}},
		{"wrong child key", "conf", entries("mid", "x", "other", "y"), want{}},
		{"unknown key", "conf", entries("nope", "x"), want{}},
		{"unknown domain", "other", entries("user", "alice"), want{}},
		{"no entries", "conf", nil, want{}},
		{"key a_b value c", "conf", entries("a_b", "c"), want{name: "conf.a_b_c", requests: 17, window: time.Second}},
		{"key a value b_c", "conf", entries("a", "b_c"), want{name: "conf.a_b_c", requests: 18, window: time.Second}},
		{"key a value b: no match", "conf", entries("a", "b"), want{}},
		{"wildcard only matches its own key", "conf", entries("use", "r_bot"), want{}},
		{"numeric value in YAML", "conf", entries("num", "200"), want{name: "conf.num_200", requests: 22, window: time.Minute}},
		{"limit zero", "conf", entries("block", "x"), want{name: "conf.block", requests: 0, window: time.Minute}},
		{"unit multiplier", "conf", entries("reports", "r"), want{name: "reports", requests: 16, window: 5 * time.Minute}},
		{"year", "conf", entries("read", "r"), want{name: "read", requests: 15, window: 365 * 24 * time.Hour}},
		{"custom window", "conf", entries("window", "w"), want{name: "conf.window", requests: 19, window: 30 * time.Second}},
		{"upper-case unit", "conf", entries("bucket", "b"), want{name: "conf.bucket", requests: 20, window: time.Second}},
		{"wildcard parent with share_threshold", "conf", entries("files", "docs/a.pdf", "method", "GET"), want{name: "conf.files_docs/*.method", requests: 21, window: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := s.Match(tt.domain, tt.give)
			if ok != (tt.want.name != "") || (r != nil) != ok {
				t.Fatalf("Match(%q, %v): got rule %+v ok %v, want name %q", tt.domain, tt.give, r, ok, tt.want.name)
			}
			if !ok {
				return
			}
			got := want{name: r.Name, unlimited: r.Unlimited, shadow: r.Shadow}
			if len(r.Limits) > 0 {
				got.requests, got.window = r.Limits[0].Requests, r.Limits[0].Window
			}
			if got != tt.want {
				t.Errorf("Match(%q, %v): got %+v, want %+v", tt.domain, tt.give, got, tt.want)
			}
		})
	}
}

// TestMatchRuleDetails checks whole compiled rules where every field matters.
func TestMatchRuleDetails(t *testing.T) {
	s := loadConformance(t)
	tests := []struct {
		name string
		give []Entry
		want Rule
	}{
		{
			name: "replaces and unit multiplier",
			give: entries("reports", "x"),
			want: Rule{Name: "reports", Path: "conf.reports", Replaces: []string{"read"}, Limits: []Limit{{
				Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 16, Window: 5 * time.Minute},
				Name:  "reports", RequestsPerUnit: 16, Unit: UnitMinute, UnitMultiplier: 5,
			}}},
		},
		{
			name: "two limits",
			give: entries("multi", "u"),
			want: Rule{Name: "conf.multi", Path: "conf.multi", Limits: []Limit{
				{Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 10, Window: time.Second},
					Name: "conf.multi#1", RequestsPerUnit: 10, Unit: UnitSecond, UnitMultiplier: 1},
				{Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 1000, Window: 24 * time.Hour},
					Name: "daily", RequestsPerUnit: 1000, Unit: UnitDay, UnitMultiplier: 1},
			}},
		},
		{
			name: "token bucket with burst",
			give: entries("bucket", "b"),
			want: Rule{Name: "conf.bucket", Path: "conf.bucket", Limits: []Limit{{
				Limit: limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 20, Window: time.Second, Burst: 40},
				Name:  "conf.bucket", RequestsPerUnit: 20, Unit: UnitSecond, UnitMultiplier: 1,
			}}},
		},
		{
			name: "30 s sliding window reports second x30",
			give: entries("window", "w"),
			want: Rule{Name: "conf.window", Path: "conf.window", Limits: []Limit{{
				Limit: limiter.Limit{Algorithm: limiter.SlidingWindow, Requests: 19, Window: 30 * time.Second},
				Name:  "conf.window", RequestsPerUnit: 19, Unit: UnitSecond, UnitMultiplier: 30,
			}}},
		},
		{
			name: "unlimited has no limits",
			give: entries("internal", "x"),
			want: Rule{Name: "conf.internal", Path: "conf.internal", Unlimited: true},
		},
		{
			name: "flags",
			give: entries("trial", "x"),
			want: Rule{Name: "conf.trial", Path: "conf.trial", Shadow: true, DetailedMetric: true, Quota: true, Limits: []Limit{{
				Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 8, Window: 24 * time.Hour},
				Name:  "conf.trial", RequestsPerUnit: 8, Unit: UnitDay, UnitMultiplier: 1,
			}}},
		},
		{
			name: "share_threshold pattern per entry",
			give: entries("files", "docs/x", "method", "GET"),
			want: Rule{Name: "conf.files_docs/*.method", Path: "conf.files_docs/*.method", SharedValues: []string{"docs/*", ""}, Limits: []Limit{{
				Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 21, Window: time.Hour},
				Name:  "conf.files_docs/*.method", RequestsPerUnit: 21, Unit: UnitHour, UnitMultiplier: 1,
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := s.Match("conf", tt.give)
			if !ok {
				t.Fatalf("Match(%v): got no match, want %s", tt.give, tt.want.Name)
			}
			if diff := cmp.Diff(tt.want, *r); diff != "" {
				t.Errorf("Match(%v) rule (-want +got):\n%s", tt.give, diff)
			}
			for _, l := range r.Limits {
				if err := l.Limit.Validate(); err != nil {
					t.Errorf("limit %s: got Validate error %v, want nil", l.Name, err)
				}
			}
		})
	}
}

func TestUnits(t *testing.T) {
	tests := []struct {
		give       string // rate_limit body
		wantWindow time.Duration
		wantUnit   Unit
		wantMult   uint32
	}{
		{"unit: second", time.Second, UnitSecond, 1},
		{"unit: minute", time.Minute, UnitMinute, 1},
		{"unit: hour", time.Hour, UnitHour, 1},
		{"unit: day", 24 * time.Hour, UnitDay, 1},
		{"unit: week", 7 * 24 * time.Hour, UnitWeek, 1},
		{"unit: month", 30 * 24 * time.Hour, UnitMonth, 1},
		{"unit: year", 365 * 24 * time.Hour, UnitYear, 1},
		{"unit: Hour", time.Hour, UnitHour, 1},
		{"unit: DAY", 24 * time.Hour, UnitDay, 1},
		{"{unit: second, unit_multiplier: 10}", 10 * time.Second, UnitSecond, 10},
		{"{unit: minute, unit_multiplier: 15}", 15 * time.Minute, UnitMinute, 15},
		{"{unit: year, unit_multiplier: 10}", 3650 * 24 * time.Hour, UnitYear, 10},
		{"window: 30s", 30 * time.Second, UnitSecond, 30},
		{"window: 90s", 90 * time.Second, UnitSecond, 90},
		{"window: 2m", 2 * time.Minute, UnitMinute, 2},
		{"window: 2h", 2 * time.Hour, UnitHour, 2},
		{"window: 336h", 14 * 24 * time.Hour, UnitWeek, 2},
		{"window: 1440h", 60 * 24 * time.Hour, UnitMonth, 2},
		{"window: 250ms", 250 * time.Millisecond, UnitSecond, 0},
		{"window: 1ms", time.Millisecond, UnitSecond, 0},
		{"window: 1500ms", 1500 * time.Millisecond, UnitSecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			body := tt.give
			if body[0] != '{' {
				body = "{" + body + "}"
			}
			doc := "domain: d\ndescriptors:\n  - key: k\n    rate_limit: " + body[:len(body)-1] + ", requests_per_unit: 3}\n"
			s, err := Parse("units.yaml", []byte(doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			r, ok := s.Match("d", entries("k", "v"))
			if !ok {
				t.Fatal("got no match, want one")
			}
			l := r.Limits[0]
			if l.Window != tt.wantWindow || l.Unit != tt.wantUnit || l.UnitMultiplier != tt.wantMult {
				t.Errorf("got window %s unit %s x%d, want %s unit %s x%d", l.Window, l.Unit, l.UnitMultiplier,
					tt.wantWindow, tt.wantUnit, tt.wantMult)
			}
		})
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*c", "abc", true},
		{"*c", "abcd", false},
		{"a*c", "ac", true},
		{"a*c", "abbbc", true},
		{"a*c", "abcd", false},
		{"ab*ba", "aba", false},
		{"a*b*a", "aba", true},
		{"/api/*/x/*", "/api/1/x/2", true},
		{"/api/*/x/*", "/api/1/y/2", false},
		{"*/x/*", "/x/", true},
		{"**", "", true},
		{"*", "", true},
		{"a*b*c", "acb", false},
	}
	for _, tt := range tests {
		got := wildcardMatch(splitStar(tt.pattern), tt.value)
		if got != tt.want {
			t.Errorf("wildcardMatch(%q, %q): got %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	s := loadConformance(t)
	cases := [][]Entry{
		entries("user", "vip"),
		entries("route", "/api/v1/items/42"),
		entries("parent", "p", "child", "x"),
		entries("nope", "x"),
	}
	for _, es := range cases {
		allocs := testing.AllocsPerRun(100, func() { s.Match("conf", es) })
		if allocs != 0 {
			t.Errorf("Match(%v): got %v allocations, want 0", es, allocs)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	s := loadConformance(b)
	cases := []struct {
		name string
		give []Entry
	}{
		{"exact", entries("user", "vip")},
		{"default", entries("user", "alice")},
		{"wildcard", entries("route", "/api/v1/items/42")},
		{"nested", entries("parent", "p", "child", "x")},
		{"miss", entries("nope", "x")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Match("conf", c.give)
				}
			})
		})
	}
}

func splitStar(s string) []string { return strings.Split(s, "*") }
