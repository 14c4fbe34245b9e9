// Package authtest runs a test OpenID Connect issuer on 127.0.0.1 for tests of packages that use auth:
// discovery, a JWKS with one RS256 and one ES256 key, key rotation, token minting, and the
// authorization-code flow with PKCE (S256) that the dashboard's sign-in drives from a browser.
//
// It is for tests only: keys are generated per issuer, codes and tokens are not protected beyond what a
// test needs, and /authorize logs in whoever SetLogin names without asking.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the aud of the issuer's tokens; configure the verifier under test with it.
const Audience = "floodgate"

// Subject is the default sub of minted tokens and of the logged-in user.
const Subject = "test-user"

// TokenLifetime is the default exp − iat of minted tokens and the expires_in of the token endpoint.
const TokenLifetime = time.Hour

// codeLifetime is how long an authorization code can be redeemed.
const codeLifetime = 2 * time.Minute

// Issuer is a test OpenID Connect issuer served by httptest on 127.0.0.1. It is safe for concurrent use.
type Issuer struct {
	t   testing.TB
	srv *httptest.Server

	mu         sync.Mutex
	gen        int // key generation, in the kids ("rsa-1", "ec-1")
	rsaKey     *rsa.PrivateKey
	ecKey      *ecdsa.PrivateKey
	jwksDown   bool
	jwksHits   int
	loginSub   string
	loginRoles []string
	codes      map[string]authCode
}

type authCode struct {
	clientID, redirectURI, challenge, scope string
	sub                                     string
	roles                                   []string
	expires                                 time.Time
}

// NewIssuer starts an issuer with fresh RS256 and ES256 keys; it stops when the test ends. The logged-in
// user of the authorization-code flow is Subject with the role "admin" until SetLogin changes it.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{t: t, loginSub: Subject, loginRoles: []string{"admin"}, codes: map[string]authCode{}}
	i.rsaKey, i.ecKey = newKeys(t)
	i.gen = 1
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("/jwks", i.serveJWKS)
	mux.HandleFunc("/authorize", i.serveAuthorize)
	mux.HandleFunc("/token", i.serveToken)
	i.srv = httptest.NewServer(mux)
	t.Cleanup(i.srv.Close)
	return i
}

func newKeys(t testing.TB) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate rsa key: %v", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate ec key: %v", err)
	}
	return rk, ek
}

// URL is the issuer identifier (the iss of its tokens), e.g. "http://127.0.0.1:41234".
func (i *Issuer) URL() string { return i.srv.URL }

// JWKSURL is where the issuer publishes its keys.
func (i *Issuer) JWKSURL() string { return i.srv.URL + "/jwks" }

// KeyID is the kid of the current RSA key.
func (i *Issuer) KeyID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return fmt.Sprintf("rsa-%d", i.gen)
}

// RSAPublicKey is the current RSA public key (for key-confusion tests: its PEM or modulus as HMAC secret).
func (i *Issuer) RSAPublicKey() *rsa.PublicKey {
	i.mu.Lock()
	defer i.mu.Unlock()
	return &i.rsaKey.PublicKey
}

// PublicKeyPEM is the current RSA public key as a PKIX "PUBLIC KEY" PEM block.
func (i *Issuer) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(i.RSAPublicKey())
	if err != nil {
		i.t.Fatalf("marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Rotate replaces both keys with new ones under new kids; the JWKS no longer lists the old keys, so tokens
// signed before Rotate stop verifying once a verifier refetches.
func (i *Issuer) Rotate() {
	rk, ek := newKeys(i.t)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rsaKey, i.ecKey = rk, ek
	i.gen++
}

// SetJWKSAvailable makes the JWKS endpoint answer 503 (false) or the keys (true, the default).
func (i *Issuer) SetJWKSAvailable(ok bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.jwksDown = !ok
}

// JWKSRequests counts the requests the JWKS endpoint has served.
func (i *Issuer) JWKSRequests() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.jwksHits
}

// SetLogin sets who /authorize logs in: the sub and roles of the access tokens the token endpoint issues.
func (i *Issuer) SetLogin(sub string, roles []string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.loginSub, i.loginRoles = sub, append([]string(nil), roles...)
}

// TokenOption changes how Token signs.
type TokenOption func(*tokenOptions)

type tokenOptions struct {
	es256  bool
	kid    string
	setKid bool
}

// ES256 signs with the issuer's EC P-256 key instead of its RSA key.
func ES256() TokenOption { return func(o *tokenOptions) { o.es256 = true } }

// KeyID puts kid in the header instead of the signing key's kid; "" leaves kid out.
func KeyID(kid string) TokenOption {
	return func(o *tokenOptions) { o.kid, o.setKid = kid, true }
}

// Token signs claims with the current RSA key (RS256, kid "rsa-N"). Defaults fill iss (URL), aud
// (Audience), sub (Subject), iat (now) and exp (now + TokenLifetime); claims override them, and a claim set
// to nil is left out of the token.
func (i *Issuer) Token(claims jwt.MapClaims, opts ...TokenOption) string {
	i.t.Helper()
	var o tokenOptions
	for _, opt := range opts {
		opt(&o)
	}
	s, err := i.sign(claims, o)
	if err != nil {
		i.t.Fatalf("sign token: %v", err)
	}
	return s
}

// sign is Token without the test's Fatalf, for the HTTP handlers.
func (i *Issuer) sign(claims jwt.MapClaims, o tokenOptions) (string, error) {
	now := time.Now()
	c := jwt.MapClaims{"iss": i.URL(), "aud": Audience, "sub": Subject, "iat": now.Unix(), "exp": now.Add(TokenLifetime).Unix()}
	merge(c, claims)

	i.mu.Lock()
	var method jwt.SigningMethod = jwt.SigningMethodRS256
	var key any = i.rsaKey
	kid := fmt.Sprintf("rsa-%d", i.gen)
	if o.es256 {
		method, key, kid = jwt.SigningMethodES256, i.ecKey, fmt.Sprintf("ec-%d", i.gen)
	}
	i.mu.Unlock()
	if o.setKid {
		kid = o.kid
	}
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	return tok.SignedString(key)
}

// HS256Token signs claims with secret (HS256). Defaults fill sub (Subject), iat (now) and exp
// (now + TokenLifetime); claims override them, and a claim set to nil is left out. It panics if secret is
// empty.
func HS256Token(secret []byte, claims jwt.MapClaims) string {
	now := time.Now()
	c := jwt.MapClaims{"sub": Subject, "iat": now.Unix(), "exp": now.Add(TokenLifetime).Unix()}
	merge(c, claims)
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		panic(fmt.Sprintf("authtest: sign HS256 token: %v", err))
	}
	return s
}

