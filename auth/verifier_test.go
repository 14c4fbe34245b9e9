package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/auth/authtest"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestVerifier builds a verifier with its own registry; edit adjusts the options first.
func newTestVerifier(t *testing.T, o Options) (*Verifier, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	v, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v, reg
}

func jwksOptions(iss *authtest.Issuer) Options {
	return Options{JWKSURL: iss.JWKSURL(), Issuer: iss.URL(), Audience: []string{authtest.Audience}}
}

// failures gathers floodgate_admin_auth_failures_total per reason from reg.
func failures(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_admin_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// diffFailures is after − before for every reason that changed.
func diffFailures(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for r, n := range after {
		if d := n - before[r]; d != 0 {
			out[r] = d
		}
	}
	return out
}

func reasonOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	e, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *auth.Error", err, err)
	}
	return e.Reason
}

func TestNewRefusesBadOptions(t *testing.T) {
	iss := authtest.NewIssuer(t)
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_, _ = w.Write([]byte(`{"issuer":"https://other.example","jwks_uri":"` + iss.JWKSURL() + `"}`))
		case "/nokeys":
			_, _ = w.Write([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(empty.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	jwks := jwksOptions(iss)
	with := func(f func(o *Options)) Options {
		o := jwks
		f(&o)
		return o
	}
	tests := []struct {
		name string
		give Options
		want string // substring of the error
	}{
		{"no key source", Options{}, "exactly one"},
		{"secret and jwks", with(func(o *Options) { o.HS256Secret = testSecret }), "exactly one"},
		{"jwks and oidc", with(func(o *Options) { o.OIDCIssuer = iss.URL() }), "exactly one"},
		{"short secret", Options{HS256Secret: []byte("short")}, "at least 32"},
		{"secret with RS256", Options{HS256Secret: testSecret, Algorithms: []string{"RS256"}}, "not allowed"},
		{"secret with none", Options{HS256Secret: testSecret, Algorithms: []string{"none"}}, "not allowed"},
		{"secret with HS512", Options{HS256Secret: testSecret, Algorithms: []string{"HS512"}}, "not allowed"},
		{"jwks with HS256 (key confusion)", with(func(o *Options) { o.Algorithms = []string{"RS256", "HS256"} }), "key confusion"},
		{"jwks with none", with(func(o *Options) { o.Algorithms = []string{"none"} }), "not supported"},
		{"jwks without issuer", with(func(o *Options) { o.Issuer = "" }), "issuer (Options.Issuer) is required"},
		{"jwks without audience", with(func(o *Options) { o.Audience = nil }), "audience (Options.Audience) is required"},
		{"empty audience value", with(func(o *Options) { o.Audience = []string{""} }), "empty audience"},
		{"leeway over 5 min", with(func(o *Options) { o.Leeway = 6 * time.Minute }), "leeway"},
		{"negative leeway", with(func(o *Options) { o.Leeway = -time.Second }), "leeway"},
		{"jwks unreachable", with(func(o *Options) { o.JWKSURL = closed.URL + "/jwks" }), "connect"},
		{"jwks not found", with(func(o *Options) { o.JWKSURL = empty.URL + "/missing" }), "404"},
		{"jwks without usable keys", with(func(o *Options) { o.JWKSURL = empty.URL + "/nokeys" }), "no usable"},
		{"jwks url not http", with(func(o *Options) { o.JWKSURL = "file:///etc/passwd" }), "not an absolute http"},
		{"oidc unreachable", Options{OIDCIssuer: closed.URL, Audience: []string{"a"}}, "connect"},
		{"oidc issuer mismatch", Options{OIDCIssuer: empty.URL, Audience: []string{"a"}}, "issuer"},
		{"oidc without audience", Options{OIDCIssuer: iss.URL()}, "audience (Options.Audience) is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(context.Background(), tt.give)
			if err == nil {
				t.Fatalf("New = %v, nil; want an error containing %q", v, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestVerifyRefusesBadTokens is field case B48: forged and invalid tokens, each refused with its reason
// and counted once under it.
func TestVerifyRefusesBadTokens(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, reg := newTestVerifier(t, jwksOptions(iss))
	admin := jwt.MapClaims{"roles": []string{"admin"}}
	if _, err := v.Verify(context.Background(), iss.Token(admin)); err != nil {
		t.Fatalf("the untampered token: %v", err)
	}
	for _, bt := range iss.BadTokens(admin) {
		t.Run(bt.Name, func(t *testing.T) {
			before := failures(t, reg)
			r := httptest.NewRequest(http.MethodGet, "/api/v1/limits", nil)
			r.Header.Set("Authorization", "Bearer "+bt.Token)
			p, err := v.Authenticate(r)
			if got := reasonOf(t, err); got != bt.Reason {
				t.Fatalf("got reason %q (principal %+v, err %v), want %q", got, p, err, bt.Reason)
			}
			if diff := cmp.Diff(map[string]float64{bt.Reason: 1}, diffFailures(before, failures(t, reg))); diff != "" {
				t.Errorf("failure counter change (-want +got):\n%s", diff)
			}
			if p != (Principal{}) {
				t.Errorf("got principal %+v, want zero", p)
			}
		})
	}
}

func TestVerifyAcceptsValidTokens(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, reg := newTestVerifier(t, jwksOptions(iss))
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tests := []struct {
		name string
		give string
		want Principal
	}{
		{"RS256", iss.Token(jwt.MapClaims{"sub": "alice", "roles": "admin", "exp": exp.Unix()}),
			Principal{Subject: "alice", Role: RoleAdmin, Issuer: iss.URL(), ExpiresAt: exp}},
		{"ES256", iss.Token(jwt.MapClaims{"sub": "bob", "roles": []string{"viewer"}, "exp": exp.Unix()}, authtest.ES256()),
			Principal{Subject: "bob", Role: RoleViewer, Issuer: iss.URL(), ExpiresAt: exp}},
		{"no kid, one RSA key", iss.Token(jwt.MapClaims{"exp": exp.Unix()}, authtest.KeyID("")),
			Principal{Subject: authtest.Subject, Role: RoleNone, Issuer: iss.URL(), ExpiresAt: exp}},
		{"aud array with one match", iss.Token(jwt.MapClaims{"aud": []string{"other", authtest.Audience}, "exp": exp.Unix()}),
			Principal{Subject: authtest.Subject, Role: RoleNone, Issuer: iss.URL(), ExpiresAt: exp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tt.give)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
	if diff := diffFailures(map[string]float64{}, failures(t, reg)); len(diff) != 0 {
		t.Errorf("got failures %v, want none", diff)
	}
}

func TestVerifyAlgorithmAllowList(t *testing.T) {
	iss := authtest.NewIssuer(t)
	o := jwksOptions(iss)
	o.Algorithms = []string{"RS256"}
	v, _ := newTestVerifier(t, o)
	if got := reasonOf(t, verifyErr(v, iss.Token(nil, authtest.ES256()))); got != ReasonAlgorithm {
		t.Errorf("ES256 with only RS256 allowed: got reason %q, want %q", got, ReasonAlgorithm)
	}
	if got := reasonOf(t, verifyErr(v, iss.Token(nil))); got != "" {
		t.Errorf("RS256: got reason %q, want success", got)
	}

	// An RS256 token whose kid names the EC key: the key does not fit the algorithm.
	o.Algorithms = nil
	v, _ = newTestVerifier(t, o)
	ecKid := strings.Replace(iss.KeyID(), "rsa", "ec", 1)
	if got := reasonOf(t, verifyErr(v, iss.Token(nil, authtest.KeyID(ecKid)))); got != ReasonUnknownKey {
		t.Errorf("RS256 token with an EC kid: got reason %q, want %q", got, ReasonUnknownKey)
	}
}

func verifyErr(v *Verifier, token string) error {
	_, err := v.Verify(context.Background(), token)
	return err
}

func TestVerifyTimes(t *testing.T) {
	iss := authtest.NewIssuer(t)
	clk := newClock()
	now := clk.Now()
	tests := []struct {
		name   string
		leeway time.Duration
		give   jwt.MapClaims
		want   string // reason, "" = accepted
	}{
		{"exp 10 s ago within 30 s leeway", 0, jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}, ""},
		{"exp 60 s ago beyond leeway", 0, jwt.MapClaims{"exp": now.Add(-60 * time.Second).Unix()}, ReasonExpired},
		{"exp 10 s ago with 5 s leeway", 5 * time.Second, jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}, ReasonExpired},
		{"exp 4 min ago with 5 min leeway", 5 * time.Minute, jwt.MapClaims{"exp": now.Add(-4 * time.Minute).Unix()}, ""},
		{"nbf 10 s ahead within leeway", 0, jwt.MapClaims{"nbf": now.Add(10 * time.Second).Unix()}, ""},
		{"nbf 60 s ahead", 0, jwt.MapClaims{"nbf": now.Add(60 * time.Second).Unix()}, ReasonNotYetValid},
		{"iat 60 s ahead", 0, jwt.MapClaims{"iat": now.Add(60 * time.Second).Unix()}, ReasonNotYetValid},
		{"no exp", 0, jwt.MapClaims{"exp": nil}, ReasonMalformed},
		{"exp not a number", 0, jwt.MapClaims{"exp": "tomorrow"}, ReasonMalformed},
		{"fractional exp", 0, jwt.MapClaims{"exp": float64(now.Unix()) + 0.5}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := jwksOptions(iss)
			o.Leeway, o.Now = tt.leeway, clk.Now
			v, _ := newTestVerifier(t, o)
			claims := jwt.MapClaims{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(time.Hour).Unix()}
			for k, val := range tt.give {
				claims[k] = val
			}
			if got := reasonOf(t, verifyErr(v, iss.Token(claims))); got != tt.want {
				t.Errorf("got reason %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVerifyHS256(t *testing.T) {
	iss := authtest.NewIssuer(t) // only for an RS256 token
	tests := []struct {
		name  string
		opts  Options
		token string
		want  string
	}{
		{"valid", Options{}, authtest.HS256Token(testSecret, jwt.MapClaims{"roles": "admin"}), ""},
		{"issuer and audience unchecked when unset", Options{},
			authtest.HS256Token(testSecret, jwt.MapClaims{"iss": "anyone", "aud": "anything"}), ""},
		{"wrong secret", Options{}, authtest.HS256Token([]byte("another secret of at least 32 bytes!"), nil), ReasonBadSignature},
		{"RS256 token", Options{}, iss.Token(nil), ReasonAlgorithm},
		{"issuer checked when set", Options{Issuer: "https://floodgate.example"},
			authtest.HS256Token(testSecret, jwt.MapClaims{"iss": "https://other.example"}), ReasonIssuer},
		{"issuer set, matching", Options{Issuer: "https://floodgate.example"},
			authtest.HS256Token(testSecret, jwt.MapClaims{"iss": "https://floodgate.example"}), ""},
		{"audience required when set", Options{Audience: []string{"floodgate"}}, authtest.HS256Token(testSecret, nil), ReasonAudience},
		{"audience set, matching", Options{Audience: []string{"floodgate"}},
			authtest.HS256Token(testSecret, jwt.MapClaims{"aud": "floodgate"}), ""},
		{"expired", Options{}, authtest.HS256Token(testSecret, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}), ReasonExpired},
		{"missing sub", Options{}, authtest.HS256Token(testSecret, jwt.MapClaims{"sub": nil}), ReasonMalformed},
		{"empty sub", Options{}, authtest.HS256Token(testSecret, jwt.MapClaims{"sub": ""}), ReasonMalformed},
		{"crit header", Options{}, critToken(t), ReasonMalformed},
		{"empty", Options{}, "", ReasonMissing},
		{"oversized", Options{}, strings.Repeat("a", maxTokenBytes+1), ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.HS256Secret = testSecret
			v, _ := newTestVerifier(t, o)
			if got := reasonOf(t, verifyErr(v, tt.token)); got != tt.want {
				t.Errorf("got reason %q, want %q", got, tt.want)
			}
		})
	}
}

func critToken(t *testing.T) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["crit"] = []string{"b64"}
	s, err := tok.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoles(t *testing.T) {
	tests := []struct {
		name      string
		roleClaim string
		admin     []string
		claims    jwt.MapClaims
		want      Role
	}{
		{"string admin", "", nil, jwt.MapClaims{"roles": "admin"}, RoleAdmin},
		{"array with viewer", "", nil, jwt.MapClaims{"roles": []string{"x", "viewer"}}, RoleViewer},
		{"array with viewer and admin", "", nil, jwt.MapClaims{"roles": []string{"viewer", "floodgate:admin"}}, RoleAdmin},
		{"floodgate-viewer", "", nil, jwt.MapClaims{"roles": []string{"floodgate-viewer"}}, RoleViewer},
		{"no role claim", "", nil, jwt.MapClaims{}, RoleNone},
		{"unknown values", "", nil, jwt.MapClaims{"roles": []string{"x", "Admin"}}, RoleNone},
		{"number", "", nil, jwt.MapClaims{"roles": 1}, RoleNone},
		{"array of non-strings", "", nil, jwt.MapClaims{"roles": []any{1, true, map[string]any{"admin": true}}}, RoleNone},
		{"nested path", "realm_access.roles", nil, jwt.MapClaims{"realm_access": map[string]any{"roles": []string{"offline", "admin"}}}, RoleAdmin},
		{"nested path missing", "realm_access.roles", nil, jwt.MapClaims{"realm_access": "admin"}, RoleNone},
		{"top-level name with dots", "https://floodgate.dev/roles", nil, jwt.MapClaims{"https://floodgate.dev/roles": []string{"viewer"}}, RoleViewer},
		{"space-separated scope", "scope", nil, jwt.MapClaims{"scope": "openid floodgate:viewer"}, RoleViewer},
		{"custom admin roles", "groups", []string{"ops"}, jwt.MapClaims{"groups": []string{"ops"}}, RoleAdmin},
		{"custom admin roles replace defaults", "groups", []string{"ops"}, jwt.MapClaims{"groups": []string{"admin"}}, RoleNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newTestVerifier(t, Options{HS256Secret: testSecret, RoleClaim: tt.roleClaim, AdminRoles: tt.admin})
			p, err := v.Verify(context.Background(), authtest.HS256Token(testSecret, tt.claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Role != tt.want {
				t.Errorf("got role %v, want %v", p.Role, tt.want)
			}
		})
	}
}

// TestKeyRotation: tokens of a new key are accepted without a restart, tokens of a removed key are
// refused, and unknown kids refetch the JWKS at most once per 10 s.
func TestKeyRotation(t *testing.T) {
	iss := authtest.NewIssuer(t)
	clk := newClock()
	o := jwksOptions(iss)
	o.Now = clk.Now
	v, reg := newTestVerifier(t, o)
	wantFetches := func(want int) {
		t.Helper()
		if got := iss.JWKSRequests(); got != want {
			t.Errorf("got %d JWKS fetches, want %d", got, want)
		}
	}
	wantFetches(1)

	oldToken := iss.Token(nil)
	if err := verifyErr(v, oldToken); err != nil {
		t.Fatalf("token of the first key: %v", err)
	}
	clk.Advance(11 * time.Second)
	iss.Rotate()
	if err := verifyErr(v, iss.Token(nil)); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if err := verifyErr(v, iss.Token(nil, authtest.ES256())); err != nil {
		t.Fatalf("ES256 token of the new key: %v", err)
	}
	wantFetches(2)
	if got := reasonOf(t, verifyErr(v, oldToken)); got != ReasonUnknownKey {
		t.Errorf("token of the removed key: got reason %q, want %q", got, ReasonUnknownKey)
	}
	wantFetches(2) // within 10 s of the last fetch: no refetch

	// Unknown kids: one refetch per 10 s however many arrive, also concurrently.
	clk.Advance(11 * time.Second)
	forged := iss.Token(nil, authtest.KeyID("forged"))
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 20 {
		// Ends when Verify returns.
		wg.Go(func() {
			if e, ok := errors.AsType[*Error](verifyErr(v, forged)); ok && e.Reason == ReasonUnknownKey {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if refused.Load() != 20 {
		t.Errorf("got %d refused forged tokens, want 20", refused.Load())
	}
	wantFetches(3)
	if got := failures(t, reg)[ReasonUnknownKey]; got != 21 {
		t.Errorf("got unknown_key count %v, want 21", got)
	}
}

func TestJWKSPeriodicRefresh(t *testing.T) {
	iss := authtest.NewIssuer(t)
	clk := newClock()
	o := jwksOptions(iss)
	o.Now = clk.Now
	v, _ := newTestVerifier(t, o)
	token := iss.Token(nil)

	clk.Advance(4 * time.Minute)
	if err := verifyErr(v, token); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := iss.JWKSRequests(); got != 1 {
		t.Errorf("after 4 min: got %d fetches, want 1", got)
	}

	// After 5 minutes a verification refetches; an unreachable JWKS keeps the current keys.
	clk.Advance(time.Minute + time.Second)
	iss.SetJWKSAvailable(false)
	if err := verifyErr(v, token); err != nil {
		t.Fatalf("Verify with the JWKS down: %v", err)
	}
	if got := iss.JWKSRequests(); got != 2 {
		t.Errorf("after 5 min: got %d fetches, want 2", got)
	}

	// Back up, and the issuer rotated meanwhile: the periodic refresh drops the old key.
	iss.SetJWKSAvailable(true)
	iss.Rotate()
	clk.Advance(11 * time.Second)
	if err := verifyErr(v, token); reasonOf(t, err) != ReasonUnknownKey {
		t.Errorf("token of a rotated-out key: got %v, want reason %q", err, ReasonUnknownKey)
	}
	if got := iss.JWKSRequests(); got != 3 {
		t.Errorf("got %d fetches, want 3", got)
	}
}

func TestOIDCDiscovery(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, Options{OIDCIssuer: iss.URL(), Audience: []string{authtest.Audience}})
	want := OIDCInfo{Issuer: iss.URL(), AuthorizationEndpoint: iss.URL() + "/authorize", TokenEndpoint: iss.URL() + "/token"}
	if diff := cmp.Diff(want, v.OIDC()); diff != "" {
		t.Errorf("OIDC() (-want +got):\n%s", diff)
	}
	p, err := v.Verify(context.Background(), iss.Token(jwt.MapClaims{"roles": []string{"viewer"}}))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Role != RoleViewer || p.Issuer != iss.URL() {
		t.Errorf("got %+v, want a viewer from %s", p, iss.URL())
	}
	if got := reasonOf(t, verifyErr(v, iss.Token(jwt.MapClaims{"iss": iss.URL() + "/"}))); got != ReasonIssuer {
		t.Errorf("issuer with a trailing slash: got reason %q, want %q", got, ReasonIssuer)
	}

	hs, _ := newTestVerifier(t, Options{HS256Secret: testSecret})
	if diff := cmp.Diff(OIDCInfo{}, hs.OIDC()); diff != "" {
		t.Errorf("OIDC() without OIDCIssuer (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	v1, err := New(context.Background(), Options{HS256Secret: testSecret, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	// Every reason is exported from the start, at 0.
	want := map[string]float64{}
	for _, r := range reasons {
		want[r] = 0
	}
	if diff := cmp.Diff(want, failures(t, reg)); diff != "" {
		t.Errorf("initial series (-want +got):\n%s", diff)
	}
	// A second verifier on the same registry shares the counter instead of failing.
	v2, err := New(context.Background(), Options{HS256Secret: testSecret, Registerer: reg})
	if err != nil {
		t.Fatalf("second New on one registry: %v", err)
	}
	_ = verifyErr(v1, "x")
	_ = verifyErr(v2, "")
	if got := failures(t, reg); got[ReasonMalformed] != 1 || got[ReasonMissing] != 1 {
		t.Errorf("got %v, want malformed 1 and missing 1", got)
	}
}

func TestErrorText(t *testing.T) {
	for _, r := range reasons {
		e := &Error{Reason: r, Err: errors.New("secret detail kid=abc")}
		if strings.Contains(e.Error(), "secret") || e.Error() == (&Error{}).Error() {
			t.Errorf("reason %s: got text %q, want a fixed text of its own", r, e.Error())
		}
		if !errors.Is(e, e.Err) {
			t.Errorf("reason %s: Unwrap does not reach Err", r)
		}
	}
}
