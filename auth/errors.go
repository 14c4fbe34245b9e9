package auth

// Reasons a request is refused. They are the only values of Error.Reason and of the reason label of
// floodgate_admin_auth_failures_total, so the metric's cardinality is bounded.
const (
	ReasonMissing      = "missing"       // no bearer token in the request
	ReasonMalformed    = "malformed"     // not a readable JWT, or lacking sub or exp
	ReasonBadSignature = "bad_signature" // signature does not verify with the key
	ReasonExpired      = "expired"       // exp (plus leeway) has passed
	ReasonNotYetValid  = "not_yet_valid" // nbf or iat (minus leeway) is in the future
	ReasonIssuer       = "issuer"        // iss missing or not the configured issuer
	ReasonAudience     = "audience"      // aud missing or none of the configured audiences
	ReasonAlgorithm    = "algorithm"     // alg not on the allow-list (none, HS* against public keys, ...)
	ReasonUnknownKey   = "unknown_key"   // no key for the token's kid, even after refetching the JWKS
	ReasonForbidden    = "forbidden"     // valid token whose role is below the route's
)

// reasons lists every reason, for pre-creating the metric's series.
var reasons = []string{
	ReasonMissing, ReasonMalformed, ReasonBadSignature, ReasonExpired, ReasonNotYetValid,
	ReasonIssuer, ReasonAudience, ReasonAlgorithm, ReasonUnknownKey, ReasonForbidden,
}

// Error is why a token or request was refused. Its Error text depends on Reason only, so it is safe to show a
// client; Err carries the detail for logs.
type Error struct {
	Reason string // one of the Reason* constants
	Err    error  // the underlying cause, for logs; may be nil
}

func (e *Error) Error() string {
	switch e.Reason {
	case ReasonMissing:
		return "bearer token required"
	case ReasonMalformed:
		return "token is malformed"
	case ReasonBadSignature:
		return "token signature is invalid"
	case ReasonExpired:
		return "token has expired"
	case ReasonNotYetValid:
		return "token is not valid yet"
	case ReasonIssuer:
		return "token issuer is not accepted"
	case ReasonAudience:
		return "token audience is not accepted"
	case ReasonAlgorithm:
		return "token signing algorithm is not accepted"
	case ReasonUnknownKey:
		return "token signing key is unknown"
	case ReasonForbidden:
		return "role does not allow this request"
	}
	return "token is invalid"
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }
