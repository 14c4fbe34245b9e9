package extauthz

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
)

// Request limits of ShouldRateLimit; larger requests get InvalidArgument. Envoy sends one descriptor per
// matching rate_limits entry of a route and a handful of entries each, so these are far above real traffic
// while bounding the work one call can cause.
const (
	MaxDescriptors = 1024     // descriptors per request
	MaxEntries     = 64       // entries per descriptor
	MaxValueBytes  = 64 << 10 // bytes of a domain, entry key or entry value
)

// maxOverrideWindow bounds a RateLimitOverride's unit × unit_multiplier.
const maxOverrideWindow = 10 * 365 * 24 * time.Hour

// overrideName names the limit built from a request's RateLimitOverride (current_limit.name, headers,
// metrics).
const overrideName = "override"

// ShouldRateLimit implements envoy.service.ratelimit.v3.RateLimitService.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	start := time.Now()
	w := s.getWork()
	defer s.putWork(w)
	w.obs.Service = "ratelimit"

	if err := validateRateLimitRequest(req); err != nil {
		w.obs.Code = OutcomeInvalid
		s.observe(&w.obs, start)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	descs := req.GetDescriptors()
	resp := &rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses:    make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(descs)),
	}
	statuses := make([]rlsv3.RateLimitResponse_DescriptorStatus, len(descs)) // one allocation for all
	for i := range statuses {
		statuses[i].Code = rlsv3.RateLimitResponse_OK
		resp.Statuses[i] = &statuses[i]
	}
	snap := s.limits.Limits()
	w.obs.ConfigVersion = snap.Info().Version
	w.obs.RLSDescriptors = descs
	domain := req.GetDomain()
	if !s.knownDomain(snap, domain) {
		// Like envoyproxy/ratelimit: an unknown domain limits nothing, overrides included.
		w.obs.Code = OutcomeOK
		s.observe(&w.obs, start)
		return resp, nil
	}
	w.obs.Domain = domain

	// Match every descriptor (a request override wins over the config), then apply replaces.
	var overrides []config.Rule // allocated only when a request carries overrides
	var entries []config.Entry
	replacing := false
	for i, d := range descs {
		var rule *config.Rule
		if o := d.GetLimit(); o != nil {
			if overrides == nil {
				overrides = make([]config.Rule, len(descs))
			}
			overrides[i] = overrideRule(domain, o)
			rule = &overrides[i]
		} else {
			entries = entries[:0]
			for _, e := range d.GetEntries() {
				entries = append(entries, config.Entry{Key: e.GetKey(), Value: e.GetValue()})
			}
			if r, ok := snap.Match(domain, entries); ok {
				rule = r
				replacing = replacing || len(r.Replaces) > 0
			}
		}
		w.rules = append(w.rules, rule)
	}
	if replacing {
		dropReplaced(w.rules)
	}

	// One hit per limit of every matched rule.
	reqCost := int64(req.GetHitsAddend())
	if reqCost == 0 {
		reqCost = 1
	}
	for i, rule := range w.rules {
		if rule == nil {
			continue
		}
		if rule.Unlimited {
			statuses[i].LimitRemaining = math.MaxUint32
			w.obs.Rules = append(w.obs.Rules, RuleResult{Rule: rule, Descriptor: i,
				Result: limiter.Result{Allowed: true, Remaining: math.MaxUint32}})
			continue
		}
		cost := reqCost
		if h := descs[i].GetHitsAddend(); h != nil {
			cost = int64(h.GetValue()) // validated <= limiter.MaxRequests
		}
		if descs[i].GetIsNegativeHits() {
			cost = -cost
		}
		w.buf = appendDescriptorKey(w.buf[:0], domain, descs[i].GetEntries(), rule.SharedValues)
		n := len(w.buf)
		for j := range rule.Limits {
			lim := &rule.Limits[j]
			w.buf = w.buf[:n]
			if overrides != nil && rule == &overrides[i] {
				w.buf = appendPart(w.buf, overrideName)
			} else {
				w.buf = appendIndex(w.buf, j)
			}
			w.addHit(limiter.Hit{
				Key:    finishKey(w.buf),
				Limit:  lim.Limit,
				Cost:   cost,
				Shadow: rule.Shadow || s.shadow,
				Quota:  rule.Quota,
			}, hitRef{desc: i, rule: rule, limit: lim})
		}
	}

	allowed, failure := s.decide(ctx, w)
	w.collectResults()
	switch failure {
	case FailDeny:
		w.obs.Code, w.obs.FailureMode = OutcomeDegraded, FailDeny
		s.observe(&w.obs, start)
		return nil, status.Error(codes.Unavailable, "rate limit store unavailable")
	case FailAllow:
		w.obs.Code, w.obs.FailureMode = OutcomeDegraded, FailAllow
		resp.ResponseHeadersToAdd = []*corev3.HeaderValue{{Key: HeaderDegraded, Value: "1"}}
		s.observe(&w.obs, start)
		return resp, nil
	}

	// Per descriptor: report its most constrained limit; over the request: the headers' limit.
	best, never := -1, -1
	var retry time.Duration
	w.best = w.best[:0]
	for range descs {
		w.best = append(w.best, -1)
	}
	for i := range w.hits {
		d := w.refs[i].desc
		if w.blocking(i) {
			statuses[d].Code = rlsv3.RateLimitResponse_OVER_LIMIT
			retry = max(retry, w.results[i].RetryAfter)
			if never < 0 && w.neverFits(i) {
				never = i
			}
		}
		if b := w.best[d]; b < 0 || w.constrains(i, b) {
			w.best[d] = i
		}
		if !w.hits[i].Shadow && (best < 0 || w.constrains(i, best)) { // shadow limits stay invisible to clients
			best = i
		}
	}
	for d, i := range w.best {
		if i < 0 {
			continue
		}
		r := &w.results[i]
		statuses[d].CurrentLimit = currentLimit(w.refs[i].limit, w.hits[i].Limit.Requests)
		statuses[d].LimitRemaining = uint32(min(r.Remaining, math.MaxUint32))
		statuses[d].DurationUntilReset = durationpb.New(max(r.ResetAfter, time.Millisecond))
	}
	if !allowed {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	if best >= 0 {
		q := w.quotaOf(best)
		w.hdrs = appendQuotaHeaders(w.hdrs[:0], s.headers, q)
		switch {
		case allowed:
		case never >= 0: // waiting cannot help: no Retry-After
			w.hdrs = append(w.hdrs, header{headerContentType, problemJSON})
			resp.RawBody = neverBody(w.quotaOf(never), w.hits[never].Cost)
		default:
			w.hdrs = append(w.hdrs,
				header{headerRetryAfter, retryAfterValue(retry)},
				header{headerContentType, problemJSON})
			resp.RawBody = problemBody(q, retry)
		}
	}
	if failure == FailLocal {
		w.hdrs = append(w.hdrs, header{HeaderDegraded, "1"})
	}
	if len(w.hdrs) > 0 {
		resp.ResponseHeadersToAdd = make([]*corev3.HeaderValue, len(w.hdrs))
		hv := make([]corev3.HeaderValue, len(w.hdrs))
		for i, h := range w.hdrs {
			hv[i].Key, hv[i].Value = h.name, h.value
			resp.ResponseHeadersToAdd[i] = &hv[i]
		}
	}

	switch {
	case failure == FailLocal:
		w.obs.Code, w.obs.FailureMode = OutcomeDegraded, FailLocal
	case allowed:
		w.obs.Code = OutcomeOK
	default:
		w.obs.Code = OutcomeOverLimit
	}
	s.observe(&w.obs, start)
	return resp, nil
}

