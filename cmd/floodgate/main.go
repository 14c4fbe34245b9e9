// Command floodgate serves Envoy's ext_authz and rate limit service APIs over gRPC and an HTTP server with
// health checks and Prometheus metrics. See the README for flags and behaviour.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/dashboard"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "floodgate:", err)
		}
		os.Exit(1)
	}
}

// errUsage is returned after the usage or a check-config report has been printed; main only sets the exit code.
var errUsage = errors.New("usage")

// listening receives the bound addresses once both servers listen (tests pass ":0" and read the ports here).
type listening func(grpcAddr, httpAddr net.Addr)

// run builds everything from args and the environment and serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready listening) error {
	if len(args) > 0 && args[0] == "check-config" {
		return checkConfig(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "token" {
		return mintToken(args[1:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	logger := newLogger(cfg, stderr)
	redis.SetLogger(newRedisLogger(logger))

	if cfg.TrustedProxyHops > 0 && len(cfg.TrustedProxies) > 0 {
		logger.Warn("--trusted-proxies replaces --trusted-proxy-hops; the hop count is ignored", "trusted_proxy_hops", cfg.TrustedProxyHops)
	}

	reg := metrics.NewRegistry()
	m := metrics.New(reg)

	store, rdb, closeStore, err := openStore(cfg, m, logger)
	if err != nil {
		return err
	}
	defer closeStore()

	// The audit trail: every denial, live (memory ring; the fleet's through a Redis stream) and, with
	// --database-url, its history in PostgreSQL.
	replica := cfg.ReplicaID
	if replica == "" {
		host, _ := os.Hostname()
		replica = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	var rt *config.Runtime // set below; the recorder reads it only once events flow
	auditOpts := audit.Options{Replica: replica, Registerer: reg, Logger: logger,
		ConfigVersion: func() uint64 { return rt.Snapshot().Info().Version }}
	var control *redis.Client
	if rdb != nil {
		// The control plane's own small pool (audit stream, limits store, replica registry, pub/sub): the
		// stream reader's blocking XREAD must not hold, or time out, connections of the decision path
		// (measured: sharing the pool cost ~15 % throughput and store timeouts).
		copts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		copts.PoolSize, copts.ReadTimeout, copts.ContextTimeoutEnabled = 6, 3*time.Second, true
		control = redis.NewClient(copts)
		defer control.Close()
		auditOpts.Redis, auditOpts.StreamPrefix = control, cfg.RedisPrefix
	}
	if cfg.DatabaseURL != "" {
		pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("--database-url: %w", err)
		}
		defer pool.Close()
		auditOpts.DB = pool
	}
	recorder, err := audit.New(auditOpts)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if auditOpts.DB != nil {
		// Create the table now when PostgreSQL is there; if it is not, the pipeline migrates before its
		// first write and events wait in its buffer meanwhile.
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := recorder.Migrate(mctx); err != nil {
			logger.Warn("audit history: PostgreSQL not ready at start; events wait in the buffer", "err", err)
		}
		cancel()
	}

	// The limits: versioned, from the files or the (fleet's) store, applied at runtime.
	cobs := &configObserver{next: m, recorder: recorder, logger: logger}
	var controlClient redis.UniversalClient
	if control != nil {
		controlClient = control
	}
	rt, err = newRuntime(ctx, cfg, controlClient, replica, cobs, logger)
	if err != nil {
		return err
	}
	cobs.attach(rt)
	limits := rt.Snapshot()
	info := limits.Info()
	logger.Info("limits loaded", "source", cfg.ConfigSource, "sources", info.Sources, "domains", limits.Domains(),
		"version", info.Version, "digest", info.Digest)
	if len(limits.HTTPRules(cfg.AuthzDomain)) == 0 {
		logger.Warn("the ext_authz default domain has no http_rules: Check allows every request unless the route names another domain",
			"authz_domain", cfg.AuthzDomain)
	}

	var fallback limiter.Store
	if cfg.OnStoreError == "local" {
		mem := limiter.NewMemory(limiter.MemoryOptions{MaxEntries: cfg.MemoryMaxEntries})
		m.TrackEntries("fallback", mem.Len)
		fallback = mem
	}

	checker := &storeHealth{store: store, timeout: max(cfg.StoreTimeout, 250*time.Millisecond), metrics: m, logger: logger,
		failClosed: cfg.OnStoreError == "deny"}
	// The sampler pings the store once a second; each result also drives gRPC health, /readyz and the
	// store metrics (one pinger for all three).
	sampler, err := metrics.NewSampler(ctx, metrics.SamplerOptions{
		Ping:        store.Ping,
		PingTimeout: checker.timeout,
		OnPing:      checker.observe,
		FailureMode: cfg.OnStoreError,
		Registry:    reg,
		Logger:      logger,
	})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}

	svc, err := extauthz.New(extauthz.Options{
		Limits:           limitsFunc(rt.Snapshot),
		Store:            store,
		Fallback:         fallback,
		LocalShare:       cfg.LocalShare,
		StoreTimeout:     cfg.StoreTimeout,
		OnStoreError:     cfg.OnStoreError,
		TrustedProxyHops: cfg.TrustedProxyHops,
		TrustedProxies:   cfg.TrustedProxies,
		IPv6Prefix:       cfg.IPv6Prefix,
		IPv4Prefix:       cfg.IPv4Prefix,
		AuthzDomain:      cfg.AuthzDomain,
		Shadow:           cfg.Shadow,
		Headers:          cfg.Headers,
		Observer:         observers{m, sampler, recorder},
		Logger:           logger,
	})
	if err != nil {
		return err
	}

	grpcLn, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	defer grpcLn.Close() // when a later step fails; once served, the servers have closed them already
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
	}
	defer httpLn.Close()

	// The lenient codec: Envoy sends header bytes and descriptor values as they are; the standard codec would
	// refuse invalid UTF-8 with INTERNAL, which Envoy's fail-open turns into an unlimited request. Plus
	// Envoy's keepalive pings tolerated and a stream worker pool (extauthz.TransportOptions).
	grpcServer := grpc.NewServer(extauthz.ServerOptions()...)
	// Releases the stream workers when a later step fails; after GracefulStop, a no-op.
	defer grpcServer.Stop()
	svc.Register(grpcServer)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(grpcServer, healthSrv)
	reflection.Register(grpcServer)

	checker.health, checker.services = healthSrv, svc.HealthServiceNames()
	checker.check(ctx)

	authn, authInfo, err := newAuthenticator(ctx, cfg, reg, logger)
	if err != nil {
		return err
	}
	dash, err := dashboard.New(dashboard.Options{Telemetry: sampler, Audit: recorder, Limits: limitsFunc(rt.Snapshot),
		OriginPatterns: cfg.DashboardOrigins, Registry: reg, Logger: logger,
		Admin: rt, Usage: usageInspector{svc}, Changes: recorder, AuditQuery: auditSearch{recorder},
		Auth: authn, AuthInfo: authInfo, AdminRate: store,
		AdminLimit: adminLimit(cfg),
	})
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	handler := newHTTPHandler(reg, checker, dash.Handler())
	if !cfg.authConfigured() && !cfg.InsecureNoAuth {
		// Everyone on loopback is admin: refuse requests addressed to another host name, so a web page the
		// operator visits cannot reach the API through DNS rebinding.
		handler = loopbackHostOnly(handler)
	}
	// A bounded number of HTTP connections: a flood of them (slow bodies, idle sockets) waits in the
	// kernel's backlog instead of taking the file descriptors the gRPC decision path needs.
	httpLn = netutil.LimitListener(httpLn, cfg.HTTPMaxConns)
	httpServer := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		// A whole request (the admin API takes bodies up to 1 MiB) within 30 s; WebSocket sessions are
		// hijacked connections, which net/http frees of these deadlines.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	logger.Info("floodgate serving",
		"grpc_addr", grpcLn.Addr().String(), "http_addr", httpLn.Addr().String(),
		"store", storeName(cfg), "on_store_error", cfg.OnStoreError, "store_timeout", cfg.StoreTimeout.String())
	if ready != nil {
		ready(grpcLn.Addr(), httpLn.Addr())
	}

	g, gctx := errgroup.WithContext(ctx)
	// The services behind the decisions (telemetry, dashboards, limits, the audit pipeline) run until the
	// gRPC server has stopped, not just until shutdown starts: decisions answered while draining are
	// measured and audited too.
	bgctx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	// Ends when Serve returns: GracefulStop/Stop below, or a listener error.
	g.Go(func() error {
		if err := grpcServer.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve grpc: %w", err)
		}
		return nil
	})
	// Ends when Shutdown below closes the server, or on a listener error.
	g.Go(func() error {
		if err := httpServer.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	// Ends when bgctx is done (the sampler also runs the store health ping).
	g.Go(func() error {
		sampler.Run(bgctx)
		return nil
	})
	// Ends when bgctx is done.
	g.Go(func() error {
		dash.Run(bgctx)
		return nil
	})
	// Ends when bgctx is done: follows the store's versions (pub/sub and poll) or the files.
	g.Go(func() error {
		rt.Run(bgctx)
		return nil
	})
	// Ends when bgctx is done, after flushing the queued events to their sinks.
	g.Go(func() error {
		if err := recorder.Run(bgctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Warn("audit pipeline", "err", err)
		}
		return nil
	})
	// Ends after the shutdown sequence, which starts when ctx is cancelled or a server fails.
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down", "drain_timeout", cfg.DrainTimeout)
		checker.shutdown()
		// Let Envoy's health checks see NOT_SERVING and move traffic before connections close.
		if ctx.Err() != nil {
			time.Sleep(cfg.DrainTimeout)
		}
		stopped := make(chan struct{})
		// Ends when every in-flight RPC has finished (or Stop below cuts them off).
		go func() { grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(cfg.ShutdownTimeout):
			logger.Warn("graceful stop timed out; closing connections")
			grpcServer.Stop()
			<-stopped
		}
		stopBackground()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return httpServer.Shutdown(sctx)
	})
	err = g.Wait()
	logger.Info("floodgate stopped")
	return err
}

