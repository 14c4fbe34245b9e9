package extauthz

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/limiter"
)

// fakeClock is the injected clock of memory-store tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// countingStore counts Decide calls.
type countingStore struct {
	limiter.Store
	decides atomic.Int64
}

func (c *countingStore) Decide(ctx context.Context, hits []limiter.Hit, results []limiter.Result) (bool, error) {
	c.decides.Add(1)
	return c.Store.Decide(ctx, hits, results)
}

// staticLimits serves one snapshot.
type staticLimits struct{ snap *config.Snapshot }

func (l staticLimits) Limits() *config.Snapshot { return l.snap }

func mustParse(t testing.TB, yaml string) *config.Snapshot {
	t.Helper()
	snap, err := config.Parse("test.yaml", []byte(strings.TrimSpace(yaml)+"\n"))
	if err != nil {
		t.Fatalf("parse limits: %v", err)
	}
	return snap
}

// backend is one limiter store under test.
type backend struct {
	name   string
	clock  *fakeClock    // memory only
	client *redis.Client // redis only
	prefix string        // redis only
	store  limiter.Store
}

// epoch is where fake clocks start: a round hour, so every window starts there.
var epoch = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)

func memoryBackend(t testing.TB) *backend {
	clock := &fakeClock{t: epoch.Add(500 * time.Millisecond)}
	return &backend{name: "memory", clock: clock, store: limiter.NewMemory(limiter.MemoryOptions{Now: clock.Now})}
}

