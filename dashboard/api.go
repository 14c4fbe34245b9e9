package dashboard

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/auth"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
)

// LimitsAdmin is what the admin API reads and changes of the limits (*config.Runtime).
type LimitsAdmin interface {
	Snapshot() *config.Snapshot
	Status() config.Status
	Update(ctx context.Context, expect uint64, files []config.File, meta config.Revision) (config.Revision, *config.Snapshot, error)
	// Store gives the versions (Current, Get, History).
	Store() config.Store
	Replicas(ctx context.Context) ([]config.ReplicaStatus, error)
}

// UsageInspector reads and resets the counters of a descriptor (the decision path's store).
//
// Its errors say whose fault a failure is: an error wrapping ErrNoRule when no rule of the domain matches
// the descriptor (the API answers 404), one wrapping ErrInvalidDescriptor when the entries are refused
// (400; the error's text, which should say why, is the detail); anything else is the server's failure
// (503, logged, not shown).
type UsageInspector interface {
	// Usage reports each limit matched by (domain, entries) with its current counter (check-only, nothing
	// consumed).
	Usage(ctx context.Context, domain string, entries []config.Entry) ([]Usage, error)
	// ResetUsage deletes those counters and reports the values they had.
	ResetUsage(ctx context.Context, domain string, entries []config.Entry) ([]Usage, error)
}

// Errors a UsageInspector wraps (see there).
var (
	// ErrNoRule: no rule of the domain matches the descriptor.
	ErrNoRule = errors.New("no rule matches the descriptor")
	// ErrInvalidDescriptor: the descriptor's entries are refused (empty, too long, ...).
	ErrInvalidDescriptor = errors.New("invalid descriptor")
)

// Usage is one limit's counter for a descriptor.
type Usage struct {
	Rule              string  `json:"rule"`
	Limit             string  `json:"limit"`
	Algorithm         string  `json:"algorithm"`
	Requests          uint64  `json:"requests"`
	WindowSeconds     float64 `json:"window_seconds"`
	Used              uint64  `json:"used"`
	Remaining         uint64  `json:"remaining"`
	ResetAfterSeconds float64 `json:"reset_after_seconds"`
	Shadow            bool    `json:"shadow"`
}

// ChangeRecorder puts configuration changes into the audit trail (*audit.Recorder).
type ChangeRecorder interface {
	RecordChange(audit.Change)
}

// AuditQuerier searches the stored audit trail (*audit.Recorder with PostgreSQL).
type AuditQuerier interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Event, error)
}

// AuthInfo tells the dashboard how to sign in (GET /api/v1/auth).
type AuthInfo struct {
	// Mode is "none" (no authentication: everyone is admin), "token" (paste a JWT) or "oidc".
	Mode string `json:"mode"`
	// OIDC is set for mode "oidc" (null otherwise).
	OIDC *OIDCInfo `json:"oidc"`
}

// OIDCInfo is what the dashboard needs for the authorization-code flow with PKCE.
type OIDCInfo struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	ClientID              string `json:"client_id"`
	Scope                 string `json:"scope"`
}

// Admin API limits.
const (
	// maxBody bounds a write's body; larger ones get 413.
	maxBody = 1 << 20
	// maxHistory bounds GET /api/v1/limits/history?limit=.
	maxHistory = 100
	// maxAuditLimit bounds GET /api/v1/audit?limit=.
	maxAuditLimit = 1000
	// maxEntries bounds a usage descriptor (the configuration nests at most 32 levels).
	maxEntries = 32
	// writeAttempts and writeRetryFor bound the retries of a write without If-Match that lost a race with
	// other writers: it is applied again to the newer version until it lands. Each lost race means another
	// write landed, so N writers racing each other all land within N attempts.
	writeAttempts = 20
	writeRetryFor = 2 * time.Second
	// writeBackoff is the mean wait before the first retry; it doubles per retry up to writeBackoffMax, and
	// each wait is jittered (half of it random) so that the losers do not collide again.
	writeBackoff    = 4 * time.Millisecond
	writeBackoffMax = 100 * time.Millisecond
	// maxQueryValue bounds a query parameter's value (GET /api/v1/audit).
	maxQueryValue = 256
	// maxEchoed bounds the bytes of a request value quoted back in an error detail.
	maxEchoed = 64
	// maxIfMatchTags bounds the entity tags of an If-Match list.
	maxIfMatchTags = 32
	// rateTimeout bounds one admin rate limit decision; the API fails open when the store does not answer.
	rateTimeout = 250 * time.Millisecond
	// diffCacheSize bounds the remembered history diffs.
	diffCacheSize = 512
)

