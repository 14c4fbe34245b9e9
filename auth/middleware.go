package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Authenticator finds out who sent a request. *Verifier implements it; so does Anonymous.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Anonymous is the Authenticator for a server without authentication (--insecure-no-auth): everyone is an
// admin called "anonymous".
var Anonymous Authenticator = anonymous{}

type anonymous struct{}

func (anonymous) Authenticate(*http.Request) (Principal, error) {
	return Principal{Subject: "anonymous", Role: RoleAdmin}, nil
}

// failureCounter is implemented by Authenticators that count refusals, so Require can count "forbidden".
type failureCounter interface {
	countFailure(reason string)
}

// WebSocketSubprotocol is the subprotocol the dashboard offers beside its bearer token; the WebSocket server
// must select it (never the "bearer.<token>" entry).
const WebSocketSubprotocol = "floodgate.v1"

// bearerProtocolPrefix marks the Sec-WebSocket-Protocol entry carrying the token: browsers cannot set an
// Authorization header on a WebSocket, so the dashboard offers "floodgate.v1, bearer.<jwt>".
const bearerProtocolPrefix = "bearer."

// Authenticate verifies the request's bearer token: from "Authorization: Bearer <token>" (scheme
// case-insensitive) or, for a WebSocket upgrade only, from a "bearer.<token>" entry of
// Sec-WebSocket-Protocol. Tokens in query strings or cookies are never read. The error is an *Error.
func (v *Verifier) Authenticate(r *http.Request) (Principal, error) {
	token, e := bearerToken(r)
	if e != nil {
		return Principal{}, v.fail(e)
	}
	return v.Verify(r.Context(), token)
}

// bearerToken extracts the token; a request without any credentials is ReasonMissing, a request with
// credentials that are not one readable bearer token ReasonMalformed.
func bearerToken(r *http.Request) (string, *Error) {
	switch h := r.Header.Values("Authorization"); len(h) {
	case 0:
	case 1:
		scheme, token, _ := strings.Cut(strings.TrimSpace(h[0]), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", &Error{Reason: ReasonMalformed, Err: errors.New("authorization scheme is not Bearer")}
		}
		if token = strings.TrimSpace(token); token == "" {
			return "", &Error{Reason: ReasonMalformed, Err: errors.New("empty bearer token")}
		}
		return token, nil
	default:
		return "", &Error{Reason: ReasonMalformed, Err: errors.New("several Authorization headers")}
	}
	if !isWebSocketUpgrade(r) {
		return "", &Error{Reason: ReasonMissing}
	}
	var token string
	found := false
	for _, p := range webSocketProtocols(r) {
		if !strings.HasPrefix(p, bearerProtocolPrefix) {
			continue
		}
		if found {
			return "", &Error{Reason: ReasonMalformed, Err: errors.New("several bearer subprotocols")}
		}
		token, found = p[len(bearerProtocolPrefix):], true
	}
	switch {
	case !found:
		return "", &Error{Reason: ReasonMissing}
	case token == "":
		return "", &Error{Reason: ReasonMalformed, Err: errors.New("empty bearer subprotocol")}
	}
	return token, nil
}

func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket")
}

// webSocketProtocols lists the offered subprotocols (the header may repeat and holds comma-separated lists).
func webSocketProtocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// WebSocketProtocol returns "floodgate.v1" if the client offered that subprotocol (the WebSocket server must
// then select it, or browsers fail the connection), else "".
func WebSocketProtocol(r *http.Request) string {
	for _, p := range webSocketProtocols(r) {
		if p == WebSocketSubprotocol {
			return p
		}
	}
	return ""
}

// Require serves next only to requests whose principal has at least role, with the principal in the
// request's context (FromContext). A failed authentication gets 401 with a WWW-Authenticate challenge
// (RFC 6750; error="invalid_token" unless the token was missing), a principal with RoleNone or a role below
// role gets 403 (counted as "forbidden"). Both bodies are application/problem+json.
func Require(a Authenticator, role Role, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			detail := "bearer token is invalid"
			challenge := `Bearer realm="floodgate"`
			e, ok := errors.AsType[*Error](err)
			if ok {
				detail = e.Error()
			}
			if !ok || e.Reason != ReasonMissing {
				challenge += `, error="invalid_token", error_description="` + detail + `"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			closeUnread(w, r)
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "Unauthorized", detail)
			return
		}
		if p.Role == RoleNone || p.Role < role {
			if fc, ok := a.(failureCounter); ok {
				fc.countFailure(ReasonForbidden)
			}
			closeUnread(w, r)
			writeProblem(w, http.StatusForbidden, "forbidden", "Forbidden",
				"role "+p.Role.String()+" may not do this; it needs "+max(role, RoleViewer).String())
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// closeUnread ends the connection after a refusal when the request still has a body coming: the server
// would otherwise read (and wait for) a body nobody will look at, which an unauthenticated client could use
// to hold connections open.
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}

// writeProblem writes an RFC 9457 problem in the shape of the admin API's errors.
func writeProblem(w http.ResponseWriter, status int, slug, title, detail string) {
	body, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"https://floodgate.dev/problems/" + slug, title, status, detail})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
