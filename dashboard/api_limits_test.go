package dashboard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/internal/redistest"
)

func TestAPIGetLimits(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	r := a.call(t, "GET", "/api/v1/limits", "viewer", "")
	if r.status != 200 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("GET /api/v1/limits: got %d ETag %q, want 200 \"1\"", r.status, r.header.Get("ETag"))
	}
	var doc limitsDoc
	r.decode(t, &doc)
	if doc.Version != 1 || doc.Source != config.SourceSeed || doc.Digest == "" || doc.CreatedAt.IsZero() || len(doc.Domains) != 2 {
		t.Fatalf("got %+v, want version 1 from the seed with two domains", doc)
	}
	files := a.rt.Snapshot().Files()
	for _, d := range doc.Domains {
		i := slices.IndexFunc(files, func(f config.File) bool { return f.Name == d.File })
		if i < 0 || d.YAML != string(files[i].Data) || len(d.Rules) == 0 {
			t.Errorf("domain %s: file %q yaml %d bytes, %d rules; want its file's text and rules", d.Domain, d.File, len(d.YAML), len(d.Rules))
		}
	}
	if raw := r.json(t); raw["version"] != "1" {
		t.Errorf("version in JSON: got %#v, want the string \"1\"", raw["version"])
	}

	// YAML: the files as one stream, which PUT accepts back unchanged (nothing to store).
	r = a.call(t, "GET", "/api/v1/limits", "viewer", "", "Accept", "application/yaml, application/json;q=0.5")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") || !strings.Contains(string(r.body), "\n---\n") {
		t.Fatalf("YAML: got %q:\n%s", ct, r.body)
	}
	back := a.call(t, "PUT", "/api/v1/limits", "admin", string(r.body), "Content-Type", "application/yaml")
	var res writeResult
	back.decode(t, &res)
	if back.status != 200 || res.Version != 1 || len(res.Changes) != 0 {
		t.Errorf("PUT of the GET stream: got %d %+v, want version 1 unchanged", back.status, res)
	}

	// One domain, JSON and YAML.
	r = a.call(t, "GET", "/api/v1/limits/edge", "viewer", "")
	got := r.json(t)
	if got["version"] != "1" || got["domain"] != "edge" || !strings.Contains(got["yaml"].(string), "domain: edge") || len(got["http_rules"].([]any)) != 5 {
		t.Errorf("GET /api/v1/limits/edge: got %v", got)
	}
	r = a.call(t, "GET", "/api/v1/limits/edge", "viewer", "", "Accept", "application/yaml")
	if !strings.HasPrefix(string(r.body), "# Domain \"edge\"") {
		t.Errorf("GET edge as YAML: got %s", r.body)
	}
	a.call(t, "GET", "/api/v1/limits/nope", "viewer", "").problem(t, 404, "not-found")

	// Rules: by escaped path (slashes and stars), HTTP rules by name or path.
	tests := []struct {
		domain, rule, kind, name string
	}{
		{"api", "api.user_vip", "rule", "api.user_vip"},
		{"api", "api.path_/api/*/export", "rule", "api.path_/api/*/export"},
		{"api", "api.category_read", "rule", "read"},
		{"api", "api.tenant.method_POST", "rule", "api.tenant.method_POST"},
		{"edge", "login", "http_rule", "login"},
		{"edge", "edge.http_rules.uploads", "http_rule", "uploads"},
	}
	for _, tt := range tests {
		r := a.call(t, "GET", "/api/v1/limits/"+tt.domain+"/rules/"+url.PathEscape(tt.rule), "viewer", "")
		got := r.json(t)
		rule, _ := got["rule"].(map[string]any)
		if r.status != 200 || got["kind"] != tt.kind || got["domain"] != tt.domain || rule["name"] != tt.name || r.header.Get("ETag") != `"1"` {
			t.Errorf("GET rule %s: got %d %v", tt.rule, r.status, got)
		}
	}
	a.call(t, "GET", "/api/v1/limits/api/rules/api.nobody", "viewer", "").problem(t, 404, "not-found")
	a.call(t, "GET", "/api/v1/limits/api/rules/login", "viewer", "").problem(t, 404, "not-found")
}

