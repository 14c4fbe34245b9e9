// Package auth decides who may use Floodgate's HTTP server: the admin API under /api/v1 and the dashboard
// WebSocket /ws. Callers present a bearer JWT; a Verifier checks it and maps a role claim to a Role (viewer
// reads, admin changes); Require wraps a handler with that check.
//
// What is verified, in this order:
//
//   - The token comes from "Authorization: Bearer <jwt>" or, for a WebSocket upgrade only, from the
//     subprotocol "bearer.<jwt>" the browser offers beside "floodgate.v1". Never from a query string or a
//     cookie (they end up in logs and are sent cross-site).
//   - The header's alg is on the allow-list. "none" is never accepted. With a shared secret only HS256 is
//     accepted; with public keys (JWKS or OIDC discovery) only RS*, PS* and ES*, and configuring an HS*
//     algorithm there is an error, so a token HMAC-signed with the public key (key confusion) cannot verify.
//   - The signature verifies with the secret, or with the JWKS key named by kid whose type, curve and own
//     alg fit the token's alg. A token without kid is accepted only when exactly one key fits.
//   - exp is required; exp, nbf and iat are compared with Options.Now plus or minus the leeway
//     (default 30 s, at most 5 min).
//   - iss equals the configured issuer (required with public keys), aud contains one of the configured
//     audiences (required with public keys), sub is a non-empty string.
//
// Roles: the role claim (default "roles"; a dotted path such as "realm_access.roles" reaches into nested
// objects) may be a string or an array of strings. Any admin value gives RoleAdmin, else any viewer value
// RoleViewer, else RoleNone, which Require refuses with 403 on every route.
//
// Keys: the JWKS is fetched in New (an unreachable issuer is a startup error), again when a token names a
// kid the cached set lacks, and when the set is 5 minutes old; fetches happen at most every 10 s whatever
// tokens arrive, so forged kids cannot make Floodgate hammer the issuer. Each fetch replaces the whole set,
// so keys removed by the issuer stop verifying after the next fetch. A failed refresh keeps the old keys.
// There is no background goroutine: refreshes run inside Verify, serialised by a mutex.
//
// Every refusal is an *Error whose Reason is one of a fixed set (missing, malformed, bad_signature, expired,
// not_yet_valid, issuer, audience, algorithm, unknown_key, forbidden); its text depends only on the reason,
// so it is safe to return to a client, and each is counted in floodgate_admin_auth_failures_total{reason}.
//
// Package auth/authtest provides a test OpenID Connect issuer (discovery, JWKS, key rotation, the
// authorization-code flow with PKCE) for other packages' tests.
package auth
