package auth

import (
	"context"
	"time"
)

// Role is what a principal may do. Roles are ordered: an admin may do everything a viewer may.
type Role int

// Roles.
const (
	RoleNone   Role = iota // authenticated, but no Floodgate role: 403 everywhere
	RoleViewer             // dashboard, read APIs, WebSocket
	RoleAdmin              // changes
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// Principal is the verified caller of the admin API, the dashboard or its WebSocket.
type Principal struct {
	Subject   string    `json:"subject"` // the token's sub claim ("anonymous" without auth)
	Role      Role      `json:"-"`
	Issuer    string    `json:"issuer,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal a middleware put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