// TestAPIPatchRule: preview, apply with If-Match, the stale If-Match, invalid values, the audit record.
func TestAPIPatchRule(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	const path = "/api/v1/limits/api/rules/api.user_vip"
	vip := config.Entry{Key: "user", Value: "vip"}

	// Dry run: the diff, nothing stored, nothing recorded.
	r := a.call(t, "PATCH", path+"?dry_run=true", "admin", `{"requests_per_unit": 20}`, "Content-Type", jsonCT, "If-Match", `"1"`)
	var dry dryRunResult
	r.decode(t, &dry)
	if r.status != 200 || !dry.DryRun || !dry.Valid || dry.BaseVersion != 1 || dry.Summary != "api.user_vip: 100/minute → 20/minute" {
		t.Fatalf("dry run: got %d %+v", r.status, dry)
	}
	if len(dry.Changes) != 1 || dry.Changes[0].Path != "api.user_vip" || !slices.Equal(dry.Changes[0].Fields, []string{"requests_per_unit"}) {
		t.Errorf("dry run changes: got %+v", dry.Changes)
	}
	if raw := r.json(t); raw["base_version"] != "1" {
		t.Errorf("base_version: got %#v, want \"1\"", raw["base_version"])
	}
	if v, l := a.version(t), a.limitOf(t, "api", vip); v != 1 || l != 100 || len(a.changes.all()) != 0 {
		t.Fatalf("after the dry run: version %d, limit %d, %d audit records; want 1, 100, 0", v, l, len(a.changes.all()))
	}

	// Apply.
	r = a.call(t, "PATCH", path, "admin", `{"requests_per_unit": 20}`, "Content-Type", "application/merge-patch+json", "If-Match", `"1"`)
	var res writeResult
	r.decode(t, &res)
	if r.status != 200 || res.Version != 2 || r.header.Get("ETag") != `"2"` || res.Summary != "api.user_vip: 100/minute → 20/minute" {
		t.Fatalf("apply: got %d %+v ETag %q", r.status, res, r.header.Get("ETag"))
	}
	if l := a.limitOf(t, "api", vip); l != 20 {
		t.Errorf("running limit: got %d, want 20", l)
	}
	cur, _ := a.rt.Store().Current(context.Background())
	if cur.Author != "alice" || cur.Source != config.SourceAPI || cur.Message != "patch api.user_vip" || cur.Remote != "127.0.0.1" {
		t.Errorf("stored revision: got author %q source %q message %q remote %q", cur.Author, cur.Source, cur.Message, cur.Remote)
	}
	rec := a.changes.all()
	if len(rec) != 1 {
		t.Fatalf("got %d audit records, want 1", len(rec))
	}
	want := audit.Change{Actor: "alice", Remote: "127.0.0.1", Action: "patch", VersionBefore: 1, VersionAfter: 2,
		Summary: "api.user_vip: 100/minute → 20/minute", Diff: rec[0].Diff}
	if d := cmp.Diff(want, rec[0]); d != "" {
		t.Errorf("audit record (-want +got):\n%s", d)
	}
	if !strings.Contains(string(rec[0].Diff), `"path":"api.user_vip"`) {
		t.Errorf("audit diff: got %s", rec[0].Diff)
	}

	// The same If-Match again is stale now: 412 with the current version, nothing stored.
	r = a.call(t, "PATCH", path, "admin", `{"requests_per_unit": 30}`, "Content-Type", jsonCT, "If-Match", `"1"`)
	if p := r.problem(t, 412, "precondition-failed"); p.CurrentVersion != "2" {
		t.Errorf("412: got current_version %q, want \"2\"", p.CurrentVersion)
	}
	// A weak tag never matches (strong comparison).
	r = a.call(t, "PATCH", path, "admin", `{"requests_per_unit": 30}`, "Content-Type", jsonCT, "If-Match", `W/"2"`)
	if p := r.problem(t, 412, "precondition-failed"); p.CurrentVersion != "2" {
		t.Errorf("412 for W/: got current_version %q, want \"2\"", p.CurrentVersion)
	}
	// Bare digits work; without If-Match the patch applies to whatever is current.
	for i, h := range []string{"2", `"3"`, ""} {
		hdr := []string{"Content-Type", jsonCT}
		if h != "" {
			hdr = append(hdr, "If-Match", h)
		}
		r = a.call(t, "PATCH", path, "admin", fmt.Sprintf(`{"requests_per_unit": %d}`, 30+i), hdr...)
		if r.status != 200 {
			t.Fatalf("If-Match %q: got %d %s", h, r.status, r.body)
		}
	}
	if v, l := a.version(t), a.limitOf(t, "api", vip); v != 5 || l != 32 {
		t.Errorf("got version %d limit %d, want 5 and 32", v, l)
	}

	// A patch that changes nothing stores nothing.
	r = a.call(t, "PATCH", path, "admin", `{"requests_per_unit": 32}`, "Content-Type", jsonCT)
	r.decode(t, &res)
	if r.status != 200 || res.Version != 5 || len(res.Changes) != 0 || a.version(t) != 5 {
		t.Errorf("no-op patch: got %d %+v, store at %d; want version 5 unchanged", r.status, res, a.version(t))
	}

	// Invalid values: 400 invalid-limits with the field; nothing stored.
	p := a.call(t, "PATCH", path, "admin", `{"unit": "fortnight", "burst": 5}`, "Content-Type", jsonCT).problem(t, 400, "invalid-limits")
	var fields []string
	for _, e := range p.Errors {
		fields = append(fields, e.Field)
		if e.File != "examples/ratelimit.yaml" || e.Line == 0 || e.Reason == "" {
			t.Errorf("error %+v: want file, line and reason", e)
		}
	}
	if !slices.ContainsFunc(fields, func(f string) bool { return strings.HasSuffix(f, ".rate_limit.unit") }) ||
		!slices.ContainsFunc(fields, func(f string) bool { return strings.HasSuffix(f, ".rate_limit.burst") }) {
		t.Errorf("error fields: got %v, want the unit and the burst", fields)
	}
	// A rule with several limits cannot be patched field by field.
	p = a.call(t, "PATCH", "/api/v1/limits/edge/rules/edge.user", "admin", `{"requests_per_unit": 1}`, "Content-Type", jsonCT).problem(t, 400, "invalid-limits")
	if len(p.Errors) != 1 || p.Errors[0].Field != "edge.user" || !strings.Contains(p.Errors[0].Reason, "2 limits") {
		t.Errorf("several limits: got %+v", p.Errors)
	}
	a.call(t, "PATCH", "/api/v1/limits/api/rules/api.nobody", "admin", `{}`, "Content-Type", jsonCT).problem(t, 404, "not-found")
	a.call(t, "PATCH", "/api/v1/limits/nope/rules/x", "admin", `{}`, "Content-Type", jsonCT).problem(t, 404, "not-found")

	// An HTTP rule by name, with an escaped wildcard path for a descriptor rule too.
	if r := a.call(t, "PATCH", "/api/v1/limits/edge/rules/login", "admin", `{"requests_per_unit": 9, "shadow_mode": true}`, "Content-Type", jsonCT); r.status != 200 {
		t.Errorf("PATCH login: got %d %s", r.status, r.body)
	}
	if h := a.rt.Snapshot().HTTPRules("edge")[1]; h.Name != "login" || h.Limits[0].Requests != 9 || !h.Shadow {
		t.Errorf("login: got %+v", h)
	}
	if r := a.call(t, "PATCH", "/api/v1/limits/api/rules/"+url.PathEscape("api.path_/api/*/export"), "admin", `{"requests_per_unit": 3}`, "Content-Type", jsonCT); r.status != 200 {
		t.Errorf("PATCH wildcard path: got %d %s", r.status, r.body)
	}
	if l := a.limitOf(t, "api", config.Entry{Key: "path", Value: "/api/v1/export"}); l != 3 {
		t.Errorf("export limit: got %d, want 3", l)
	}
	// Comments of the file survive the edits.
	if f := a.rt.Snapshot().Files(); !strings.Contains(string(f[1].Data), "# ... except the user \"vip\", who gets 100 per minute") {
		t.Errorf("comments lost:\n%s", f[1].Data)
	}
}

