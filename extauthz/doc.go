// Package extauthz is Floodgate's Envoy adapter: it answers envoy.service.ratelimit.v3.RateLimitService
// (ShouldRateLimit) and envoy.service.auth.v3.Authorization (Check) by turning each request into limiter
// hits, deciding them with ONE Store.Decide call, and rendering Envoy's response.
//
// # Invariants
//
//   - One store call per request, all-or-nothing: every hit of every descriptor (RLS) or every matching
//     HTTP rule (ext_authz) goes into a single Store.Decide; a denied request consumes nothing.
//   - A store error or timeout (Options.StoreTimeout, default 10 ms, applied with a context deadline) is
//     never reported as over the limit. OnStoreError "allow": allowed, header x-floodgate-degraded: 1;
//     "deny": RLS returns gRPC UNAVAILABLE (Envoy's failure_mode_deny applies), Check answers status 14 with
//     an HTTP 503 denied_response; "local": the Fallback store decides with every quota scaled by
//     LocalShare (ceil, at least 1 unless 0), marked degraded. Check never returns a gRPC error.
//   - Requests are validated before anything else; malformed ones get InvalidArgument naming the field.
//     No input panics (fuzzed).
//   - Nothing is logged per request at info level; each decision is reported once to the Observer.
//
// # Counter keys
//
// Keys are built with limiter.AppendKeyPart (length-prefixed parts, so ("a_b","c") and ("a","b_c") never
// share a counter):
//
//	RLS:   "rls", domain, entry key, entry value, ... (the REQUEST's values), limit index | "override"
//	Check: "authz", domain, rule name, rule path, (kind, name, value) per key source, limit index
//
// Each wildcard or key-only value therefore gets its own counter, as in envoyproxy/ratelimit. A key longer
// than 200 bytes is replaced by "#" + hex(SHA-256) (no length-prefixed key starts with '#'); the store
// adds its prefix, algorithm, window and hash tag and keeps Redis keys <= 512 bytes. Values are bytes:
// invalid UTF-8 is accepted and not normalised (é as U+00E9 and as e+U+0301 are two counters).
//
// # ShouldRateLimit
//
//   - Limits: at most MaxDescriptors (1024) descriptors, MaxEntries (64) entries each, MaxValueBytes
//     (64 KiB) per domain, key or value; empty domain, no descriptors, a descriptor without entries and an
//     empty entry key are InvalidArgument. A RateLimitOverride needs a known unit (SECOND..YEAR, WEEK
//     accepted as 7) and a non-zero unit_multiplier when set; a window above 10 years is rejected.
//   - An unknown domain limits nothing (every status OK, overrides ignored), like envoyproxy/ratelimit.
//   - A descriptor with a `limit` override uses it instead of the config (a fixed window named
//     "override"); its counter key is the descriptor's plus "override" WITHOUT the quota, so changing
//     requests_per_unit keeps the count (upstream behaviour; B40), while another window starts a new
//     counter (the store keys windows).
//   - replaces: a matched rule whose Name another matched rule lists in Replaces is dropped (status OK,
//     no current_limit).
//   - Hits: a present per-descriptor hits_addend wins (0 = check only); otherwise the request's
//     hits_addend, 0 meaning 1; is_negative_hits refunds (the store floors at empty, always OK).
//     hits_addend above limiter.MaxRequests is InvalidArgument.
//   - Statuses, one per descriptor in order: no match → OK without current_limit; unlimited → OK with
//     limit_remaining 4294967295 and no store call; otherwise the descriptor's most constrained limit
//     (a blocking denial first, then the fewest remaining): code, current_limit {name,
//     requests_per_unit, unit, unit_multiplier when > 1}, limit_remaining (clamped to uint32) and
//     duration_until_reset (time until the quota is full again; at least 1 ms). overall_code is always
//     set. Shadow limits (rule shadow_mode or Options.Shadow) count but never make a status OVER_LIMIT.
//   - response_headers_to_add describe the request's most constrained non-shadow limit (see Headers;
//     shadow limits stay invisible to clients); on OVER_LIMIT also Retry-After (the longest retry of the
//     denying limits) and content-type application/problem+json, with a problem+json raw_body. On a
//     degraded answer (allow or local) x-floodgate-degraded: 1 is added.
//   - A request that can never fit (see "Denials waiting cannot fix") is OVER_LIMIT as usual, but gets no
//     Retry-After and a raw_body saying so.
//   - current_limit stays Envoy's rate (requests_per_unit per unit) for every algorithm; for a token bucket
//     with burst > requests_per_unit, limit_remaining can exceed it (up to the burst). Envoy's own
//     X-RateLimit-* headers built from the status therefore show the rate as the limit; the headers in
//     response_headers_to_add show the capacity.
//
// # Check
//
//   - Only the CheckRequest body is read. Headers come from attributes.request.http.header_map when present
//     (raw; repeated headers joined with ","), else from the lower-case headers map. The path's query string
//     is ignored for matching and for the path key.
//   - Domain: context_extensions["domain"], else Options.AuthzDomain. Every HTTP rule that matches applies.
//   - Key sources: client_ip, header (empty = missing), path, method, host, jwt_claim (the claim in any
//     payload struct under metadata_context.filter_metadata["envoy.filters.http.jwt_authn"]; strings as
//     is, numbers and booleans canonical, objects as JSON), each optionally SHA-256 hashed. A missing key
//     follows the rule's on_missing: client_ip (default; keyed as a distinct "missing" counter on the client
//     key), skip (rule not applied), deny (a client error, not a rate: status INVALID_ARGUMENT (3),
//     denied_response HTTP 400 with content-type application/problem+json and a body naming the missing
//     source, e.g. "missing header x-api-key required by rule api_key"; no Retry-After, no rate limit
//     headers, nothing counted, no store call; observed as OutcomeInvalid).
//   - Allowed: status 0, ok_response.response_headers_to_add (the most constrained non-shadow limit).
//     Denied: status RESOURCE_EXHAUSTED (8),
//     denied_response HTTP 429 with Retry-After, the rate limit headers, content-type
//     application/problem+json and a problem+json body (no Retry-After when the request can never fit).
//     Every header uses OVERWRITE_IF_EXISTS_OR_ADD.
//
// # Denials waiting cannot fix
//
// A non-shadow, non-quota_mode hit whose cost exceeds the capacity of its configured limit (Requests for
// the windows, Burst else Requests for a token bucket; a limit of 0 has capacity 0) can never be admitted,
// for example hits_addend 4294967295 against 10 per minute, or 21 against a bucket of burst 20. The answer
// stays a denial (OVER_LIMIT, HTTP 429, never allowed), but Retry-After is omitted (RFC 9110 §10.2.3 makes
// it optional) because no wait would help, and the problem+json body has no retry_after and a detail that
// says so: "request costs 21 units, more than rate limit "api.tb" allows at all (10 requests per 1s,
// burst 20, at most 20 at once); it can never be admitted, retrying will not help", or for a limit of 0
// "rate limit "x" blocks this route entirely (0 requests per 1m0s); retrying will not help". The
// configured limit is compared, not the one scaled by the local fallback, so a denial caused only by the
// fallback's smaller share keeps its Retry-After. The rate limit headers still describe the most
// constrained limit.
//
// # Client IP
//
// Options.TrustedProxyHops N counts the trusted hops that appended to X-Forwarded-For, the calling Envoy
// included (Envoy with use_remote_address appends its peer): N = 0 uses
// attributes.source.address only; N >= 1 uses the N-th entry from the right (N = 1 is the address the
// calling Envoy saw, so a client-supplied X-Forwarded-For is never trusted). Options.TrustedProxies
// (CIDRs) replaces hop counting: if the source address is trusted, entries are walked from the right
// skipping trusted addresses and the first other one is the client (all trusted: the leftmost). Too few
// entries or an entry that is not an IP address fall back to the source address. Addresses are normalised
// (IPv4-mapped IPv6 → IPv4, zones dropped, brackets and ports accepted) and keyed by prefix: IPv4 /32 and
// IPv6 /64 by default, written as the address at full length ("198.51.100.7") and in CIDR form otherwise
// ("2001:db8:1:2::/64"), so different spellings of one address share a counter. A request without any
// usable address is keyed "unknown" (one shared counter, never unlimited). The source address is reported
// as Observation.ProxyIP.
//
// # Headers
//
// Options.Headers "draft" (default) follows draft-ietf-httpapi-ratelimit-headers (-07 onwards):
//
//	RateLimit-Policy: "name";q=100;w=60     quota and window (seconds, rounded up, >= 1)
//	RateLimit: "name";r=50;t=30             remaining and seconds until the quota is full (rounded up)
//
// For the windows q is requests_per_unit and w the window. For a token bucket q is the bucket capacity
// (burst, else requests_per_unit) and w the time to refill it from empty, burst / requests_per_unit ×
// window rounded up (10/s burst 20: q=20;w=2), so r (at most the capacity) never exceeds q and nothing is
// clamped away. t is the time until the quota is full again rounded up to whole seconds: any non-zero time
// gives at least 1 (1 ms → 1); only a quota that is full right now (a token bucket nothing has drawn from,
// or that has refilled) gives t=0. RLS duration_until_reset is at least 1 ms even then (Envoy and clients
// treat 0 as unset), so a full bucket shows duration_until_reset 1 ms with t=0.
//
// "legacy" sends X-RateLimit-Limit (q, so the capacity for a token bucket), X-RateLimit-Remaining (r) and
// X-RateLimit-Reset (t, delta seconds) instead, "both" sends all five. A retryable denial adds
// Retry-After: integer seconds rounded up, at least 1 (57.7 s → 58).
// The name is the limit's name (else the rule's) as a structured-field string (printable ASCII, '"' and '\'
// escaped).
package extauthz
