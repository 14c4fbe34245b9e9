package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/floodgate/floodgate/auth/authtest"
)

const authLimits = "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 5}\n"

// B48: the admin API requires RS256 tokens of the configured issuer and audience with an admin role; every
// forged, expired or misdirected token gets 401, a viewer 403, only the admin's change lands, and every
// rejection is counted.
func TestAdminJWTMatrix(t *testing.T) {
	iss := authtest.NewIssuer(t)
	s := startInProcess(t, "--config-source", "api", "--config", writeLimits(t, authLimits),
		"--auth-jwks-url", iss.JWKSURL(), "--auth-issuer", iss.URL(), "--auth-audience", authtest.Audience,
		"--admin-rate", "1000", "--admin-burst", "1000")
	admin := jwt.MapClaims{"roles": []string{"admin"}}
	now := time.Now()
	hsWithPublicKey := func() string {
		c := jwt.MapClaims{"iss": iss.URL(), "aud": authtest.Audience, "sub": "mallory", "exp": now.Add(time.Hour).Unix(), "roles": []string{"admin"}}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(iss.PublicKeyPEM())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := iss.Token(admin)
	header, rest, _ := strings.Cut(valid, ".")
	payload, _, _ := strings.Cut(rest, ".")
	none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0" // {"alg":"none","typ":"JWT"}
	tests := []struct {
		name  string
		token string // "-" sends no Authorization header
		raw   string // the whole Authorization header, when set
		want  int
	}{
		{"alg none, no signature", none + "." + payload + ".", "", 401},
		{"alg none, dummy signature", none + "." + payload + ".ZHVtbXk", "", 401},
		{"empty signature", header + "." + payload + ".", "", 401},
		{"garbage signature", header + "." + payload + ".Z2FyYmFnZXNpZ25hdHVyZQ", "", 401},
		{"Bearer and nothing", "", "Bearer ", 401},
		{"one segment", header, "", 401},
		{"HS256 with the RS256 public key", hsWithPublicKey(), "", 401},
		{"expired", iss.Token(jwt.MapClaims{"roles": []string{"admin"}, "exp": now.Add(-60 * time.Second).Unix(), "iat": now.Add(-time.Hour).Unix()}), "", 401},
		{"wrong audience", iss.Token(jwt.MapClaims{"roles": []string{"admin"}, "aud": "other"}), "", 401},
		{"viewer", iss.Token(jwt.MapClaims{"roles": []string{"viewer"}}), "", 403},
		{"admin", valid, "", 200},
	}
	failures := func() float64 {
		_, body := httpGet(t, "http://"+s.httpAddr+"/metrics")
		sum := 0.0
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "floodgate_admin_auth_failures_total{") {
				var v float64
				if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
					sum += v
				}
			}
		}
		return sum
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures()
			c := api{t: t, base: "http://" + s.httpAddr, token: tt.token}
			extra := []string{}
			if tt.raw != "" {
				c.token = ""
				extra = []string{"Authorization", tt.raw}
			}
			body := strings.Replace(authLimits, "5}", strings.Repeat("1", i+1)+"}", 1) // a distinct limit per case
			put := c.do("PUT", "/api/v1/limits/api", body, extra...)
			get := c.do("GET", "/api/v1/audit", nil, extra...)
			wantGet := tt.want
			if tt.want == 403 {
				wantGet = 200 // a viewer reads the audit trail
			}
			if put.code != tt.want || get.code != wantGet {
				t.Errorf("PUT %d, GET audit %d; want %d and %d (%s)", put.code, get.code, tt.want, wantGet, put.body)
			}
			if tt.want == 401 && !strings.HasPrefix(put.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", put.header.Get("WWW-Authenticate"))
			}
			wantFailures := before
			switch tt.want {
			case 401:
				wantFailures += 2
			case 403:
				wantFailures++
			}
			if got := failures(); got != wantFailures {
				t.Errorf("floodgate_admin_auth_failures_total: got %v, want %v", got, wantFailures)
			}
		})
	}
	// Only the admin's PUT changed anything: version 2 with the admin's limit.
	c := api{t: t, base: "http://" + s.httpAddr, token: valid}
	if v := c.version(); v != 2 {
		t.Errorf("version: got %d, want 2 (only the admin's change)", v)
	}
	r := c.do("GET", "/api/v1/limits/api", nil)
	if want := "requests_per_unit: " + strings.Repeat("1", len(tests)); !strings.Contains(string(r.body), want) {
		t.Errorf("limits: got %s, want %q", r.body, want)
	}

	// The WebSocket obeys the same rules: no token → 401; a viewer token as a subprotocol → open.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+s.httpAddr+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("/ws without a token: got %v, %v; want 401", resp, err)
	}
	viewer := iss.Token(jwt.MapClaims{"roles": []string{"viewer"}})
	ws, _, err := websocket.Dial(ctx, "ws://"+s.httpAddr+"/ws", &websocket.DialOptions{Subprotocols: []string{"floodgate.v1", "bearer." + viewer}})
	if err != nil {
		t.Fatalf("/ws with a viewer token: %v", err)
	}
	if ws.Subprotocol() != "floodgate.v1" {
		t.Errorf("subprotocol: got %q, want floodgate.v1", ws.Subprotocol())
	}
	if _, _, err := ws.Read(ctx); err != nil {
		t.Errorf("read hello: %v", err)
	}
	ws.CloseNow()
	none2 := none + "." + payload + "."
	if _, resp, err := websocket.Dial(ctx, "ws://"+s.httpAddr+"/ws", &websocket.DialOptions{Subprotocols: []string{"floodgate.v1", "bearer." + none2}}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("/ws with alg none: got %v, %v; want 401", resp, err)
	}
	// The page itself and the public documents need no token; the data APIs do.
	for path, want := range map[string]int{"/": 200, "/api/v1/openapi.json": 200, "/api/v1/auth": 200, "/api/v1/limits": 401, "/api/v1/me": 401} {
		if code, _ := httpGet(t, "http://"+s.httpAddr+path); code != want {
			t.Errorf("GET %s without a token: got %d, want %d", path, code, want)
		}
	}
}