// TestAPIDuplicateDescriptors is B38 through the API: two identical (user, vip) entries are rejected as a
// whole, the errors name api.user_vip, and the version stays.
func TestAPIDuplicateDescriptors(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	const doc = `domain: api
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 20}
`
	for _, q := range []string{"?dry_run=true", ""} {
		p := a.call(t, "PUT", "/api/v1/limits/api"+q, "admin", doc, "Content-Type", "application/yaml").problem(t, 400, "invalid-limits")
		if len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Reason, "api.user_vip") || p.Errors[0].Line != 8 || p.Errors[0].Field != "descriptors[2]" {
			t.Errorf("PUT%s: got errors %+v, want one naming api.user_vip at line 8", q, p.Errors)
		}
	}
	if v := a.version(t); v != 1 || a.rt.Snapshot().Info().Version != 1 {
		t.Errorf("version: got %d, want 1", v)
	}
	if l := a.limitOf(t, "api", config.Entry{Key: "user", Value: "vip"}); l != 100 {
		t.Errorf("vip limit: got %d, want the old 100", l)
	}
}

func TestAPIPutDomain(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	// A new domain as JSON: stored as block YAML under api/<domain>.yaml.
	js := `{"domain": "shop", "descriptors": [{"key": "sku", "rate_limit": {"unit": "second", "requests_per_unit": 3}}]}`
	r := a.call(t, "PUT", "/api/v1/limits/shop", "admin", js, "Content-Type", jsonCT)
	var res writeResult
	r.decode(t, &res)
	if r.status != 200 || res.Version != 2 || res.Summary != "domain shop: added (1 rule)" {
		t.Fatalf("PUT shop: got %d %+v", r.status, res)
	}
	got := a.call(t, "GET", "/api/v1/limits/shop", "viewer", "").json(t)
	if got["file"] != "api/shop.yaml" || got["yaml"] != "domain: shop\ndescriptors:\n  - key: sku\n    rate_limit:\n      unit: second\n      requests_per_unit: 3\n" {
		t.Errorf("GET shop: got %v", got)
	}
	// Replace an existing domain (its file keeps its name), as text/yaml.
	r = a.call(t, "PUT", "/api/v1/limits/shop?dry_run=1", "admin", "domain: shop\ndescriptors:\n  - key: sku\n    rate_limit: {unit: second, requests_per_unit: 4}\n", "Content-Type", "text/yaml; charset=utf-8")
	var dry dryRunResult
	r.decode(t, &dry)
	if dry.Summary != "shop.sku: 3/second → 4/second" || a.version(t) != 2 {
		t.Errorf("dry run: got %+v (store at %d)", dry, a.version(t))
	}
	// The domain key must match the URL.
	p := a.call(t, "PUT", "/api/v1/limits/shop", "admin", "domain: other\ndescriptors: []\n", "Content-Type", "application/yaml").problem(t, 400, "invalid-limits")
	if len(p.Errors) != 1 || p.Errors[0].Field != "domain" || p.Errors[0].File != "api/shop.yaml" || p.Errors[0].Line != 1 {
		t.Errorf("mismatched domain: got %+v", p.Errors)
	}
	// Invalid YAML: the line of the syntax error.
	p = a.call(t, "PUT", "/api/v1/limits/shop", "admin", "domain: shop\ndescriptors: [\n", "Content-Type", "application/yaml").problem(t, 400, "invalid-limits")
	if len(p.Errors) != 1 || p.Errors[0].Line == 0 || !strings.Contains(p.Errors[0].Reason, "invalid YAML") {
		t.Errorf("invalid YAML: got %+v", p.Errors)
	}
	if v := a.version(t); v != 2 {
		t.Errorf("version: got %d, want 2", v)
	}
}

