package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
)

// Full gRPC service names, as grpc.health.v1 and reflection know them.
const (
	RateLimitServiceName     = "envoy.service.ratelimit.v3.RateLimitService"
	AuthorizationServiceName = "envoy.service.auth.v3.Authorization"
)

// Failure modes of Options.OnStoreError.
const (
	FailAllow = "allow" // store error: allow, mark the response degraded
	FailDeny  = "deny"  // store error: ext_authz 503 (gRPC status 14 in the CheckResponse), RLS gRPC UNAVAILABLE
	FailLocal = "local" // store error: decide with Options.Fallback, limits scaled by LocalShare
)

// Defaults of Options.
const (
	DefaultStoreTimeout = 10 * time.Millisecond
	DefaultAuthzDomain  = "edge"
	DefaultIPv6Prefix   = 64
	DefaultIPv4Prefix   = 32
)

// LimitsSource yields the limits in force; cmd swaps the snapshot at runtime (an atomic.Pointer), and every
// decision reads it once.
type LimitsSource interface {
	Limits() *config.Snapshot
}

// Options configures a Service. Zero values take the documented defaults.
type Options struct {
	Limits LimitsSource
	Store  limiter.Store
	// Fallback decides when the store fails and OnStoreError is "local" (an in-memory store).
	Fallback limiter.Store
	// LocalShare is the share of each limit the fallback grants (0 < s <= 1; 0 means 1): a replica that
	// runs alone on its fallback admits at most ceil(Requests × LocalShare) per window, at least 1 unless
	// the limit is 0.
	LocalShare float64
	// StoreTimeout bounds each store call of a decision (default 10 ms, below Envoy's 20 ms RLS deadline).
	StoreTimeout time.Duration
	// OnStoreError is "allow" (default), "deny" or "local".
	OnStoreError string
	// TrustedProxyHops counts the trusted hops that appended to X-Forwarded-For, the calling Envoy
	// included: 0 keys on the source address; N >= 1 on the N-th entry from the right.
	TrustedProxyHops int
	// TrustedProxies, when set, replaces hop counting: if the source address is in one of these networks,
	// X-Forwarded-For is walked from the right skipping trusted addresses; the first other one is the client.
	TrustedProxies []netip.Prefix
	// IPv6Prefix and IPv4Prefix are the prefix lengths client addresses are keyed by (default 64 and 32).
	IPv6Prefix, IPv4Prefix int
	// AuthzDomain is the domain of Check requests whose route sets no context extension "domain"
	// (default "edge").
	AuthzDomain string
	// Shadow evaluates and counts but never denies: would-be denials are reported as shadow results.
	Shadow bool
	// Headers is "draft" (RateLimit, RateLimit-Policy; default), "legacy" (X-RateLimit-*) or "both".
	Headers  string
	Observer Observer
	Logger   *slog.Logger
}

// Observer receives one Observation per decision (metrics, audit). Observe must not block and must not
// retain o or anything it points to after returning: the Service reuses them.
type Observer interface {
	Observe(o *Observation)
}

// Outcome classifies a decision.
type Outcome uint8

// The outcomes.
const (
	OutcomeOK        Outcome = iota + 1 // allowed (shadow denials included)
	OutcomeOverLimit                    // denied because a limit is exhausted (429 / OVER_LIMIT)
	OutcomeDegraded                     // the store failed; the failure mode decided
	OutcomeInvalid                      // the request was malformed (InvalidArgument)
)

// String returns the label used in metrics.
func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeOverLimit:
		return "over_limit"
	case OutcomeDegraded:
		return "degraded"
	case OutcomeInvalid:
		return "invalid"
	}
	return "unknown"
}

// RuleResult is the outcome of one limit of one evaluated rule.
type RuleResult struct {
	Rule *config.Rule
	// Limit is nil for an unlimited rule (always allowed, no store call) and for a rule denied because its
	// key was missing (HTTPRule.OnMissing "deny").
	Limit *config.Limit
	// Result is the store's answer; zero when the store failed and the failure mode was allow or deny.
	Result limiter.Result
	// Shadow is set when the hit could not block (rule shadow_mode or the global switch); Shadow with
	// !Result.Allowed is a would-be denial.
	Shadow bool
	// Descriptor is the index of the RLS descriptor (0 for ext_authz).
	Descriptor int
}

