package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is everything the binary is told, from flags with environment fallbacks (flag wins).
type Config struct {
	ConfigPath       string
	DatabaseURL      string
	ReplicaID        string
	DashboardOrigins []string
	RedisURL         string
	RedisPrefix      string
	GRPCAddr         string
	HTTPAddr         string
	StoreTimeout     time.Duration
	OnStoreError     string
	LocalShare       float64
	OverLimitCache   int
	MemoryMaxEntries int
	TrustedProxyHops int
	TrustedProxies   []netip.Prefix
	IPv6Prefix       int
	IPv4Prefix       int
	AuthzDomain      string
	Shadow           bool
	Headers          string
	LogLevel         slog.Level
	LogFormat        string
	DrainTimeout     time.Duration
	ShutdownTimeout  time.Duration

	// Runtime limits and the admin API.
	ConfigSource string // "file" or "api"; default file with --config, api without
	ConfigPoll   time.Duration
	HTTPMaxConns int
	AdminRate    float64 // admin API requests per second per caller
	AdminBurst   uint64

	// Authentication of the admin API, the dashboard and its WebSocket.
	AuthHS256Secret string
	AuthJWKSURL     string
	AuthOIDCIssuer  string
	AuthIssuer      string
	AuthAudience    []string
	AuthAlgorithms  []string
	AuthRoleClaim   string
	AuthAdminRoles  []string
	AuthViewerRoles []string
	AuthLeeway      time.Duration
	OIDCClientID    string
	OIDCScope       string
	InsecureNoAuth  bool
}

// authConfigured reports whether a token verifier was configured.
func (c Config) authConfigured() bool {
	return c.AuthHS256Secret != "" || c.AuthJWKSURL != "" || c.AuthOIDCIssuer != ""
}