func TestAPIPutLimits(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	before := a.rt.Snapshot().Files()
	apiFile := before[slices.IndexFunc(before, func(f config.File) bool { return strings.Contains(string(f.Data), "\ndomain: api\n") })]

	// JSON: YAML text for api (unchanged), a JSON object for a new domain; edge is not named: removed.
	body := compactJSON(map[string]any{"domains": map[string]any{
		"api":  string(apiFile.Data),
		"shop": map[string]any{"domain": "shop", "descriptors": []any{map[string]any{"key": "sku", "rate_limit": map[string]any{"unit": "day", "requests_per_unit": 1}}}},
	}})
	r := a.call(t, "PUT", "/api/v1/limits", "admin", body, "Content-Type", jsonCT)
	var res writeResult
	r.decode(t, &res)
	if r.status != 200 || res.Version != 2 {
		t.Fatalf("PUT: got %d %s", r.status, r.body)
	}
	if want := "domain edge: removed (5 rules, 5 http rules)\ndomain shop: added (1 rule)"; res.Summary != want {
		t.Errorf("summary: got %q, want %q", res.Summary, want)
	}
	files := a.rt.Snapshot().Files()
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"api/shop.yaml", apiFile.Name}) {
		t.Errorf("files: got %v, want the api file's name kept and api/shop.yaml", names)
	}

	// A YAML stream: one document per domain; comments before the first document are fine.
	stream := "# all limits\n---\n" + string(apiFile.Data) + "---\ndomain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
	r = a.call(t, "PUT", "/api/v1/limits", "admin", stream, "Content-Type", "application/x-yaml", "If-Match", `"2"`)
	r.decode(t, &res)
	if r.status != 200 || res.Version != 3 || res.Summary != "domain edge: added (1 rule)\ndomain shop: removed (1 rule)" {
		t.Errorf("PUT stream: got %d %+v", r.status, res)
	}

	tests := []struct {
		name, ct, body string
		status         int
		slug, want     string
	}{
		{"duplicate domain", "application/yaml", "domain: a\ndescriptors: []\n---\ndomain: a\ndescriptors: []\n", 400, "invalid-limits", `domain "a" is already defined`},
		{"empty stream", "application/yaml", "# nothing\n---\n", 400, "bad-request", "holds no document"},
		{"empty domains", jsonCT, `{"domains": {}}`, 400, "bad-request", "names no domain"},
		{"key and document disagree", jsonCT, `{"domains": {"a": "domain: b\ndescriptors: []\n"}}`, 400, "invalid-limits", `is "b", want "a"`},
		{"number", jsonCT, `{"domains": {"a": 5}}`, 400, "bad-request", "domains.a"},
		{"invalid document", "application/yaml", "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: parsec, requests_per_unit: 1}\n", 400, "invalid-limits", "unknown unit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := a.call(t, "PUT", "/api/v1/limits", "admin", tt.body, "Content-Type", tt.ct).problem(t, tt.status, tt.slug)
			if !strings.Contains(p.Detail, tt.want) {
				t.Errorf("detail: got %q, want %q in it", p.Detail, tt.want)
			}
		})
	}
	if v := a.version(t); v != 3 {
		t.Errorf("version: got %d, want 3", v)
	}
}

func TestAPIDeleteDomain(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	r := a.call(t, "DELETE", "/api/v1/limits/edge?dry_run=true", "admin", "")
	if got := r.json(t); got["summary"] != "domain edge: removed (5 rules, 5 http rules)" || a.version(t) != 1 {
		t.Errorf("dry run: got %v", got)
	}
	r = a.call(t, "DELETE", "/api/v1/limits/edge", "admin", "", "If-Match", `"1"`)
	if r.status != 200 || a.rt.Snapshot().HasDomain("edge") || a.version(t) != 2 {
		t.Fatalf("DELETE: got %d %s", r.status, r.body)
	}
	a.call(t, "DELETE", "/api/v1/limits/edge", "admin", "").problem(t, 404, "not-found")
	if rec := a.changes.all(); len(rec) != 1 || rec[0].Action != "delete" || rec[0].VersionAfter != 2 {
		t.Errorf("audit: got %+v", rec)
	}
}

