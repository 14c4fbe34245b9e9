package auth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/auth/authtest"
)

// echoPrincipal answers 200 with the principal Require put in the context.
var echoPrincipal = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := FromContext(r.Context())
	if !ok {
		http.Error(w, "no principal", http.StatusInternalServerError)
		return
	}
	_, _ = io.WriteString(w, p.Subject+" "+p.Role.String())
})

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func TestRequire(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, reg := newTestVerifier(t, jwksOptions(iss))
	token := func(roles any) string { return iss.Token(jwt.MapClaims{"sub": "alice", "roles": roles}) }
	expired := iss.Token(jwt.MapClaims{"sub": "alice", "roles": "admin", "exp": 1})

	tests := []struct {
		name          string
		authorization string // "" = no header
		route         Role
		wantStatus    int
		wantBody      string // for 200
		wantChallenge string // WWW-Authenticate for 401
		wantReason    string // counted failure
	}{
		{"admin on admin route", "Bearer " + token("admin"), RoleAdmin, 200, "alice admin", "", ""},
		{"admin on viewer route", "Bearer " + token("admin"), RoleViewer, 200, "alice admin", "", ""},
		{"viewer on viewer route", "Bearer " + token([]string{"x", "viewer"}), RoleViewer, 200, "alice viewer", "", ""},
		{"viewer on admin route", "Bearer " + token("viewer"), RoleAdmin, 403, "", "", ReasonForbidden},
		{"no role on viewer route", "Bearer " + token([]string{"x"}), RoleViewer, 403, "", "", ReasonForbidden},
		{"no role on a RoleNone route", "Bearer " + token(nil), RoleNone, 403, "", "", ReasonForbidden},
		{"lower-case scheme", "bearer " + token("viewer"), RoleViewer, 200, "alice viewer", "", ""},
		{"no token", "", RoleViewer, 401, "", `Bearer realm="floodgate"`, ReasonMissing},
		{"Bearer and nothing", "Bearer ", RoleViewer, 401, "",
			`Bearer realm="floodgate", error="invalid_token", error_description="token is malformed"`, ReasonMalformed},
		{"Basic credentials", "Basic YWRtaW46YWRtaW4=", RoleViewer, 401, "",
			`Bearer realm="floodgate", error="invalid_token", error_description="token is malformed"`, ReasonMalformed},
		{"expired", "Bearer " + expired, RoleViewer, 401, "",
			`Bearer realm="floodgate", error="invalid_token", error_description="token has expired"`, ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures(t, reg)
			r := httptest.NewRequest(http.MethodGet, "/api/v1/limits", nil)
			if tt.authorization != "" {
				r.Header.Set("Authorization", tt.authorization)
			}
			w := httptest.NewRecorder()
			Require(v, tt.route, echoPrincipal).ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", w.Code, w.Body, tt.wantStatus)
			}
			wantFailures := map[string]float64{}
			if tt.wantReason != "" {
				wantFailures[tt.wantReason] = 1
			}
			if diff := cmp.Diff(wantFailures, diffFailures(before, failures(t, reg))); diff != "" {
				t.Errorf("failure counter change (-want +got):\n%s", diff)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("got WWW-Authenticate %q, want %q", got, tt.wantChallenge)
			}
			if tt.wantStatus == 200 {
				if got := w.Body.String(); got != tt.wantBody {
					t.Errorf("got body %q, want %q", got, tt.wantBody)
				}
				return
			}
			if got := w.Header().Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("got Content-Type %q, want application/problem+json", got)
			}
			var p problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			slug, title := "unauthorized", "Unauthorized"
			if tt.wantStatus == 403 {
				slug, title = "forbidden", "Forbidden"
			}
			if p.Type != "https://floodgate.dev/problems/"+slug || p.Title != title || p.Status != tt.wantStatus || p.Detail == "" {
				t.Errorf("got problem %+v, want type .../%s, title %s, status %d and a detail", p, slug, title, tt.wantStatus)
			}
		})
	}
}

// TestRequireMatrix is field case B48 at the HTTP level: every bad token gets 401, a valid token without the
// admin role 403 on an admin route, a valid admin token 200; only the last reaches the handler.
func TestRequireMatrix(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, jwksOptions(iss))
	reached := 0
	h := Require(v, RoleAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }))
	call := func(token string) int {
		r := httptest.NewRequest(http.MethodPut, "/api/v1/limits", strings.NewReader("{}"))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	admin := jwt.MapClaims{"roles": []string{"admin"}}
	for _, bt := range iss.BadTokens(admin) {
		if got := call(bt.Token); got != http.StatusUnauthorized {
			t.Errorf("%s: got status %d, want 401", bt.Name, got)
		}
	}
	if got := call(iss.Token(jwt.MapClaims{"roles": []string{"viewer"}})); got != http.StatusForbidden {
		t.Errorf("viewer: got status %d, want 403", got)
	}
	if got := call(iss.Token(admin)); got != http.StatusOK {
		t.Errorf("admin: got status %d, want 200", got)
	}
	if reached != 1 {
		t.Errorf("handler reached %d times, want 1", reached)
	}
}

func TestRequireAnonymous(t *testing.T) {
	w := httptest.NewRecorder()
	Require(Anonymous, RoleAdmin, echoPrincipal).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != 200 || w.Body.String() != "anonymous admin" {
		t.Errorf("got %d %q, want 200 %q", w.Code, w.Body, "anonymous admin")
	}
}

// otherAuth is an Authenticator that is not a *Verifier and returns plain errors.
type otherAuth struct{ err error }

func (a otherAuth) Authenticate(*http.Request) (Principal, error) {
	return Principal{Subject: "x", Role: RoleViewer}, a.err
}