// Observation describes one decision.
type Observation struct {
	Service  string        // "ratelimit" or "authz"
	Domain   string        // a configured domain, or "" when the request named an unknown one
	Duration time.Duration // time in the handler
	Code     Outcome
	// Rules lists the evaluated limits: unlimited rules (and a rule denied for its missing key) first, then
	// every store hit in request order.
	Rules []RuleResult
	// StoreDuration is the time spent in the store (and fallback); StoreErr the store's error, if any.
	StoreDuration time.Duration
	StoreErr      error
	FailureMode   string // OnStoreError, set when Code is OutcomeDegraded
	// ext_authz only: the client key (normalised address or prefix, see doc.go), the peer that called
	// Envoy (the source address), and the request's method, host and path without the query string.
	ClientIP, ProxyIP  string
	Method, Host, Path string
	// RLSDescriptors are the request's descriptors (RLS only; RuleResult.Descriptor indexes them). They
	// belong to the request: an observer copies what it keeps.
	RLSDescriptors []*ratelimitv3.RateLimitDescriptor
	// ConfigVersion is the version of the limits that decided.
	ConfigVersion uint64
}

// Service answers Envoy's rate limit service and ext_authz calls. Safe for concurrent use.
type Service struct {
	limits      LimitsSource
	store       limiter.Store
	inProcess   bool // store is limiter.InProcess: Decide runs without a timeout
	fallback    limiter.Store
	share       float64
	timeout     time.Duration
	onErr       string
	authzDomain string
	shadow      bool
	headers     string
	observer    Observer
	log         *slog.Logger
	ip          ipResolver

	work sync.Pool // *work
}

// New validates o and returns a Service.
func New(o Options) (*Service, error) {
	if o.Limits == nil {
		return nil, errors.New("extauthz: no limits source")
	}
	if o.Store == nil {
		return nil, errors.New("extauthz: no store")
	}
	s := &Service{
		limits:      o.Limits,
		store:       o.Store,
		inProcess:   limiter.IsInProcess(o.Store),
		fallback:    o.Fallback,
		share:       o.LocalShare,
		timeout:     o.StoreTimeout,
		onErr:       o.OnStoreError,
		authzDomain: o.AuthzDomain,
		shadow:      o.Shadow,
		headers:     o.Headers,
		observer:    o.Observer,
		log:         o.Logger,
		ip: ipResolver{
			hops:    o.TrustedProxyHops,
			trusted: append([]netip.Prefix(nil), o.TrustedProxies...),
			v4Bits:  o.IPv4Prefix,
			v6Bits:  o.IPv6Prefix,
		},
	}
	if s.share == 0 {
		s.share = 1
	}
	if !(s.share > 0 && s.share <= 1) {
		return nil, fmt.Errorf("extauthz: local share %v outside (0, 1]", o.LocalShare)
	}
	if s.timeout == 0 {
		s.timeout = DefaultStoreTimeout
	}
	if s.timeout < 0 {
		return nil, fmt.Errorf("extauthz: negative store timeout %s", o.StoreTimeout)
	}
	switch s.onErr {
	case "":
		s.onErr = FailAllow
	case FailAllow, FailDeny:
	case FailLocal:
		if s.fallback == nil {
			return nil, errors.New("extauthz: on-store-error local needs a fallback store")
		}
	default:
		return nil, fmt.Errorf("extauthz: unknown on-store-error %q (want allow, deny or local)", o.OnStoreError)
	}
	if s.authzDomain == "" {
		s.authzDomain = DefaultAuthzDomain
	}
	switch s.headers {
	case "":
		s.headers = HeadersDraft
	case HeadersDraft, HeadersLegacy, HeadersBoth:
	default:
		return nil, fmt.Errorf("extauthz: unknown headers mode %q (want draft, legacy or both)", o.Headers)
	}
	if s.ip.hops < 0 {
		return nil, fmt.Errorf("extauthz: negative trusted proxy hops %d", o.TrustedProxyHops)
	}
	if s.ip.v6Bits == 0 {
		s.ip.v6Bits = DefaultIPv6Prefix
	}
	if s.ip.v4Bits == 0 {
		s.ip.v4Bits = DefaultIPv4Prefix
	}
	if s.ip.v6Bits < 1 || s.ip.v6Bits > 128 {
		return nil, fmt.Errorf("extauthz: IPv6 prefix /%d outside 1..128", o.IPv6Prefix)
	}
	if s.ip.v4Bits < 1 || s.ip.v4Bits > 32 {
		return nil, fmt.Errorf("extauthz: IPv4 prefix /%d outside 1..32", o.IPv4Prefix)
	}
	for i, p := range s.ip.trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("extauthz: trusted proxy %d is not a valid prefix", i)
		}
		s.ip.trusted[i] = netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.work.New = func() any { return new(work) }
	return s, nil
}

// unmappedBits converts the length of an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) to IPv4 (/8).
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}

// Register registers the rate limit service and ext_authz on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	rlsv3.RegisterRateLimitServiceServer(r, s)
	authv3.RegisterAuthorizationServer(r, s)
}