// redisClient connects to url with context deadlines honoured (without ContextTimeoutEnabled go-redis
// waits for its 3 s socket timeouts instead of the decision's deadline).
func redisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func redisBackend(t testing.TB) *backend {
	client := redisClient(t, redistest.URL(t))
	prefix := redistest.Prefix(t)
	return &backend{name: "redis", client: client, prefix: prefix,
		store: limiter.NewRedis(client, limiter.RedisOptions{Prefix: prefix, Logger: discard()})}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// eachBackend runs f on the memory store and on real Redis.
func eachBackend(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Run("memory", func(t *testing.T) { f(t, memoryBackend(t)) })
	t.Run("redis", func(t *testing.T) { f(t, redisBackend(t)) })
}

// startWindow makes the next calls fall at offset into one window of length window with at least room
// left: the fake clock jumps to the next boundary + offset; with Redis (whose TIME is this machine's
// clock) the test sleeps to the next boundary + offset when less than room is left.
func (b *backend) startWindow(t testing.TB, window, offset, room time.Duration) {
	t.Helper()
	if b.clock != nil {
		now := b.clock.Now()
		b.clock.Set(now.Truncate(window).Add(window + offset))
		return
	}
	now := time.Now()
	into := now.Sub(now.Truncate(window))
	if into >= offset && window-into >= room {
		return
	}
	next := now.Truncate(window).Add(window + offset)
	if into < offset {
		next = now.Truncate(window).Add(offset)
	}
	if d := time.Until(next); d > 5*time.Second {
		t.Fatalf("startWindow would sleep %s", d)
	}
	time.Sleep(time.Until(next))
}

// keys lists the Redis keys of this test.
func (b *backend) keys(t testing.TB) []string {
	t.Helper()
	var out []string
	iter := b.client.Scan(context.Background(), 0, b.prefix+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

// recorder is an Observer that keeps copies.
type recorder struct {
	mu  sync.Mutex
	obs []Observation
}

func (r *recorder) Observe(o *Observation) {
	c := *o
	c.Rules = append([]RuleResult(nil), o.Rules...)
	r.mu.Lock()
	r.obs = append(r.obs, c)
	r.mu.Unlock()
}

func (r *recorder) all() []Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Observation(nil), r.obs...)
}

func (r *recorder) last(t testing.TB) Observation {
	t.Helper()
	all := r.all()
	if len(all) == 0 {
		t.Fatal("no observation")
	}
	return all[len(all)-1]
}

// harness is a Service behind a real gRPC listener with go-control-plane clients.
type harness struct {
	svc   *Service
	store *countingStore
	obs   *recorder
	rls   rlsv3.RateLimitServiceClient
	authz authv3.AuthorizationClient
	conn  *grpc.ClientConn
}

// serve starts a Service on b with the limits in yaml; mutate may adjust the options.
func serve(t testing.TB, b *backend, yaml string, mutate func(*Options)) *harness {
	t.Helper()
	h := &harness{store: &countingStore{Store: b.store}, obs: &recorder{}}
	o := Options{
		Limits:   staticLimits{mustParse(t, yaml)},
		Store:    h.store,
		Observer: h.obs,
		Logger:   discard(),
		// Generous for -race on a shared machine; outage tests set their own.
		StoreTimeout: 2 * time.Second,
	}
	if mutate != nil {
		mutate(&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.svc = svc
	conn := listen(t, svc)
	h.conn = conn
	h.rls = rlsv3.NewRateLimitServiceClient(conn)
	h.authz = authv3.NewAuthorizationClient(conn)
	return h
}

// listen serves svc on 127.0.0.1:0 and returns a client connection; both end with the test.
func listen(t testing.TB, svc *Service) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer(ServerOptions()...) // as the binary serves: codec, keepalive, stream workers
	svc.Register(srv)
	done := make(chan struct{})
	// Ends when srv.Stop runs in the cleanup below.
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return conn
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// desc builds a descriptor from key, value pairs.
func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// withHits sets the per-descriptor hits_addend wrapper.
func withHits(d *ratelimitv3.RateLimitDescriptor, n uint64) *ratelimitv3.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(n)
	return d
}

func rlsReq(domain string, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds}
}

// callRLS calls ShouldRateLimit and fails the test on a gRPC error.
func (h *harness) callRLS(t testing.TB, req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := h.rls.ShouldRateLimit(ctxT(t), req)
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

// checkReq builds a CheckRequest.
type checkReq struct {
	source  string
	xff     string
	method  string
	host    string
	path    string
	headers map[string]string
	raw     []*corev3.HeaderValue
	ext     map[string]string
	meta    *corev3.Metadata
}

func (c checkReq) proto() *authv3.CheckRequest {
	headers := map[string]string{}
	for k, v := range c.headers {
		headers[k] = v
	}
	if c.xff != "" {
		headers["x-forwarded-for"] = c.xff
	}
	method, path, host := c.method, c.path, c.host
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = "example.com"
	}
	hr := &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: host, Headers: headers}
	if c.raw != nil {
		hr.Headers = nil
		hr.HeaderMap = &corev3.HeaderMap{Headers: c.raw}
	}
	attrs := &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: hr},
		ContextExtensions: c.ext,
		MetadataContext:   c.meta,
	}
	if c.source != "" {
		attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: c.source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// callCheck calls Check and fails the test on a gRPC error.
func (h *harness) callCheck(t testing.TB, c checkReq) *authv3.CheckResponse {
	t.Helper()
	resp, err := h.authz.Check(ctxT(t), c.proto())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// allowed reports whether a CheckResponse allows the request (false for a 429 or an on_missing 400),
// failing on a malformed one.
func allowed(t testing.TB, r *authv3.CheckResponse) bool {
	t.Helper()
	switch {
	case r.GetStatus().GetCode() == 0 && r.GetOkResponse() != nil:
		return true
	case r.GetStatus().GetCode() == 8 && r.GetDeniedResponse().GetStatus().GetCode() == 429:
		return false
	case r.GetStatus().GetCode() == 3 && r.GetDeniedResponse().GetStatus().GetCode() == 400: // on_missing: deny
		return false
	}
	t.Fatalf("unexpected CheckResponse %v", r)
	return false
}

// responseHeader returns the value of header name of an ok or denied CheckResponse.
func responseHeader(r *authv3.CheckResponse, name string) string {
	hs := r.GetOkResponse().GetResponseHeadersToAdd()
	if d := r.GetDeniedResponse(); d != nil {
		hs = d.GetHeaders()
	}
	for _, h := range hs {
		if strings.EqualFold(h.GetHeader().GetKey(), name) {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// rlsHeader returns the value of response header name of an RLS response.
func rlsHeader(r *rlsv3.RateLimitResponse, name string) string {
	for _, h := range r.GetResponseHeadersToAdd() {
		if strings.EqualFold(h.GetKey(), name) {
			return h.GetValue()
		}
	}
	return ""
}

// countChecks sends n checks and returns how many were allowed.
func (h *harness) countChecks(t testing.TB, n int, c checkReq) (ok int) {
	t.Helper()
	for range n {
		if allowed(t, h.callCheck(t, c)) {
			ok++
		}
	}
	return ok
}

func mustPrefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}