// blocking reports whether hit i denies the request (not allowed and not shadow).
func (w *work) blocking(i int) bool {
	return !w.results[i].Allowed && !w.hits[i].Shadow
}

// constrains reports whether hit i is more constrained than hit j: a blocking denial first, then the fewest
// remaining, then the later reset.
func (w *work) constrains(i, j int) bool {
	bi, bj := w.blocking(i), w.blocking(j)
	if bi != bj {
		return bi
	}
	if w.results[i].Remaining != w.results[j].Remaining {
		return w.results[i].Remaining < w.results[j].Remaining
	}
	return w.results[i].ResetAfter > w.results[j].ResetAfter
}

// neverFits reports whether hit i blocks the request and no amount of waiting would change that: its cost
// is above the capacity of its configured limit (or the limit admits nothing). The configured limit, not
// the hit's, is compared, so a quota shrunk by the local fallback's share never counts as "never". Quota
// mode hits are left out: another quota hit freeing up could still admit the request.
func (w *work) neverFits(i int) bool {
	h := &w.hits[i]
	return w.blocking(i) && !h.Quota && h.Cost > 0 && uint64(h.Cost) > capacity(w.refs[i].limit.Limit)
}

// quotaOf describes hit i for the headers and problem bodies; its limit is the hit's (possibly
// fallback-scaled) one.
func (w *work) quotaOf(i int) quota {
	ref := w.refs[i]
	name := ref.limit.Name
	if name == "" {
		name = ref.rule.Name
	}
	return quota{
		name:      name,
		limit:     w.hits[i].Limit,
		remaining: w.results[i].Remaining,
		reset:     w.results[i].ResetAfter,
	}
}

