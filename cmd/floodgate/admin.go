package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/auth"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/dashboard"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/limiter"
)

// newAuthenticator builds the token verifier the flags describe, or auth.Anonymous (everyone is admin)
// when none is configured; parseConfig has already refused that beyond loopback without --insecure-no-auth.
func newAuthenticator(ctx context.Context, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (auth.Authenticator, dashboard.AuthInfo, error) {
	if !cfg.authConfigured() {
		if cfg.InsecureNoAuth && !loopback(cfg.HTTPAddr) {
			logger.Warn("--insecure-no-auth: the admin API and the dashboard answer anyone who reaches "+cfg.HTTPAddr+", and everyone is admin",
				"http_addr", cfg.HTTPAddr)
		} else {
			logger.Info("no authentication configured: the admin API and dashboard are served on loopback only, everyone is admin",
				"http_addr", cfg.HTTPAddr)
		}
		return auth.Anonymous, dashboard.AuthInfo{Mode: "none"}, nil
	}
	v, err := auth.New(ctx, auth.Options{
		HS256Secret: []byte(cfg.AuthHS256Secret),
		JWKSURL:     cfg.AuthJWKSURL,
		OIDCIssuer:  cfg.AuthOIDCIssuer,
		Issuer:      cfg.AuthIssuer,
		Audience:    cfg.AuthAudience,
		Algorithms:  cfg.AuthAlgorithms,
		RoleClaim:   cfg.AuthRoleClaim,
		AdminRoles:  cfg.AuthAdminRoles,
		ViewerRoles: cfg.AuthViewerRoles,
		Leeway:      cfg.AuthLeeway,
		Logger:      logger,
		Registerer:  reg,
	})
	if err != nil {
		return nil, dashboard.AuthInfo{}, fmt.Errorf("auth: %w", err)
	}
	info := dashboard.AuthInfo{Mode: "token"}
	if cfg.AuthOIDCIssuer != "" {
		o := v.OIDC()
		info = dashboard.AuthInfo{Mode: "oidc", OIDC: &dashboard.OIDCInfo{Issuer: o.Issuer,
			AuthorizationEndpoint: o.AuthorizationEndpoint, TokenEndpoint: o.TokenEndpoint,
			ClientID: cfg.OIDCClientID, Scope: cfg.OIDCScope}}
		if cfg.OIDCClientID == "" {
			info.Mode = "token" // no client id: the dashboard cannot run the code flow; tokens are pasted
		}
	}
	logger.Info("authentication on", "mode", info.Mode, "role_claim", cfg.AuthRoleClaim)
	return v, info, nil
}

// newRuntime opens the versioned limits: the fleet's store in Redis when configured, else this process's.
func newRuntime(ctx context.Context, cfg Config, control redis.UniversalClient, replica string, obs config.RuntimeObserver, logger *slog.Logger) (*config.Runtime, error) {
	o := config.RuntimeOptions{Source: cfg.ConfigSource, Path: cfg.ConfigPath, Replica: replica,
		FilePoll: cfg.ConfigPoll, Observer: obs, Logger: logger}
	if control != nil {
		o.Store = config.NewRedisStore(config.RedisStoreOptions{Client: control, Prefix: cfg.RedisPrefix})
		o.Replicas = config.NewRedisReplicas(control, cfg.RedisPrefix, 15*time.Second)
	}
	rt, err := config.NewRuntime(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	return rt, nil
}

// configObserver feeds applied versions and rejected loads to the metrics, and records file reloads in the
// audit trail (API changes are recorded by the admin API itself, with the caller's identity).
type configObserver struct {
	next     config.RuntimeObserver // the Prometheus metrics
	recorder *audit.Recorder
	logger   *slog.Logger

	mu   sync.Mutex
	last *config.Snapshot        // the version applied before, for the reload's diff
	snap func() *config.Snapshot // the runtime's, once it exists
}

// attach starts recording reloads of rt (after its first load).
func (o *configObserver) attach(rt *config.Runtime) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.snap, o.last = rt.Snapshot, rt.Snapshot()
}

func (o *configObserver) Applied(info config.Info, lag time.Duration) {
	o.next.Applied(info, lag)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.snap == nil { // the first load, inside NewRuntime
		return
	}
	cur := o.snap()
	prev := o.last
	o.last = cur
	if prev == nil || info.Source != "file" || o.recorder == nil {
		return
	}
	changes := config.Diff(prev, cur)
	diff, err := json.Marshal(changes)
	if err != nil {
		o.logger.Warn("encode reload diff", "err", err)
	}
	o.recorder.RecordChange(audit.Change{Actor: "file", Action: "file_reload", VersionBefore: prev.Info().Version,
		VersionAfter: info.Version, Summary: config.SummaryText(changes), Diff: diff})
}

func (o *configObserver) LoadFailed(err error) { o.next.LoadFailed(err) }

func (o *configObserver) LoadRecovered() { o.next.LoadRecovered() }

// usageInspector adapts the decision service's counter inspection to the admin API.
type usageInspector struct{ svc *extauthz.Service }

func usageView(us []extauthz.Usage) []dashboard.Usage {
	out := make([]dashboard.Usage, len(us))
	for i, u := range us {
		out[i] = dashboard.Usage{Rule: u.Rule, Limit: u.Limit, Algorithm: u.Algorithm, Requests: u.Requests,
			WindowSeconds: u.Window.Seconds(), Used: u.Used, Remaining: u.Remaining,
			ResetAfterSeconds: u.ResetAfter.Seconds(), Shadow: u.Shadow}
	}
	return out
}

func (u usageInspector) Usage(ctx context.Context, domain string, entries []config.Entry) ([]dashboard.Usage, error) {
	us, err := u.svc.Usage(ctx, domain, entries)
	return usageView(us), usageErr(err)
}

func (u usageInspector) ResetUsage(ctx context.Context, domain string, entries []config.Entry) ([]dashboard.Usage, error) {
	us, err := u.svc.ResetUsage(ctx, domain, entries)
	return usageView(us), usageErr(err)
}

// usageRefusal marks the decision service's refusals with the admin API's sentinels; its text stays the
// service's own (the API shows it as the 400 detail).
type usageRefusal struct{ err, kind error }

func (e usageRefusal) Error() string   { return e.err.Error() }
func (e usageRefusal) Unwrap() []error { return []error{e.err, e.kind} }

// usageErr maps extauthz's errors onto the dashboard's: no rule → 404, invalid descriptor → 400; others → 503.
func usageErr(err error) error {
	switch {
	case errors.Is(err, extauthz.ErrNoRule):
		return usageRefusal{err, dashboard.ErrNoRule}
	case errors.Is(err, extauthz.ErrInvalidDescriptor):
		return usageRefusal{err, dashboard.ErrInvalidDescriptor}
	}
	return err
}

// auditSearch answers the admin API's audit queries from PostgreSQL, or from the ring without a database.
type auditSearch struct{ r *audit.Recorder }

func (a auditSearch) Query(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	return a.r.Search(ctx, f)
}

// adminLimit is the admin API's token bucket per caller: --admin-rate per second (below 1/s, one request
// per 1/rate seconds), --admin-burst deep.
func adminLimit(cfg Config) limiter.Limit {
	l := limiter.Limit{Algorithm: limiter.TokenBucket, Requests: uint64(math.Round(cfg.AdminRate)), Window: time.Second, Burst: cfg.AdminBurst}
	if cfg.AdminRate < 1 {
		l.Requests, l.Window = 1, time.Duration(float64(time.Second)/cfg.AdminRate).Truncate(time.Millisecond)
	}
	return l
}
