package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/auth"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// fakeAuth maps "Bearer admin", "Bearer viewer" and "Bearer none" to principals; anything else fails as
// a real verifier would.
type fakeAuth struct{}

var testExpiry = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// farExpiry is a token expiry JSON (RFC 3339) cannot write: a year above 9999.
var farExpiry = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)

func (fakeAuth) Authenticate(r *http.Request) (auth.Principal, error) {
	switch h := r.Header.Get("Authorization"); h {
	case "Bearer admin":
		return auth.Principal{Subject: "alice", Role: auth.RoleAdmin, Issuer: "https://issuer.test", ExpiresAt: testExpiry}, nil
	case "Bearer viewer":
		return auth.Principal{Subject: "victor", Role: auth.RoleViewer}, nil
	case "Bearer far":
		return auth.Principal{Subject: "fiona", Role: auth.RoleViewer, ExpiresAt: farExpiry}, nil
	case "Bearer none":
		return auth.Principal{Subject: "nobody", Role: auth.RoleNone}, nil
	case "":
		return auth.Principal{}, &auth.Error{Reason: auth.ReasonMissing}
	default:
		return auth.Principal{}, &auth.Error{Reason: auth.ReasonBadSignature}
	}
}

// changeLog records the changes the API reports to the audit trail.
type changeLog struct {
	mu      sync.Mutex
	changes []audit.Change
}

func (c *changeLog) RecordChange(ch audit.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, ch)
}

func (c *changeLog) all() []audit.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]audit.Change(nil), c.changes...)
}

// fakeUsage stands in for the decision service's counters (the lead wires the real inspector).
type fakeUsage struct {
	mu    sync.Mutex
	used  uint64
	calls []string
}

func (f *fakeUsage) Usage(_ context.Context, domain string, entries []config.Entry) ([]Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "usage "+domain+" "+entries[0].Key+"="+entries[0].Value)
	return []Usage{{Rule: "api.user", Limit: "api.user", Algorithm: "fixed_window", Requests: 10, WindowSeconds: 60,
		Used: f.used, Remaining: 10 - f.used, ResetAfterSeconds: 12.5}}, nil
}

func (f *fakeUsage) ResetUsage(ctx context.Context, domain string, entries []config.Entry) ([]Usage, error) {
	us, _ := f.Usage(ctx, domain, entries)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.used = 0
	return us, nil
}

// apiRig is a dashboard with the admin API on a real config.Runtime (api source) whose store is a real
// MemoryStore (or the store given), seeded with the bundled examples as version 1.
type apiRig struct {
	d       *Dashboard
	srv     *httptest.Server
	aud     *fakeAudit
	rt      *config.Runtime
	changes *changeLog
	usage   *fakeUsage
}

// runtimeLimits feeds the /ws hello from the runtime, as the lead wires it.
type runtimeLimits struct{ rt *config.Runtime }

func (l runtimeLimits) Limits() *config.Snapshot { return l.rt.Snapshot() }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newAPIRig(t testing.TB, ro config.RuntimeOptions, mutate func(*Options)) *apiRig {
	t.Helper()
	if ro.Source == "" {
		ro.Source = config.SourceAPI
	}
	if ro.Store == nil && ro.Source == config.SourceAPI {
		ro.Store = config.NewMemoryStore()
	}
	ro.Logger = discardLogger()
	ro.ReportEvery = 50 * time.Millisecond
	if ro.Replica == "" {
		ro.Replica = "replica-a"
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := config.NewRuntime(ctx, ro)
	if err != nil {
		cancel()
		t.Fatalf("NewRuntime: %v", err)
	}
	a := &apiRig{rt: rt, changes: &changeLog{}, usage: &fakeUsage{used: 3}, aud: &fakeAudit{}}
	o := Options{Telemetry: &fakeTelemetry{history: []metrics.Snapshot{{}}}, Audit: a.aud, Limits: runtimeLimits{rt},
		Admin: rt, Changes: a.changes, Usage: a.usage, Auth: fakeAuth{}, AuthInfo: AuthInfo{Mode: "token"},
		AdminLimit: limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 1000, Window: time.Second, Burst: 1000},
		Logger:     discardLogger()}
	if mutate != nil {
		mutate(&o)
	}
	if a.d, err = New(o); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	// Both end when the test's cleanup cancels ctx.
	go func() { rt.Run(ctx); done <- struct{}{} }()
	go func() { a.d.Run(ctx); done <- struct{}{} }()
	a.srv = httptest.NewServer(a.d.Handler())
	t.Cleanup(func() { a.srv.Close(); cancel(); <-done; <-done })
	return a
}

