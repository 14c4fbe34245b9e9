package extauthz

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
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
	limit     limiter.Limit // the limit in force (scaled by the local fallback)
	remaining uint64
	reset     time.Duration // until the quota is full again; 0 = full now
}

// capacity is the most units l can ever admit at once: Requests for the windows, the bucket size (Burst,
// else Requests) for a token bucket. A limit with Requests 0 admits nothing, whatever its Burst.
func capacity(l limiter.Limit) uint64 {
	if l.Requests == 0 {
		return 0
	}
	if l.Algorithm == limiter.TokenBucket && l.Burst > 0 {
		return l.Burst
	}
	return l.Requests
}

// policyWindow is the w of RateLimit-Policy for l: the window, or for a token bucket the time to refill its
// capacity from empty (capacity / Requests × Window), so that r <= q holds for every answer. It saturates
// at the largest Duration.
func policyWindow(l limiter.Limit) time.Duration {
	c := capacity(l)
	if l.Algorithm != limiter.TokenBucket || c == 0 || c == l.Requests || l.Window <= 0 {
		return l.Window
	}
	hi, lo := bits.Mul64(c, uint64(l.Window))
	if hi >= l.Requests { // the quotient needs more than 64 bits
		return math.MaxInt64
	}
	quo, rem := bits.Div64(hi, lo, l.Requests)
	if rem > 0 {
		quo++ // round up: a header must not promise a faster refill than the bucket has
	}
	if quo > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(quo)
}

// appendQuotaHeaders appends the rate limit headers of mode for q to hs.
//
//	RateLimit-Policy: "name";q=100;w=60
//	RateLimit: "name";r=50;t=30
//	X-RateLimit-Limit: 100, X-RateLimit-Remaining: 50, X-RateLimit-Reset: 30
//
// q (and X-RateLimit-Limit) is capacity(q.limit), w is policyWindow(q.limit); both in whole seconds
// rounded up (w >= 1). t (and X-RateLimit-Reset) is the reset time rounded up: any non-zero reset gives at
// least 1, only a quota that is full right now gives 0. r never exceeds q.
func appendQuotaHeaders(hs []header, mode string, q quota) []header {
	limit := capacity(q.limit)
	remaining := min(q.remaining, limit)
	reset := ceilSeconds(q.reset, 0)
	if mode != HeadersLegacy {
		var scratch [128]byte
		b := appendSFString(scratch[:0], q.name)
		n := len(b)
		b = append(b, ";q="...)
		b = strconv.AppendUint(b, limit, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, ceilSeconds(policyWindow(q.limit), 1), 10)
		policy := string(b)
		b = append(b[:n], ";r="...)
		b = strconv.AppendUint(b, remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, reset, 10)
		hs = append(hs, header{headerRateLimitPolicy, policy}, header{headerRateLimit, string(b)})
	}
	if mode == HeadersLegacy || mode == HeadersBoth {
		hs = append(hs,
			header{headerLegacyLimit, strconv.FormatUint(limit, 10)},
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
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
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

// problem is the RFC 9457 body of a denial. RetryAfter is left out when waiting cannot help.
type problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// marshalProblem renders p; the fallback keeps a valid body should marshalling ever fail.
func marshalProblem(p problem) []byte {
	b, err := json.Marshal(p)
	if err != nil { // cannot happen for this struct
		return []byte(`{"type":"about:blank","title":"` + p.Title + `","status":` + strconv.Itoa(p.Status) + `}`)
	}
	return b
}

// describeLimit renders l for a problem detail: "5 requests per 1m0s", plus ", burst 20" for a token
// bucket whose capacity differs from its rate.
func describeLimit(l limiter.Limit) string { return string(appendLimitText(nil, l)) }

// appendLimitText appends describeLimit(l) to b.
func appendLimitText(b []byte, l limiter.Limit) []byte {
	b = strconv.AppendUint(b, l.Requests, 10)
	b = append(b, " requests per "...)
	b = append(b, l.Window.String()...)
	if c := capacity(l); l.Algorithm == limiter.TokenBucket && c != l.Requests {
		b = append(b, ", burst "...)
		b = strconv.AppendUint(b, c, 10)
	}
	return b
}

// problemBody renders the problem+json body of a denial of q, retryable after retry: what marshalProblem
// makes of {about:blank, Too Many Requests, 429, "rate limit NAME exceeded: LIMIT; retry in S s", S},
// appended by hand because every denial pays for it (encoding/json and fmt took 5 % of the server's CPU at
// 20,000 denials/s).
func problemBody(q quota, retry time.Duration) []byte {
	secs := ceilSeconds(retry, 1)
	var scratch [128]byte
	name := appendSFString(scratch[:0], q.name) // printable ASCII: only '"' and '\' need escaping in JSON
	b := make([]byte, 0, len(problemPrefix429)+2*len(name)+96)
	b = append(b, problemPrefix429...)
	b = append(b, `"rate limit `...)
	for _, c := range name {
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	b = append(b, " exceeded: "...)
	b = appendLimitText(b, q.limit) // digits and a time.Duration: nothing to escape
	b = append(b, "; retry in "...)
	b = strconv.AppendInt(b, secs, 10)
	b = append(b, ` s"`...)
	if secs != 0 {
		b = append(b, `,"retry_after":`...)
		b = strconv.AppendInt(b, secs, 10)
	}
	return append(b, '}')
}

// problemPrefix429 starts every 429 problem body, up to its detail.
const problemPrefix429 = `{"type":"about:blank","title":"Too Many Requests","status":429,"detail":`

// neverBody renders the problem+json body of a request that no amount of waiting admits: its cost is
// above the capacity of q.limit, or q.limit admits nothing at all. It has no retry_after (and the answer no
// Retry-After).
func neverBody(q quota, cost int64) []byte {
	var detail string
	if capacity(q.limit) == 0 {
		detail = fmt.Sprintf("rate limit %s blocks this route entirely (%s); retrying will not help",
			sfString(q.name), describeLimit(q.limit))
	} else {
		detail = fmt.Sprintf("request costs %d units, more than rate limit %s allows at all (%s, at most %d "+
			"at once); it can never be admitted, retrying will not help",
			cost, sfString(q.name), describeLimit(q.limit), capacity(q.limit))
	}
	return marshalProblem(problem{Type: "about:blank", Title: "Too Many Requests", Status: 429, Detail: detail})
}

// missingBody renders the problem+json body of a 400 for a request without the key source ks that rule
// needs (on_missing: deny).
func missingBody(ks config.KeySource, rule string) []byte {
	src := ks.Kind
	if ks.Name != "" {
		src += " " + ks.Name
	}
	return marshalProblem(problem{
		Type:   "about:blank",
		Title:  "Bad Request",
		Status: 400,
		Detail: fmt.Sprintf("missing %s required by rule %s", src, rule),
	})
}

// unavailableBody is the problem+json body of a fail-closed ext_authz answer (503).
const unavailableBody = `{"type":"about:blank","title":"Service Unavailable","status":503,` +
	`"detail":"rate limit store unavailable"}`
