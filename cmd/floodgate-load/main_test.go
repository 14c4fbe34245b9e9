package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
)

// childEnvVar makes the test binary act as floodgate-load itself: the harness re-executes its own binary
// as "noop-server", and under `go test` that binary is the test binary. (Not FLOODGATE_*: those are
// stripped from children's environments.)
const childEnvVar = "FGLOAD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnvVar) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "floodgate-load:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunNoopTarget runs the whole harness as `make loadtest` would, on the noop target only: a real child
// process, health wait, load, CPU readings, report, exit status.
func TestRunNoopTarget(t *testing.T) {
	t.Setenv(childEnvVar, "1")
	out := t.TempDir() + "/report.md"
	var stdout, stderr bytes.Buffer
	args := []string{"--targets", "noop", "--rounds", "2", "--duration", "500ms", "--warmup", "100ms", "--concurrency", "8",
		"--connections", "2", "--keys", "100", "--out", out}
	if err := run(context.Background(), args, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	report := stdout.String()
	row := tableRow(t, report, "do-nothing gRPC server")
	cells := strings.Split(row, "|")
	// | target | decisions/s | vs do-nothing | p50 | ... | errors |
	if got := strings.TrimSpace(cells[2]); got == "0" || got == "failed" {
		t.Errorf("decisions/s: got %q, want a positive number\n%s", got, report)
	}
	if got, want := strings.TrimSpace(cells[3]), "1.00"; got != want {
		t.Errorf("ratio of the do-nothing server to itself: got %q, want %q", got, want)
	}
	if got, want := strings.TrimSpace(cells[len(cells)-2]), "0"; got != want {
		t.Errorf("errors: got %q, want %q\n%s", got, want, report)
	}
	if got := strings.TrimSpace(cells[9]); got == "—" || got == "" {
		t.Errorf("server CPU per decision: got %q, want a number", got)
	}
	if !strings.Contains(report, "Median of 2 rounds") || !strings.Contains(report, "| 2 | do-nothing gRPC server |") {
		t.Errorf("report of 2 rounds lacks the median note or round 2's row:\n%s", report)
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != report {
		t.Errorf("--out file differs from stdout:\n%s\nvs\n%s", file, report)
	}
	if !strings.Contains(stderr.String(), "target done") {
		t.Errorf("stderr has no progress log:\n%s", stderr.String())
	}
}

// TestRunExternal drives a server the harness did not start (--addr), in an open loop (--rate): the call
// rate follows the schedule, its CPU column is filled only with --pid.
func TestRunExternal(t *testing.T) {
	addr := startNoop(t)

	for _, tt := range []struct {
		name    string
		pid     []string
		wantCPU bool
	}{
		{"without --pid", nil, false},
		{"with --pid", []string{"--pid", strconv.Itoa(os.Getpid())}, true}, // the noop server runs in this process
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"--addr", addr, "--rate", "400", "--duration", "1500ms", "--warmup", "200ms",
				"--concurrency", "8", "--connections", "2", "--keys", "100"}, tt.pid...)
			if err := run(context.Background(), args, noEnv, &stdout, &stderr); err != nil {
				t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
			}
			report := stdout.String()
			cells := strings.Split(tableRow(t, report, "running server (--addr)"), "|")
			if dps, err := strconv.ParseFloat(strings.TrimSpace(cells[2]), 64); err != nil || dps < 320 || dps > 480 {
				t.Errorf("decisions/s at --rate 400: got %q, want 400 ± 20 %%\n%s", cells[2], report)
			}
			if got := strings.TrimSpace(cells[9]); (got != "—") != tt.wantCPU {
				t.Errorf("server CPU per decision: got %q, want a number: %v\n%s", got, tt.wantCPU, report)
			}
			if !strings.Contains(report, "open loop at 400 calls/s") || !strings.Contains(report, "already running at "+addr) {
				t.Errorf("report header does not describe the load and the target:\n%s", report)
			}
		})
	}
}

