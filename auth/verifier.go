package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	defaultLeeway  = 30 * time.Second
	maxLeeway      = 5 * time.Minute
	minSecretBytes = 32
	// maxTokenBytes bounds the token Floodgate parses; real access tokens are a few KiB at most.
	maxTokenBytes = 16 << 10
)

// publicKeyAlgs are the algorithms a JWKS key may verify.
var publicKeyAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// Options configures a Verifier. Exactly one key source must be set: HS256Secret, JWKSURL or OIDCIssuer.
type Options struct {
	// HS256Secret is a shared secret of at least 32 bytes; tokens must then be HS256.
	HS256Secret []byte
	// JWKSURL is where the RS256/ES256 verification keys are published. It is fetched in New, again when a
	// token names an unknown kid (at most every 10 s), and when the keys are 5 minutes old.
	JWKSURL string
	// OIDCIssuer is an OpenID Connect issuer; New reads {issuer}/.well-known/openid-configuration for its
	// jwks_uri and the endpoints the dashboard's sign-in needs.
	OIDCIssuer string
	// Issuer is the required iss claim; it defaults to OIDCIssuer. Only with HS256Secret may it be empty
	// (then iss is not checked).
	Issuer string
	// Audience lists accepted aud values; a token's aud must contain one of them. Required with JWKSURL or
	// OIDCIssuer; with HS256Secret, empty means aud is not checked.
	Audience []string
	// Algorithms is the allow-list of alg header values. Default ["HS256"] with a secret, ["RS256", "ES256"]
	// with keys. "none" is always refused; HS* with JWKSURL or OIDCIssuer is an error (key confusion).
	Algorithms []string
	// RoleClaim names the claim holding roles: a string (whitespace-separated values), an array of strings,
	// or a dotted path into nested objects ("realm_access.roles"). A top-level claim whose name contains
	// dots ("https://example.com/roles") wins over the path. Default "roles".
	RoleClaim string
	// AdminRoles are role values granting RoleAdmin. Default ["admin", "floodgate:admin", "floodgate-admin"].
	AdminRoles []string
	// ViewerRoles are role values granting RoleViewer. Default ["viewer", "floodgate:viewer", "floodgate-viewer"].
	ViewerRoles []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30 s, at most 5 min.
	Leeway time.Duration
	// HTTPClient fetches discovery and JWKS documents. Default: a client with a 5 s timeout.
	HTTPClient *http.Client
	// Logger receives JWKS refresh problems (warn) and refusals (debug). Default: discard.
	Logger *slog.Logger
	// Registerer, when set, gets floodgate_admin_auth_failures_total{reason}.
	Registerer prometheus.Registerer
	// Now is the clock for token times and JWKS refetch limits. Default time.Now.
	Now func() time.Time
}

// OIDCInfo is what the dashboard needs to run the authorization-code flow against the issuer.
type OIDCInfo struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
}

// Verifier checks bearer JWTs and maps their role claim to a Role. It is safe for concurrent use.
type Verifier struct {
	secret      []byte     // HS256 mode
	keys        *jwksCache // JWKS and OIDC mode
	algs        []string   // allow-list
	issuer      string     // "" = not checked (HS256 only)
	audience    []string   // empty = not checked (HS256 only)
	roleClaim   string
	adminRoles  []string
	viewerRoles []string
	leeway      time.Duration
	now         func() time.Time
	log         *slog.Logger
	failures    *prometheus.CounterVec
	parser      *jwt.Parser
	oidc        OIDCInfo
}