func merge(dst, src jwt.MapClaims) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

// BadToken is a token a verifier for this issuer must refuse.
type BadToken struct {
	Name   string // what is wrong with it
	Token  string // to send as "Authorization: Bearer " + Token
	Reason string // the auth reason a verifier reports for it (auth.Reason* values)
}

// BadTokens returns forged, tampered and invalid tokens, each otherwise like Token(claims) (so with an
// admin role in claims each would be an admin if accepted). The reasons hold for a verifier configured with
// Issuer URL(), Audience and the default algorithms, run on the real clock.
func (i *Issuer) BadTokens(claims jwt.MapClaims) []BadToken {
	i.t.Helper()
	good := i.Token(claims)
	header, payload, _ := strings.Cut(good, ".")
	payload, _, _ = strings.Cut(payload, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	now := time.Now()

	noneHeader := b64([]byte(`{"alg":"none","typ":"JWT"}`))
	// A valid signature over different claims, moved onto tampered claims.
	tamperedClaims := maps.Clone(claims)
	if tamperedClaims == nil {
		tamperedClaims = jwt.MapClaims{}
	}
	tamperedClaims["sub"] = "someone-else"
	tampered := i.Token(tamperedClaims)
	tp, _, _ := strings.Cut(tampered[strings.Index(tampered, ".")+1:], ".")
	garbage := make([]byte, 256)
	_, _ = rand.Read(garbage)

	hsClaims := jwt.MapClaims{"iss": i.URL(), "aud": Audience, "sub": Subject, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	merge(hsClaims, claims)
	hs := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, hsClaims)
		tok.Header["kid"] = i.KeyID()
		s, err := tok.SignedString(secret)
		if err != nil {
			i.t.Fatalf("sign HS256 token: %v", err)
		}
		return s
	}
	with := func(over jwt.MapClaims) string {
		c := maps.Clone(claims)
		if c == nil {
			c = jwt.MapClaims{}
		}
		maps.Copy(c, over)
		return i.Token(c)
	}

	return []BadToken{
		{"alg none, no signature", noneHeader + "." + payload + ".", "algorithm"},
		{"alg none, dummy signature", noneHeader + "." + payload + "." + b64([]byte("dummy signature")), "algorithm"},
		{"empty signature", header + "." + payload + ".", "bad_signature"},
		{"garbage signature", header + "." + payload + "." + b64(garbage), "bad_signature"},
		{"signature not base64url", header + "." + payload + ".!!!", "malformed"},
		{"tampered claims", header + "." + tp + "." + good[strings.LastIndex(good, ".")+1:], "bad_signature"},
		{"empty token", "", "malformed"},
		{"one segment", header, "malformed"},
		{"two segments", header + "." + payload, "malformed"},
		{"HS256 with the RSA public key PEM as secret", hs(i.PublicKeyPEM()), "algorithm"},
		{"HS256 with the RSA modulus as secret", hs(i.RSAPublicKey().N.Bytes()), "algorithm"},
		{"expired 60 s ago", with(jwt.MapClaims{"exp": now.Add(-60 * time.Second).Unix(), "iat": now.Add(-time.Hour).Unix()}), "expired"},
		{"not valid for 5 minutes", with(jwt.MapClaims{"nbf": now.Add(5 * time.Minute).Unix()}), "not_yet_valid"},
		{"issued in the future", with(jwt.MapClaims{"iat": now.Add(5 * time.Minute).Unix()}), "not_yet_valid"},
		{"no exp", with(jwt.MapClaims{"exp": nil}), "malformed"},
		{"no sub", with(jwt.MapClaims{"sub": nil}), "malformed"},
		{"wrong issuer", with(jwt.MapClaims{"iss": "https://evil.example"}), "issuer"},
		{"no issuer", with(jwt.MapClaims{"iss": nil}), "issuer"},
		{"wrong audience", with(jwt.MapClaims{"aud": "someone-else"}), "audience"},
		{"no audience", with(jwt.MapClaims{"aud": nil}), "audience"},
		{"unknown kid", i.Token(claims, KeyID("no-such-key")), "unknown_key"},
	}
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	cors(w)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	u := i.URL()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                u,
		"jwks_uri":                              u + "/jwks",
		"authorization_endpoint":                u + "/authorize",
		"token_endpoint":                        u + "/token",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	cors(w)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	i.mu.Lock()
	i.jwksHits++
	down, gen, rk, ek := i.jwksDown, i.gen, i.rsaKey, i.ecKey
	i.mu.Unlock()
	if down {
		http.Error(w, "jwks unavailable", http.StatusServiceUnavailable)
		return
	}
	b64 := base64.RawURLEncoding.EncodeToString
	point, err := ek.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	size := (len(point) - 1) / 2
	e := big32(rk.PublicKey.E)
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": fmt.Sprintf("rsa-%d", gen), "use": "sig", "alg": "RS256", "n": b64(rk.PublicKey.N.Bytes()), "e": b64(e)},
		{"kty": "EC", "kid": fmt.Sprintf("ec-%d", gen), "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(point[1 : 1+size]), "y": b64(point[1+size:])},
	}})
}

