package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// loadSpec is the load every target gets: a closed loop of Concurrency callers spread over Connections
// HTTP/2 connections, each calling ShouldRateLimit back to back for Warmup (not measured) then Duration.
type loadSpec struct {
	Concurrency int
	Connections int
	Warmup      time.Duration
	Duration    time.Duration
	CallTimeout time.Duration
	Domain      string
	Key         string
	Keys        int     // distinct descriptor values, picked uniformly at random per call
	Seed        uint64  // seeds the callers' value choice, so every target sees the same sequence per caller
	Rate        float64 // open loop: calls per second over all callers, each on a fixed schedule; 0 = closed loop
}

// cpuTimes are cumulative CPU times read at the edges of the measured window.
type cpuTimes struct {
	Server    time.Duration
	HasServer bool // false when the server is not a process of this machine the harness knows
	Redis     time.Duration
	Self      time.Duration
	HasRedis  bool
	// RedisConns counts connections Redis accepted (a steady client pool opens none during the window;
	// go-redis closes a connection whose call timed out, so churn here means store timeouts).
	RedisConns int64
}

// loadResult is what one target did during the measured window (calls that completed inside it).
type loadResult struct {
	Window     time.Duration
	Latency    *histogram // every completed call, successful or not
	OK         uint64     // overall_code OK
	OverLimit  uint64     // overall_code OVER_LIMIT
	Unknown    uint64     // overall_code UNKNOWN (Envoy treats it as OK)
	Errors     uint64     // gRPC errors
	ErrorCodes map[codes.Code]uint64
	FirstError string
	CPU        cpuTimes // used during the window
	// Interrupted: the run was cancelled (Ctrl-C) during the window, which ended early.
	Interrupted bool
}

// calls is every call that completed during the window.
func (r *loadResult) calls() uint64 { return r.OK + r.OverLimit + r.Unknown + r.Errors }

// decisions is every answered call (not errors) that completed during the window.
func (r *loadResult) decisions() uint64 { return r.OK + r.OverLimit + r.Unknown }

// decisionsPerSec counts answered calls (not errors) per second of the window.
func (r *loadResult) decisionsPerSec() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.decisions()) / r.Window.Seconds()
}

// descriptorValue is the i-th distinct value: an address of 198.18.0.0/15 (RFC 2544, benchmarking) for the
// remote_address key, else "v<i>". Values are only strings in requests; nothing is sent to these addresses.
func descriptorValue(key string, i int) string {
	if key != "remote_address" {
		return "v" + strconv.Itoa(i)
	}
	base := netip.MustParseAddr("198.18.0.0").As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += uint32(i)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
}

// buildRequests makes one request per distinct value; callers share them read-only (proto messages may be
// marshalled concurrently).
func buildRequests(spec loadSpec) []*rlsv3.RateLimitRequest {
	reqs := make([]*rlsv3.RateLimitRequest, spec.Keys)
	for i := range reqs {
		reqs[i] = &rlsv3.RateLimitRequest{
			Domain: spec.Domain,
			Descriptors: []*rlcommon.RateLimitDescriptor{{
				Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: spec.Key, Value: descriptorValue(spec.Key, i)}},
			}},
		}
	}
	return reqs
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

// workerStats is one caller's tally; merged after every caller has returned.
type workerStats struct {
	hist       histogram
	ok, over   uint64
	unknown    uint64
	errs       uint64
	errCodes   map[codes.Code]uint64
	firstError string
}