// reply is one API answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value.
func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object (%v): %s", err, r.body)
	}
	return m
}

// decode decodes the body into v.
func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %T (%v): %s", v, err, r.body)
	}
}

// problem checks the reply is a problem of that status and slug and returns it.
func (r reply) problem(t testing.TB, status int, slug string) problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("got status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("got Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	r.decode(t, &p)
	if want := "https://floodgate.dev/problems/" + slug; p.Type != want || p.Status != status || p.Title == "" {
		t.Errorf("got problem %+v, want type %s status %d and a title", p, want, status)
	}
	return p
}

// call sends one request; headers are name, value pairs.
func (a *apiRig) call(t testing.TB, method, path, token, body string, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// version is the version the store holds now.
func (a *apiRig) version(t *testing.T) uint64 {
	t.Helper()
	cur, err := a.rt.Store().Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cur.Version
}

// limitOf is the first limit's requests of a descriptor in the running snapshot.
func (a *apiRig) limitOf(t *testing.T, domain string, es ...config.Entry) uint64 {
	t.Helper()
	r, ok := a.rt.Snapshot().Match(domain, es)
	if !ok || len(r.Limits) == 0 {
		t.Fatalf("no limit for %s %v", domain, es)
	}
	return r.Limits[0].Requests
}

const jsonCT = "application/json"

func TestAPIPublicRoutes(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) {
		o.AuthInfo = AuthInfo{Mode: "oidc", OIDC: &OIDCInfo{Issuer: "https://id.example", AuthorizationEndpoint: "https://id.example/auth",
			TokenEndpoint: "https://id.example/token", ClientID: "floodgate", Scope: "openid"}}
	})
	r := a.call(t, "GET", "/api/v1/auth", "", "")
	if r.status != 200 {
		t.Fatalf("GET /api/v1/auth: got %d, want 200", r.status)
	}
	var info AuthInfo
	r.decode(t, &info)
	if info.Mode != "oidc" || info.OIDC == nil || info.OIDC.ClientID != "floodgate" || info.OIDC.TokenEndpoint != "https://id.example/token" {
		t.Errorf("got %+v, want the OIDC settings", info)
	}
	r = a.call(t, "GET", "/api/v1/openapi.json", "", "")
	if r.status != 200 || !json.Valid(r.body) || r.header.Get("Content-Type") != jsonCT {
		t.Errorf("GET openapi.json: got %d %q", r.status, r.header.Get("Content-Type"))
	}

	// Without Auth the API runs in mode "none" as the anonymous admin.
	b := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.Auth, o.AuthInfo = nil, AuthInfo{} })
	r = b.call(t, "GET", "/api/v1/auth", "", "")
	if got := r.json(t); got["mode"] != "none" || got["oidc"] != nil {
		t.Errorf("GET /api/v1/auth without auth: got %v, want mode none, oidc null", got)
	}
	r = b.call(t, "GET", "/api/v1/me", "", "")
	if got := r.json(t); r.status != 200 || got["subject"] != "anonymous" || got["role"] != "admin" {
		t.Errorf("GET /api/v1/me without auth: got %d %v, want anonymous admin", r.status, got)
	}
}

func TestAPIMe(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	r := a.call(t, "GET", "/api/v1/me", "admin", "")
	got := r.json(t)
	want := map[string]any{"subject": "alice", "role": "admin", "issuer": "https://issuer.test", "expires_at": "2030-01-02T03:04:05Z"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("me.%s: got %v, want %v", k, got[k], v)
		}
	}
	if got := a.call(t, "GET", "/api/v1/me", "viewer", "").json(t); got["role"] != "viewer" || got["expires_at"] != nil {
		t.Errorf("viewer me: got %v, want role viewer without expires_at", got)
	}
	// A token expiring after the year 9999 (RFC 3339 has four digits for it) is not a server error: the
	// expiry is left out.
	r = a.call(t, "GET", "/api/v1/me", "far", "")
	if got := r.json(t); r.status != 200 || got["subject"] != "fiona" || got["expires_at"] != nil {
		t.Errorf("far expiry: got %d %v, want 200 without expires_at", r.status, got)
	}
}

