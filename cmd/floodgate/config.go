package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
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
		fmt.Fprintf(stderr, "  floodgate check-config PATH       validate a limits file or directory and exit\n\nFlags (each also read from the environment variable shown):\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(stderr, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	var trusted, logLevel, origins string
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
	return errors.Join(errs...)
}
