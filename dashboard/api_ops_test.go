package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/config"
)

func TestAPIStatusAndReplicas(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{Replica: "replica-a"}, nil)
	waitFor(t, "the runtime reports to the registry", func() bool {
		rs, _ := a.rt.Replicas(context.Background())
		return len(rs) == 1
	})
	r := a.call(t, "GET", "/api/v1/status", "viewer", "")
	var st statusDoc
	r.decode(t, &st)
	if r.status != 200 || r.header.Get("ETag") != `"1"` || st.Source != "api" || st.Version != 1 || !st.LastLoadOK ||
		st.LastError != "" || st.LastGoodAt.IsZero() || st.StoreVersion != 1 || st.Replicas != 1 || st.ReplicasInSync != 1 || st.Digest == "" {
		t.Errorf("status: got %d %+v", r.status, st)
	}
	raw := r.json(t)
	for _, k := range []string{"source", "version", "digest", "applied_at", "last_load_ok", "last_error", "last_good_at", "reloads", "replicas", "replicas_in_sync"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status lacks %q: %v", k, raw)
		}
	}

	if r := a.call(t, "PATCH", "/api/v1/limits/api/rules/api.user", "admin", `{"requests_per_unit": 11}`, "Content-Type", jsonCT); r.status != 200 {
		t.Fatalf("PATCH: got %d", r.status)
	}
	waitFor(t, "the replica reports version 2", func() bool {
		var rs struct {
			CurrentVersion string        `json:"current_version"`
			Replicas       []replicaView `json:"replicas"`
		}
		a.call(t, "GET", "/api/v1/replicas", "viewer", "").decode(t, &rs)
		return rs.CurrentVersion == "2" && len(rs.Replicas) == 1 && rs.Replicas[0].Replica == "replica-a" &&
			rs.Replicas[0].Version == 2 && rs.Replicas[0].InSync && !rs.Replicas[0].AppliedAt.IsZero()
	})
	var got map[string]any
	if err := json.Unmarshal(a.call(t, "GET", "/api/v1/replicas", "viewer", "").body, &got); err != nil {
		t.Fatal(err)
	}
	rp := got["replicas"].([]any)[0].(map[string]any)
	if rp["version"] != "2" || rp["in_sync"] != true || rp["replica"] != "replica-a" {
		t.Errorf("replica JSON: got %v", rp)
	}
	st = statusDoc{}
	a.call(t, "GET", "/api/v1/status", "viewer", "").decode(t, &st)
	if st.Version != 2 || st.Reloads != 1 {
		t.Errorf("status after the change: got %+v", st)
	}

	// A registry that cannot be read: /replicas answers 503, /status still answers, saying so.
	f := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.Admin = failingReplicas{o.Admin.(*config.Runtime)} })
	f.call(t, "GET", "/api/v1/replicas", "viewer", "").problem(t, 503, "unavailable")
	st = statusDoc{}
	if r := f.call(t, "GET", "/api/v1/status", "viewer", ""); r.status != 200 {
		t.Errorf("status with the registry down: got %d", r.status)
	} else if r.decode(t, &st); !strings.Contains(st.StoreError, "registry down") || st.Version != 1 {
		t.Errorf("status with the registry down: got %+v", st)
	}

	// Without a LimitsAdmin the limits routes answer 503.
	n := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.Admin = nil })
	for _, path := range []string{"/api/v1/status", "/api/v1/limits", "/api/v1/replicas", "/api/v1/limits/history"} {
		n.call(t, "GET", path, "viewer", "").problem(t, 503, "unavailable")
	}
}