func TestAPIHistoryAndRollback(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	for _, n := range []int{20, 30} {
		if r := a.call(t, "PATCH", "/api/v1/limits/api/rules/api.user_vip", "admin", fmt.Sprintf(`{"requests_per_unit": %d}`, n), "Content-Type", jsonCT); r.status != 200 {
			t.Fatalf("PATCH: got %d %s", r.status, r.body)
		}
	}
	r := a.call(t, "GET", "/api/v1/limits/history", "viewer", "")
	var hist []historyEntry
	r.decode(t, &hist)
	if len(hist) != 3 {
		t.Fatalf("history: got %d entries, want 3", len(hist))
	}
	wantSummaries := []string{"api.user_vip: 20/minute → 30/minute", "api.user_vip: 100/minute → 20/minute",
		"domain api: added (12 rules)\ndomain edge: added (5 rules, 5 http rules)"}
	for i, e := range hist {
		if e.Version != uint64(3-i) || e.Summary != wantSummaries[i] || e.CreatedAt.IsZero() || e.Digest == "" {
			t.Errorf("history[%d]: got %+v, want version %d %q", i, e, 3-i, wantSummaries[i])
		}
	}
	if hist[0].Author != "alice" || hist[0].Message != "patch api.user_vip" || hist[2].Source != config.SourceSeed {
		t.Errorf("history metadata: got %+v / %+v", hist[0], hist[2])
	}
	r = a.call(t, "GET", "/api/v1/limits/history?limit=1", "viewer", "")
	r.decode(t, &hist)
	if len(hist) != 1 || hist[0].Version != 3 || len(hist[0].Changes) != 1 {
		t.Errorf("limit=1: got %+v", hist)
	}
	a.call(t, "GET", "/api/v1/limits/history?limit=0", "viewer", "").problem(t, 400, "bad-request")

	r = a.call(t, "GET", "/api/v1/limits/history/2", "viewer", "")
	var rev config.Revision
	r.decode(t, &rev)
	if r.status != 200 || rev.Version != 2 || len(rev.Files) != 2 || r.header.Get("ETag") != `"2"` || !strings.Contains(string(rev.Files[1].Data), "requests_per_unit: 20") {
		t.Errorf("GET history/2: got %d %+v", r.status, rev)
	}
	a.call(t, "GET", "/api/v1/limits/history/99", "viewer", "").problem(t, 404, "not-found")
	a.call(t, "GET", "/api/v1/limits/history/abc", "viewer", "").problem(t, 400, "bad-request")

	// Roll back to version 1: a dry run shows the way back, then version 4 holds version 1's files.
	r = a.call(t, "POST", "/api/v1/limits/rollback?dry_run=true", "admin", `{"version": "1"}`, "Content-Type", jsonCT)
	if got := r.json(t); got["summary"] != "api.user_vip: 30/minute → 100/minute" || got["base_version"] != "3" {
		t.Errorf("rollback dry run: got %v", got)
	}
	r = a.call(t, "POST", "/api/v1/limits/rollback", "admin", `{"version": 1}`, "Content-Type", jsonCT, "If-Match", `"3"`)
	var res writeResult
	r.decode(t, &res)
	if r.status != 200 || res.Version != 4 || a.limitOf(t, "api", config.Entry{Key: "user", Value: "vip"}) != 100 {
		t.Fatalf("rollback: got %d %s", r.status, r.body)
	}
	cur, _ := a.rt.Store().Current(context.Background())
	one, _ := a.rt.Store().Get(context.Background(), 1)
	if cur.Source != config.SourceRollback || cur.Message != "rollback to 1" || config.DigestFiles(cur.Files) != config.DigestFiles(one.Files) {
		t.Errorf("rolled back revision: got source %q message %q", cur.Source, cur.Message)
	}
	if rec := a.changes.all(); rec[len(rec)-1].Action != "rollback" || rec[len(rec)-1].VersionBefore != 3 {
		t.Errorf("audit: got %+v", rec[len(rec)-1])
	}
	a.call(t, "POST", "/api/v1/limits/rollback", "admin", `{"version": "99"}`, "Content-Type", jsonCT).problem(t, 404, "not-found")
	a.call(t, "POST", "/api/v1/limits/rollback", "admin", `{"version": "0"}`, "Content-Type", jsonCT).problem(t, 400, "bad-request")
	a.call(t, "POST", "/api/v1/limits/rollback", "admin", `{}`, "Content-Type", jsonCT).problem(t, 400, "bad-request")
}

// racingAdmin is the real runtime, except that before its first Update another writer stores a version:
// the API's compare-and-set then loses the race.
type racingAdmin struct {
	*config.Runtime
	races int
}

func (r *racingAdmin) Update(ctx context.Context, expect uint64, files []config.File, meta config.Revision) (config.Revision, *config.Snapshot, error) {
	if r.races > 0 {
		r.races--
		cur, err := r.Runtime.Store().Current(ctx)
		if err != nil {
			return config.Revision{}, nil, err
		}
		other, err := config.PatchRule(cur.Files, "api", "api.remote_address", config.RulePatch{RequestsPerUnit: ptr(uint64(7 + r.races))})
		if err != nil {
			return config.Revision{}, nil, err
		}
		if _, _, err := r.Runtime.Update(ctx, cur.Version, other, config.Revision{Author: "bob"}); err != nil {
			return config.Revision{}, nil, err
		}
	}
	return r.Runtime.Update(ctx, expect, files, meta)
}