// Key rotation at the issuer is followed without a restart; HS256 with a shared secret works as well.
func TestAuthModes(t *testing.T) {
	t.Run("oidc discovery and rotation", func(t *testing.T) {
		iss := authtest.NewIssuer(t)
		s := startInProcess(t, "--auth-oidc-issuer", iss.URL(), "--auth-audience", authtest.Audience, "--oidc-client-id", "floodgate-dashboard")
		me := func(tok string) int {
			return api{t: t, base: "http://" + s.httpAddr, token: tok}.do("GET", "/api/v1/me", nil).code
		}
		old := iss.Token(jwt.MapClaims{"roles": []string{"viewer"}})
		if got := me(old); got != 200 {
			t.Fatalf("token of the first key: got %d, want 200", got)
		}
		iss.Rotate()
		if got := me(iss.Token(jwt.MapClaims{"roles": []string{"viewer"}})); got != 200 {
			t.Errorf("token of the rotated key: got %d, want 200", got)
		}
		var info struct {
			Mode string `json:"mode"`
			OIDC struct {
				AuthorizationEndpoint string `json:"authorization_endpoint"`
				ClientID              string `json:"client_id"`
			} `json:"oidc"`
		}
		api{t: t, base: "http://" + s.httpAddr}.do("GET", "/api/v1/auth", nil).json(t, &info)
		if info.Mode != "oidc" || info.OIDC.ClientID != "floodgate-dashboard" || !strings.HasPrefix(info.OIDC.AuthorizationEndpoint, iss.URL()) {
			t.Errorf("/api/v1/auth: got %+v", info)
		}
	})
	t.Run("hs256", func(t *testing.T) {
		secret := "0123456789abcdef0123456789abcdef-floodgate"
		s := startInProcess(t, "--auth-hs256-secret", secret)
		c := api{t: t, base: "http://" + s.httpAddr}
		c.token = authtest.HS256Token([]byte(secret), jwt.MapClaims{"roles": "admin"})
		if r := c.do("GET", "/api/v1/me", nil); r.code != 200 || !strings.Contains(string(r.body), `"admin"`) {
			t.Errorf("/api/v1/me: got %d %s, want admin", r.code, r.body)
		}
		c.token = authtest.HS256Token([]byte("another-secret-another-secret-another"), jwt.MapClaims{"roles": "admin"})
		if r := c.do("GET", "/api/v1/me", nil); r.code != 401 {
			t.Errorf("wrong secret: got %d, want 401", r.code)
		}

		// A dashboard session ends when its token expires: the server closes the feed with code 4001.
		short := authtest.HS256Token([]byte(secret), jwt.MapClaims{"roles": "viewer", "exp": time.Now().Add(2 * time.Second).Unix()})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws://"+s.httpAddr+"/ws", &websocket.DialOptions{Subprotocols: []string{"floodgate.v1", "bearer." + short}})
		if err != nil {
			t.Fatalf("dial with a 2 s token: %v", err)
		}
		defer ws.CloseNow()
		ws.SetReadLimit(1 << 24)
		opened := time.Now()
		for {
			if _, _, err = ws.Read(ctx); err != nil {
				break
			}
		}
		if code := websocket.CloseStatus(err); code != 4001 || time.Since(opened) > 4*time.Second {
			t.Errorf("feed of an expiring token: closed with %v after %s, want 4001 within about 2 s", err, time.Since(opened))
		}
	})
}