func TestAPIUsage(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	body := `{"domain": "api", "entries": [{"key": "user", "value": "u1"}]}`
	r := a.call(t, "POST", "/api/v1/usage", "viewer", body, "Content-Type", jsonCT)
	var us struct{ Usage []Usage }
	r.decode(t, &us)
	want := []Usage{{Rule: "api.user", Limit: "api.user", Algorithm: "fixed_window", Requests: 10, WindowSeconds: 60, Used: 3, Remaining: 7, ResetAfterSeconds: 12.5}}
	if r.status != 200 || !cmp.Equal(us.Usage, want) {
		t.Errorf("usage: got %d %+v", r.status, us)
	}
	if !strings.Contains(string(r.body), `"reset_after_seconds":12.5`) {
		t.Errorf("usage JSON is not snake_case: %s", r.body)
	}
	a.call(t, "POST", "/api/v1/usage/reset", "viewer", body, "Content-Type", jsonCT).problem(t, 403, "forbidden")
	if got := a.call(t, "POST", "/api/v1/usage/reset?dry_run=true", "admin", body, "Content-Type", jsonCT).json(t); got["dry_run"] != true ||
		got["reset"].([]any)[0].(map[string]any)["used"] != float64(3) || len(a.changes.all()) != 0 {
		t.Errorf("reset dry run: got %v", got)
	}
	r = a.call(t, "POST", "/api/v1/usage/reset", "admin", body, "Content-Type", jsonCT)
	var reset struct{ Reset []Usage }
	r.decode(t, &reset)
	if r.status != 200 || len(reset.Reset) != 1 || reset.Reset[0].Used != 3 {
		t.Errorf("reset: got %d %+v", r.status, reset)
	}
	a.call(t, "POST", "/api/v1/usage", "viewer", body, "Content-Type", jsonCT).decode(t, &us)
	if us.Usage[0].Used != 0 {
		t.Errorf("after the reset: used %d, want 0", us.Usage[0].Used)
	}
	rec := a.changes.all()
	if len(rec) != 1 || rec[0].Action != "reset_usage" || rec[0].Actor != "alice" || rec[0].VersionBefore != 1 ||
		rec[0].Summary != "reset counters of api (user=u1)\napi.user: 3 of 10 used" {
		t.Errorf("audit: got %+v", rec)
	}

	tests := []struct {
		name, body string
		status     int
		slug       string
	}{
		{"no domain", `{"entries": [{"key": "user"}]}`, 400, "bad-request"},
		{"no entries", `{"domain": "api", "entries": []}`, 400, "bad-request"},
		{"empty key", `{"domain": "api", "entries": [{"key": "", "value": "x"}]}`, 400, "bad-request"},
		{"too deep", `{"domain": "api", "entries": [` + strings.Repeat(`{"key": "k"},`, maxEntries) + `{"key": "k"}]}`, 400, "bad-request"},
		{"unknown domain", `{"domain": "nope", "entries": [{"key": "user"}]}`, 404, "not-found"},
		{"not an object", `[1, 2]`, 400, "bad-request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.call(t, "POST", "/api/v1/usage", "viewer", tt.body, "Content-Type", jsonCT).problem(t, tt.status, tt.slug)
		})
	}

	n := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.Usage = nil })
	n.call(t, "POST", "/api/v1/usage", "viewer", body, "Content-Type", jsonCT).problem(t, 503, "unavailable")
}

// failingReplicas is the real runtime with a replica registry that fails.
type failingReplicas struct{ *config.Runtime }

func (failingReplicas) Replicas(context.Context) ([]config.ReplicaStatus, error) {
	return nil, errors.New("registry down")
}

// queryLog is an AuditQuerier that answers from a list and remembers the filters.
type queryLog struct {
	mu      sync.Mutex
	filters []audit.Filter
	events  []audit.Event
	err     error
}

func (q *queryLog) Query(_ context.Context, f audit.Filter) ([]audit.Event, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.filters = append(q.filters, f)
	return q.events, q.err
}