// TestAPIRoles: every non-public route answers 401 without a token (or with a bad one), 403 to a principal
// without a role, 403 to a viewer when it writes, and lets the right role through.
func TestAPIRoles(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	routes := testRoutes(t)
	for _, rt := range routes {
		if rt.public {
			continue
		}
		path := samplePath(rt.path)
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			r := a.call(t, rt.method, path, "", "")
			r.problem(t, 401, "unauthorized")
			if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
				t.Errorf("WWW-Authenticate: got %q, want a Bearer challenge", h)
			}
			a.call(t, rt.method, path, "forged", "").problem(t, 401, "unauthorized")
			a.call(t, rt.method, path, "none", "").problem(t, 403, "forbidden")
			r = a.call(t, rt.method, path, "viewer", "")
			if rt.role == auth.RoleAdmin {
				r.problem(t, 403, "forbidden")
			} else if r.status == 401 || r.status == 403 {
				t.Errorf("viewer: got %d, want through", r.status)
			}
			if r := a.call(t, rt.method, path+"?dry_run=true", "admin", ""); r.status == 401 || r.status == 403 {
				t.Errorf("admin: got %d, want through: %s", r.status, r.body)
			}
		})
	}
	if v := a.version(t); v != 1 {
		t.Errorf("version after the role checks: got %d, want 1 (nothing written)", v)
	}
}

// testRoutes returns the API's route table.
func testRoutes(t *testing.T) []route {
	t.Helper()
	api, err := newAPI(&Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return api.routes
}

// samplePath fills a route pattern's wildcards with values that exist in the bundled examples.
func samplePath(pattern string) string {
	return strings.NewReplacer("{domain}", "api", "{rule}", "api.user_vip", "{version}", "1").Replace(pattern)
}

func TestAPIUnknownRoutes(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	a.call(t, "GET", "/api/v1/nope", "admin", "").problem(t, 404, "not-found")
	r := a.call(t, "POST", "/api/v1/limits", "admin", "{}", "Content-Type", jsonCT)
	r.problem(t, 405, "method-not-allowed")
	if got := r.header.Get("Allow"); got != "GET, PUT" {
		t.Errorf("Allow: got %q, want \"GET, PUT\"", got)
	}
}

func TestAPIRateLimit(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) {
		o.AdminRate = limiter.NewMemory(limiter.MemoryOptions{})
		o.AdminLimit = limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 1, Window: 10 * time.Second, Burst: 3}
	})
	for i := range 3 {
		r := a.call(t, "GET", "/api/v1/me", "admin", "")
		if r.status != 200 {
			t.Fatalf("request %d: got %d, want 200", i+1, r.status)
		}
		if got, want := r.header.Get("RateLimit-Policy"), `"admin";q=3;w=30`; got != want {
			t.Errorf("RateLimit-Policy: got %q, want %q", got, want)
		}
		if got, want := r.header.Get("RateLimit"), `"admin";r=`+string(rune('2'-i))+`;t=`; !strings.HasPrefix(got, want) {
			t.Errorf("RateLimit: got %q, want prefix %q", got, want)
		}
	}
	r := a.call(t, "GET", "/api/v1/me", "admin", "")
	r.problem(t, 429, "too-many-requests")
	if got := r.header.Get("Retry-After"); got != "10" && got != "9" {
		t.Errorf("Retry-After: got %q, want 10 (seconds until one request fits, rounded up)", got)
	}
	if r.header.Get("RateLimit") == "" || r.header.Get("RateLimit-Policy") == "" {
		t.Errorf("429 without RateLimit headers: %v", r.header)
	}
	// The budget is per principal: another one still gets through.
	if r := a.call(t, "GET", "/api/v1/me", "viewer", ""); r.status != 200 {
		t.Errorf("viewer: got %d, want 200", r.status)
	}

	// Failed authentications are charged to the client address: after the burst even a valid token from
	// that address waits (token guessing is slowed down).
	b := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) {
		o.AdminRate = limiter.NewMemory(limiter.MemoryOptions{})
		o.AdminLimit = limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 1, Window: 10 * time.Second, Burst: 3}
	})
	for i := range 3 {
		b.call(t, "GET", "/api/v1/me", "guess"+string(rune('a'+i)), "").problem(t, 401, "unauthorized")
	}
	r = b.call(t, "GET", "/api/v1/me", "guess-d", "")
	r.problem(t, 429, "too-many-requests")
	if got := r.header.Get("Retry-After"); got != "10" && got != "9" {
		t.Errorf("Retry-After after failed logins: got %q, want 10", got)
	}
	b.call(t, "GET", "/api/v1/me", "admin", "").problem(t, 429, "too-many-requests")
	// Public routes are not limited.
	if r := b.call(t, "GET", "/api/v1/auth", "", ""); r.status != 200 {
		t.Errorf("GET /api/v1/auth: got %d, want 200", r.status)
	}
}