// DefaultAdminLimit is the admin API's rate limit per principal (and per client address for failed
// authentications): a token bucket of 20 per second holding 40.
var DefaultAdminLimit = limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 20, Window: time.Second, Burst: 40}

// api serves /api/v1. Its handlers return an error, written as a problem by serve.
type api struct {
	o      *Options
	auth   auth.Authenticator
	rate   limiter.Store
	limit  limiter.Limit
	log    *slog.Logger
	routes []route
	// paths answers "does this path exist with another method" for the 405 of the catch-all.
	paths *http.ServeMux

	domainFiles atomic.Pointer[domainFiles] // the running snapshot's domain → file
	lastRateErr atomic.Int64                // unix ns of the last logged rate store error

	// writing holds a token while a write reads, edits and stores the limits: this replica's writes take
	// turns instead of racing each other to the store's compare-and-set (other replicas' still race).
	writing chan struct{}

	mu    sync.Mutex
	diffs map[string][]config.Change // history diffs by "digest before>digest after"
}

// route is one endpoint of the admin API; the OpenAPI test checks the list against openapi.json.
type route struct {
	method, path string
	public       bool
	role         auth.Role
	handle       func(w http.ResponseWriter, r *http.Request) error
}

// newAPI prepares the admin API from the dashboard's options (defaults filled in).
func newAPI(o *Options) (*api, error) {
	if o.Auth == nil {
		o.Auth = auth.Anonymous
		if o.AuthInfo.Mode == "" {
			o.AuthInfo.Mode = "none"
		}
	}
	if o.AuthInfo.Mode == "" {
		o.AuthInfo.Mode = "token"
	}
	if o.AdminRate == nil {
		o.AdminRate = limiter.NewMemory(limiter.MemoryOptions{MaxEntries: 100_000})
	}
	if o.AdminLimit == (limiter.Limit{}) {
		o.AdminLimit = DefaultAdminLimit
	}
	if err := o.AdminLimit.Validate(); err != nil {
		return nil, fmt.Errorf("dashboard: admin limit: %w", err)
	}
	a := &api{o: o, auth: o.Auth, rate: o.AdminRate, limit: o.AdminLimit, log: o.Logger,
		paths: http.NewServeMux(), diffs: map[string][]config.Change{}, writing: make(chan struct{}, 1)}
	viewer := func(method, path string, h func(http.ResponseWriter, *http.Request) error) route {
		return route{method: method, path: path, role: auth.RoleViewer, handle: h}
	}
	admin := func(method, path string, h func(http.ResponseWriter, *http.Request) error) route {
		return route{method: method, path: path, role: auth.RoleAdmin, handle: h}
	}
	a.routes = []route{
		{method: "GET", path: "/api/v1/openapi.json", public: true, handle: a.getOpenAPI},
		{method: "GET", path: "/api/v1/auth", public: true, handle: a.getAuth},
		viewer("GET", "/api/v1/me", a.getMe),
		viewer("GET", "/api/v1/status", a.getStatus),
		viewer("GET", "/api/v1/limits", a.getLimits),
		admin("PUT", "/api/v1/limits", a.putLimits),
		viewer("GET", "/api/v1/limits/history", a.getHistory),
		viewer("GET", "/api/v1/limits/history/{version}", a.getRevision),
		admin("POST", "/api/v1/limits/rollback", a.rollback),
		viewer("GET", "/api/v1/limits/{domain}", a.getDomain),
		admin("PUT", "/api/v1/limits/{domain}", a.putDomain),
		admin("DELETE", "/api/v1/limits/{domain}", a.deleteDomain),
		viewer("GET", "/api/v1/limits/{domain}/rules/{rule}", a.getRule),
		admin("PATCH", "/api/v1/limits/{domain}/rules/{rule}", a.patchRule),
		viewer("GET", "/api/v1/replicas", a.getReplicas),
		viewer("POST", "/api/v1/usage", a.postUsage),
		admin("POST", "/api/v1/usage/reset", a.resetUsage),
		viewer("GET", "/api/v1/audit", a.getAudit),
	}
	return a, nil
}