func TestRequireForeignAuthenticator(t *testing.T) {
	w := httptest.NewRecorder()
	Require(otherAuth{err: io.ErrUnexpectedEOF}, RoleViewer, echoPrincipal).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != 401 || strings.Contains(w.Body.String(), "EOF") {
		t.Errorf("got %d %q, want 401 without the error's text", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	Require(otherAuth{}, RoleAdmin, echoPrincipal).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != 403 {
		t.Errorf("got %d, want 403", w.Code)
	}
}

func TestAuthenticateTokenSources(t *testing.T) {
	v, _ := newTestVerifier(t, Options{HS256Secret: testSecret})
	tok := authtest.HS256Token(testSecret, jwt.MapClaims{"roles": "viewer"})
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	tests := []struct {
		name   string
		target string
		header http.Header
		want   string // reason, "" = authenticated
	}{
		{"authorization header", "/", http.Header{"Authorization": {"Bearer " + tok}}, ""},
		{"upper-case scheme", "/", http.Header{"Authorization": {"BEARER " + tok}}, ""},
		{"spaces around the token", "/", http.Header{"Authorization": {"  Bearer   " + tok + " "}}, ""},
		{"nothing", "/", http.Header{}, ReasonMissing},
		{"two authorization headers", "/", http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}, ReasonMalformed},
		{"Bearer without space", "/", http.Header{"Authorization": {"Bearer"}}, ReasonMalformed},
		{"token scheme", "/", http.Header{"Authorization": {"Token " + tok}}, ReasonMalformed},
		{"query string ignored", "/ws?access_token=" + tok + "&token=" + tok, http.Header{}, ReasonMissing},
		{"cookie ignored", "/", http.Header{"Cookie": {"token=" + tok + "; access_token=" + tok + "; floodgate-token=" + tok}}, ReasonMissing},
		{"websocket subprotocol", "/ws", withHeader(upgrade, "Sec-WebSocket-Protocol", "floodgate.v1, bearer."+tok), ""},
		{"websocket subprotocol in two headers", "/ws", withHeader(upgrade, "Sec-WebSocket-Protocol", "floodgate.v1", "bearer."+tok), ""},
		{"subprotocol without upgrade ignored", "/ws", http.Header{"Sec-WebSocket-Protocol": {"floodgate.v1, bearer." + tok}}, ReasonMissing},
		{"websocket without bearer", "/ws", withHeader(upgrade, "Sec-WebSocket-Protocol", "floodgate.v1"), ReasonMissing},
		{"websocket empty bearer", "/ws", withHeader(upgrade, "Sec-WebSocket-Protocol", "floodgate.v1, bearer."), ReasonMalformed},
		{"websocket two bearers", "/ws", withHeader(upgrade, "Sec-WebSocket-Protocol", "bearer."+tok+", bearer."+tok), ReasonMalformed},
		{"websocket bad bearer", "/ws", withHeader(upgrade, "Sec-WebSocket-Protocol", "floodgate.v1, bearer.x.y.z"), ReasonMalformed},
		{"websocket, header wins", "/ws", withHeader(withHeader(upgrade, "Sec-WebSocket-Protocol", "bearer.x.y.z"), "Authorization", "Bearer "+tok), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			r.Header = tt.header
			p, err := v.Authenticate(r)
			if got := reasonOf(t, err); got != tt.want {
				t.Fatalf("got reason %q (%v), want %q", got, err, tt.want)
			}
			if err == nil && (p.Role != RoleViewer || p.Subject != authtest.Subject) {
				t.Errorf("got principal %+v, want viewer %s", p, authtest.Subject)
			}
		})
	}
}

func withHeader(h http.Header, key string, values ...string) http.Header {
	out := h.Clone()
	for _, val := range values {
		out.Add(key, val)
	}
	return out
}

func TestWebSocketProtocol(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"offered with bearer", []string{"floodgate.v1, bearer.abc.def.ghi"}, "floodgate.v1"},
		{"offered alone", []string{"floodgate.v1"}, "floodgate.v1"},
		{"second header", []string{"bearer.abc", "floodgate.v1"}, "floodgate.v1"},
		{"only bearer", []string{"bearer.abc.def.ghi"}, ""},
		{"other protocol", []string{"floodgate.v2, chat"}, ""},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			for _, h := range tt.give {
				r.Header.Add("Sec-WebSocket-Protocol", h)
			}
			if got := WebSocketProtocol(r); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWebSocketHandshake dials a real WebSocket the way the dashboard does (subprotocols "floodgate.v1" and
// "bearer.<jwt>"): the token authenticates, the server selects floodgate.v1, and without a token the
// upgrade is refused with 401.
func TestWebSocketHandshake(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, jwksOptions(iss))
	srv := httptest.NewServer(Require(v, RoleViewer, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{WebSocketProtocol(r)}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		p, _ := FromContext(r.Context())
		_ = c.Write(r.Context(), websocket.MessageText, []byte(p.Subject))
		_ = c.Close(websocket.StatusNormalClosure, "")
	})))
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	ctx := context.Background()

	token := iss.Token(jwt.MapClaims{"sub": "carol", "roles": []string{"viewer"}})
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"floodgate.v1", "bearer." + token}})
	if err != nil {
		t.Fatalf("dial with token: %v", err)
	}
	defer c.CloseNow()
	if got := c.Subprotocol(); got != "floodgate.v1" {
		t.Errorf("got subprotocol %q, want floodgate.v1", got)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); strings.Contains(got, "bearer") {
		t.Errorf("server echoed %q, want no bearer token", got)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "carol" {
		t.Errorf("got message %q (%v), want carol", msg, err)
	}

	_, resp, err = websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"floodgate.v1"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("dial without token: got %v, %v; want a 401", resp, err)
	}
}