// HealthServiceNames returns the full names of the two services, for grpc.health.v1.
func (s *Service) HealthServiceNames() []string {
	return []string{RateLimitServiceName, AuthorizationServiceName}
}

// knownDomain reports whether snap configures domain.
func (s *Service) knownDomain(snap *config.Snapshot, domain string) bool {
	return snap != nil && snap.HasDomain(domain)
}

// hitRef ties a hit to what it was built from.
type hitRef struct {
	desc  int
	rule  *config.Rule
	limit *config.Limit
}

// work is the per-decision scratch space, pooled.
type work struct {
	hits    []limiter.Hit
	results []limiter.Result
	refs    []hitRef
	buf     []byte
	rules   []*config.Rule
	hdrs    []header
	best    []int // per descriptor: index of its most constrained hit
	obs     Observation
}

func (s *Service) getWork() *work {
	return s.work.Get().(*work)
}

func (s *Service) putWork(w *work) {
	if cap(w.hits) > 4096 || cap(w.buf) > 64<<10 { // drop what a huge request grew
		return
	}
	clear(w.hits)
	w.hits = w.hits[:0]
	w.results = w.results[:0]
	clear(w.refs)
	w.refs = w.refs[:0]
	w.buf = w.buf[:0]
	clear(w.rules)
	w.rules = w.rules[:0]
	w.hdrs = w.hdrs[:0]
	w.best = w.best[:0]
	clear(w.obs.Rules)
	w.obs = Observation{Rules: w.obs.Rules[:0]}
	s.work.Put(w)
}

// addHit appends a hit and its reference.
func (w *work) addHit(h limiter.Hit, ref hitRef) {
	w.hits = append(w.hits, h)
	w.refs = append(w.refs, ref)
}

// decide runs the store for w.hits (at most one call, plus the fallback on error) and returns whether the
// request is allowed and which failure mode applied ("" when the store answered).
func (s *Service) decide(ctx context.Context, w *work) (allowed bool, failure string) {
	if len(w.hits) == 0 {
		return true, ""
	}
	w.results = growResults(w.results, len(w.hits))
	start := time.Now()
	var err error
	if s.inProcess { // nothing to wait for: no timer
		allowed, err = s.store.Decide(ctx, w.hits, w.results)
	} else {
		sctx, cancel := context.WithTimeout(ctx, s.timeout)
		allowed, err = s.store.Decide(sctx, w.hits, w.results)
		cancel()
	}
	w.obs.StoreDuration = time.Since(start)
	if err == nil {
		return allowed, ""
	}
	w.obs.StoreErr = err
	if errors.Is(err, limiter.ErrInvalidHit) {
		s.log.Error("store rejected a hit", "err", err)
	} else {
		s.log.Debug("store failed", "err", err, "failure_mode", s.onErr)
	}
	clear(w.results)
	switch s.onErr {
	case FailDeny:
		return false, FailDeny
	case FailLocal:
		for i := range w.hits {
			w.hits[i].Limit.Requests = scaleQuota(w.hits[i].Limit.Requests, s.share)
			w.hits[i].Limit.Burst = scaleQuota(w.hits[i].Limit.Burst, s.share)
		}
		allowed, err := s.fallback.Decide(ctx, w.hits, w.results)
		w.obs.StoreDuration = time.Since(start)
		if err != nil {
			s.log.Debug("fallback store failed", "err", err)
			clear(w.results)
			return true, FailAllow
		}
		return allowed, FailLocal
	}
	return true, FailAllow
}

// scaleQuota returns ceil(n × share), at least 1 unless n is 0.
func scaleQuota(n uint64, share float64) uint64 {
	if n == 0 || share >= 1 {
		return n
	}
	f := float64(n) * share
	m := uint64(f)
	if float64(m) < f {
		m++
	}
	return max(m, 1)
}

func growResults(r []limiter.Result, n int) []limiter.Result {
	if cap(r) < n {
		return make([]limiter.Result, n)
	}
	r = r[:n]
	clear(r)
	return r
}

// observe finishes o and hands it to the observer.
func (s *Service) observe(o *Observation, start time.Time) {
	if s.observer == nil {
		return
	}
	o.Duration = time.Since(start)
	s.observer.Observe(o)
}

// collectResults appends the hits and their results to w.obs.Rules.
func (w *work) collectResults() {
	for i, ref := range w.refs {
		rr := RuleResult{Rule: ref.rule, Limit: ref.limit, Descriptor: ref.desc, Shadow: w.hits[i].Shadow}
		if i < len(w.results) {
			rr.Result = w.results[i]
		}
		w.obs.Rules = append(w.obs.Rules, rr)
	}
}