// observers fans one decision out to every observer (Prometheus metrics, the telemetry sampler).
type observers []extauthz.Observer

func (os observers) Observe(o *extauthz.Observation) {
	for _, ob := range os {
		ob.Observe(o)
	}
}

type limitsFunc func() *config.Snapshot

func (f limitsFunc) Limits() *config.Snapshot { return f() }

func storeName(cfg Config) string {
	if cfg.RedisURL == "" {
		return "memory"
	}
	return "redis"
}

// openStore builds the decision store: Redis when a URL is given, else the in-memory store. With
// --over-limit-cache the store is wrapped in the local over-limit cache.
func openStore(cfg Config, m *metrics.Metrics, logger *slog.Logger) (limiter.Store, redis.UniversalClient, func(), error) {
	var store limiter.Store
	var rdb redis.UniversalClient
	closeFn := func() {}
	if cfg.RedisURL == "" {
		mem := limiter.NewMemory(limiter.MemoryOptions{MaxEntries: cfg.MemoryMaxEntries})
		m.TrackEntries("memory", mem.Len)
		store = mem
	} else {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--redis-url: %w", err)
		}
		// Short socket timeouts so a dead node is noticed quickly; the per-decision deadline is the context's.
		opts.ContextTimeoutEnabled = true
		if opts.DialTimeout == 0 || opts.DialTimeout > time.Second {
			opts.DialTimeout = time.Second
		}
		opts.ReadTimeout = max(cfg.StoreTimeout, 500*time.Millisecond)
		opts.WriteTimeout = opts.ReadTimeout
		opts.MaxRetries = -1 // a retry would blow the decision deadline; the failure mode answers instead
		client := redis.NewClient(opts)
		rdb = client
		store = limiter.NewRedis(client, limiter.RedisOptions{Prefix: cfg.RedisPrefix, Timeout: cfg.StoreTimeout, Logger: logger})
		closeFn = func() {
			if err := store.Close(); err != nil {
				logger.Warn("close store", "err", err)
			}
			if err := client.Close(); err != nil {
				logger.Warn("close redis client", "err", err)
			}
		}
	}
	if cfg.OverLimitCache > 0 {
		c := limiter.NewOverLimitCache(store, limiter.CacheOptions{MaxEntries: cfg.OverLimitCache})
		m.TrackEntries("over_limit_cache", c.Len)
		store = c
	}
	return store, rdb, closeFn, nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