func ptr[T any](v T) *T { return &v }

func TestAPIConflict(t *testing.T) {
	var racer *racingAdmin
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	racer = &racingAdmin{Runtime: a.rt, races: 1}
	b := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.Admin = racer })
	_ = a

	// With If-Match, the lost race is a 409 with the version now current.
	p := b.call(t, "PATCH", "/api/v1/limits/api/rules/api.user_vip", "admin", `{"requests_per_unit": 1}`, "Content-Type", jsonCT, "If-Match", `"1"`).problem(t, 409, "conflict")
	if p.CurrentVersion != "2" {
		t.Errorf("409: got current_version %q, want \"2\"", p.CurrentVersion)
	}
	// Without If-Match the edit is applied again to the newer version: both changes survive.
	racer.races = 1
	r := b.call(t, "PATCH", "/api/v1/limits/api/rules/api.user_vip", "admin", `{"requests_per_unit": 1}`, "Content-Type", jsonCT)
	var res writeResult
	r.decode(t, &res)
	if r.status != 200 || res.Version != 4 || res.Summary != "api.user_vip: 100/minute → 1/minute" {
		t.Fatalf("retried write: got %d %s", r.status, r.body)
	}
	s := a.rt.Snapshot()
	if vip, _ := s.Match("api", []config.Entry{{Key: "user", Value: "vip"}}); vip.Limits[0].Requests != 1 {
		t.Errorf("vip: got %d, want 1", vip.Limits[0].Requests)
	}
	if ra, _ := s.Match("api", []config.Entry{{Key: "remote_address", Value: "x"}}); ra.Limits[0].Requests != 7 {
		t.Errorf("remote_address (the other writer's change): got %d, want 7", ra.Limits[0].Requests)
	}
}