// drive runs spec against the RLS server at addr. readCPU is called right before and right after the
// measured window; the result's CPU is the difference.
func drive(ctx context.Context, addr string, spec loadSpec, readCPU func(context.Context) (cpuTimes, error)) (*loadResult, error) {
	if spec.Concurrency < 1 || spec.Connections < 1 || spec.Keys < 1 || spec.Duration <= 0 {
		return nil, fmt.Errorf("drive %s: concurrency, connections, keys and duration must be positive", addr)
	}
	conns := make([]*grpc.ClientConn, spec.Connections)
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		cc.Connect()
		conns[i] = cc
	}
	defer closeAll(conns)

	reqs := buildRequests(spec)
	var phase atomic.Int32
	stats := make([]*workerStats, spec.Concurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range spec.Concurrency {
		st := &workerStats{errCodes: map[codes.Code]uint64{}}
		stats[i] = st
		client := rlsv3.NewRateLimitServiceClient(conns[i%len(conns)])
		rng := rand.New(rand.NewPCG(spec.Seed, uint64(i)))
		wg.Add(1)
		// Ends when the phase is done (after the measured window) or ctx is cancelled.
		go func() {
			defer wg.Done()
			var every, offset time.Duration // open loop: caller i sends every `every`, the callers staggered
			if spec.Rate > 0 {
				every = time.Duration(float64(spec.Concurrency) / spec.Rate * float64(time.Second))
				offset = every * time.Duration(i) / time.Duration(spec.Concurrency)
			}
			callLoop(ctx, client, reqs, rng, spec.CallTimeout, every, offset, &phase, st)
		}()
	}

	res, err := measureWindow(ctx, spec, &phase, readCPU)
	phase.Store(phaseDone)
	cancel() // callers waiting for their next open-loop slot, or for an answer, stop now
	wg.Wait()
	if err != nil {
		return nil, err
	}
	res.Latency = &histogram{}
	res.ErrorCodes = map[codes.Code]uint64{}
	for _, st := range stats {
		res.Latency.merge(&st.hist)
		res.OK += st.ok
		res.OverLimit += st.over
		res.Unknown += st.unknown
		res.Errors += st.errs
		for c, n := range st.errCodes {
			res.ErrorCodes[c] += n
		}
		if res.FirstError == "" {
			res.FirstError = st.firstError
		}
	}
	return res, nil
}

// measureWindow waits out the warm-up, then times the measured window and reads CPU at both edges.
func measureWindow(ctx context.Context, spec loadSpec, phase *atomic.Int32, readCPU func(context.Context) (cpuTimes, error)) (*loadResult, error) {
	if err := sleepCtx(ctx, spec.Warmup); err != nil {
		return nil, err
	}
	before, err := readCPU(ctx)
	if err != nil {
		return nil, err
	}
	phase.Store(phaseMeasure)
	t0 := time.Now()
	// Interrupted (Ctrl-C), the window ends early and what it measured is still reported.
	interrupted := sleepCtx(ctx, spec.Duration) != nil
	phase.Store(phaseDone)
	window := time.Since(t0)
	after, err := readCPU(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	return &loadResult{Window: window, Interrupted: interrupted, CPU: cpuTimes{
		Server:     after.Server - before.Server,
		HasServer:  before.HasServer && after.HasServer,
		Redis:      after.Redis - before.Redis,
		Self:       after.Self - before.Self,
		HasRedis:   before.HasRedis && after.HasRedis,
		RedisConns: after.RedisConns - before.RedisConns,
	}}, nil
}

// callLoop calls until the phase is done: back to back, or with every > 0 one call every `every` starting
// offset from now, each call's latency counted from its scheduled time (a server that falls behind pays for
// the wait too: no coordinated omission). Only calls that complete during the measured phase are recorded.
func callLoop(ctx context.Context, client rlsv3.RateLimitServiceClient, reqs []*rlsv3.RateLimitRequest, rng *rand.Rand,
	timeout, every, offset time.Duration, phase *atomic.Int32, st *workerStats) {
	next := time.Now().Add(offset)
	for phase.Load() != phaseDone && ctx.Err() == nil {
		req := reqs[rng.IntN(len(reqs))]
		start := time.Now()
		if every > 0 {
			if err := sleepCtx(ctx, next.Sub(start)); err != nil {
				return
			}
			start, next = next, next.Add(every)
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := client.ShouldRateLimit(cctx, req)
		cancel()
		d := time.Since(start)
		if phase.Load() != phaseMeasure || ctx.Err() != nil { // cut short by the end of the run: not a result
			continue
		}
		st.hist.record(d)
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return
			}
			st.errs++
			st.errCodes[status.Code(err)]++
			if st.firstError == "" {
				st.firstError = err.Error()
			}
			continue
		}
		switch resp.GetOverallCode() {
		case rlsv3.RateLimitResponse_OK:
			st.ok++
		case rlsv3.RateLimitResponse_OVER_LIMIT:
			st.over++
		default:
			st.unknown++
		}
	}
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// sleepCtx sleeps for d or until ctx ends (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