// envPrefix is prepended to a flag's upper-cased, underscored name to find its environment variable:
// --redis-url ↔ FLOODGATE_REDIS_URL.
const envPrefix = "FLOODGATE_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads args (without the program name) and the environment through getenv.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("floodgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  floodgate [flags]                 serve the decision path (gRPC) and the operations view (HTTP)\n")
		fmt.Fprintf(stderr, "  floodgate check-config PATH       validate a limits file or directory and exit\n")
		fmt.Fprintf(stderr, "  floodgate token --sub NAME --role admin   print an HS256 admin API token (shared-secret setup)\n\nFlags (each also read from the environment variable shown):\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(stderr, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	var trusted, logLevel, origins string
	var audience, algorithms, adminRoles, viewerRoles, secretFile string
	fs.StringVar(&c.ConfigPath, "config", "", "limits YAML file or directory; empty serves the bundled examples")
	fs.StringVar(&c.RedisURL, "redis-url", "", "redis:// or rediss:// URL of the shared store; empty uses the in-memory store")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "fg:", "prefix of every Redis key Floodgate writes")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "postgres:// URL of the audit history (append-only table audit_events); empty keeps the audit trail in memory (and in Redis, when configured)")
	fs.StringVar(&c.ReplicaID, "replica-id", "", "name of this replica in the audit trail (default: host name and process id)")
	fs.StringVar(&origins, "dashboard-origins", "", "comma-separated extra Origin hosts allowed to open the dashboard's WebSocket (the page's own origin always is)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", ":8081", "listen address of the Envoy-facing gRPC server")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:8000", "listen address of the HTTP server (health, metrics)")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", 10*time.Millisecond, "deadline of one store call; past it the failure mode decides")
	fs.StringVar(&c.OnStoreError, "on-store-error", "allow", "failure mode when the store errs or times out: allow, deny or local")
	fs.Float64Var(&c.LocalShare, "local-share", 1, "with --on-store-error=local, the share of each limit one replica grants (e.g. 1/replicas)")
	fs.IntVar(&c.OverLimitCache, "over-limit-cache", 0, "entries of the local over-limit cache (0 disables it)")
	fs.IntVar(&c.MemoryMaxEntries, "memory-max-entries", 1_000_000, "maximum counters kept by the in-memory store")
	fs.IntVar(&c.TrustedProxyHops, "trusted-proxy-hops", 0, "ext_authz client IP: the N-th X-Forwarded-For entry from the right, counting the calling Envoy as one hop (0: the source address)")
	fs.StringVar(&trusted, "trusted-proxies", "", "comma-separated CIDRs of trusted proxies; X-Forwarded-For is walked from the right past them")
	fs.IntVar(&c.IPv6Prefix, "ipv6-prefix", 64, "IPv6 clients are keyed by this prefix length")
	fs.IntVar(&c.IPv4Prefix, "ipv4-prefix", 32, "IPv4 clients are keyed by this prefix length")
	fs.StringVar(&c.AuthzDomain, "authz-domain", "edge", "domain whose http_rules ext_authz applies when the route sets no context extension \"domain\"")
	fs.BoolVar(&c.Shadow, "shadow", false, "global shadow mode: evaluate and count, never deny")
	fs.StringVar(&c.Headers, "headers", "draft", "rate-limit response headers: draft (RateLimit, RateLimit-Policy), legacy (X-RateLimit-*) or both")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 2*time.Second, "on shutdown, time between reporting NOT_SERVING and stopping the servers")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "on shutdown, how long in-flight calls may take to finish")
	fs.StringVar(&c.ConfigSource, "config-source", "", "where the limits live: file (--config is the truth, reloaded on change; the admin API is read-only) or api (the store is the truth: Redis with --redis-url, else this process; --config only seeds an empty store). Default: file with --config, api without")
	fs.IntVar(&c.HTTPMaxConns, "http-max-conns", 4096, "most HTTP connections served at once (dashboards, API, metrics); more wait to be accepted")
	fs.DurationVar(&c.ConfigPoll, "config-poll", time.Second, "with --config-source=file, how often the files are checked for changes")
	fs.Float64Var(&c.AdminRate, "admin-rate", 20, "admin API requests per second allowed per caller (token bucket, shared by the fleet with Redis)")
	fs.Uint64Var(&c.AdminBurst, "admin-burst", 40, "admin API burst per caller")
	fs.StringVar(&c.AuthHS256Secret, "auth-hs256-secret", "", "shared secret (at least 32 bytes) verifying HS256 bearer tokens")
	fs.StringVar(&secretFile, "auth-hs256-secret-file", "", "file holding the HS256 secret (trailing newline ignored)")
	fs.StringVar(&c.AuthJWKSURL, "auth-jwks-url", "", "JWKS URL of the RS256/ES256 keys verifying bearer tokens")
	fs.StringVar(&c.AuthOIDCIssuer, "auth-oidc-issuer", "", "OIDC issuer URL: keys from its discovery document; the dashboard signs in with authorization code + PKCE")
	fs.StringVar(&c.AuthIssuer, "auth-issuer", "", "required iss claim (default: the OIDC issuer)")
	fs.StringVar(&audience, "auth-audience", "", "comma-separated accepted aud values (required with JWKS/OIDC)")
	fs.StringVar(&algorithms, "auth-algorithms", "", "comma-separated allowed JWT algorithms (default HS256 with a secret, RS256,ES256 with JWKS/OIDC)")
	fs.StringVar(&c.AuthRoleClaim, "auth-role-claim", "roles", "claim holding the roles (string or array; a dotted path such as realm_access.roles reaches nested claims)")
	fs.StringVar(&adminRoles, "auth-admin-roles", "admin,floodgate:admin,floodgate-admin", "comma-separated role values granting admin")
	fs.StringVar(&viewerRoles, "auth-viewer-roles", "viewer,floodgate:viewer,floodgate-viewer", "comma-separated role values granting viewer")
	fs.DurationVar(&c.AuthLeeway, "auth-leeway", 30*time.Second, "clock leeway for exp/nbf/iat")
	fs.StringVar(&c.OIDCClientID, "oidc-client-id", "", "OAuth2 client id the dashboard uses with --auth-oidc-issuer (public client, PKCE)")
	fs.StringVar(&c.OIDCScope, "oidc-scope", "openid profile", "scopes the dashboard asks for")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", false, "serve the admin API and dashboard without authentication on a non-loopback --http-addr (everyone is admin)")

	// Environment first, so explicit flags override it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return c, fmt.Errorf("--log-level: %w", err)
	}
	for _, s := range strings.Split(origins, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.DashboardOrigins = append(c.DashboardOrigins, s)
		}
	}
	c.AuthAudience, c.AuthAlgorithms = splitList(audience), splitList(algorithms)
	c.AuthAdminRoles, c.AuthViewerRoles = splitList(adminRoles), splitList(viewerRoles)
	if secretFile != "" {
		if c.AuthHS256Secret != "" {
			return c, errors.New("--auth-hs256-secret and --auth-hs256-secret-file are exclusive")
		}
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return c, fmt.Errorf("--auth-hs256-secret-file: %w", err)
		}
		c.AuthHS256Secret = strings.TrimRight(string(b), "\r\n")
	}
	if c.ConfigSource == "" {
		c.ConfigSource = "api"
		if c.ConfigPath != "" {
			c.ConfigSource = "file"
		}
	}
	for _, s := range strings.Split(trusted, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return c, fmt.Errorf("--trusted-proxies: %w", err)
		}
		c.TrustedProxies = append(c.TrustedProxies, p.Masked())
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	switch c.OnStoreError {
	case "allow", "deny", "local":
	default:
		errs = append(errs, fmt.Errorf("--on-store-error: %q is not allow, deny or local", c.OnStoreError))
	}
	switch c.Headers {
	case "draft", "legacy", "both":
	default:
		errs = append(errs, fmt.Errorf("--headers: %q is not draft, legacy or both", c.Headers))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format: %q is not text or json", c.LogFormat))
	}
	if c.StoreTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--store-timeout: %s must be positive", c.StoreTimeout))
	}
	if c.LocalShare <= 0 || c.LocalShare > 1 {
		errs = append(errs, fmt.Errorf("--local-share: %s must be in (0, 1]", strconv.FormatFloat(c.LocalShare, 'g', -1, 64)))
	}
	if c.TrustedProxyHops < 0 {
		errs = append(errs, fmt.Errorf("--trusted-proxy-hops: %d must not be negative", c.TrustedProxyHops))
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		errs = append(errs, fmt.Errorf("--ipv6-prefix: %d not in 1..128", c.IPv6Prefix))
	}
	if c.IPv4Prefix < 1 || c.IPv4Prefix > 32 {
		errs = append(errs, fmt.Errorf("--ipv4-prefix: %d not in 1..32", c.IPv4Prefix))
	}
	if c.OverLimitCache < 0 || c.MemoryMaxEntries < 1 {
		errs = append(errs, errors.New("--over-limit-cache must be ≥ 0 and --memory-max-entries ≥ 1"))
	}
	if c.GRPCAddr == "" || c.HTTPAddr == "" {
		errs = append(errs, errors.New("--grpc-addr and --http-addr must not be empty"))
	}
	switch c.ConfigSource {
	case "api":
	case "file":
		if c.ConfigPath == "" {
			errs = append(errs, errors.New("--config-source=file needs --config"))
		}
	default:
		errs = append(errs, fmt.Errorf("--config-source: %q is not file or api", c.ConfigSource))
	}
	if c.HTTPMaxConns < 16 {
		errs = append(errs, fmt.Errorf("--http-max-conns: %d is below 16", c.HTTPMaxConns))
	}
	if c.ConfigPoll < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--config-poll: %s is below 100ms", c.ConfigPoll))
	}
	if !(c.AdminRate > 0) || c.AdminBurst < 1 {
		errs = append(errs, errors.New("--admin-rate must be positive and --admin-burst at least 1"))
	}
	n := 0
	for _, v := range []string{c.AuthHS256Secret, c.AuthJWKSURL, c.AuthOIDCIssuer} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("--auth-hs256-secret, --auth-jwks-url and --auth-oidc-issuer are exclusive: configure one"))
	}
	if c.OIDCClientID != "" && c.AuthOIDCIssuer == "" {
		errs = append(errs, errors.New("--oidc-client-id needs --auth-oidc-issuer"))
	}
	if !c.authConfigured() && !c.InsecureNoAuth && !loopback(c.HTTPAddr) {
		errs = append(errs, fmt.Errorf("--http-addr %s is reachable beyond this host and no authentication is configured: "+
			"set --auth-hs256-secret, --auth-jwks-url or --auth-oidc-issuer, or pass --insecure-no-auth to serve the admin API to anyone", c.HTTPAddr))
	}
	return errors.Join(errs...)
}

// loopback reports whether addr ("host:port") listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
