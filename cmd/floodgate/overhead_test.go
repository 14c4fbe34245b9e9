package main

// Overhead measurements for BENCHMARKS.md: the audit trail's cost on the decision path, the audit pipeline's
// own throughput, and the CPU that connected dashboards add to a loaded server. They take about a minute
// each and need Redis (and PostgreSQL for the audit sinks), so they run only with FLOODGATE_OVERHEAD=1:
//
//	FLOODGATE_OVERHEAD=1 go test -run 'Overhead' -v -count 1 -timeout 10m ./cmd/floodgate
//
// TestAuditOverhead's knobs: FLOODGATE_OVERHEAD_RATE (open loop at that many requests/s; unset: closed
// loop), FLOODGATE_OVERHEAD_DURATION (per phase, default 8s), FLOODGATE_OVERHEAD_ROUNDS (default 2),
// FLOODGATE_OVERHEAD_SINKS (all, redis, postgres, none), FLOODGATE_OVERHEAD_BATCH (the Recorder's batch
// size), FLOODGATE_OVERHEAD_LOAD (process: a separate client process, the default; inprocess),
// FLOODGATE_OVERHEAD_CALLER (the client process's gRPC client: lean, the default, a minimal HTTP/2 client
// in overhead_h2_test.go; grpc, grpc-go's) and FLOODGATE_OVERHEAD_CLIENT_CPUS (taskset list for the client
// process; scripts/overhead-pinned.sh sets it).

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

const (
	ohConcurrency = 50
	ohConnections = 4
	ohKeys        = 10_000
)

func overheadEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv("FLOODGATE_OVERHEAD") != "1" {
		t.Skip("set FLOODGATE_OVERHEAD=1 to run the overhead measurements")
	}
}

func ohDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("FLOODGATE_OVERHEAD_DURATION")); err == nil && d > 0 {
		return d
	}
	return 8 * time.Second
}

