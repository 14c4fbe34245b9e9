package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/floodgate/floodgate/auth/authtest"
)

// FuzzVerify feeds arbitrary strings as tokens (to Verify, and as Authorization and WebSocket subprotocol
// headers) to an HS256 and a JWKS verifier: they never panic, every refusal is an *Error with a known
// reason, and nothing but the seeded valid tokens is accepted.
func FuzzVerify(f *testing.F) {
	iss := authtest.NewIssuer(f)
	ctx := context.Background()
	hs, err := New(ctx, Options{HS256Secret: testSecret})
	if err != nil {
		f.Fatal(err)
	}
	pk, err := New(ctx, Options{JWKSURL: iss.JWKSURL(), Issuer: iss.URL(), Audience: []string{authtest.Audience}})
	if err != nil {
		f.Fatal(err)
	}
	valid := map[string]bool{
		// Fixed times: fuzzing workers are separate processes and must build the same HS256 token.
		authtest.HS256Token(testSecret, jwt.MapClaims{"roles": "admin", "iat": 1700000000, "exp": 4102444800}): true,
		iss.Token(jwt.MapClaims{"roles": []string{"viewer"}}):                                                  true,
		iss.Token(nil, authtest.ES256()):                                                                       true,
	}
	for tok := range valid {
		f.Add(tok)
	}
	for _, bt := range iss.BadTokens(jwt.MapClaims{"roles": "admin"}) {
		f.Add(bt.Token)
	}
	for _, s := range []string{"", ".", "..", "...", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", "bearer.", "\x00", "Bearer x"} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*Verifier{hs, pk} {
			_, err := v.Verify(ctx, token)
			check(t, token, err, valid)

			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.Header["Authorization"] = []string{"Bearer " + token}
			_, err = v.Authenticate(r)
			check(t, token, err, valid)

			r = httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.Header["Upgrade"] = []string{"websocket"}
			r.Header["Sec-Websocket-Protocol"] = []string{"floodgate.v1, bearer." + token}
			_, err = v.Authenticate(r)
			check(t, token, err, valid)
		}
	})
}

func check(t *testing.T, token string, err error, valid map[string]bool) {
	t.Helper()
	if err == nil {
		if !valid[token] {
			t.Fatalf("accepted %q", token)
		}
		return
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("token %q: error %v (%T) is not an *Error", token, err, err)
	}
	if !slices.Contains(reasons, e.Reason) || e.Reason == ReasonForbidden {
		t.Fatalf("token %q: reason %q", token, e.Reason)
	}
}
