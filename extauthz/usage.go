package extauthz

import (
	"context"
	"errors"
	"fmt"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
)

// Usage is the current counter of one limit of the rule a descriptor matches, for the admin API.
type Usage struct {
	Rule      string
	Limit     string
	Algorithm string
	Requests  uint64
	Burst     uint64
	Window    time.Duration
	// Used and Remaining are in request units; Remaining is what a request could take now.
	Used, Remaining uint64
	// ResetAfter is the time until the counter is back to full quota.
	ResetAfter time.Duration
	Shadow     bool
	Unlimited  bool
}

// ErrInvalidDescriptor wraps the reason an admin descriptor is refused (empty, too long).
var ErrInvalidDescriptor = errors.New("invalid descriptor")

// ErrNoRule is returned by Usage and ResetUsage when no rule of the domain matches the descriptor.
var ErrNoRule = errors.New("no rule matches the descriptor")

// adminTimeout bounds the store calls of Usage and ResetUsage (an operator waits; no Envoy deadline).
const adminTimeout = time.Second

// Usage reports the counters of the RLS descriptor (domain, entries) without consuming anything: the rule
// it matches in the running limits and, per limit, what is used and left. The counters are the ones
// ShouldRateLimit uses for that descriptor (an ext_authz http_rule keys differently and is not covered).
func (s *Service) Usage(ctx context.Context, domain string, entries []config.Entry) ([]Usage, error) {
	rule, hits, err := s.usageHits(domain, entries)
	if err != nil || rule.Unlimited {
		return unlimitedUsage(rule), err
	}
	results := make([]limiter.Result, len(hits))
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	if _, err := s.store.Decide(ctx, hits, results); err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	out := make([]Usage, len(hits))
	for i, l := range rule.Limits {
		capacity := l.Requests
		if l.Algorithm == limiter.TokenBucket && l.Burst > 0 {
			capacity = l.Burst
		}
		out[i] = Usage{Rule: rule.Name, Limit: l.Name, Algorithm: l.Algorithm.String(), Requests: l.Requests,
			Burst: l.Burst, Window: l.Window, Remaining: results[i].Remaining,
			Used: capacity - min(capacity, results[i].Remaining), ResetAfter: results[i].ResetAfter, Shadow: rule.Shadow}
	}
	return out, nil
}

// ResetUsage deletes the counters of the descriptor's limits and returns their usage just before.
func (s *Service) ResetUsage(ctx context.Context, domain string, entries []config.Entry) ([]Usage, error) {
	before, err := s.Usage(ctx, domain, entries)
	if err != nil {
		return nil, err
	}
	rule, hits, err := s.usageHits(domain, entries)
	if err != nil || rule.Unlimited {
		return before, err
	}
	r, ok := s.store.(limiter.Resetter)
	if !ok {
		return nil, fmt.Errorf("the store %T cannot reset counters", s.store)
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	if err := r.Reset(ctx, hits); err != nil {
		return nil, err
	}
	return before, nil
}

func unlimitedUsage(rule *config.Rule) []Usage {
	if rule == nil {
		return nil
	}
	return []Usage{{Rule: rule.Name, Limit: rule.Name, Unlimited: true, Remaining: 4294967295, Shadow: rule.Shadow}}
}

// usageHits builds the check-only hits ShouldRateLimit would build for the descriptor.
func (s *Service) usageHits(domain string, entries []config.Entry) (*config.Rule, []limiter.Hit, error) {
	if err := validateEntries(entries); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidDescriptor, err)
	}
	rule, ok := s.limits.Limits().Match(domain, entries)
	if !ok {
		return nil, nil, fmt.Errorf("domain %q, %d entries: %w", domain, len(entries), ErrNoRule)
	}
	if rule.Unlimited {
		return rule, nil, nil
	}
	pe := make([]*ratelimitv3.RateLimitDescriptor_Entry, len(entries))
	for i, e := range entries {
		pe[i] = &ratelimitv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value}
	}
	base := appendDescriptorKey(nil, domain, pe, rule.SharedValues)
	hits := make([]limiter.Hit, len(rule.Limits))
	for j, l := range rule.Limits {
		hits[j] = limiter.Hit{Key: finishKey(appendIndex(base[:len(base):len(base)], j)), Limit: l.Limit}
	}
	return rule, hits, nil
}

// validateEntries applies ShouldRateLimit's input caps to an admin descriptor.
func validateEntries(entries []config.Entry) error {
	if len(entries) == 0 {
		return errors.New("the descriptor has no entries")
	}
	if len(entries) > MaxEntries {
		return fmt.Errorf("the descriptor has %d entries, at most %d", len(entries), MaxEntries)
	}
	for i, e := range entries {
		if e.Key == "" {
			return fmt.Errorf("entry %d has an empty key", i)
		}
		if len(e.Key) > MaxValueBytes || len(e.Value) > MaxValueBytes {
			return fmt.Errorf("entry %d is longer than %d bytes", i, MaxValueBytes)
		}
	}
	return nil
}