// TestAPIFileSource: limits from files are read-only (409 read-only); a dry run still validates.
func TestAPIFileSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(path, []byte("domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := newAPIRig(t, config.RuntimeOptions{Source: config.SourceFile, Path: path}, nil)
	r := a.call(t, "PATCH", "/api/v1/limits/api/rules/api.user?dry_run=true", "admin", `{"requests_per_unit": 6}`, "Content-Type", jsonCT)
	if got := r.json(t); r.status != 200 || got["summary"] != "api.user: 5/minute → 6/minute" {
		t.Errorf("dry run: got %d %v", r.status, got)
	}
	p := a.call(t, "PATCH", "/api/v1/limits/api/rules/api.user", "admin", `{"requests_per_unit": 6}`, "Content-Type", jsonCT).problem(t, 409, "read-only")
	if !strings.Contains(p.Detail, "--config-source=file") {
		t.Errorf("detail: got %q", p.Detail)
	}
	st := a.call(t, "GET", "/api/v1/status", "viewer", "").json(t)
	if st["source"] != "file" || st["version"] != "1" {
		t.Errorf("status: got %v", st)
	}
}

// TestAPIRedisStore runs the write paths on a RedisStore (a unique prefix of the shared Redis) with two
// runtimes, as two replicas would: a change through one API is served by the other replica's runtime.
func TestAPIRedisStore(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	newStore := func() config.Store {
		return config.NewRedisStore(config.RedisStoreOptions{Client: client, Prefix: prefix})
	}
	replicas := config.NewRedisReplicas(client, prefix, 15*time.Second)
	a := newAPIRig(t, config.RuntimeOptions{Store: newStore(), Replicas: replicas, Replica: "a"}, nil)
	b := newAPIRig(t, config.RuntimeOptions{Store: newStore(), Replicas: replicas, Replica: "b"}, nil)

	r := a.call(t, "PATCH", "/api/v1/limits/api/rules/api.user_vip", "admin", `{"requests_per_unit": 42, "algorithm": "token_bucket", "burst": 50}`,
		"Content-Type", jsonCT, "If-Match", `"1"`)
	if r.status != 200 {
		t.Fatalf("PATCH: got %d %s", r.status, r.body)
	}
	waitFor(t, "replica b runs version 2", func() bool { return b.rt.Snapshot().Info().Version == 2 })
	got := b.call(t, "GET", "/api/v1/limits/api/rules/api.user_vip", "viewer", "").json(t)
	if rule := got["rule"].(map[string]any); got["version"] != "2" || rule["limits"].([]any)[0].(map[string]any)["burst"] != float64(50) {
		t.Errorf("replica b: got %v", got)
	}
	// b's If-Match is checked against the shared store.
	b.call(t, "DELETE", "/api/v1/limits/edge", "admin", "", "If-Match", `"1"`).problem(t, 412, "precondition-failed")

	waitFor(t, "both replicas report version 2", func() bool {
		var rs struct {
			CurrentVersion string        `json:"current_version"`
			Replicas       []replicaView `json:"replicas"`
		}
		b.call(t, "GET", "/api/v1/replicas", "viewer", "").decode(t, &rs)
		n := 0
		for _, rp := range rs.Replicas {
			if rp.InSync && rp.Version == 2 {
				n++
			}
		}
		return rs.CurrentVersion == "2" && n == 2
	})
	var hist []historyEntry
	b.call(t, "GET", "/api/v1/limits/history", "viewer", "").decode(t, &hist)
	if len(hist) != 2 || hist[0].Summary != "api.user_vip: 100/minute → 42/minute token_bucket burst 50" {
		t.Errorf("history on b: got %+v", hist)
	}
	r = b.call(t, "POST", "/api/v1/limits/rollback", "admin", `{"version": "1"}`, "Content-Type", jsonCT)
	if r.status != 200 {
		t.Fatalf("rollback on b: got %d %s", r.status, r.body)
	}
	waitFor(t, "replica a runs version 3", func() bool { return a.rt.Snapshot().Info().Version == 3 })
	if l := a.limitOf(t, "api", config.Entry{Key: "user", Value: "vip"}); l != 100 {
		t.Errorf("after the rollback: got %d, want 100", l)
	}
}

// concurrentEdit is one PATCH of TestAPIConcurrentWrites and what it leaves in the document.
type concurrentEdit struct {
	domain, rule, body string
	requests           uint64 // the rule's first limit afterwards (0: not checked)
	shadow             bool   // the edit puts the rule in shadow mode
}

// concurrentEdits are 20 edits of the bundled examples, each of a different rule or field.
func concurrentEdits() []concurrentEdit {
	rules := []struct{ domain, rule string }{
		{"api", "api.remote_address"}, {"api", "api.user"}, {"api", "api.user_vip"}, {"api", "api.path_/api/*/export"},
		{"api", "api.path_/api/*"}, {"api", "api.client_id"}, {"api", "api.plan_free"}, {"api", "api.category_read"},
		{"api", "api.endpoint_/reports"}, {"api", "api.tenant.method_POST"}, {"api", "api.tenant.method"},
		{"edge", "edge.remote_address"}, {"edge", "edge.remote_address_203.0.113.66"}, {"edge", "edge.api_key"},
		{"edge", "edge.path_/search*"}, {"edge", "per_ip"}, {"edge", "login"}, {"edge", "api_key"}, {"edge", "uploads"},
	}
	var out []concurrentEdit
	for i, r := range rules {
		n := uint64(1000 + i)
		out = append(out, concurrentEdit{domain: r.domain, rule: r.rule, requests: n, body: fmt.Sprintf(`{"requests_per_unit": %d}`, n)})
	}
	// Another field of a rule edited above.
	out = append(out, concurrentEdit{domain: "api", rule: "api.user_vip", body: `{"shadow_mode": true}`, shadow: true})
	return out
}

// patchConcurrently sends every edit at once without If-Match, spread over the servers, and returns the
// statuses and bodies by edit.
func patchConcurrently(t *testing.T, servers []*apiRig, edits []concurrentEdit) ([]int, []string) {
	t.Helper()
	statuses, bodies := make([]int, len(edits)), make([]string, len(edits))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, e := range edits {
		srv := servers[i%len(servers)].srv
		// Ends when its request is answered (or fails).
		wg.Go(func() {
			req, err := http.NewRequest("PATCH", srv.URL+"/api/v1/limits/"+e.domain+"/rules/"+url.PathEscape(e.rule), strings.NewReader(e.body))
			if err != nil {
				bodies[i] = err.Error()
				return
			}
			req.Header.Set("Authorization", "Bearer admin")
			req.Header.Set("Content-Type", jsonCT)
			<-start
			resp, err := srv.Client().Do(req)
			if err != nil {
				bodies[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			statuses[i], bodies[i] = resp.StatusCode, string(b)
		})
	}
	close(start)
	wg.Wait()
	return statuses, bodies
}

// checkEdits checks that every edit is in the revision (compiled).
func checkEdits(t *testing.T, rev config.Revision, edits []concurrentEdit) {
	t.Helper()
	s, err := config.ParseFiles(rev.Files...)
	if err != nil {
		t.Fatalf("version %d does not compile: %v", rev.Version, err)
	}
	find := func(domain, rule string) *config.Rule {
		for _, r := range s.Rules(domain) {
			if r.Path == rule {
				return r
			}
		}
		for _, h := range s.HTTPRules(domain) {
			if h.Name == rule {
				return &h.Rule
			}
		}
		return nil
	}
	for _, e := range edits {
		r := find(e.domain, e.rule)
		switch {
		case r == nil:
			t.Errorf("%s %s: gone from version %d", e.domain, e.rule, rev.Version)
		case e.requests != 0 && (len(r.Limits) == 0 || r.Limits[0].Requests != e.requests):
			t.Errorf("%s %s: got limits %+v, want %d requests (edit %s lost)", e.domain, e.rule, r.Limits, e.requests, e.body)
		case e.shadow && !r.Shadow:
			t.Errorf("%s %s: not in shadow mode (edit %s lost)", e.domain, e.rule, e.body)
		}
	}
}

// TestAPIConcurrentWrites: writes without If-Match that race each other are re-applied to the newer version
// until they land: 20 concurrent PATCHes of different rules or fields all answer 200 and every change is
// in the final document (each one a version of its own).
func TestAPIConcurrentWrites(t *testing.T) {
	edits := concurrentEdits()
	check := func(t *testing.T, servers []*apiRig) {
		statuses, bodies := patchConcurrently(t, servers, edits)
		for i, st := range statuses {
			if st != 200 {
				t.Errorf("PATCH %s %s: got %d %s, want 200", edits[i].rule, edits[i].body, st, bodies[i])
			}
		}
		cur, err := servers[0].rt.Store().Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(1 + len(edits)); cur.Version != want {
			t.Errorf("version: got %d, want %d (one per edit)", cur.Version, want)
		}
		checkEdits(t, cur, edits)
		for _, s := range servers {
			waitFor(t, "every replica runs the last version", func() bool { return s.rt.Snapshot().Info().Version == cur.Version })
		}
		if n := len(servers[0].changes.all()); len(servers) == 1 && n != len(edits) {
			t.Errorf("audit: got %d changes recorded, want %d", n, len(edits))
		}
	}
	t.Run("memory", func(t *testing.T) {
		check(t, []*apiRig{newAPIRig(t, config.RuntimeOptions{}, nil)})
	})
	t.Run("memory two replicas", func(t *testing.T) {
		store := config.NewMemoryStore()
		var servers []*apiRig
		for _, name := range []string{"a", "b"} {
			servers = append(servers, newAPIRig(t, config.RuntimeOptions{Store: store, Replica: name}, nil))
		}
		check(t, servers)
	})
	t.Run("redis two replicas", func(t *testing.T) {
		client := redistest.Client(t)
		prefix := redistest.Prefix(t)
		replicas := config.NewRedisReplicas(client, prefix, 15*time.Second)
		var servers []*apiRig
		for _, name := range []string{"a", "b"} {
			store := config.NewRedisStore(config.RedisStoreOptions{Client: client, Prefix: prefix})
			servers = append(servers, newAPIRig(t, config.RuntimeOptions{Store: store, Replicas: replicas, Replica: name}, nil))
		}
		check(t, servers)
	})
}

// TestAPIDomainNames: domain names that collide with the API's own routes, or that could not be a file
// name, are refused with a 400 naming the field; nothing is stored.
func TestAPIDomainNames(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	doc := func(name string) string {
		return fmt.Sprintf("domain: %q\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n", name)
	}
	for _, name := range []string{"history", "rollback"} {
		for _, q := range []string{"?dry_run=true", ""} {
			p := a.call(t, "PUT", "/api/v1/limits/"+name+q, "admin", doc(name), "Content-Type", "application/yaml").problem(t, 400, "invalid-limits")
			if len(p.Errors) != 1 || p.Errors[0].Field != "domain" || !strings.Contains(p.Errors[0].Reason, "reserved") {
				t.Errorf("PUT /limits/%s%s: got %+v, want one error on domain saying it is reserved", name, q, p.Errors)
			}
			body := compactJSON(map[string]any{"domains": map[string]any{name: doc(name)}})
			p = a.call(t, "PUT", "/api/v1/limits"+q, "admin", body, "Content-Type", jsonCT).problem(t, 400, "invalid-limits")
			if len(p.Errors) != 1 || p.Errors[0].Field != "domain" || !strings.Contains(p.Errors[0].Reason, "reserved") {
				t.Errorf("PUT /limits (domain %s)%s: got %+v", name, q, p.Errors)
			}
			p = a.call(t, "PUT", "/api/v1/limits"+q, "admin", doc(name), "Content-Type", "application/yaml").problem(t, 400, "invalid-limits")
			if len(p.Errors) != 1 || p.Errors[0].Field != "domain" || !strings.Contains(p.Errors[0].Reason, "reserved") {
				t.Errorf("PUT /limits stream (domain %s)%s: got %+v", name, q, p.Errors)
			}
		}
	}
	// Names that cannot be a file name, in the URL (escaped) and in the document.
	for _, name := range []string{"../x", "a/b", `a\b`, ".hidden", "a\x00b", "a\rb", strings.Repeat("d", 129)} {
		if !strings.HasPrefix(name, "..") { // the mux would clean that path (a redirect)
			p := a.call(t, "PUT", "/api/v1/limits/"+url.PathEscape(name), "admin", doc(name), "Content-Type", "application/yaml").problem(t, 400, "invalid-limits")
			if len(p.Errors) == 0 || p.Errors[0].Field != "domain" {
				t.Errorf("PUT /limits/%q: got %+v, want an error on domain", name, p.Errors)
			}
		}
		body := compactJSON(map[string]any{"domains": map[string]any{name: doc(name)}})
		p := a.call(t, "PUT", "/api/v1/limits", "admin", body, "Content-Type", jsonCT).problem(t, 400, "invalid-limits")
		if len(p.Errors) == 0 || p.Errors[0].Field != "domain" {
			t.Errorf("PUT /limits with domain %q: got %+v, want an error on domain", name, p.Errors)
		}
	}
	if v := a.version(t); v != 1 {
		t.Errorf("version: got %d, want 1 (nothing stored)", v)
	}
}