func TestAPIAudit(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	recent := []audit.Event{ // oldest first, as the recorder's Recent gives them
		{ID: "1", Time: t0, Kind: audit.KindDenial, Domain: "api", Rule: "api.user", ClientIP: "198.51.100.1"},
		{ID: "2", Time: t0.Add(time.Minute), Kind: audit.KindConfigChange, Service: "admin", ConfigVersion: 2,
			Change: &audit.Change{Actor: "alice", Action: "patch", VersionBefore: 1, VersionAfter: 2, Summary: "api.user: 10/minute → 11/minute"}},
		{ID: "3", Time: t0.Add(2 * time.Minute), Kind: audit.KindDenial, Domain: "api", Rule: "api.user_vip", ClientIP: "198.51.100.2"},
		{ID: "4", Time: t0.Add(3 * time.Minute), Kind: audit.KindDenial, Domain: "edge", Rule: "login", ClientIP: "198.51.100.1"},
	}
	a := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.Audit = &fakeAudit{recent: recent} })
	ids := func(path string) []string {
		t.Helper()
		r := a.call(t, "GET", path, "viewer", "")
		var res struct{ Events []audit.Event }
		r.decode(t, &res)
		if r.status != 200 || res.Events == nil {
			t.Fatalf("GET %s: got %d %s", path, r.status, r.body)
		}
		var out []string
		for _, e := range res.Events {
			out = append(out, e.ID)
		}
		return out
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"4", "3", "2", "1"}},
		{"?kind=denial", []string{"4", "3", "1"}},
		{"?kind=config_change", []string{"2"}},
		{"?client=198.51.100.1", []string{"4", "1"}},
		{"?rule=api.user_vip", []string{"3"}},
		{"?domain=edge", []string{"4"}},
		{"?since=2026-12-03T10:01:00Z&until=2026-12-03T10:03:00Z", []string{"3", "2"}},
		{"?limit=2", []string{"4", "3"}},
		{"?kind=denial&client=198.51.100.9", nil},
	}
	for _, tt := range tests {
		if got := ids("/api/v1/audit" + tt.query); !slices.Equal(got, tt.want) {
			t.Errorf("audit%s: got %v, want %v", tt.query, got, tt.want)
		}
	}
	r := a.call(t, "GET", "/api/v1/audit?kind=config_change", "viewer", "")
	if !strings.Contains(string(r.body), `"change":{"actor":"alice","action":"patch","version_before":"1","version_after":"2"`) {
		t.Errorf("config change JSON: got %s", r.body)
	}
	for _, q := range []string{"?kind=other", "?since=yesterday", "?until=2026-13-01T00:00:00Z", "?limit=-1", "?limit=x",
		"?limit=0", "?limit=1001", "?client_ip=192.0.2.1", "?%zz=1", "?kind=denial&kind=config_change",
		"?since=2026-12-03T11:00:00Z&until=2026-12-03T10:00:00Z"} {
		a.call(t, "GET", "/api/v1/audit"+q, "viewer", "").problem(t, 400, "bad-request")
	}

	// With the database: the filter is passed on, parsed.
	ql := &queryLog{events: recent[:1]}
	b := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.AuditQuery = ql })
	r = b.call(t, "GET", "/api/v1/audit?kind=denial&rule=api.user&client=198.51.100.1&domain=api&since=2026-12-03T10:00:00Z&until=2026-12-03T11:00:00.5Z&limit=1000", "viewer", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"id":"1"`) {
		t.Fatalf("audit with a database: got %d %s", r.status, r.body)
	}
	want := audit.Filter{Kind: "denial", Rule: "api.user", Client: "198.51.100.1", Domain: "api", Since: t0,
		Until: t0.Add(time.Hour + 500*time.Millisecond), Limit: maxAuditLimit}
	if d := cmp.Diff(want, ql.filters[0]); d != "" {
		t.Errorf("filter (-want +got):\n%s", d)
	}
	ql.err = errors.New("database down")
	b.call(t, "GET", "/api/v1/audit", "viewer", "").problem(t, 503, "unavailable")
}

// TestOpenAPI: the document parses, and its paths and methods are exactly the mounted routes, each of them
// reaching that route on the server's mux.
func TestOpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comps   struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi: got %q, want 3.1.0", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	var mounted []string
	for _, rt := range testRoutes(t) {
		mounted = append(mounted, rt.method+" "+rt.path)
	}
	slices.Sort(documented)
	slices.Sort(mounted)
	if d := cmp.Diff(mounted, documented); d != "" {
		t.Errorf("routes (-mounted +documented):\n%s", d)
	}

	// Each documented operation reaches its own pattern on the dashboard's mux.
	d, err := New(Options{Telemetry: &fakeTelemetry{}, Audit: &fakeAudit{}, Limits: staticLimits{config.Default()}, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		req := httptest.NewRequest(method, samplePath(path), nil)
		if _, pattern := d.mux.Handler(req); pattern != op {
			t.Errorf("%s %s reaches %q, want %q", method, samplePath(path), pattern, op)
		}
	}

	// Every schema referenced is defined.
	for _, ref := range strings.Split(string(openAPI), `"$ref": "#/components/schemas/`)[1:] {
		name, _, _ := strings.Cut(ref, `"`)
		if _, ok := doc.Comps.Schemas[name]; !ok {
			t.Errorf("schema %s is referenced but not defined", name)
		}
	}
	// Every problem type the API writes is documented.
	for slug := range problemTitles {
		if !strings.Contains(string(openAPI), "https://floodgate.dev/problems/"+slug) {
			t.Errorf("problem type %s is not in openapi.json", slug)
		}
	}
}

// TestAPIResponsesAreJSON: every route's answer (success or problem) is JSON of the advertised type.
func TestAPIResponsesAreJSON(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	for _, rt := range testRoutes(t) {
		r := a.call(t, rt.method, samplePath(rt.path)+"?dry_run=true", "admin", "{}", "Content-Type", jsonCT)
		ct := r.header.Get("Content-Type")
		if !json.Valid(r.body) || (ct != jsonCT && ct != "application/problem+json") {
			t.Errorf("%s %s: got %d %q %s", rt.method, rt.path, r.status, ct, r.body)
		}
		if r.status >= 500 || r.header.Get("Cache-Control") == "" {
			t.Errorf("%s %s: got %d, Cache-Control %q", rt.method, rt.path, r.status, r.header.Get("Cache-Control"))
		}
	}
}

// errUsage is a UsageInspector failing as the decision service does, chosen by the first entry's key:
// "nomatch" matches no rule, "bad" is an invalid descriptor, anything else is an internal failure.
type errUsage struct{}

