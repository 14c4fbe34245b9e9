package extauthz

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Header modes of Options.Headers.
const (
	HeadersDraft  = "draft"  // RateLimit and RateLimit-Policy (IETF draft structured fields), the default
	HeadersLegacy = "legacy" // X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset
	HeadersBoth   = "both"
)

// Names of the headers Floodgate adds.
const (
	headerRateLimit       = "RateLimit"
	headerRateLimitPolicy = "RateLimit-Policy"
	headerLegacyLimit     = "X-RateLimit-Limit"
	headerLegacyRemaining = "X-RateLimit-Remaining"
	headerLegacyReset     = "X-RateLimit-Reset"
	headerRetryAfter      = "Retry-After"
	headerContentType     = "content-type"
	// HeaderDegraded is set to "1" on responses decided while the store failed (allow and local modes).
	HeaderDegraded = "x-floodgate-degraded"
	problemJSON    = "application/problem+json"
)

// header is one response header; rendering to Envoy's types happens in the handlers.
type header struct{ name, value string }

// quota is the most constrained limit of a decision, the one the headers describe.
type quota struct {
	name      string        // policy name (sanitised when rendered)
	requests  uint64        // quota per window
	window    time.Duration // window length
	remaining uint64
	reset     time.Duration // until the quota is full again
}

// appendQuotaHeaders appends the rate limit headers of mode for q to hs.
//
//	RateLimit-Policy: "name";q=100;w=60
//	RateLimit: "name";r=50;t=30
//	X-RateLimit-Limit: 100, X-RateLimit-Remaining: 50, X-RateLimit-Reset: 30
//
// w and t are whole seconds rounded up (w >= 1, t >= 0); r never exceeds q.
func appendQuotaHeaders(hs []header, mode string, q quota) []header {
	remaining := min(q.remaining, q.requests)
	reset := ceilSeconds(q.reset, 0)
	if mode != HeadersLegacy {
		var scratch [128]byte
		b := appendSFString(scratch[:0], q.name)
		n := len(b)
		b = append(b, ";q="...)
		b = strconv.AppendUint(b, q.requests, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, ceilSeconds(q.window, 1), 10)
		policy := string(b)
		b = append(b[:n], ";r="...)
		b = strconv.AppendUint(b, remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, reset, 10)
		hs = append(hs, header{headerRateLimitPolicy, policy}, header{headerRateLimit, string(b)})
	}
	if mode == HeadersLegacy || mode == HeadersBoth {
		hs = append(hs,
			header{headerLegacyLimit, strconv.FormatUint(q.requests, 10)},
			header{headerLegacyRemaining, strconv.FormatUint(remaining, 10)},
			header{headerLegacyReset, strconv.FormatInt(reset, 10)},
		)
	}
	return hs
}

// ceilSeconds returns d in whole seconds rounded up, at least floor. Negative durations count as 0.
func ceilSeconds(d time.Duration, floor int64) int64 {
	if d < 0 {
		d = 0
	}
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, floor)
}

// retryAfterValue renders Retry-After: integer seconds, rounded up, at least 1 (B23: 57.7 s gives "58").
func retryAfterValue(d time.Duration) string {
	return strconv.FormatInt(ceilSeconds(d, 1), 10)
}

// sfString renders s as a structured-field String (RFC 8941 §3.3.3): printable ASCII only, with '"' and
// '\' escaped. Other bytes are dropped; an empty result becomes "default".
func sfString(s string) string {
	return string(appendSFString(make([]byte, 0, len(s)+2), s))
}

// appendSFString appends sfString(s) to b.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			continue
		}
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
		n++
	}
	if n == 0 {
		b = append(b, "default"...)
	}
	return append(b, '"')
}

// problem is the RFC 9457 body of a 429.
type problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail"`
	RetryAfter int64  `json:"retry_after"`
}

// problemBody renders the problem+json body of a denial of q, retryable after retry.
func problemBody(q quota, retry time.Duration) []byte {
	secs := ceilSeconds(retry, 1)
	p := problem{
		Type:   "about:blank",
		Title:  "Too Many Requests",
		Status: 429,
		Detail: fmt.Sprintf("rate limit %s exceeded: %d requests per %s; retry in %d s",
			sfString(q.name), q.requests, q.window, secs),
		RetryAfter: secs,
	}
	b, err := json.Marshal(p)
	if err != nil { // cannot happen for this struct; keep a valid body anyway
		return []byte(`{"type":"about:blank","title":"Too Many Requests","status":429}`)
	}
	return b
}

// unavailableBody is the problem+json body of a fail-closed ext_authz answer (503).
const unavailableBody = `{"type":"about:blank","title":"Service Unavailable","status":503,` +
	`"detail":"rate limit store unavailable"}`