// brokenStore is a limiter.Store that always fails: the admin API fails open.
type brokenStore struct{}

func (brokenStore) Decide(context.Context, []limiter.Hit, []limiter.Result) (bool, error) {
	return false, errors.New("store down")
}
func (brokenStore) Ping(context.Context) error { return errors.New("store down") }
func (brokenStore) Close() error               { return nil }

func TestAPIRateLimitStoreDown(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, func(o *Options) { o.AdminRate = brokenStore{} })
	for range 3 {
		if r := a.call(t, "GET", "/api/v1/me", "admin", ""); r.status != 200 {
			t.Fatalf("got %d, want 200 (fail open)", r.status)
		}
	}
	a.call(t, "GET", "/api/v1/me", "bad", "").problem(t, 401, "unauthorized")
}

func TestAPIBodies(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	const rule = "/api/v1/limits/api/rules/api.user_vip"
	tests := []struct {
		name, method, path, ct, body string
		status                       int
		slug, detail                 string
	}{
		{"no content type", "PATCH", rule, "", `{"requests_per_unit": 5}`, 415, "unsupported-media-type", ""},
		{"form", "PATCH", rule, "application/x-www-form-urlencoded", `requests_per_unit=5`, 415, "unsupported-media-type", ""},
		{"text/plain", "POST", "/api/v1/limits/rollback", "text/plain", `{"version": "1"}`, 415, "unsupported-media-type", ""},
		{"yaml to PATCH", "PATCH", rule, "application/yaml", `requests_per_unit: 5`, 415, "unsupported-media-type", ""},
		{"unknown field", "PATCH", rule, jsonCT, `{"requests_per_minute": 5}`, 400, "bad-request", `unknown field "requests_per_minute"`},
		{"wrong type", "PATCH", rule, jsonCT, `{"requests_per_unit": "five"}`, 400, "bad-request", "requests_per_unit"},
		{"negative", "PATCH", rule, jsonCT, `{"requests_per_unit": -1}`, 400, "bad-request", "requests_per_unit"},
		{"two values", "PATCH", rule, jsonCT, `{} {}`, 400, "bad-request", "more than one JSON value"},
		{"empty", "POST", "/api/v1/limits/rollback", jsonCT, ``, 400, "bad-request", "empty body"},
		{"too large", "PUT", "/api/v1/limits/api", "application/yaml", "# " + strings.Repeat("x", maxBody) + "\n", 413, "payload-too-large", ""},
		{"usage unknown field", "POST", "/api/v1/usage", jsonCT, `{"domain": "api", "entries": [{"key": "user", "val": "x"}]}`, 400, "bad-request", `unknown field "val"`},
		{"put unknown field", "PUT", "/api/v1/limits", jsonCT, `{"domain": {"api": ""}}`, 400, "bad-request", `unknown field "domain"`},
		{"bad dry_run", "PATCH", rule + "?dry_run=maybe", jsonCT, `{}`, 400, "bad-request", "dry_run"},
		{"bad If-Match", "PATCH", rule, jsonCT, `{}`, 400, "bad-request", "If-Match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := []string{"Content-Type", tt.ct}
			if tt.name == "bad If-Match" {
				h = append(h, "If-Match", `"seven"`)
			}
			p := a.call(t, tt.method, tt.path, "admin", tt.body, h...).problem(t, tt.status, tt.slug)
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail: got %q, want it to contain %q", p.Detail, tt.detail)
			}
		})
	}
	if v := a.version(t); v != 1 {
		t.Errorf("version: got %d, want 1 (nothing stored)", v)
	}
}

// compactJSON is v as JSON, for messages.
func compactJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(bytes.TrimSpace(b))
}