// currentLimit renders l as Envoy's current_limit; requests is the quota in force (scaled by the local
// fallback), clamped to uint32.
func currentLimit(l *config.Limit, requests uint64) *rlsv3.RateLimitResponse_RateLimit {
	rpu := l.RequestsPerUnit
	if requests != l.Limit.Requests { // local fallback share
		rpu = requests
	}
	cl := &rlsv3.RateLimitResponse_RateLimit{
		Name:            l.Name,
		RequestsPerUnit: uint32(min(rpu, math.MaxUint32)),
		Unit:            rlsv3.RateLimitResponse_RateLimit_Unit(l.Unit),
	}
	if l.UnitMultiplier > 1 {
		cl.UnitMultiplier = wrapperspb.UInt32(l.UnitMultiplier)
	}
	return cl
}

// dropReplaced clears rules whose Name another matched rule replaces (envoyproxy/ratelimit "replaces").
func dropReplaced(rules []*config.Rule) {
	var names map[string]*config.Rule
	for _, r := range rules {
		if r == nil {
			continue
		}
		for _, n := range r.Replaces {
			if names == nil {
				names = make(map[string]*config.Rule)
			}
			names[n] = r
		}
	}
	for i, r := range rules {
		if r == nil || r.Name == "" {
			continue
		}
		if by, ok := names[r.Name]; ok && by != r {
			rules[i] = nil
		}
	}
}

// overrideRule builds the rule of a (validated) RateLimitOverride: one fixed window limit named "override".
// Its counter key is the descriptor's plus "override", without the quota, so a changed requests_per_unit
// keeps counting where it was (B40) while a changed window starts a new counter (the store keys windows).
func overrideRule(domain string, o *ratelimitv3.RateLimitDescriptor_RateLimitOverride) config.Rule {
	mult := uint32(1)
	if m := o.GetUnitMultiplier(); m != nil {
		mult = m.GetValue()
	}
	unit := config.Unit(o.GetUnit())
	return config.Rule{
		Name: overrideName,
		Path: domain + "." + overrideName,
		Limits: []config.Limit{{
			Limit: limiter.Limit{
				Algorithm: limiter.FixedWindow,
				Requests:  uint64(o.GetRequestsPerUnit()),
				Window:    unitDuration(unit) * time.Duration(mult),
			},
			Name:            overrideName,
			RequestsPerUnit: uint64(o.GetRequestsPerUnit()),
			Unit:            unit,
			UnitMultiplier:  mult,
		}},
	}
}

