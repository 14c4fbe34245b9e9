package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustParse(t *testing.T, files ...File) *Snapshot {
	t.Helper()
	s, err := ParseFiles(files...)
	if err != nil {
		t.Fatalf("ParseFiles: %v", err)
	}
	return s
}

const diffBase = `domain: api
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: plan
    value: free
    rate_limit: {unit: second, requests_per_unit: 5, algorithm: token_bucket, burst: 10}
http_rules:
  - name: login
    match: {path_prefix: /login, methods: [POST]}
    rate_limit: {unit: minute, requests_per_unit: 5}
`

func TestDiffTexts(t *testing.T) {
	tests := []struct {
		name string
		give string // the after document (before is diffBase)
		want []string
	}{
		{"equal", diffBase, nil},
		{"requests", doc(
			"domain: api",
			"descriptors:",
			"  - key: user",
			"    rate_limit: {unit: minute, requests_per_unit: 10}",
			"  - key: user",
			"    value: vip",
			"    rate_limit: {unit: minute, requests_per_unit: 20}",
			"  - key: plan",
			"    value: free",
			"    rate_limit: {unit: second, requests_per_unit: 5, algorithm: token_bucket, burst: 10}",
			"http_rules:",
			"  - name: login",
			"    match: {path_prefix: /login, methods: [POST]}",
			"    rate_limit: {unit: minute, requests_per_unit: 5}",
		), []string{"api.user_vip: 10/minute → 20/minute"}},
		{"add, remove, flags, http", doc(
			"domain: api",
			"descriptors:",
			"  - key: user",
			"    shadow_mode: true",
			"    rate_limit: {unit: hour, unit_multiplier: 2, requests_per_unit: 10, algorithm: sliding_window}",
			"  - key: user",
			"    value: gold",
			"    rate_limit: {unit: second, requests_per_unit: 5, algorithm: token_bucket, burst: 10}",
			"  - key: plan",
			"    value: free",
			"    rate_limit: {unlimited: true, name: free}",
			"http_rules:",
			"  - name: login",
			"    match: {path_prefix: /signin, methods: [POST, PUT]}",
			"    rate_limit: {window: 1500ms, requests_per_unit: 5}",
		), []string{
			"api.user: 10/minute → 10/2 hours sliding_window; shadow_mode off → on",
			"api.user_gold: added 5/second token_bucket burst 10",
			`api.plan_free: 5/second token_bucket burst 10 → unlimited; name "api.plan_free" → "free"`,
			"api.user_vip: removed (was 10/minute)",
			`api.http_rules.login: 5/minute → 5/1.5s; path_prefix "/login" → "/signin"; methods [POST] → [POST, PUT]`,
		}},
		{"several limits", doc(
			"domain: api",
			"descriptors:",
			"  - key: user",
			"    rate_limits:",
			"      - {unit: second, requests_per_unit: 10}",
			"      - {unit: day, requests_per_unit: 1000, name: daily}",
			"  - key: user",
			"    value: vip",
			"    rate_limit: {unit: minute, requests_per_unit: 10}",
			"  - key: plan",
			"    value: free",
			"    rate_limit: {unit: second, requests_per_unit: 5, algorithm: token_bucket, burst: 10}",
			"http_rules:",
			"  - name: login",
			"    match: {path_prefix: /login, methods: [POST]}",
			"    rate_limit: {unit: minute, requests_per_unit: 5}",
		), []string{"api.user: 10/minute → 10/second + 1000/day"}},
	}
	before := mustParse(t, File{Name: "api.yaml", Data: []byte(diffBase)})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := mustParse(t, File{Name: "api.yaml", Data: []byte(tt.give)})
			var got []string
			for _, c := range Diff(before, after) {
				got = append(got, c.Text)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Diff texts (-want +got):\n%s", d)
			}
		})
	}
}

func TestDiffStructure(t *testing.T) {
	before := mustParse(t, File{Name: "api.yaml", Data: []byte(diffBase)},
		File{Name: "old.yaml", Data: []byte("domain: old\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")})
	after := mustParse(t, File{Name: "api.yaml", Data: []byte(diffBase)},
		File{Name: "new.yaml", Data: []byte("domain: new\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")})
	got := Diff(before, after)
	want := []Change{
		{Op: OpAdd, Domain: "new", Kind: KindDomain, Path: "new", Text: "domain new: added (1 rule)"},
		{Op: OpRemove, Domain: "old", Kind: KindDomain, Path: "old", Text: "domain old: removed (1 rule)"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Diff (-want +got):\n%s", d)
	}
	if got, want := SummaryText(got), "domain new: added (1 rule)\ndomain old: removed (1 rule)"; got != want {
		t.Errorf("SummaryText: got %q, want %q", got, want)
	}

	// A changed rule carries both summaries and the fields that differ.
	changed := mustParse(t, File{Name: "api.yaml", Data: []byte(diffBase[:len(diffBase)-len("    rate_limit: {unit: minute, requests_per_unit: 5}\n")] +
		"    rate_limit: {unit: hour, requests_per_unit: 7, algorithm: token_bucket, burst: 3}\n")})
	cs := Diff(mustParse(t, File{Name: "api.yaml", Data: []byte(diffBase)}), changed)
	if len(cs) != 1 {
		t.Fatalf("got %d changes, want 1: %+v", len(cs), cs)
	}
	wantC := Change{Op: OpChange, Domain: "api", Kind: KindHTTPRule, Path: "login",
		Fields: []string{"requests_per_unit", "unit", "algorithm", "burst"},
		Before: &RuleSummary{Name: "login", Limits: []LimitSummary{{Name: "login", Algorithm: "fixed_window",
			RequestsPerUnit: 5, Unit: "minute", UnitMultiplier: 1, WindowSeconds: 60}},
			PathPrefix: "/login", Methods: []string{"POST"}, Key: []string{"client_ip"}, OnMissing: "client_ip"},
		After: &RuleSummary{Name: "login", Limits: []LimitSummary{{Name: "login", Algorithm: "token_bucket",
			RequestsPerUnit: 7, Unit: "hour", UnitMultiplier: 1, WindowSeconds: 3600, Burst: 3}},
			PathPrefix: "/login", Methods: []string{"POST"}, Key: []string{"client_ip"}, OnMissing: "client_ip"},
		Text: "api.http_rules.login: 5/minute → 7/hour token_bucket burst 3"}
	if d := cmp.Diff(wantC, cs[0]); d != "" {
		t.Errorf("change (-want +got):\n%s", d)
	}
}

func TestDiffNilAndDefault(t *testing.T) {
	if got := Diff(nil, nil); got != nil {
		t.Errorf("Diff(nil, nil): got %v, want nil", got)
	}
	def := Default()
	if got := Diff(def, def); got != nil {
		t.Errorf("Diff(Default, Default): got %v, want nil", got)
	}
	got := SummaryText(Diff(nil, def))
	if want := "domain api: added (12 rules)\ndomain edge: added (5 rules, 5 http rules)"; got != want {
		t.Errorf("Diff(nil, Default): got %q, want %q", got, want)
	}
	got = SummaryText(Diff(def, nil))
	if want := "domain api: removed (12 rules)\ndomain edge: removed (5 rules, 5 http rules)"; got != want {
		t.Errorf("Diff(Default, nil): got %q, want %q", got, want)
	}
}