// The edges of --addr runs: a low --rate still stops when the window ends (callers do not wait out their
// next slot), Ctrl-C during the window still reports what was measured, and a --pid that is no process fails
// before any load.
func TestRunExternalEdges(t *testing.T) {
	addr := startNoop(t)
	base := []string{"--addr", addr, "--warmup", "200ms", "--concurrency", "8", "--connections", "2", "--keys", "10"}

	start := time.Now()
	var stdout bytes.Buffer
	if err := run(context.Background(), append(base, "--rate", "2", "--duration", "1s"), noEnv, &stdout, io.Discard); err != nil {
		t.Fatalf("--rate 2: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("--rate 2 (a call every 4 s per caller) with 1.2 s of load took %s, want it to stop when the window ends", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1200*time.Millisecond, cancel)
	stdout.Reset()
	start = time.Now()
	err := run(ctx, append(base, "--rate", "200", "--duration", "30s"), noEnv, &stdout, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "interrupted") || time.Since(start) > 5*time.Second {
		t.Errorf("interrupted run: got %v after %s, want an interruption error at once", err, time.Since(start))
	}
	report := stdout.String()
	if !strings.Contains(report, "running server (--addr): interrupted, its window ended after") {
		t.Errorf("interrupted run: report does not keep the measured part:\n%s", report)
	}
	cells := strings.Split(tableRow(t, report, "running server (--addr)"), "|")
	if dps, err := strconv.ParseFloat(strings.TrimSpace(cells[2]), 64); err != nil || dps < 150 || dps > 250 {
		t.Errorf("interrupted run at --rate 200: got %q decisions/s, want about 200\n%s", cells[2], report)
	}

	start = time.Now()
	err = run(context.Background(), append(base, "--pid", "999999999", "--duration", "5s"), noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--pid 999999999") || time.Since(start) > time.Second {
		t.Errorf("--pid of no process: got %v after %s, want an error naming --pid at once", err, time.Since(start))
	}
}

func TestRunNoopServerExitsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Ends when runNoopServer returns after cancel below.
	go func() {
		done <- run(ctx, []string{"noop-server", "--addr", "127.0.0.1:0"}, noEnv, io.Discard, io.Discard)
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("noop-server after cancel: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("noop-server did not stop within 10 s of cancel")
	}
}

func tableRow(t *testing.T, report, label string) string {
	t.Helper()
	for line := range strings.SplitSeq(report, "\n") {
		if strings.HasPrefix(line, "| "+label+" |") {
			return line
		}
	}
	t.Fatalf("no table row %q in report:\n%s", label, report)
	return ""
}

func noEnv(string) string { return "" }

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil, func(k string) string {
		if k == "FLOODGATE_TEST_REDIS_URL" {
			return "redis://127.0.0.1:6390/2"
		}
		return ""
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(o.Targets, ","), "noop,memory,redis"; got != want {
		t.Errorf("default targets: got %q, want %q", got, want)
	}
	if o.Concurrency != 50 || o.Connections != 4 || o.Duration != 10*time.Second || o.Warmup != 2*time.Second || o.Keys != 10_000 {
		t.Errorf("defaults: got c=%d conns=%d duration=%s warmup=%s keys=%d, want 50 4 10s 2s 10000",
			o.Concurrency, o.Connections, o.Duration, o.Warmup, o.Keys)
	}
	if got, want := o.RedisURL, "redis://127.0.0.1:6390/2"; got != want {
		t.Errorf("redis url from env: got %q, want %q", got, want)
	}

	tests := []struct {
		name string
		give []string
	}{
		{"unknown target", []string{"--targets", "noop,envoy"}},
		{"no target", []string{"--targets", ","}},
		{"zero concurrency", []string{"--concurrency", "0"}},
		{"more connections than callers", []string{"--concurrency", "2", "--connections", "3"}},
		{"zero duration", []string{"--duration", "0s"}},
		{"zero keys", []string{"--keys", "0"}},
		{"zero rounds", []string{"--rounds", "0"}},
		{"bad algorithm", []string{"--algorithm", "leaky"}},
		{"bad unit", []string{"--unit", "week"}},
		{"stray argument", []string{"extra"}},
		{"--addr with --targets", []string{"--addr", "127.0.0.1:1", "--targets", "noop"}},
		{"--pid without --addr", []string{"--pid", "5"}},
		{"negative rate", []string{"--rate", "-1"}},
		{"--addr without a port", []string{"--addr", "127.0.0.1"}},
		{"unknown flag", []string{"--nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseOptions(tt.give, noEnv, io.Discard); err == nil {
				t.Errorf("parseOptions(%q): got no error, want one", tt.give)
			}
		})
	}
	if o, err := parseOptions([]string{"--concurrency", "1"}, noEnv, io.Discard); err != nil || o.Connections != 1 {
		t.Errorf("--concurrency 1 alone: got connections %d, %v; want 1, no error", o.Connections, err)
	}
	if _, err := parseOptions([]string{"-h"}, noEnv, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp", err)
	}
}

// TestLimitsYAMLLoadsInFloodgate checks the generated limits file with Floodgate's own config parser: the
// load's descriptor must match the generated limit (not an allow-list node or nothing).
func TestLimitsYAMLLoadsInFloodgate(t *testing.T) {
	tests := []struct {
		algorithm string
		want      limiter.Algorithm
	}{
		{"fixed_window", limiter.FixedWindow},
		{"sliding_window", limiter.SlidingWindow},
		{"token_bucket", limiter.TokenBucket},
	}
	for _, tt := range tests {
		t.Run(tt.algorithm, func(t *testing.T) {
			y := limitsYAML(limitsSpec{Domain: "api", Key: "remote_address", Algorithm: tt.algorithm, RequestsPerUnit: 1_000_000, Unit: "minute"})
			snap, err := config.Parse("limits.yaml", []byte(y))
			if err != nil {
				t.Fatalf("parse generated limits: %v\n%s", err, y)
			}
			rule, ok := snap.Match("api", []config.Entry{{Key: "remote_address", Value: descriptorValue("remote_address", 9999)}})
			if !ok || rule == nil || len(rule.Limits) != 1 {
				t.Fatalf("match: got rule %+v ok=%v, want one limit\n%s", rule, ok, y)
			}
			l := rule.Limits[0]
			if l.Algorithm != tt.want || l.Requests != 1_000_000 || l.Window != time.Minute {
				t.Errorf("limit: got %s %d per %s, want %s 1000000 per 1m", l.Algorithm, l.Requests, l.Window, tt.want)
			}
		})
	}
}

func TestDescriptorValue(t *testing.T) {
	tests := []struct {
		key  string
		i    int
		want string
	}{
		{"remote_address", 0, "198.18.0.0"},
		{"remote_address", 9999, "198.18.39.15"},
		{"remote_address", 131071, "198.19.255.255"},
		{"user", 7, "v7"},
	}
	for _, tt := range tests {
		if got := descriptorValue(tt.key, tt.i); got != tt.want {
			t.Errorf("descriptorValue(%q, %d): got %q, want %q", tt.key, tt.i, got, tt.want)
		}
	}
}

func TestVerdict(t *testing.T) {
	ok := &loadResult{OK: 10_000, Errors: 10}  // 0.0999 % of 10 010
	bad := &loadResult{OK: 10_000, Errors: 11} // 0.1099 %
	bad.FirstError = "rpc error: code = Unavailable"
	tests := []struct {
		name    string
		rows    []row
		wantErr bool
	}{
		{"under the limit", []row{{target: "noop", res: ok}}, false},
		{"over the limit", []row{{target: "noop", res: ok}, {target: "redis", res: bad}}, true},
		{"no calls", []row{{target: "memory", res: &loadResult{}}}, true},
		{"failed target", []row{{target: "memory", err: errors.New("build floodgate: boom")}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := verdict(tt.rows, 0.001); (err != nil) != tt.wantErr {
				t.Errorf("got error %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestRenderMarkdown(t *testing.T) {
	mk := func(ok, over, errs uint64, cpu time.Duration, redisCPU time.Duration, p time.Duration) *loadResult {
		h := &histogram{}
		for range ok + over + errs {
			h.record(p)
		}
		r := &loadResult{Window: 10 * time.Second, Latency: h, OK: ok, OverLimit: over, Errors: errs,
			ErrorCodes: map[codes.Code]uint64{}, CPU: cpuTimes{Server: cpu, HasServer: true, Redis: redisCPU, HasRedis: redisCPU > 0}}
		if errs > 0 {
			r.ErrorCodes[codes.Unavailable] = errs
			r.FirstError = "rpc error: code = Unavailable desc = store"
		}
		return r
	}
	rows := []row{
		{target: targetNoop, round: 1, res: mk(200_000, 0, 0, 4*time.Second, 0, 800*time.Microsecond)},
		{target: targetMemory, round: 1, res: mk(99_000, 1_000, 0, 5*time.Second, 0, 2500*time.Microsecond)},
		{target: targetRedis, round: 1, res: mk(50_000, 0, 5, 5*time.Second, time.Second, 15*time.Millisecond), rss: 64 << 20},
		{target: targetRedis, round: 1, res: withConns(mk(50_000, 0, 0, 5*time.Second, time.Second, 15*time.Millisecond), 3)},
		{target: "other", round: 1, err: errors.New("redis down\nmore detail")},
	}
	got := renderMarkdown(meta{Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), NumCPU: 2, GoVersion: "go1.26.8",
		RedisURL: "redis://127.0.0.1:6379/0", Opts: options{Concurrency: 50, Connections: 4, Duration: 10 * time.Second,
			Warmup: 2 * time.Second, Domain: "api", Key: "remote_address", Keys: 10_000}}, rows)
	for _, want := range []string{
		"| do-nothing gRPC server | 20000 | 1.00 | 800 µs | 800 µs | 800 µs | 800 µs | 800 µs | 20.0 | — |",
		"| Floodgate, memory store | 10000 | 0.50 | 2.50 ms |",
		"| 50.0 | — | 0.0 | — | 1.00 % | 0 |",
		"| Floodgate, Redis | 5000 | 0.25 | 15.0 ms |",
		"| 100.0 | 20.0 | 0.0 | 64 MiB | 0.00 % | 5 (0.01 %: Unavailable×5) |",
		"| other | failed |",
		"- other failed: redis down\n",
		"- Floodgate, Redis: Redis accepted 3 new connections during the window",
		"- Floodgate, Redis errors: 5 (0.01 %: Unavailable×5); first: rpc error: code = Unavailable desc = store\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ give, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:secret@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"},
		{"rediss://user:p@ss@host:6380", "rediss://***@host:6380"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.give); got != tt.want {
			t.Errorf("redactURL(%q): got %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestRenderMarkdownRounds(t *testing.T) {
	mk := func(decisions uint64, p99 time.Duration) *loadResult {
		h := &histogram{}
		h.record(p99)
		return &loadResult{Window: time.Second, Latency: h, OK: decisions, ErrorCodes: map[codes.Code]uint64{}}
	}
	// Per-round ratios of memory: 0.5, 0.8, 0.6 → median 0.60. Median memory round by decisions/s: round 3
	// (6000; rounds have 5000, 8000, 6000) — its p99 of 3 ms is reported.
	rows := []row{
		{target: targetNoop, round: 1, res: mk(10_000, time.Millisecond)},
		{target: targetMemory, round: 1, res: mk(5_000, 2*time.Millisecond)},
		{target: targetNoop, round: 2, res: mk(10_000, time.Millisecond)},
		{target: targetMemory, round: 2, res: mk(8_000, 5*time.Millisecond)},
		{target: targetNoop, round: 3, res: mk(10_000, time.Millisecond)},
		{target: targetMemory, round: 3, res: mk(6_000, 3*time.Millisecond)},
		{target: targetRedis, round: 3, err: errors.New("no redis")},
	}
	got := renderMarkdown(meta{Opts: options{Domain: "api", Key: "remote_address"}}, rows)
	for _, want := range []string{
		"Median of 3 rounds",
		"| Floodgate, memory store | 6000 | 0.60 | 3.00 ms | 3.00 ms | 3.00 ms |",
		"| do-nothing gRPC server | 10000 | 1.00 |",
		"| Floodgate, Redis | failed |",
		"| 2 | Floodgate, memory store | 8000 | 0.80 | 5.00 ms |",
		"| 3 | Floodgate, Redis | failed |",
		"- Floodgate, Redis (round 3) failed: no redis",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		give []float64
		want float64
	}{
		{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.give); got != tt.want {
			t.Errorf("median(%v): got %g, want %g", tt.give, got, tt.want)
		}
	}
}

func withConns(r *loadResult, n int64) *loadResult {
	r.CPU.RedisConns = n
	return r
}
