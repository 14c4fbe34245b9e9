package authtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/auth"
	"github.com/floodgate/floodgate/auth/authtest"
)

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

const (
	clientID    = "floodgate-dashboard"
	redirectURI = "http://127.0.0.1:8000/?view=config"
	verifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-some-more" // 56 unreserved characters
)

func challengeOf(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize runs GET /authorize and returns the redirect's query.
func authorize(t *testing.T, iss *authtest.Issuer, params url.Values) url.Values {
	t.Helper()
	resp, err := noRedirect.Get(iss.URL() + "/authorize?" + params.Encode())
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("authorize location: %v", err)
	}
	if got, want := loc.Scheme+"://"+loc.Host+loc.Path, "http://127.0.0.1:8000/"; got != want {
		t.Errorf("redirected to %s, want %s", got, want)
	}
	return loc.Query()
}

func authorizeParams() url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}, "state": {"xyz"},
		"scope": {"openid"},
	}
}

type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func redeem(t *testing.T, iss *authtest.Issuer, form url.Values) (int, tokenResponse, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, iss.URL()+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://127.0.0.1:8000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("token response: %v", err)
	}
	return resp.StatusCode, tr, resp.Header
}

func redeemForm(code string) url.Values {
	return url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"client_id": {clientID}, "redirect_uri": {redirectURI},
	}
}

// TestAuthorizationCodeFlow runs the dashboard's sign-in: authorize with a PKCE challenge, redeem the code
// with the verifier, and verify the access token with an OIDC verifier discovered from the issuer.
func TestAuthorizationCodeFlow(t *testing.T) {
	iss := authtest.NewIssuer(t)
	iss.SetLogin("alice", []string{"viewer"})
	v, err := auth.New(context.Background(), auth.Options{OIDCIssuer: iss.URL(), Audience: []string{authtest.Audience}})
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}

	back := authorize(t, iss, authorizeParams())
	if back.Get("state") != "xyz" || back.Get("code") == "" || back.Get("view") != "config" {
		t.Fatalf("got redirect query %v, want code, state xyz and the original view=config", back)
	}
	status, tr, h := redeem(t, iss, redeemForm(back.Get("code")))
	if status != http.StatusOK || tr.TokenType != "Bearer" || tr.ExpiresIn != 3600 || tr.AccessToken == "" {
		t.Fatalf("got %d %+v, want 200 with a Bearer token for 3600 s", status, tr)
	}
	if got := h.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("token endpoint: got Access-Control-Allow-Origin %q, want *", got)
	}
	p, err := v.Verify(context.Background(), tr.AccessToken)
	if err != nil {
		t.Fatalf("Verify access token: %v", err)
	}
	if p.Subject != "alice" || p.Role != auth.RoleViewer {
		t.Errorf("got %+v, want alice as viewer", p)
	}

	// A code is redeemable once.
	if status, tr, _ := redeem(t, iss, redeemForm(back.Get("code"))); status != http.StatusBadRequest || tr.Error != "invalid_grant" {
		t.Errorf("second redemption: got %d %+v, want 400 invalid_grant", status, tr)
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	iss := authtest.NewIssuer(t)
	tests := []struct {
		name string
		edit func(f url.Values)
		want string
	}{
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 43)) }, "invalid_grant"},
		{"short verifier", func(f url.Values) { f.Set("code_verifier", "abc") }, "invalid_grant"},
		{"no verifier", func(f url.Values) { f.Del("code_verifier") }, "invalid_grant"},
		{"verifier equal to the challenge (plain)", func(f url.Values) { f.Set("code_verifier", challengeOf(verifier)) }, "invalid_grant"},
		{"other client", func(f url.Values) { f.Set("client_id", "someone") }, "invalid_grant"},
		{"other redirect_uri", func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:8000/evil") }, "invalid_grant"},
		{"unknown code", func(f url.Values) { f.Set("code", "nope") }, "invalid_grant"},
		{"wrong grant type", func(f url.Values) { f.Set("grant_type", "password") }, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			back := authorize(t, iss, authorizeParams())
			form := redeemForm(back.Get("code"))
			tt.edit(form)
			status, tr, _ := redeem(t, iss, form)
			if status != http.StatusBadRequest || tr.Error != tt.want || tr.AccessToken != "" {
				t.Errorf("got %d %+v, want 400 %s", status, tr, tt.want)
			}
		})
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	iss := authtest.NewIssuer(t)
	tests := []struct {
		name string
		edit func(q url.Values)
		want string // error in the redirect
	}{
		{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"no method", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"no challenge", func(q url.Values) { q.Del("code_challenge") }, "invalid_request"},
		{"implicit flow", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := authorizeParams()
			tt.edit(q)
			back := authorize(t, iss, q)
			if back.Get("error") != tt.want || back.Get("code") != "" || back.Get("state") != "xyz" {
				t.Errorf("got redirect query %v, want error %s with state and no code", back, tt.want)
			}
		})
	}
	// Without a usable redirect_uri or client_id there is nowhere safe to redirect: 400.
	for _, q := range []url.Values{
		{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"/relative"}},
		{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"javascript:alert(1)"}},
		{"response_type": {"code"}, "redirect_uri": {redirectURI}},
	} {
		resp, err := noRedirect.Get(iss.URL() + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: got status %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestDiscoveryAndCORS(t *testing.T) {
	iss := authtest.NewIssuer(t)
	resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer": iss.URL(), "jwks_uri": iss.JWKSURL(),
		"authorization_endpoint": iss.URL() + "/authorize", "token_endpoint": iss.URL() + "/token",
	}
	for k, w := range want {
		if doc[k] != w {
			t.Errorf("discovery %s: got %v, want %v", k, doc[k], w)
		}
	}
	if diff := cmp.Diff([]any{"S256"}, doc["code_challenge_methods_supported"]); diff != "" {
		t.Errorf("code_challenge_methods_supported (-want +got):\n%s", diff)
	}
	for _, path := range []string{"/.well-known/openid-configuration", "/jwks", "/token"} {
		req, _ := http.NewRequest(http.MethodOptions, iss.URL()+path, nil)
		req.Header.Set("Origin", "http://127.0.0.1:8000")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
			t.Errorf("preflight %s: got %d %v, want 204 with CORS headers", path, resp.StatusCode, resp.Header)
		}
	}
}

func TestRotateAndTokens(t *testing.T) {
	iss := authtest.NewIssuer(t)
	before := iss.KeyID()
	iss.Rotate()
	if iss.KeyID() == before {
		t.Errorf("Rotate kept kid %s", before)
	}
	v, err := auth.New(context.Background(), auth.Options{JWKSURL: iss.JWKSURL(), Issuer: iss.URL(), Audience: []string{authtest.Audience}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{iss.Token(nil), iss.Token(nil, authtest.ES256())} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	hs := authtest.HS256Token([]byte("0123456789abcdef0123456789abcdef"), nil)
	if strings.Count(hs, ".") != 2 {
		t.Errorf("HS256Token %q is not a JWS", hs)
	}
}
