// Package limiter decides whether hits fit their quotas. It is the domain of Floodgate: it knows nothing
// of Envoy, gRPC, HTTP or Prometheus, and imports only the standard library and go-redis.
//
// # Stores
//
// A Store decides all hits of one request atomically. Redis runs one Lua script per request (lua/decide.lua,
// EVALSHA with EVAL fallback after a Redis restart or failover); Memory is the in-process twin with the same
// arithmetic (algorithm.go, decide.go); OverLimitCache sits in front of either and denies hits on counters
// known to be exhausted without a store call.
//
// On a Redis Cluster every key of one Hit.Key shares a slot. A request whose hits span slots is decided per
// slot concurrently, each slot's hits reserved when they fit; if any slot denies (or fails), the slots that
// reserved are refunded by a second script call. The outcome is still all-or-nothing, but not atomic:
// between reserve and refund concurrent requests see the reserved units (they may be denied spuriously),
// and refunds of sliding windows across a boundary, or of requests that carried refunds, are approximate.
//
// # Invariants
//
//   - A rejected request consumes nothing: phase 1 evaluates every hit in order (hits on the same key
//     accumulate); only when every non-shadow hit fits does phase 2 write, and then it writes every fitting
//     hit of non-zero cost, shadow hits included. A denied request writes nothing, not even shadow hits.
//   - Cost 0 checks without writing; a negative cost refunds (never below an empty counter) and always fits.
//   - Time is the store's: Redis TIME inside the script, the injected clock for Memory. All arithmetic is in
//     microseconds (float64, exact for counts up to MaxRequests and times of this century).
//   - Keys (StorageKey) are prefix "{" hash-tag "}" ":" algorithm ":" window-ms ":" Hit.Key, with keys over
//     300 bytes replaced by their SHA-256, so a key is at most 512 bytes. The hash tag is derived from the whole
//     Hit.Key, so the descriptor values spread keys over Redis Cluster slots and braces in values cannot move
//     them. Requests is not in the key (changing a quota keeps the count); algorithm and window are.
//   - Every key written gets its expiry in the same script call, as an absolute time at the natural end of its
//     state (window end; next window's end for sliding; the instant a bucket is full again). Writes never move
//     it later than that, so steady traffic cannot keep a window alive.
//   - Limit 0 denies every hit of positive cost. Unlimited quotas never reach a Store.
//
// # Algorithms (L = Requests, W = Window, c = Cost, now = store time)
//
// Fixed window: window index i = floor(now/W), aligned to the Unix epoch. A hit fits iff count + c <= L.
// Remaining = L - count after the request; ResetAfter = RetryAfter = end of window - now. Bursts straddling
// a boundary can admit up to 2L within a span shorter than W: that is inherent to fixed windows.
//
// Sliding window (Cloudflare's approximation): the counts of the current and previous fixed windows, and
// est = prev*(W-elapsed)/W + curr, where elapsed is the time since the current window began. A hit fits iff
// est + c <= L; Remaining = floor(L - est - c). RetryAfter solves est(t) + c <= L assuming no further hits
// (the previous window's weight decays linearly, then the current count becomes the previous one);
// ResetAfter is the time until the estimate reaches 0. Keys live until the end of the next window (2W).
// Error bound: curr <= est, so no aligned window admits more than L. Any span of length W ending at elapsed e
// into window i covers part of window i-1 (at most prev hits) and the start of window i (at most
// L - prev*(W-e)/W hits, or the estimate would have refused them), so it admits at most L + prev*e/W < 2L.
// The estimate is exact when the previous window's hits were spread uniformly; with real traffic the
// error is small (Cloudflare measured 0.003% of requests wrongly allowed or limited).
//
// Token bucket (GCRA): capacity B = Burst (L when 0), emission interval T = W/L, depth tau = T*B, state TAT.
// tat = max(TAT, now); a hit fits iff tat + c*T - now <= tau (plus min(1µs, T/2) of float tolerance), and
// then TAT = tat + c*T. Remaining = floor((tau - (TAT-now))/T) in [0, B]; ResetAfter = TAT - now (time until
// full); RetryAfter = tat + c*T - now - tau. Refill is continuous (fractions of a token count). The key
// expires when the bucket is full again (at most W*B/L after the last hit). A refund moves TAT back by
// |c|*T, never before now; a bucket refunded to full is deleted.
//
// # Over-limit cache
//
// OverLimitCache remembers (storage key, Requests, Burst) → denied-until after a cost-1 denial with nothing
// remaining, and answers later hits on it locally until that absolute time; see its doc for the results it
// reports. Memory and the cache are bounded (MaxEntries), sweep expired entries a few at a time on writes
// and fully when Len is read, and never use timers.
package limiter