// mount registers every route (and a catch-all answering 404/405 as problems) on mux.
func (a *api) mount(mux *http.ServeMux) {
	seen := map[string]bool{}
	for _, rt := range a.routes {
		var h http.Handler = a.serve(rt.handle)
		if !rt.public {
			h = a.guard(rt.role, h)
		}
		mux.Handle(rt.method+" "+rt.path, h)
		if !seen[rt.path] {
			seen[rt.path] = true
			a.paths.Handle(rt.path, http.NotFoundHandler())
		}
	}
	mux.Handle("/api/", a.serve(a.unknown))
}

// unknown answers paths under /api/ that no route serves: 405 when the path exists with other methods.
func (a *api) unknown(w http.ResponseWriter, r *http.Request) error {
	if _, pattern := a.paths.Handler(r); pattern != "" {
		var allow []string
		for _, rt := range a.routes {
			if rt.path == pattern {
				allow = append(allow, rt.method)
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return &problem{Status: http.StatusMethodNotAllowed, slug: "method-not-allowed",
			Detail: r.Method + " is not allowed here; use " + strings.Join(allow, " or ")}
	}
	return notFound("no such API endpoint: " + r.URL.Path)
}

// serve adapts a handler returning an error: the error becomes a problem response.
func (a *api) serve(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// guard authenticates (auth.Require: 401/403) and rate limits the request: by principal once it is
// known ("admin:"+subject), and by client address for requests that fail authentication ("admin-ip:"+IP),
// which slows down token guessing: an address out of budget gets 429 before its token is looked at.
func (a *api) guard(role auth.Role, h http.Handler) http.Handler {
	inner := auth.Require(a.auth, role, a.limitPrincipal(h))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ipKey := "admin-ip:" + remoteIP(r)
		if res, _, ok := a.decide(r.Context(), ipKey, 0); ok && res.Remaining == 0 {
			a.tooMany(w, r, res, true)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		inner.ServeHTTP(sw, r)
		if sw.status == http.StatusUnauthorized {
			a.decide(r.Context(), ipKey, 1)
		}
	})
}

// limitPrincipal charges one request to the authenticated principal.
func (a *api) limitPrincipal(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		res, allowed, ok := a.decide(r.Context(), "admin:"+p.Subject, 1)
		if ok {
			a.rateHeaders(w.Header(), res)
			if !allowed {
				a.tooMany(w, r, res, false)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// decide asks the admin rate limit for cost units of key. ok is false when the store failed: the API then
// fails open (logged at most every 10 s).
func (a *api) decide(ctx context.Context, key string, cost int64) (res limiter.Result, allowed, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, rateTimeout)
	defer cancel()
	hits := [1]limiter.Hit{{Key: key, Limit: a.limit, Cost: cost}}
	var results [1]limiter.Result
	allowed, err := a.rate.Decide(ctx, hits[:], results[:])
	if err != nil {
		now := time.Now().UnixNano()
		if last := a.lastRateErr.Load(); now-last > int64(10*time.Second) && a.lastRateErr.CompareAndSwap(last, now) {
			a.log.Warn("admin API rate limit unavailable; requests are not limited", "err", err)
		}
		return limiter.Result{}, true, false
	}
	return results[0], allowed, true
}

// capacity is the most requests the admin limit admits at once.
func (a *api) capacity() uint64 {
	if a.limit.Algorithm == limiter.TokenBucket && a.limit.Burst > 0 {
		return a.limit.Burst
	}
	return a.limit.Requests
}

// rateHeaders sets RateLimit-Policy and RateLimit (IETF draft structured fields) for the admin limit.
func (a *api) rateHeaders(h http.Header, res limiter.Result) {
	c := a.capacity()
	w := a.limit.Window
	if a.limit.Algorithm == limiter.TokenBucket && a.limit.Requests > 0 {
		w = time.Duration(float64(a.limit.Window) * float64(c) / float64(a.limit.Requests))
	}
	h.Set("RateLimit-Policy", fmt.Sprintf(`"admin";q=%d;w=%d`, c, ceilSeconds(w, 1)))
	h.Set("RateLimit", fmt.Sprintf(`"admin";r=%d;t=%d`, min(res.Remaining, c), ceilSeconds(res.ResetAfter, 0)))
}

// tooMany answers 429. A peek (a check without cost) has no RetryAfter: the wait for one unit is derived.
func (a *api) tooMany(w http.ResponseWriter, r *http.Request, res limiter.Result, peek bool) {
	retry := res.RetryAfter
	if peek {
		retry = res.ResetAfter
		if a.limit.Algorithm == limiter.TokenBucket && a.limit.Requests > 0 {
			per := a.limit.Window / time.Duration(a.limit.Requests)
			retry = max(res.ResetAfter-time.Duration(a.capacity()-1)*per, time.Millisecond)
		}
	}
	a.rateHeaders(w.Header(), res)
	secs := ceilSeconds(retry, 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	w.Header().Set("Cache-Control", "no-store")
	a.writeError(w, r, &problem{Status: http.StatusTooManyRequests, slug: "too-many-requests",
		Detail: fmt.Sprintf("the admin API allows %d requests per %s (burst %d); retry in %d s",
			a.limit.Requests, a.limit.Window, a.capacity(), secs)})
}

// ceilSeconds returns d in whole seconds rounded up, at least floor.
func ceilSeconds(d time.Duration, floor int64) int64 {
	s := int64(math.Ceil(max(d, 0).Seconds()))
	return max(s, floor)
}

// statusWriter records the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// remoteIP is the client address of the connection (proxy headers are not trusted).
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// The problem types of the admin API: slug → title.
var problemTitles = map[string]string{
	"invalid-limits":         "Invalid limits",
	"bad-request":            "Bad request",
	"unauthorized":           "Unauthorized",
	"forbidden":              "Forbidden",
	"not-found":              "Not found",
	"method-not-allowed":     "Method not allowed",
	"conflict":               "Conflict",
	"precondition-failed":    "Precondition failed",
	"read-only":              "Read-only limits",
	"payload-too-large":      "Payload too large",
	"unsupported-media-type": "Unsupported media type",
	"too-many-requests":      "Too many requests",
	"unavailable":            "Unavailable",
}

// problem is an RFC 9457 problem: the body of every admin API error (application/problem+json).
type problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail,omitempty"`
	Errors []problemError `json:"errors,omitempty"`
	// CurrentVersion is set on 412 and 409: the version to reload.
	CurrentVersion string `json:"current_version,omitempty"`

	slug string
}

// problemError is one config.Error: Field is its Path ("descriptors[1].rate_limit.unit", or a rule path
// for the rule edits), Line is within File.
type problemError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
}

func (p *problem) Error() string { return p.slug + ": " + p.Detail }

func badRequest(format string, args ...any) *problem {
	return &problem{Status: http.StatusBadRequest, slug: "bad-request", Detail: fmt.Sprintf(format, args...)}
}

func notFound(detail string) *problem {
	return &problem{Status: http.StatusNotFound, slug: "not-found", Detail: detail}
}

func unavailable(detail string) *problem {
	return &problem{Status: http.StatusServiceUnavailable, slug: "unavailable", Detail: detail}
}

// writeError writes err as a problem: a *problem as it is, config errors by kind, anything else as 503
// (a store that failed), logged.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p, ok := errors.AsType[*problem](err)
	if !ok {
		p = a.classify(r, err)
	}
	p.Type = "https://floodgate.dev/problems/" + p.slug
	p.Title = problemTitles[p.slug]
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	body, _ := json.Marshal(p)
	_, _ = w.Write(append(body, '\n'))
}

// classify turns an error that is not a *problem into one. Errors the client caused (invalid limits, no
// such domain, ...) say what is wrong; any other error is the server's (a store, the database, the usage
// inspector failed): it is logged, and the answer is a 503 whose detail names the request but carries none
// of the error's text (addresses, user names, queries).
func (a *api) classify(r *http.Request, err error) *problem {
	if es := configErrors(err); es != nil {
		p := &problem{Status: http.StatusBadRequest, slug: "invalid-limits", Errors: make([]problemError, 0, len(es))}
		for _, e := range es {
			p.Errors = append(p.Errors, problemError{Field: e.Path, Reason: e.Reason, File: e.File, Line: e.Line})
		}
		p.Detail = fmt.Sprintf("the limits are invalid (%d problems): %s", len(es), errorText(es[0]))
		if len(es) == 1 {
			p.Detail = "the limits are invalid: " + errorText(es[0])
		}
		return p
	}
	switch {
	case errors.Is(err, config.ErrNoSuchDomain), errors.Is(err, config.ErrNoSuchRule), errors.Is(err, config.ErrNotFound):
		return notFound(err.Error())
	case errors.Is(err, config.ErrReadOnly):
		return &problem{Status: http.StatusConflict, slug: "read-only", Detail: config.ErrReadOnly.Error()}
	case errors.Is(err, config.ErrConflict):
		return &problem{Status: http.StatusConflict, slug: "conflict",
			Detail: "the limits were changed by someone else meanwhile; reload and try again (" + err.Error() + ")"}
	}
	a.log.Error("admin API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	what := r.Pattern
	if what == "" {
		what = r.Method + " request"
	}
	return unavailable("the server could not complete " + what + ": a store or service it depends on failed (the error is in the server's log)")
}

// errorText is e as text, without the empty file name of an error not tied to a file.
func errorText(e *config.Error) string {
	if e.File != "" {
		return e.Error()
	}
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// clip cuts s to at most n bytes, on a UTF-8 boundary, marking the cut with "...".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - 3
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// quoted is a request value for an error detail: quoted (Go syntax, control bytes escaped), at most
// maxEchoed bytes of it.
func quoted(s string) string {
	if len(s) <= maxEchoed {
		return strconv.Quote(s)
	}
	return strconv.Quote(clip(s, maxEchoed)) + fmt.Sprintf(" (%d bytes)", len(s))
}

// configErrors returns the config.Errors in err (a single *config.Error counts as one), or nil.
func configErrors(err error) config.Errors {
	if es, ok := errors.AsType[config.Errors](err); ok && len(es) > 0 {
		return es
	}
	if e, ok := errors.AsType[*config.Error](err); ok {
		return config.Errors{e}
	}
	return nil
}

// writeJSON answers 200 (or code) with v.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// setETag labels a response with a limits version.
func setETag(w http.ResponseWriter, version uint64) {
	w.Header().Set("ETag", `"`+strconv.FormatUint(version, 10)+`"`)
}

// ifMatch reads If-Match (RFC 9110 section 13.1.1): "*", or a list of entity tags, each a limits version
// ("7"; bare digits are accepted too). ok is false without the header or with "*". The comparison is
// strong: a weak tag (W/"7") never matches, so versions holds the strong tags only, and may be empty (the
// write then fails its precondition). A malformed value is a 400.
func ifMatch(r *http.Request) (versions []uint64, ok bool, err error) {
	h := strings.Trim(strings.Join(r.Header.Values("If-Match"), ", "), " \t")
	if h == "" || h == "*" {
		return nil, false, nil
	}
	malformed := func(why string) error {
		return badRequest("If-Match %s: want \"*\" or limits versions such as \"7\" (W/ tags never match); got %s", why, quoted(h))
	}
	tags := 0
	for i := 0; ; {
		for i < len(h) && (h[i] == ' ' || h[i] == '\t' || h[i] == ',') { // empty list elements are allowed
			i++
		}
		if i == len(h) {
			break
		}
		if tags++; tags > maxIfMatchTags {
			return nil, false, malformed(fmt.Sprintf("has more than %d entity tags", maxIfMatchTags))
		}
		weak := strings.HasPrefix(h[i:], "W/")
		if weak {
			i += 2
		}
		var opaque string
		switch {
		case i < len(h) && h[i] == '"':
			end := strings.IndexByte(h[i+1:], '"')
			if end < 0 {
				return nil, false, malformed("has an unbalanced quote")
			}
			opaque, i = h[i+1:i+1+end], i+2+end
		case !weak:
			end := i
			for end < len(h) && h[end] != ',' && h[end] != ' ' && h[end] != '\t' {
				end++
			}
			opaque, i = h[i:end], end
		default:
			return nil, false, malformed("has W/ without a quoted tag")
		}
		n, perr := strconv.ParseUint(opaque, 10, 64)
		if perr != nil || n == 0 {
			return nil, false, malformed("names no limits version")
		}
		if !weak {
			versions = append(versions, n)
		}
		for i < len(h) && (h[i] == ' ' || h[i] == '\t') {
			i++
		}
		if i < len(h) && h[i] != ',' {
			return nil, false, malformed("is not a comma-separated list of entity tags")
		}
	}
	if tags == 0 {
		return nil, false, malformed("is an empty list")
	}
	return versions, true, nil
}

// preconditionFailed is the 412 of a write whose If-Match does not name the current version.
func preconditionFailed(w http.ResponseWriter, versions []uint64, current uint64) error {
	setETag(w, current)
	detail := fmt.Sprintf("If-Match holds only weak entity tags, which never match (strong comparison); the limits are at version %d", current)
	switch len(versions) {
	case 0:
	case 1:
		detail = fmt.Sprintf("If-Match names version %d but the limits are at version %d; reload and try again", versions[0], current)
	default:
		detail = fmt.Sprintf("If-Match names %d versions, none of them the current version %d; reload and try again", len(versions), current)
	}
	return &problem{Status: http.StatusPreconditionFailed, slug: "precondition-failed",
		CurrentVersion: strconv.FormatUint(current, 10), Detail: detail}
}

// dryRun reads ?dry_run=.
func dryRun(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("dry_run")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("dry_run must be true or false, got %q", v)
	}
	return b, nil
}

// Media types of request bodies.
const (
	mediaJSON       = "application/json"
	mediaMergePatch = "application/merge-patch+json"
	mediaYAML       = "application/yaml"
)

// readBody reads a request body of one of the accepted media types (YAML under any of its names counts as
// mediaYAML). It answers 415 for another or a missing Content-Type (so that a browser form or a "simple"
// cross-origin request can never write) and 413 above maxBody.
func readBody(w http.ResponseWriter, r *http.Request, accept ...string) ([]byte, string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch mt {
		case "application/x-yaml", "text/yaml", "text/x-yaml":
			mt = mediaYAML
		}
	}
	ok := false
	for _, m := range accept {
		ok = ok || err == nil && mt == m
	}
	if !ok {
		return nil, "", &problem{Status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type",
			Detail: fmt.Sprintf("Content-Type %q is not accepted here; send %s", ct, strings.Join(accept, " or "))}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, big := errors.AsType[*http.MaxBytesError](err); big {
			return nil, "", &problem{Status: http.StatusRequestEntityTooLarge, slug: "payload-too-large",
				Detail: fmt.Sprintf("the body is larger than %d bytes", maxBody)}
		}
		return nil, "", badRequest("read body: %v", err)
	}
	return body, mt, nil
}

// decodeJSON decodes exactly one JSON value into v, refusing unknown fields (the error names the field)
// and duplicate keys (see checkDuplicateKeys).
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("empty body; want a JSON object")
		}
		return badRequest("invalid JSON body: %s", clip(strings.TrimPrefix(err.Error(), "json: "), 200))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: more than one JSON value")
	}
	return checkDuplicateKeys(body, reflect.TypeOf(v))
}