// big32 encodes a positive exponent big-endian without leading zero bytes.
func big32(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}

// serveAuthorize answers GET /authorize?response_type=code&client_id&redirect_uri&code_challenge
// &code_challenge_method=S256&state with a redirect to redirect_uri?code=..&state=.. for the SetLogin user.
func (i *Issuer) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !redirect.IsAbs() || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Fragment != "" {
		http.Error(w, "redirect_uri must be an absolute http(s) URL without fragment", http.StatusBadRequest)
		return
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		http.Error(w, "client_id is required", http.StatusBadRequest)
		return
	}
	back := redirect.Query()
	if s := q.Get("state"); s != "" {
		back.Set("state", s)
	}
	fail := func(code, desc string) {
		back.Set("error", code)
		back.Set("error_description", desc)
		redirect.RawQuery = back.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
	}
	challenge := q.Get("code_challenge")
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case len(challenge) != 43 || !isBase64URL(challenge):
		fail("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier")
		return
	}
	code := randomString()
	i.mu.Lock()
	i.codes[code] = authCode{
		clientID: clientID, redirectURI: redirect.String(), challenge: challenge, scope: q.Get("scope"),
		sub: i.loginSub, roles: append([]string(nil), i.loginRoles...), expires: time.Now().Add(codeLifetime),
	}
	i.mu.Unlock()
	back.Set("code", code)
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// serveToken redeems a code once: POST grant_type=authorization_code&code&code_verifier&client_id
// &redirect_uri → {"access_token", "token_type": "Bearer", "expires_in"}.
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	cors(w)
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "authorization_code" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code")
		return
	}
	i.mu.Lock()
	c, ok := i.codes[f.Get("code")]
	delete(i.codes, f.Get("code")) // a code is redeemable once, right or wrong
	i.mu.Unlock()
	verifier := f.Get("code_verifier")
	sum := sha256.Sum256([]byte(verifier))
	switch {
	case !ok || time.Now().After(c.expires):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
	case f.Get("client_id") != c.clientID:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "client_id differs from the authorization request")
	case f.Get("redirect_uri") != c.redirectURI:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request")
	case len(verifier) < 43 || len(verifier) > 128 || !isUnreserved(verifier):
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier must be 43 to 128 unreserved characters")
	case base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match code_challenge")
	default:
		claims := jwt.MapClaims{"sub": c.sub, "roles": c.roles, "azp": c.clientID}
		if c.scope != "" {
			claims["scope"] = c.scope
		}
		token, err := i.sign(claims, tokenOptions{})
		if err != nil {
			tokenError(w, http.StatusInternalServerError, "server_error", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": token,
			"token_type":   "Bearer",
			"expires_in":   int(TokenLifetime / time.Second),
		})
	}
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func cors(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	h.Set("Access-Control-Max-Age", "600")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func isBase64URL(s string) bool {
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// isUnreserved reports whether s uses only RFC 7636's code_verifier characters.
func isUnreserved(s string) bool {
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~", c)) {
			return false
		}
	}
	return true
}
