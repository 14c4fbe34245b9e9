package config

import (
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Entry is one (key, value) pair of a rate limit descriptor, as Envoy sends it.
type Entry struct {
	Key   string
	Value string
}

// Unit is the envoyproxy/ratelimit time unit of a limit.
type Unit int

// Units, numbered as envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit.
const (
	UnitUnknown Unit = 0
	UnitSecond  Unit = 1
	UnitMinute  Unit = 2
	UnitHour    Unit = 3
	UnitDay     Unit = 4
	UnitMonth   Unit = 5 // 30 days
	UnitYear    Unit = 6 // 365 days
	UnitWeek    Unit = 7
)

// Limit is one quota of a Rule, with the envoyproxy/ratelimit facts Envoy needs in responses.
type Limit struct {
	limiter.Limit
	// Name is the policy name used in RateLimit headers and current_limit.name: the rate_limit name if
	// set, else the rule name, or for several limits on one rule the rule name plus "#1", "#2"...
	// Never empty, and distinct among the limits of one rule.
	Name string
	// RequestsPerUnit, Unit and UnitMultiplier describe the window as Envoy's current_limit does;
	// Window in the embedded limiter.Limit is Unit×UnitMultiplier (or the custom window).
	RequestsPerUnit uint64
	Unit            Unit
	UnitMultiplier  uint32
}

// Rule is what a descriptor (or an HTTP rule) matched: the limits applied to it and how.
type Rule struct {
	// Name labels the rule in metrics and the audit trail: the rate_limit name if set, otherwise the
	// descriptor path such as "api.user_vip", "api.user" (key-only) or "api.path_/foo*" (wildcard as
	// written). Bounded by the config, never a request value.
	Name string
	// Path is the config path of the matched node, e.g. "api.user_vip" for messages.
	Path string
	// Limits is empty when Unlimited.
	Limits         []Limit
	Unlimited      bool
	Shadow         bool
	DetailedMetric bool
	// Replaces lists rule names this rule overrides when both match in one request.
	Replaces []string
	// Quota is envoyproxy/ratelimit's quota_mode: an over-limit quota rule blocks the request only when
	// every quota rule of the request is over its limit.
	Quota bool
	// SharedValues is nil unless a node on the rule's path has share_threshold: then it has one element
	// per descriptor entry, and a non-empty element is the wildcard pattern (e.g. "files/*") that replaces
	// that entry's request value in the counter key, so every matching value shares one counter.
	SharedValues []string
}

// KeySource says where an HTTP rule takes one part of its counter key from.
type KeySource struct {
	Kind string // "client_ip", "header", "path", "method", "host", "jwt_claim"
	Name string // header name (lower-case) or claim name
	// Hash replaces the value with its SHA-256 before keying (for secrets such as Authorization).
	Hash bool
}

// Missing-key policies of an HTTP rule.
const (
	OnMissingClientIP = "client_ip" // key on the client IP instead (default)
	OnMissingSkip     = "skip"      // the rule does not apply
	OnMissingDeny     = "deny"      // refuse the request: HTTP 400 naming the missing key source, nothing counted
)

// HTTPRule is an ext_authz rule: requests matching Host/PathPrefix/Methods are limited per key.
type HTTPRule struct {
	Rule
	Domain     string
	Host       string   // exact, case-insensitive; empty matches any
	PathPrefix string   // matched against the path without the query string; empty matches any
	Methods    []string // upper-case; empty matches any
	Key        []KeySource
	OnMissing  string
}

// Info describes a loaded Snapshot for status pages and metrics.
type Info struct {
	Version  uint64    // revision number (see Revision); 0 for a snapshot not (yet) stored
	Digest   string    // hex SHA-256 of the files (DigestFiles)
	LoadedAt time.Time // when this process compiled it
	Sources  []string  // file names the snapshot was built from
	// Author, Source and CreatedAt come from the Revision (WithRevision).
	Author    string
	Source    string
	CreatedAt time.Time
}