// Secure default: no auth and a non-loopback address refuses to start unless --insecure-no-auth says so.
func TestNoAuthBeyondLoopback(t *testing.T) {
	err := run(context.Background(), []string{"--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0"},
		func(string) string { return "" }, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "--insecure-no-auth") {
		t.Fatalf("got %v, want a refusal naming --insecure-no-auth", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	started := make(chan struct{})
	// Ends when cancel is called below.
	go func() {
		done <- run(ctx, []string{"--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0", "--insecure-no-auth", "--drain-timeout", "0s"},
			func(string) string { return "" }, io.Discard, logs, func(_, _ net.Addr) { close(started) })
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("--insecure-no-auth: run returned %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("did not start")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("run: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "insecure-no-auth") {
		t.Errorf("no start-up warning about --insecure-no-auth:\n%s", logs)
	}
}

// The admin API is rate limited per caller (429 with Retry-After), like any API behind Floodgate.
func TestAdminRateLimited(t *testing.T) {
	s := startInProcess(t, "--admin-rate", "1", "--admin-burst", "3")
	codes := []int{}
	var last *http.Response
	for range 5 {
		resp, err := http.Get("http://" + s.httpAddr + "/api/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		last = resp
	}
	if codes[0] != 200 || codes[2] != 200 || codes[3] != 429 || codes[4] != 429 {
		t.Errorf("got %v, want 3 × 200 then 429", codes)
	}
	if ra := last.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After: got %q, want 1", ra)
	}
}

// "floodgate token" mints a token the server accepts with the same secret; it refuses weak input.
func TestTokenCommand(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef-token"
	env := func(k string) string {
		if k == "FLOODGATE_AUTH_HS256_SECRET" {
			return secret
		}
		return ""
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"token", "--sub", "alice", "--role", "admin"}, env, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	s := startInProcess(t, "--auth-hs256-secret", secret)
	r := api{t: t, base: "http://" + s.httpAddr, token: strings.TrimSpace(out.String())}.do("GET", "/api/v1/me", nil)
	if r.code != 200 || !strings.Contains(string(r.body), `"alice"`) || !strings.Contains(string(r.body), `"admin"`) {
		t.Errorf("/api/v1/me with a minted token: got %d %s, want alice as admin", r.code, r.body)
	}
	for _, args := range [][]string{{"token", "--role", "admin"}, {"token", "--sub", "a", "--role", "root"}} {
		if err := run(context.Background(), args, env, io.Discard, io.Discard, nil); err == nil {
			t.Errorf("%v: got no error", args)
		}
	}
	if err := run(context.Background(), []string{"token", "--sub", "a"}, func(string) string { return "short" }, io.Discard, io.Discard, nil); err == nil {
		t.Error("a short secret: got no error")
	}
}

// Without authentication (loopback), requests naming another host are refused: a page on the operator's
// machine cannot reach the admin API through DNS rebinding. With --insecure-no-auth the operator chose to
// serve any host.
func TestLoopbackHostOnly(t *testing.T) {
	s := startInProcess(t)
	send := func(host string) int {
		req, _ := http.NewRequest("GET", "http://"+s.httpAddr+"/api/v1/limits", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	_, port, _ := net.SplitHostPort(s.httpAddr)
	for host, want := range map[string]int{
		"127.0.0.1:" + port: 200, "localhost:" + port: 200, "LOCALHOST": 200, "[::1]:" + port: 200,
		"rebind.evil.example:" + port: 421, "evil.example": 421, "10.0.0.1:" + port: 421,
	} {
		if got := send(host); got != want {
			t.Errorf("Host %q: got %d, want %d", host, got, want)
		}
	}
}

// Slow or never-finished request bodies hold at most --http-max-conns connections; the gRPC decision path
// keeps answering meanwhile.
func TestSlowBodiesDoNotStarveDecisions(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef-slow"
	s := startInProcess(t, "--auth-hs256-secret", secret, "--http-max-conns", "16", "--config", writeLimits(t, e2eLimits))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 64 {
		c, err := net.Dial("tcp", s.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		fmt.Fprintf(c, "PUT /api/v1/limits/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: 100000\r\n\r\nabc")
	}
	for i := range 20 {
		if got := shouldLimit(t, s, rlsRequest("e2e", "internal", strconv.Itoa(i))); got != rlsv3.RateLimitResponse_OK {
			t.Fatalf("decision %d while 64 slow bodies are held: %s", i, got)
		}
	}
	// The refused requests end their connections instead of waiting for the body.
	buf := make([]byte, 512)
	held[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := held[0].Read(buf)
	if !strings.Contains(string(buf[:n]), "401") || !strings.Contains(strings.ToLower(string(buf[:n])), "connection: close") {
		t.Errorf("answer to an unauthenticated slow body: %q, want 401 with Connection: close", buf[:n])
	}
}