// TestAPIIfMatch: If-Match is compared strongly (RFC 9110 13.1.1: a weak tag never matches), a list matches
// when one of its tags does, malformed values are 400 with a short detail that does not echo the header.
func TestAPIIfMatch(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	const path = "/api/v1/limits/api/rules/api.user_vip?dry_run=true"
	patch := func(ifMatch string) reply {
		return a.call(t, "PATCH", path, "admin", `{"requests_per_unit": 20}`, "Content-Type", jsonCT, "If-Match", ifMatch)
	}
	for _, h := range []string{`"1"`, `1`, ` "1" `, `"7", "1"`, `W/"1", "1"`, `*`, `"1",`, `, "1"`, `"2",,"1"`} {
		if r := patch(h); r.status != 200 {
			t.Errorf("If-Match %s: got %d %s, want 200", h, r.status, r.body)
		}
	}
	for _, h := range []string{`W/"1"`, `"2"`, `W/"1", "2"`, `"18446744073709551615"`} {
		p := patch(h).problem(t, 412, "precondition-failed")
		if p.CurrentVersion != "1" {
			t.Errorf("If-Match %s: got current_version %q, want \"1\"", h, p.CurrentVersion)
		}
	}
	long := `"` + strings.Repeat("9", 5000) + `"`
	for _, h := range []string{`"1`, `1"`, `"seven"`, `"1 "`, `"-1"`, `"0"`, `W/`, `w/"1"`, `,`, `"1" "2"`, `"1", *`, `W/1`, `"1"x`, long,
		`"99999999999999999999"`} {
		p := patch(h).problem(t, 400, "bad-request")
		if !strings.Contains(p.Detail, "If-Match") || len(p.Detail) > 200 {
			t.Errorf("If-Match %.40s: got detail %q (%d bytes), want a short one naming If-Match", h, p.Detail, len(p.Detail))
		}
	}
	if v := a.version(t); v != 1 {
		t.Errorf("version: got %d, want 1", v)
	}
}

// TestAPIDuplicateJSONKeys: a JSON body naming a key twice is refused (400 naming the key) on every route
// that decodes JSON, instead of the last value silently winning; so is a key differing only in case, which
// encoding/json would match to the same field.
func TestAPIDuplicateJSONKeys(t *testing.T) {
	a := newAPIRig(t, config.RuntimeOptions{}, nil)
	const rule = "/api/v1/limits/api/rules/api.user_vip"
	tests := []struct {
		name, method, path, ct, body, key string
	}{
		{"patch", "PATCH", rule, jsonCT, `{"requests_per_unit": 5, "requests_per_unit": 6}`, "requests_per_unit"},
		{"patch merge", "PATCH", rule, "application/merge-patch+json", `{"unit": "hour", "burst": 0, "unit": "day"}`, "unit"},
		{"patch case", "PATCH", rule, jsonCT, `{"requests_per_unit": 5, "Requests_Per_Unit": 6}`, "Requests_Per_Unit"},
		{"rollback", "POST", "/api/v1/limits/rollback", jsonCT, `{"version": "1", "version": "2"}`, "version"},
		{"usage", "POST", "/api/v1/usage", jsonCT, `{"domain": "api", "domain": "edge", "entries": [{"key": "user"}]}`, "domain"},
		{"usage entry", "POST", "/api/v1/usage", jsonCT, `{"domain": "api", "entries": [{"key": "user", "key": "plan"}]}`, "key"},
		{"put domains", "PUT", "/api/v1/limits", jsonCT,
			`{"domains": {"api": "domain: api\ndescriptors: []\n", "api": "domain: api\n"}}`, "api"},
		{"put nested", "PUT", "/api/v1/limits", jsonCT,
			`{"domains": {"api": {"domain": "api", "descriptors": [], "descriptors": []}}}`, "descriptors"},
		{"put domain", "PUT", "/api/v1/limits/api", jsonCT, `{"domain": "api", "descriptors": [], "domain": "api"}`, "domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := a.call(t, tt.method, tt.path+"?dry_run=true", "admin", tt.body, "Content-Type", tt.ct).problem(t, 400, "bad-request")
			if !strings.Contains(p.Detail, "duplicate") || !strings.Contains(p.Detail, `"`+tt.key+`"`) {
				t.Errorf("detail: got %q, want it to name the duplicate key %q", p.Detail, tt.key)
			}
		})
	}
	// Two domains differing in case are two domains (map keys are exact); equal keys in different objects
	// are no duplicates.
	ok := `{"domains": {"api": {"domain": "api", "descriptors": [{"key": "a", "rate_limit": {"unit": "second", "requests_per_unit": 1}},
		{"key": "b", "rate_limit": {"unit": "second", "requests_per_unit": 1}}]}, "API": {"domain": "API", "descriptors": []}}}`
	if r := a.call(t, "PUT", "/api/v1/limits?dry_run=true", "admin", ok, "Content-Type", jsonCT); r.status != 200 {
		t.Errorf("distinct keys: got %d %s, want 200", r.status, r.body)
	}
}