// New checks o and builds a Verifier. With OIDCIssuer it reads the discovery document, and with OIDCIssuer
// or JWKSURL it fetches the keys; an unreachable issuer or a JWKS without a usable key is an error.
func New(ctx context.Context, o Options) (*Verifier, error) {
	sources := 0
	for _, set := range []bool{len(o.HS256Secret) > 0, o.JWKSURL != "", o.OIDCIssuer != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("want exactly one of HS256Secret, JWKSURL and OIDCIssuer, got %d", sources)
	}
	v := &Verifier{
		issuer:      o.Issuer,
		roleClaim:   o.RoleClaim,
		adminRoles:  o.AdminRoles,
		viewerRoles: o.ViewerRoles,
		leeway:      o.Leeway,
		now:         o.Now,
		log:         o.Logger,
	}
	if v.roleClaim == "" {
		v.roleClaim = "roles"
	}
	if len(v.adminRoles) == 0 {
		v.adminRoles = []string{"admin", "floodgate:admin", "floodgate-admin"}
	}
	if len(v.viewerRoles) == 0 {
		v.viewerRoles = []string{"viewer", "floodgate:viewer", "floodgate-viewer"}
	}
	switch {
	case v.leeway == 0:
		v.leeway = defaultLeeway
	case v.leeway < 0 || v.leeway > maxLeeway:
		return nil, fmt.Errorf("leeway %s outside 0..%s", v.leeway, maxLeeway)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	for _, a := range o.Audience {
		if a == "" {
			return nil, errors.New("empty audience value")
		}
	}
	v.audience = slices.Clone(o.Audience)

	if len(o.HS256Secret) > 0 {
		if len(o.HS256Secret) < minSecretBytes {
			return nil, fmt.Errorf("HS256 secret of %d bytes, want at least %d", len(o.HS256Secret), minSecretBytes)
		}
		v.secret = slices.Clone(o.HS256Secret)
		v.algs = o.Algorithms
		if len(v.algs) == 0 {
			v.algs = []string{"HS256"}
		}
		for _, a := range v.algs {
			if a != "HS256" {
				return nil, fmt.Errorf("algorithm %q not allowed with an HS256 secret", a)
			}
		}
	} else {
		v.algs = o.Algorithms
		if len(v.algs) == 0 {
			v.algs = []string{"RS256", "ES256"}
		}
		for _, a := range v.algs {
			if strings.HasPrefix(strings.ToUpper(a), "HS") {
				return nil, fmt.Errorf("algorithm %q not allowed with public keys (key confusion)", a)
			}
			if !slices.Contains(publicKeyAlgs, a) {
				return nil, fmt.Errorf("algorithm %q not supported, want one of %v", a, publicKeyAlgs)
			}
		}
		jwksURL := o.JWKSURL
		if o.OIDCIssuer != "" {
			if v.issuer == "" {
				v.issuer = o.OIDCIssuer
			}
			info, uri, err := discover(ctx, client, o.OIDCIssuer)
			if err != nil {
				return nil, err
			}
			v.oidc, jwksURL = info, uri
		}
		if v.issuer == "" {
			return nil, errors.New("an issuer (Options.Issuer) is required with JWKSURL")
		}
		if len(v.audience) == 0 {
			return nil, errors.New("an audience (Options.Audience) is required with JWKSURL or OIDCIssuer")
		}
		if err := checkFetchURL(jwksURL); err != nil {
			return nil, fmt.Errorf("jwks url: %w", err)
		}
		if u, _ := url.Parse(jwksURL); u.Scheme == "http" && !isLoopback(u.Hostname()) {
			v.log.Warn("jwks fetched over plain http", "url", jwksURL)
		}
		v.keys = &jwksCache{url: jwksURL, client: client, now: v.now, log: v.log}
		if err := v.keys.load(ctx); err != nil {
			return nil, err
		}
	}
	v.algs = slices.Clone(v.algs)
	v.parser = jwt.NewParser(jwt.WithValidMethods(v.algs), jwt.WithStrictDecoding(), jwt.WithoutClaimsValidation())

	v.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "floodgate_admin_auth_failures_total",
		Help: "Requests to the admin API or dashboard refused by authentication or authorization, by reason.",
	}, []string{"reason"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(v.failures); err != nil {
			are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
			existing, isVec := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok || !isVec {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
			v.failures = existing
		}
	}
	for _, r := range reasons {
		v.failures.WithLabelValues(r)
	}
	return v, nil
}

// discover reads the issuer's OpenID Connect discovery document.
func discover(ctx context.Context, client *http.Client, issuer string) (OIDCInfo, string, error) {
	if err := checkFetchURL(issuer); err != nil {
		return OIDCInfo{}, "", fmt.Errorf("oidc issuer: %w", err)
	}
	var doc struct {
		Issuer                string `json:"issuer"`
		JWKSURI               string `json:"jwks_uri"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	if err := getJSON(ctx, client, wellKnown, &doc); err != nil {
		return OIDCInfo{}, "", fmt.Errorf("oidc discovery: %w", err)
	}
	if doc.Issuer != issuer {
		return OIDCInfo{}, "", fmt.Errorf("oidc discovery: issuer %q, want %q", doc.Issuer, issuer)
	}
	if doc.JWKSURI == "" {
		return OIDCInfo{}, "", fmt.Errorf("oidc discovery %s: no jwks_uri", wellKnown)
	}
	return OIDCInfo{
		Issuer:                doc.Issuer,
		AuthorizationEndpoint: doc.AuthorizationEndpoint,
		TokenEndpoint:         doc.TokenEndpoint,
	}, doc.JWKSURI, nil
}

func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OIDC returns the issuer's endpoints read at New; zero unless Options.OIDCIssuer was set.
func (v *Verifier) OIDC() OIDCInfo { return v.oidc }

// Verify checks token (the JWT without "Bearer ") and returns its principal. The signature is checked first
// (alg on the allow-list, key by kid or the secret), then exp (required), nbf, iat, iss, aud and sub. The
// error is always an *Error; each refusal is counted in floodgate_admin_auth_failures_total.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	p, err := v.verify(ctx, token)
	if err != nil {
		return Principal{}, v.fail(err)
	}
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, token string) (Principal, *Error) {
	if token == "" {
		return Principal{}, &Error{Reason: ReasonMissing}
	}
	if len(token) > maxTokenBytes {
		return Principal{}, &Error{Reason: ReasonMalformed, Err: fmt.Errorf("token of %d bytes, limit %d", len(token), maxTokenBytes)}
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, &Error{Reason: ReasonMalformed, Err: errors.New("crit header not supported")}
		}
		if v.secret != nil {
			return v.secret, nil
		}
		kid, _ := t.Header["kid"].(string)
		return v.keys.key(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		return Principal{}, v.classify(tok, err)
	}
	return v.checkClaims(claims)
}

// classify turns a parse error into an *Error.
func (v *Verifier) classify(tok *jwt.Token, err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if tok != nil && tok.Header != nil {
		alg, _ := tok.Header["alg"].(string)
		if !slices.Contains(v.algs, alg) {
			return &Error{Reason: ReasonAlgorithm, Err: err}
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return &Error{Reason: ReasonBadSignature, Err: err}
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return &Error{Reason: ReasonAlgorithm, Err: err}
	}
	return &Error{Reason: ReasonMalformed, Err: err}
}

// checkClaims validates the claims of a token whose signature verified and builds its principal.
func (v *Verifier) checkClaims(c jwt.MapClaims) (Principal, *Error) {
	now := v.now()
	exp, err := c.GetExpirationTime()
	if err != nil {
		return Principal{}, &Error{Reason: ReasonMalformed, Err: err}
	}
	if exp == nil {
		return Principal{}, &Error{Reason: ReasonMalformed, Err: errors.New("exp claim is required")}
	}
	if !now.Before(exp.Add(v.leeway)) {
		return Principal{}, &Error{Reason: ReasonExpired, Err: fmt.Errorf("expired at %s", exp.UTC().Format(time.RFC3339))}
	}
	for _, claim := range []string{"nbf", "iat"} {
		var t *jwt.NumericDate
		if claim == "nbf" {
			t, err = c.GetNotBefore()
		} else {
			t, err = c.GetIssuedAt()
		}
		if err != nil {
			return Principal{}, &Error{Reason: ReasonMalformed, Err: err}
		}
		if t != nil && now.Before(t.Add(-v.leeway)) {
			return Principal{}, &Error{Reason: ReasonNotYetValid, Err: fmt.Errorf("%s %s is in the future", claim, t.UTC().Format(time.RFC3339))}
		}
	}
	iss, err := c.GetIssuer()
	if err != nil {
		return Principal{}, &Error{Reason: ReasonIssuer, Err: err}
	}
	if v.issuer != "" && iss != v.issuer {
		return Principal{}, &Error{Reason: ReasonIssuer, Err: fmt.Errorf("issuer %q, want %q", iss, v.issuer)}
	}
	if len(v.audience) > 0 {
		aud, err := c.GetAudience()
		if err != nil {
			return Principal{}, &Error{Reason: ReasonAudience, Err: err}
		}
		if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(v.audience, a) }) {
			return Principal{}, &Error{Reason: ReasonAudience, Err: fmt.Errorf("audience %q, want one of %q", []string(aud), v.audience)}
		}
	}
	sub, err := c.GetSubject()
	if err != nil || sub == "" {
		return Principal{}, &Error{Reason: ReasonMalformed, Err: errors.New("sub claim is required")}
	}
	return Principal{Subject: sub, Role: v.role(c), Issuer: iss, ExpiresAt: exp.Time}, nil
}

// role returns the highest role any value of the role claim grants.
func (v *Verifier) role(c jwt.MapClaims) Role {
	best := RoleNone
	for _, r := range roleValues(c, v.roleClaim) {
		switch {
		case slices.Contains(v.adminRoles, r):
			return RoleAdmin
		case slices.Contains(v.viewerRoles, r):
			best = RoleViewer
		}
	}
	return best
}

// roleValues reads the claim at path: a top-level claim of that exact name, else a dotted path through
// nested objects. A string yields its whitespace-separated fields, an array its string elements.
func roleValues(c map[string]any, path string) []string {
	val, ok := c[path]
	if !ok {
		var cur any = c
		for part := range strings.SplitSeq(path, ".") {
			obj, isObj := cur.(map[string]any)
			if !isObj {
				return nil
			}
			cur = obj[part]
		}
		val = cur
	}
	switch val := val.(type) {
	case string:
		return strings.Fields(val)
	case []any:
		out := make([]string, 0, len(val))
		for _, e := range val {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// fail counts e and logs it at debug level; it returns e as an error.
func (v *Verifier) fail(e *Error) error {
	v.countFailure(e.Reason)
	v.log.Debug("auth refused", "reason", e.Reason, "err", e.Err)
	return e
}

func (v *Verifier) countFailure(reason string) {
	v.failures.WithLabelValues(reason).Inc()
}