// checkDuplicateKeys refuses (400, naming the key) a JSON body in which an object holds a key twice:
// encoding/json would keep the last value silently. t is the type the body is decoded into (nil: none);
// in objects decoded into a struct, keys that differ only in case count as the same key, since
// encoding/json matches them to the same field.
func checkDuplicateKeys(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	key, path, err := duplicateKey(dec, t, "")
	switch {
	case err != nil:
		return badRequest("invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	case key == "":
		return nil
	case path == "":
		return badRequest("invalid JSON body: duplicate key %s", quoted(key))
	}
	return badRequest("invalid JSON body: duplicate key %s in %s", quoted(key), clip(path, maxEchoed))
}

// duplicateKey reads one JSON value from dec and returns the first key repeated within one of its objects
// and the path of that object; t is the value's Go type, or nil.
func duplicateKey(dec *json.Decoder, t reflect.Type, path string) (key, at string, err error) {
	tok, err := dec.Token()
	if err != nil {
		return "", "", err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return "", "", nil
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if u := reflect.TypeFor[json.Unmarshaler](); t != nil && (t.Implements(u) || reflect.PointerTo(t).Implements(u)) {
		t = nil // decodes itself: its objects are compared exactly
	}
	if delim == '[' {
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if key, at, err := duplicateKey(dec, elem, path+"["+strconv.Itoa(i)+"]"); err != nil || key != "" {
				return key, at, err
			}
		}
		_, err = dec.Token()
		return "", "", err
	}
	isStruct := t != nil && t.Kind() == reflect.Struct
	var seen []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", "", err
		}
		k, _ := tok.(string)
		for _, s := range seen {
			if s == k || isStruct && strings.EqualFold(s, k) {
				return k, path, nil
			}
		}
		seen = append(seen, k)
		var child reflect.Type
		switch {
		case isStruct:
			child = fieldType(t, k)
		case t != nil && t.Kind() == reflect.Map:
			child = t.Elem()
		}
		sub := k
		if path != "" {
			sub = path + "." + k
		}
		if key, at, err := duplicateKey(dec, child, sub); err != nil || key != "" {
			return key, at, err
		}
	}
	_, err = dec.Token()
	return "", "", err
}

// fieldType is the type of the field of struct t that encoding/json decodes key into, or nil.
func fieldType(t reflect.Type, key string) reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.EqualFold(name, key) {
			return f.Type
		}
	}
	return nil
}

// jsonVersion is a limits version in a request body: a string ("7", as responses write it) or a number.
type jsonVersion uint64

func (v *jsonVersion) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return fmt.Errorf("version must be a positive whole number such as \"7\", got %s", b)
	}
	*v = jsonVersion(n)
	return nil
}

// wantsYAML reports whether the Accept header prefers YAML to JSON.
func wantsYAML(r *http.Request) bool {
	best, bestQ := "", -1.0
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
			mt = mediaYAML
		case mediaJSON:
		default:
			continue
		}
		if q > bestQ && q > 0 {
			best, bestQ = mt, q
		}
	}
	return best == mediaYAML
}

//go:embed openapi.json
var openAPI []byte

func (a *api) getOpenAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPI)
	return nil
}