// unitDuration is the length of one unit (month 30 days, year 365 days, as in envoyproxy/ratelimit), 0 for
// an unknown unit.
func unitDuration(u config.Unit) time.Duration {
	switch u {
	case config.UnitSecond:
		return time.Second
	case config.UnitMinute:
		return time.Minute
	case config.UnitHour:
		return time.Hour
	case config.UnitDay:
		return 24 * time.Hour
	case config.UnitWeek:
		return 7 * 24 * time.Hour
	case config.UnitMonth:
		return 30 * 24 * time.Hour
	case config.UnitYear:
		return 365 * 24 * time.Hour
	}
	return 0
}

// validateRateLimitRequest reports the first problem of req, naming the field.
func validateRateLimitRequest(req *rlsv3.RateLimitRequest) error {
	if req.GetDomain() == "" {
		return fmt.Errorf("domain is empty")
	}
	if tooLong(req.GetDomain()) {
		return fmt.Errorf("domain is %d bytes, above %d", len(req.GetDomain()), MaxValueBytes)
	}
	descs := req.GetDescriptors()
	if len(descs) == 0 {
		return fmt.Errorf("no descriptors")
	}
	if len(descs) > MaxDescriptors {
		return fmt.Errorf("%d descriptors, above %d", len(descs), MaxDescriptors)
	}
	for i, d := range descs {
		entries := d.GetEntries()
		if len(entries) == 0 {
			return fmt.Errorf("descriptors[%d] has no entries", i)
		}
		if len(entries) > MaxEntries {
			return fmt.Errorf("descriptors[%d] has %d entries, above %d", i, len(entries), MaxEntries)
		}
		for j, e := range entries {
			if e.GetKey() == "" {
				return fmt.Errorf("descriptors[%d].entries[%d].key is empty", i, j)
			}
			if tooLong(e.GetKey()) || tooLong(e.GetValue()) {
				return fmt.Errorf("descriptors[%d].entries[%d] is longer than %d bytes", i, j, MaxValueBytes)
			}
		}
		if h := d.GetHitsAddend(); h != nil && h.GetValue() > limiter.MaxRequests {
			return fmt.Errorf("descriptors[%d].hits_addend %d above the maximum %d", i, h.GetValue(),
				uint64(limiter.MaxRequests))
		}
		if o := d.GetLimit(); o != nil {
			unit := unitDuration(config.Unit(o.GetUnit()))
			if unit == 0 {
				return fmt.Errorf("descriptors[%d].limit.unit %s is not a valid unit (want SECOND..YEAR)",
					i, o.GetUnit())
			}
			if m := o.GetUnitMultiplier(); m != nil {
				if m.GetValue() == 0 {
					return fmt.Errorf("descriptors[%d].limit.unit_multiplier is 0", i)
				}
				if time.Duration(m.GetValue()) > maxOverrideWindow/unit {
					return fmt.Errorf("descriptors[%d].limit window %d × %s is longer than %s", i,
						m.GetValue(), o.GetUnit(), maxOverrideWindow)
				}
			}
		}
	}
	return nil
}

// tooLong reports whether s had more than MaxValueBytes on the wire. Only a string longer than that after
// the codec's escaping is scanned (wireLen ≤ len), so the decision path pays nothing for ordinary values.
func tooLong(s string) bool { return len(s) > MaxValueBytes && wireLen(s) > MaxValueBytes }

// wireLen is the length s had on the wire: the codec (see Codec) rewrites each invalid UTF-8 byte as U+FFFD
// and two hex digits (5 bytes), which count as the one byte Envoy sent, so that a value within the limit on
// the wire is never refused for its escaping (INVALID_ARGUMENT lets a fail-open Envoy through unlimited).
// A U+FFFD with two hex digits sent as such counts as one byte too: the bound is then at most 5× looser.
func wireLen(s string) int {
	n := len(s)
	for i := 0; ; {
		j := strings.Index(s[i:], "\uFFFD")
		if j < 0 {
			return n
		}
		i += j + len("\uFFFD")
		if i+2 <= len(s) && isHex(s[i]) && isHex(s[i+1]) {
			n -= len("\uFFFD") + 2 - 1
			i += 2
		}
	}
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