func ohRedisURL() string {
	if u := os.Getenv("FLOODGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

func ohDatabaseURL() string {
	if u := os.Getenv("FLOODGATE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

func ohUnique() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ohAddrs are the load's remote_address values (198.18.0.0/15, like floodgate-load).
func ohAddrs() []string {
	a := make([]string, ohKeys)
	for i := range a {
		a[i] = fmt.Sprintf("198.18.%d.%d", i/256, i%256)
	}
	return a
}

// ohResult is one load phase.
type ohResult struct {
	calls, over, errs uint64
	elapsed           time.Duration
	lat               []time.Duration // sorted
}

func (r ohResult) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

func (r ohResult) q(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(p*float64(len(r.lat))+0.999999) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

func ohDial(t *testing.T, addr string) []*grpc.ClientConn {
	t.Helper()
	conns, err := ohDialConns(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

func ohDialConns(addr string) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, ohConnections)
	for i := range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	return conns, nil
}

// ohLoad runs a closed loop of ohConcurrency callers over conns for d; req(g, n) is caller g's n-th request.
// ohRate is the offered load of FLOODGATE_OVERHEAD_RATE (requests/s over all callers); 0 (unset) drives a
// closed loop, each caller sending its next request when the previous one is answered.
func ohRate() float64 {
	r, _ := strconv.ParseFloat(os.Getenv("FLOODGATE_OVERHEAD_RATE"), 64)
	return max(r, 0)
}

// ohLoad drives the targets for d with ohConcurrency callers: a closed loop, or with FLOODGATE_OVERHEAD_RATE
// an open loop where each caller sends on a fixed schedule and latency counts from the scheduled time, so a
// server that falls behind pays for the wait too (no coordinated omission).
func ohLoad(conns []*grpc.ClientConn, d time.Duration, req func(g, n int) *rlsv3.RateLimitRequest) ohResult {
	clients := make([]rlsv3.RateLimitServiceClient, ohConcurrency)
	for g := range clients {
		clients[g] = rlsv3.NewRateLimitServiceClient(conns[g%len(conns)])
	}
	return ohLoadCalls(d, func(g, n int) (bool, error) {
		resp, err := clients[g].ShouldRateLimit(context.Background(), req(g, n))
		return resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT, err
	})
}

// ohLoadCalls is ohLoad over any client: call(g, n) makes caller g's n-th call and reports whether the
// answer was OVER_LIMIT.
func ohLoadCalls(d time.Duration, call func(g, n int) (over bool, err error)) ohResult {
	var calls, over, errs atomic.Uint64
	lats := make([][]time.Duration, ohConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	var every time.Duration // per caller, open loop only
	if r := ohRate(); r > 0 {
		every = time.Duration(float64(ohConcurrency) / r * float64(time.Second))
	}
	for g := range ohConcurrency {
		wg.Go(func() {
			l := make([]time.Duration, 0, 1<<16)
			next := start.Add(time.Duration(g) * every / ohConcurrency) // callers spread over one interval
			for n := 0; ; n++ {
				t0 := time.Now()
				if every > 0 {
					if wait := next.Sub(t0); wait > 0 {
						time.Sleep(wait)
					}
					t0, next = next, next.Add(every)
				}
				if t0.After(end) {
					break
				}
				isOver, err := call(g, n)
				t1 := time.Now()
				if t1.After(end) {
					break
				}
				l = append(l, t1.Sub(t0))
				calls.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
				case isOver:
					over.Add(1)
				}
			}
			lats[g] = l
		})
	}
	wg.Wait()
	r := ohResult{calls: calls.Load(), over: over.Load(), errs: errs.Load(), elapsed: d}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	slices.Sort(r.lat)
	return r
}

// ohServe serves svc with the binary's server options plus extra on a loopback port until the test ends, and
// returns the address.
func ohServe(t *testing.T, svc *extauthz.Service, extra ...grpc.ServerOption) string {
	t.Helper()
	srv := grpc.NewServer(append(extauthz.ServerOptions(), extra...)...)
	svc.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Ends when Stop is called at cleanup.
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func ohRLS(addr string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*commonrl.RateLimitDescriptor{{
		Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "remote_address", Value: addr}}}}}
}

// ohCPU returns utime+stime of pid ("self" allowed) in clock ticks (USER_HZ = 100).
func ohCPU(t *testing.T, pid string) time.Duration {
	t.Helper()
	d, err := ohProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ohProcCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond, nil
}

// ohPostgresCPU sums utime+stime of every postgres process (the audit sink's server-side cost).
func ohPostgresCPU() time.Duration {
	var total time.Duration
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i || !strings.HasPrefix(s[i+1:j], "postgres") {
			continue
		}
		f := strings.Fields(s[j+2:])
		u, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		total += time.Duration(u+st) * 10 * time.Millisecond
	}
	return total
}

func ohRedisCPU(t *testing.T, rdb *redis.Client) time.Duration {
	t.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

func ohMs(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// ohAuditSinks returns a Redis client (stream prefix unique, keys deleted at cleanup) and a pool on a
// PostgreSQL schema of its own (dropped at cleanup).
func ohAuditSinks(t *testing.T) (*redis.Client, string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	opt, err := redis.ParseURL(ohRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Skipf("SKIPPED, NOT PASSED: Redis unavailable: %v", err)
	}
	prefix := "floodgate-overhead-" + ohUnique() + ":"
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
		rdb.Close()
	})
	base, err := pgxpool.New(ctx, ohDatabaseURL())
	if err == nil {
		err = base.Ping(ctx)
	}
	if err != nil {
		t.Skipf("SKIPPED, NOT PASSED: PostgreSQL unavailable: %v", err)
	}
	schema := "floodgate_overhead_" + ohUnique()
	if _, err := base.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(ohDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		if _, err := base.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		base.Close()
	})
	return rdb, prefix, pool
}

// ohControlSchema creates a schema with the audit tables (testSchema: dropped at cleanup) and returns a
// database URL whose search_path is that schema.
func ohControlSchema(t *testing.T) string {
	t.Helper()
	u, pool := testSchema(t)
	rec, err := audit.New(audit.Options{Replica: "control", DB: pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return u
}

// ohWaitDrained waits until every queued event reached both sinks; it returns how long that took.
func ohWaitDrained(t *testing.T, rec *audit.Recorder) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 120*time.Second {
		s := rec.Stats()
		pgDone := s.PostgresWritten+s.PostgresDropped == s.Queued || (s.PostgresWritten == 0 && s.PostgresPending == 0 && s.PostgresErrors == 0)
		streamDone := s.StreamWritten+s.StreamDropped == s.Queued || s.StreamWritten+s.StreamErrors == 0
		if s.Processed == s.Queued && pgDone && streamDone {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("audit sinks not drained after 120 s: %+v", rec.Stats())
	return time.Since(start)
}

const ohDeniedLimits = `domain: api
descriptors:
  - key: remote_address
    rate_limit:
      unit: hour
      requests_per_unit: 1
`

// TestAuditOverhead compares decision latency under a denied load with the audit Recorder among the
// Service's observers (every call produces an event: ring, live feed, Redis stream, PostgreSQL) and
// without it; everything else (memory store, metrics, sampler, gRPC server options) is identical.
func TestAuditOverhead(t *testing.T) {
	overheadEnabled(t)
	rdb, prefix, pool := ohAuditSinks(t)
	snap, err := config.Parse("limits.yaml", []byte(ohDeniedLimits))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// FLOODGATE_OVERHEAD_SINKS (all, redis, postgres, none) chooses the Recorder's sinks, to split the cost.
	ao := audit.Options{Replica: "overhead", Redis: rdb, StreamPrefix: prefix, DB: pool, BatchSize: ohBatch(),
		ConfigVersion: func() uint64 { return snap.Info().Version }}
	switch sinks := os.Getenv("FLOODGATE_OVERHEAD_SINKS"); sinks {
	case "", "all":
	case "redis":
		ao.DB = nil
	case "postgres":
		ao.Redis = nil
	case "none":
		ao.DB, ao.Redis = nil, nil
	default:
		t.Fatalf("FLOODGATE_OVERHEAD_SINKS=%q: want all, redis, postgres or none", sinks)
	}
	rec, err := audit.New(ao)
	if err != nil {
		t.Fatal(err)
	}
	if ao.DB != nil {
		if err := rec.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	recDone := make(chan struct{})
	// Ends when ctx is cancelled, after the final flush.
	go func() { _ = rec.Run(ctx); close(recDone) }()
	defer func() { cancel(); <-recDone }()

	timers := map[bool]*ohServerTimer{true: {}, false: {}}
	serve := func(withAudit bool) string {
		reg := metrics.NewRegistry()
		m := metrics.New(reg)
		sampler, err := metrics.NewSampler(ctx, metrics.SamplerOptions{FailureMode: "deny", Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		// Ends when ctx is cancelled.
		go sampler.Run(ctx)
		obs := observers{m, sampler}
		if withAudit {
			obs = append(obs, rec)
		}
		svc, err := extauthz.New(extauthz.Options{Limits: limitsFunc(func() *config.Snapshot { return snap }),
			Store: limiter.NewMemory(limiter.MemoryOptions{}), OnStoreError: "deny", Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		return ohServe(t, svc, grpc.UnaryInterceptor(timers[withAudit].intercept))
	}
	addrs := ohAddrs()
	type target struct {
		name  string
		addr  string
		conns []*grpc.ClientConn
		timer *ohServerTimer
	}
	targets := []target{{name: "audit trail on (Recorder observes; sinks: " + sinkNames(ao) + ")", addr: serve(true), timer: timers[true]},
		{name: "audit trail off (same Service, Recorder not an observer)", addr: serve(false), timer: timers[false]}}
	for i := range targets {
		targets[i].conns = ohDial(t, targets[i].addr)
	}
	// Warm-up: every address once (allowed, exhausting its 1/hour), then 2 s of denied load.
	for _, tg := range targets {
		r := ohLoad(tg.conns, 2*time.Second, func(g, n int) *rlsv3.RateLimitRequest {
			if i := n*ohConcurrency + g; i < ohKeys {
				return ohRLS(addrs[i])
			}
			return ohRLS(addrs[(n*ohConcurrency+g)%ohKeys])
		})
		if r.calls < 2*ohKeys {
			t.Fatalf("warm-up too short: %d calls", r.calls)
		}
	}
	ohWaitDrained(t, rec)

	// FLOODGATE_OVERHEAD_LOAD: "process" (default) drives each phase from a separate client process,
	// "inprocess" from this one (the load generator then shares Floodgate's CPU).
	separate := true
	switch l := os.Getenv("FLOODGATE_OVERHEAD_LOAD"); l {
	case "", "process":
	case "inprocess":
		separate = false
	default:
		t.Fatalf("FLOODGATE_OVERHEAD_LOAD=%q: want process or inprocess", l)
	}
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("FLOODGATE_OVERHEAD_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	// FLOODGATE_OVERHEAD_PG_CONTROL=F (a fraction, 1 = as many rows as the sink writes): during the "off"
	// phases the client process gives PostgreSQL F times the audit sink's rows, at the sink's cadence (a
	// COPY every BatchSize/rate seconds), so that the comparison holds PostgreSQL's work constant and
	// measures what the audit trail costs inside Floodgate. Choose F so that the PostgreSQL CPU column
	// matches between the phases (the control's rows are not byte for byte the sink's).
	var control string
	var controlBatch int
	if f, err := strconv.ParseFloat(os.Getenv("FLOODGATE_OVERHEAD_PG_CONTROL"), 64); err == nil && f > 0 {
		if !separate || ohRate() <= 0 || ao.DB == nil {
			t.Fatal("FLOODGATE_OVERHEAD_PG_CONTROL needs the client process, FLOODGATE_OVERHEAD_RATE and the PostgreSQL sink")
		}
		control = ohControlSchema(t)
		controlBatch = max(1, int(f*float64(cmp.Or(ao.BatchSize, audit.DefaultBatchSize))+0.5))
		t.Logf("control: during the audit-off phases the client process writes %.2f× the sink's rows to PostgreSQL", f)
	}
	d := ohDuration()
	t.Logf("load: %s, %d callers over %d connections, %s; %d rounds of %s per target", map[bool]string{true: "separate client process", false: "in this process"}[separate],
		ohConcurrency, ohConnections, map[bool]string{true: fmt.Sprintf("open loop at %.0f/s", ohRate()), false: "closed loop"}[ohRate() > 0], rounds, d)
	t.Logf("| phase | target | decisions/s | over limit | errors | p50 | p90 | p99 | p99.9 | in-handler p50 / p90 / p99 | Floodgate (test process) CPU µs/decision | client process CPU µs/decision | PostgreSQL CPU µs/decision | Redis CPU µs/decision | audit events (control rows in off phases) | dropped | sinks drained after |")
	t.Logf("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	type agg struct {
		calls    uint64
		elapsed  time.Duration
		p99, p50 []time.Duration
		lat      []time.Duration // every phase's, for the pooled quantiles
		cpu      time.Duration
		cpuCalls uint64
	}
	sum := map[int]*agg{0: {}, 1: {}}
	for round := range rounds {
		for ti, tg := range targets {
			before, sv0 := rec.Stats(), tg.timer.snapshot()
			cpu0, pg0, rd0 := ohCPU(t, "self"), ohPostgresCPU(), ohRedisCPU(t, rdb)
			var r ohResult
			var warm, ctlRows uint64
			var client, ctlPG time.Duration
			if separate {
				var env []string
				if ti == 1 && control != "" {
					env = []string{"FLOODGATE_OVERHEAD_CLIENT_PGCONTROL=" + control,
						"FLOODGATE_OVERHEAD_CLIENT_PGBATCH=" + strconv.Itoa(controlBatch),
						"FLOODGATE_OVERHEAD_CLIENT_PGEVERY=" + time.Duration(float64(cmp.Or(ao.BatchSize, audit.DefaultBatchSize))/ohRate()*float64(time.Second)).String()}
				}
				var rep ohClientReport
				r, rep, client = ohLoadProcess(t, tg.addr, d, round, ti, env...)
				warm, ctlRows, ctlPG = rep.WarmupCalls, rep.ControlRows, rep.ControlPostgresCPU
			} else {
				rng := mrand.New(mrand.NewPCG(uint64(round), uint64(ti)))
				seq := make([]int, 1<<16)
				for i := range seq {
					seq[i] = rng.IntN(ohKeys)
				}
				r = ohLoad(tg.conns, d, func(g, n int) *rlsv3.RateLimitRequest {
					return ohRLS(addrs[seq[(g*7919+n)&(len(seq)-1)]])
				})
			}
			drain := ohWaitDrained(t, rec) // the sinks finish this phase's events before the next phase
			cpu1, pg1, rd1 := ohCPU(t, "self"), ohPostgresCPU(), ohRedisCPU(t, rdb)
			after, sv := rec.Stats(), ohQuantiles(sv0, tg.timer.snapshot(), 0.5, 0.9, 0.99)
			served := r.calls + warm // the server's and the stores' CPU covers the client's warm-up too
			per := func(c time.Duration, n uint64) string {
				return fmt.Sprintf("%.1f", float64(c.Microseconds())/float64(max(n, 1)))
			}
			clientCPU := "—"
			if separate {
				clientCPU = per(client, served)
			}
			t.Logf("| %d | %s | %.0f | %.2f %% | %d | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s | %d | %d | %s |",
				round+1, tg.name, r.rate(), 100*float64(r.over)/float64(max(r.calls, 1)), r.errs,
				ohMs(r.q(0.5)), ohMs(r.q(0.9)), ohMs(r.q(0.99)), ohMs(r.q(0.999)), ohMs(sv[0]), ohMs(sv[1]), ohMs(sv[2]),
				per(cpu1-cpu0, served), clientCPU, per(pg1-pg0+ctlPG, served), per(rd1-rd0, served),
				after.Denials-before.Denials+ctlRows, after.Dropped-before.Dropped, drain.Round(10*time.Millisecond))
			a := sum[ti]
			a.calls += r.calls
			a.elapsed += r.elapsed
			a.p99 = append(a.p99, r.q(0.99))
			a.p50 = append(a.p50, r.q(0.5))
			a.lat = append(a.lat, r.lat...)
			a.cpu += cpu1 - cpu0
			a.cpuCalls += served
		}
	}
	on, off := sum[0], sum[1]
	mean := func(ds []time.Duration) time.Duration {
		var s time.Duration
		for _, d := range ds {
			s += d
		}
		return s / time.Duration(len(ds))
	}
	pooled := func(a *agg, p float64) time.Duration {
		slices.Sort(a.lat)
		return ohResult{lat: a.lat}.q(p)
	}
	cpuPer := func(a *agg) float64 { return float64(a.cpu.Microseconds()) / float64(max(a.cpuCalls, 1)) }
	t.Logf("summary: audit on %.0f decisions/s p50 %s p99 %s (pooled %s, p99.9 %s), Floodgate CPU %.1f µs/decision; off %.0f decisions/s p50 %s p99 %s (pooled %s, p99.9 %s), %.1f µs/decision",
		float64(on.calls)/on.elapsed.Seconds(), ohMs(mean(on.p50)), ohMs(mean(on.p99)), ohMs(pooled(on, 0.99)), ohMs(pooled(on, 0.999)), cpuPer(on),
		float64(off.calls)/off.elapsed.Seconds(), ohMs(mean(off.p50)), ohMs(mean(off.p99)), ohMs(pooled(off, 0.99)), ohMs(pooled(off, 0.999)), cpuPer(off))
	t.Logf("summary: p99 ratio on/off %.3f (mean of the phases' p99), %.3f (pooled); throughput ratio %.3f",
		float64(mean(on.p99))/float64(mean(off.p99)), float64(pooled(on, 0.99))/float64(pooled(off, 0.99)),
		(float64(on.calls)/on.elapsed.Seconds())/(float64(off.calls)/off.elapsed.Seconds()))
	t.Logf("recorder stats: %+v", rec.Stats())
}

// TestAuditPipelineThroughput feeds the Recorder denials as fast as its pipeline takes them (the queue is
// kept from overflowing) and measures events per second through the ring, the Redis stream and PostgreSQL.
func TestAuditPipelineThroughput(t *testing.T) {
	overheadEnabled(t)
	rdb, prefix, pool := ohAuditSinks(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec, err := audit.New(audit.Options{Replica: "overhead", Redis: rdb, StreamPrefix: prefix, DB: pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	recDone := make(chan struct{})
	// Ends when ctx is cancelled, after the final flush.
	go func() { _ = rec.Run(ctx); close(recDone) }()
	defer func() { cancel(); <-recDone }()

	rule := &config.Rule{Name: "api.remote_address", Path: "api.remote_address",
		Limits: []config.Limit{{Limit: limiter.Limit{Requests: 1, Window: time.Hour}, Name: "api.remote_address"}}}
	addrs := ohAddrs()
	const producers = 2
	const maxBacklog = 30_000 // below the default queue (65,536) and the sinks' buffers
	d := ohDuration()
	var produced atomic.Uint64
	cpu0, pg0, rd0 := ohCPU(t, "self"), ohPostgresCPU(), ohRedisCPU(t, rdb)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for n := p; time.Now().Before(end); n += producers {
				s := rec.Stats()
				if s.Queued-min(s.PostgresWritten, s.StreamWritten) > maxBacklog {
					time.Sleep(time.Millisecond)
					continue
				}
				rec.Observe(&extauthz.Observation{Service: "ratelimit", Domain: "api", Code: extauthz.OutcomeOverLimit,
					Rules: []extauthz.RuleResult{{Rule: rule, Limit: &rule.Limits[0],
						Result: limiter.Result{RetryAfter: time.Minute, ResetAfter: time.Hour}}},
					RLSDescriptors: ohRLS(addrs[n%ohKeys]).Descriptors, ConfigVersion: 1})
				produced.Add(1)
			}
		})
	}
	wg.Wait()
	drain := ohWaitDrained(t, rec)
	total := time.Since(start)
	cpu1, pg1, rd1 := ohCPU(t, "self"), ohPostgresCPU(), ohRedisCPU(t, rdb)
	s := rec.Stats()
	n := float64(s.Queued)
	t.Logf("| events | dropped | fed for | drained after | events/s end to end (all in PostgreSQL and the stream) | Recorder process CPU µs/event | PostgreSQL CPU µs/event | Redis CPU µs/event |")
	t.Logf("|--:|--:|--:|--:|--:|--:|--:|--:|")
	t.Logf("| %d | %d | %s | %s | %.0f | %.1f | %.1f | %.1f |", s.Queued, s.Dropped, d, drain.Round(10*time.Millisecond),
		n/total.Seconds(), float64((cpu1-cpu0).Microseconds())/n, float64((pg1-pg0).Microseconds())/n,
		float64((rd1-rd0).Microseconds())/n)
	t.Logf("recorder stats: %+v", s)
}

const ohMixedLimits = `domain: api
descriptors:
  - key: remote_address
    rate_limit:
      unit: minute
      requests_per_unit: 1000000
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 1
`

// TestDashboardOverhead starts the built binary on Redis, loads it with mixed traffic (about 10 % denied,
// so the audit feed carries events) and measures its CPU with 0 and with 100 dashboard WebSocket clients.
func TestDashboardOverhead(t *testing.T) {
	overheadEnabled(t)
	bin := os.Getenv("FLOODGATE_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "floodgate")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	opt, err := redis.ParseURL(ohRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Skipf("SKIPPED, NOT PASSED: Redis unavailable: %v", err)
	}
	prefix := "floodgate-overhead-" + ohUnique() + ":"
	defer func() {
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		for len(keys) > 0 {
			k := keys[:min(len(keys), 1000)]
			keys = keys[len(k):]
			rdb.Del(context.Background(), k...)
		}
		rdb.Close()
	}()
	grpcAddr, httpAddr := ohFreeAddr(t), ohFreeAddr(t)
	cmd := exec.Command(bin, "--config", writeLimits(t, ohMixedLimits), "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--redis-url", ohRedisURL(), "--redis-prefix", prefix, "--on-store-error", "deny", "--drain-timeout", "0s")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		// Ends when the process exits.
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", httpAddr); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("floodgate did not start\n%s", logs)
		}
	}
	conns := ohDial(t, grpcAddr)
	addrs := ohAddrs()
	req := func(g, n int) *rlsv3.RateLimitRequest {
		i := (g*7919 + n*104729) % ohKeys
		if n%10 == 9 { // one call in ten: a user key already over its 1/hour after the first call
			return &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*commonrl.RateLimitDescriptor{{
				Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "u" + strconv.Itoa(i%1000)}}}}}
		}
		return ohRLS(addrs[i])
	}
	ohLoad(conns, 3*time.Second, req) // warm-up

	// dashboards opens n WebSocket clients that read every message; it returns a stop function and the
	// message and byte counters.
	dashboards := func(n int) (stop func() (msgs, bytes, closed uint64)) {
		ctx, cancel := context.WithCancel(context.Background())
		var msgs, nbytes, closed atomic.Uint64
		var wg sync.WaitGroup
		for range n {
			c, _, err := websocket.Dial(ctx, "ws://"+httpAddr+"/ws", nil)
			if err != nil {
				t.Fatalf("dial dashboard: %v", err)
			}
			c.SetReadLimit(1 << 26)
			wg.Go(func() {
				defer c.CloseNow()
				for {
					_, b, err := c.Read(ctx)
					if err != nil {
						if ctx.Err() == nil {
							closed.Add(1)
						}
						return
					}
					msgs.Add(1)
					nbytes.Add(uint64(len(b)))
				}
			})
		}
		return func() (uint64, uint64, uint64) {
			cancel()
			wg.Wait()
			return msgs.Load(), nbytes.Load(), closed.Load()
		}
	}

	d := ohDuration()
	t.Logf("| round | dashboards | decisions/s | over limit | errors | p99 | Floodgate CPU (cores) | Floodgate CPU µs/decision | load-gen + dashboard clients CPU (cores) | messages received | MB received | dashboards disconnected |")
	t.Logf("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	type agg struct {
		cpu, self, elapsed time.Duration
		calls              uint64
	}
	sum := map[int]*agg{0: {}, 100: {}}
	for round := range 2 {
		for _, n := range []int{0, 100} {
			stop := dashboards(n)
			time.Sleep(2 * time.Second) // the hello messages (15 min of history) are not part of the window
			c0, s0 := ohCPU(t, pid), ohCPU(t, "self")
			r := ohLoad(conns, d, req)
			c1, s1 := ohCPU(t, pid), ohCPU(t, "self")
			msgs, nb, closed := stop()
			a := sum[n]
			a.cpu += c1 - c0
			a.self += s1 - s0
			a.elapsed += r.elapsed
			a.calls += r.calls
			t.Logf("| %d | %d | %.0f | %.2f %% | %d | %s | %.2f | %.1f | %.2f | %d | %.1f | %d |", round+1, n, r.rate(),
				100*float64(r.over)/float64(max(r.calls, 1)), r.errs, ohMs(r.q(0.99)),
				(c1-c0).Seconds()/r.elapsed.Seconds(), float64((c1-c0).Microseconds())/float64(max(r.calls, 1)),
				(s1-s0).Seconds()/r.elapsed.Seconds(), msgs, float64(nb)/1e6, closed)
		}
	}
	z, h := sum[0], sum[100]
	perZ := float64(z.cpu.Microseconds()) / float64(z.calls)
	perH := float64(h.cpu.Microseconds()) / float64(h.calls)
	t.Logf("summary: Floodgate CPU µs/decision 0 dashboards %.1f, 100 dashboards %.1f (%+.1f %%); cores used %.2f vs %.2f; decisions/s %.0f vs %.0f",
		perZ, perH, 100*(perH/perZ-1), z.cpu.Seconds()/z.elapsed.Seconds(), h.cpu.Seconds()/h.elapsed.Seconds(),
		float64(z.calls)/z.elapsed.Seconds(), float64(h.calls)/h.elapsed.Seconds())
}

func ohFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// sinkNames describes the Recorder's destinations (the ring and live feed are always there).
func sinkNames(o audit.Options) string {
	n := "ring, live feed"
	if o.Redis != nil {
		n += ", Redis stream"
	}
	if o.DB != nil {
		n += ", PostgreSQL"
	}
	return n
}