func (errUsage) Usage(_ context.Context, domain string, entries []config.Entry) ([]Usage, error) {
	switch entries[0].Key {
	case "nomatch":
		return nil, fmt.Errorf("domain %q, %d entries: %w", domain, len(entries), ErrNoRule)
	case "bad":
		return nil, fmt.Errorf("%w: entries[0].value is longer than 256 bytes", ErrInvalidDescriptor)
	}
	return nil, errors.New("dial tcp 10.9.8.7:6379: connect: connection refused")
}

func (u errUsage) ResetUsage(ctx context.Context, domain string, entries []config.Entry) ([]Usage, error) {
	return u.Usage(ctx, domain, entries)
}

// TestAPIUsageErrors: a descriptor no rule matches is 404, an invalid one 400 (client errors, not 503); an
// internal failure is 503 whose body does not carry the internal error's text.
func TestAPIUsageErrors(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.Usage = errUsage{} })
	for _, path := range []string{"/api/v1/usage", "/api/v1/usage/reset", "/api/v1/usage/reset?dry_run=true"} {
		body := func(key string) string {
			return `{"domain": "api", "entries": [{"key": "` + key + `", "value": "x"}]}`
		}
		p := a.call(t, "POST", path, "admin", body("nomatch"), "Content-Type", jsonCT).problem(t, 404, "not-found")
		if !strings.Contains(p.Detail, "no rule") {
			t.Errorf("%s no rule: got detail %q", path, p.Detail)
		}
		p = a.call(t, "POST", path, "admin", body("bad"), "Content-Type", jsonCT).problem(t, 400, "bad-request")
		if !strings.Contains(p.Detail, "longer than 256 bytes") {
			t.Errorf("%s invalid descriptor: got detail %q", path, p.Detail)
		}
		p = a.call(t, "POST", path, "admin", body("user"), "Content-Type", jsonCT).problem(t, 503, "unavailable")
		if strings.Contains(p.Detail, "10.9.8.7") || strings.Contains(p.Detail, "refused") {
			t.Errorf("%s internal failure: detail %q carries the internal error", path, p.Detail)
		}
	}
	if rec := a.changes.all(); len(rec) != 0 {
		t.Errorf("audit: got %+v, want nothing recorded for failed resets", rec)
	}
}

// TestAPIAuditBadParameters: a query value with NUL, another control character or invalid UTF-8, or longer
// than 256 bytes is a 400 naming the parameter, and never reaches the database.
func TestAPIAuditBadParameters(t *testing.T) {
	ql := &queryLog{}
	a := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.AuditQuery = ql })
	long := strings.Repeat("r", 257)
	tests := []struct{ query, param string }{
		{"rule=%00", "rule"},
		{"rule=api.user%00", "rule"},
		{"client=%FF", "client"},
		{"domain=a%0Ab", "domain"},
		{"domain=" + long, "domain"},
		{"rule=" + long, "rule"},
		{"kind=denial%00", "kind"},
		{"since=%00", "since"},
		{"until=" + long, "until"},
		{"limit=1%00", "limit"},
	}
	for _, tt := range tests {
		p := a.call(t, "GET", "/api/v1/audit?"+tt.query, "viewer", "").problem(t, 400, "bad-request")
		if !strings.HasPrefix(p.Detail, tt.param+" ") || len(p.Detail) > 200 {
			t.Errorf("?%.40s: got detail %q, want a short one naming %s", tt.query, p.Detail, tt.param)
		}
	}
	queries := func() int {
		ql.mu.Lock()
		defer ql.mu.Unlock()
		return len(ql.filters)
	}
	if n := queries(); n != 0 {
		t.Errorf("the database was queried %d times, want 0", n)
	}
	// 256 bytes of UTF-8 are fine.
	if r := a.call(t, "GET", "/api/v1/audit?rule="+strings.Repeat("é", 128), "viewer", ""); r.status != 200 || queries() != 1 {
		t.Errorf("256-byte rule: got %d %s, want 200 from the database", r.status, r.body)
	}
}

// TestAPIServerErrorsAreGeneric: a 5xx names the request, not the internal error (which is logged).
func TestAPIServerErrorsAreGeneric(t *testing.T) {
	ql := &queryLog{err: errors.New(`pq: password authentication failed for user "floodgate" at 10.1.2.3`)}
	f := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) {
		o.AuditQuery = ql
		o.Admin = failingReplicas{o.Admin.(*config.Runtime)}
	})
	for _, path := range []string{"/api/v1/audit", "/api/v1/replicas"} {
		p := f.call(t, "GET", path, "viewer", "").problem(t, 503, "unavailable")
		if strings.Contains(p.Detail, "10.1.2.3") || strings.Contains(p.Detail, "password") || strings.Contains(p.Detail, "registry down") {
			t.Errorf("GET %s: detail %q carries the internal error", path, p.Detail)
		}
		if p.Detail == "" || len(p.Detail) > 200 {
			t.Errorf("GET %s: got detail %q, want a short generic one", path, p.Detail)
		}
	}
}
