package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// harness runs the targets one after another and reports on them.
type harness struct {
	opts   options
	logger *slog.Logger
	self   string   // binary re-executed as "noop-server"
	env    []string // environment of every child (no FLOODGATE_* variables)
}

// row is one target's outcome.
type row struct {
	target string
	round  int // 1-based
	res    *loadResult
	rss    int64 // server resident memory after the window, bytes (0 = unknown)
	err    error // the target could not be run
}

// stopGrace is how long a server may take to exit after SIGTERM (Floodgate drains for 2 s by default).
const stopGrace = 15 * time.Second

func (h *harness) run(ctx context.Context, stdout io.Writer) error {
	o := h.opts
	dir, err := os.MkdirTemp("", "floodgate-load-")
	if err != nil {
		return fmt.Errorf("make work dir: %w", err)
	}
	defer os.RemoveAll(dir)

	needFloodgate := slices.Contains(o.Targets, targetMemory) || slices.Contains(o.Targets, targetRedis)
	bin, limitsPath := o.FloodgateBin, o.Config
	if needFloodgate && bin == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		root, err := findRepoRoot(wd)
		if err != nil {
			return err
		}
		bin = filepath.Join(dir, "floodgate")
		h.logger.Info("building floodgate", "repo", root, "out", bin)
		if err := buildFloodgate(ctx, root, bin); err != nil {
			return err
		}
	}
	if needFloodgate && limitsPath == "" {
		limitsPath = filepath.Join(dir, "limits.yaml")
		l := limitsSpec{Domain: o.Domain, Key: o.Key, Algorithm: o.Algorithm, RequestsPerUnit: o.Limit, Unit: o.Unit}
		if err := os.WriteFile(limitsPath, []byte(limitsYAML(l)), 0o644); err != nil {
			return fmt.Errorf("write limits: %w", err)
		}
	}

	redisURL := o.RedisURL
	if slices.Contains(o.Targets, targetRedis) && o.OwnRedis {
		rp, url, err := startRedisServer(ctx, dir)
		if err != nil {
			return err
		}
		defer func() {
			if err := rp.stop(stopGrace); err != nil {
				h.logger.Warn("stop private redis-server", "err", err)
			}
		}()
		redisURL = url
		h.logger.Info("private redis-server started", "url", url)
	}

	meta := collectMeta(ctx, o, redisURL, limitsPath)
	rows := make([]row, 0, o.Rounds*len(o.Targets))
	for round := 1; round <= o.Rounds; round++ {
		for _, t := range o.Targets {
			if ctx.Err() != nil {
				break
			}
			r := h.runTarget(ctx, t, dir, bin, limitsPath, redisURL)
			r.round = round
			if r.err != nil {
				h.logger.Error("target failed", "target", t, "round", round, "err", r.err)
			} else {
				h.logger.Info("target done", "target", t, "round", round, "decisions_per_sec", fmt.Sprintf("%.0f", r.res.decisionsPerSec()),
					"p99", r.res.Latency.quantile(0.99), "errors", r.res.Errors)
			}
			rows = append(rows, r)
		}
	}
	interrupted := ctx.Err()
	if interrupted != nil {
		// Keep what was measured before the interruption (a window cut short says so in the report).
		rows = slices.DeleteFunc(rows, func(r row) bool { return r.err != nil && errors.Is(r.err, context.Canceled) })
		if len(rows) == 0 {
			return fmt.Errorf("interrupted before anything was measured: %w", interrupted)
		}
	}

	report := renderMarkdown(meta, rows)
	if _, err := io.WriteString(stdout, report); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if o.Out != "" {
		if err := os.WriteFile(o.Out, []byte(report), 0o644); err != nil {
			return fmt.Errorf("write report %s: %w", o.Out, err)
		}
	}
	if interrupted != nil {
		return fmt.Errorf("interrupted (the report covers the load until then): %w", interrupted)
	}
	return verdict(rows, o.MaxErrorRatio)
}

// verdict fails the run when a target could not run or erred on more than maxRatio of its calls.
func verdict(rows []row, maxRatio float64) error {
	var errs []error
	for _, r := range rows {
		switch {
		case r.err != nil:
			errs = append(errs, fmt.Errorf("target %s: %w", r.target, r.err))
		case r.res.calls() == 0:
			errs = append(errs, fmt.Errorf("target %s: no call completed", r.target))
		case float64(r.res.Errors) > maxRatio*float64(r.res.calls()):
			errs = append(errs, fmt.Errorf("target %s: %d errors in %d calls (%.3f%%, limit %.3f%%): %s", r.target,
				r.res.Errors, r.res.calls(), 100*float64(r.res.Errors)/float64(r.res.calls()), 100*maxRatio, r.res.FirstError))
		}
	}
	return errors.Join(errs...)
}

// runTarget starts the target's server, waits until it is SERVING, drives it, stops it and (redis) deletes
// the keys it wrote.
func (h *harness) runTarget(ctx context.Context, target, dir, bin, limitsPath, redisURL string) row {
	if target == targetExternal {
		return h.runExternal(ctx)
	}
	r := row{target: target}
	addr, err := freeAddr()
	if err != nil {
		r.err = err
		return r
	}
	var (
		exe  string
		args []string
		rc   redis.UniversalClient
	)
	prefix := fmt.Sprintf("fgload:%d:%d:", os.Getpid(), time.Now().UnixNano())
	switch target {
	case targetNoop:
		exe, args = h.self, []string{"noop-server", "--addr", addr}
	case targetMemory, targetRedis:
		exe = bin
		args = []string{"--grpc-addr", addr, "--http-addr", "127.0.0.1:0", "--config", limitsPath,
			"--log-level", "warn", "--on-store-error", h.opts.OnStoreError}
		if h.opts.StoreTimeout != "" {
			args = append(args, "--store-timeout", h.opts.StoreTimeout)
		}
		if target == targetRedis {
			opts, err := redis.ParseURL(redisURL)
			if err != nil {
				r.err = fmt.Errorf("--redis-url: %w", err)
				return r
			}
			c := redis.NewClient(opts)
			defer c.Close()
			if err := c.Ping(ctx).Err(); err != nil {
				r.err = fmt.Errorf("redis %s does not answer: %w", redactURL(redisURL), err)
				return r
			}
			rc = c
			args = append(args, "--redis-url", redisURL, "--redis-prefix", prefix)
		}
	}

	p, err := startProc(target, exe, args, h.env, filepath.Join(dir, target+".log"))
	if err != nil {
		r.err = err
		return r
	}
	h.logger.Info("target started", "target", target, "pid", p.pid(), "addr", addr)
	defer func() {
		if err := p.stop(stopGrace); err != nil {
			h.logger.Warn("stop target", "target", target, "err", err, "log", p.logTail(5))
		}
		if rc != nil {
			// The server is gone, so nothing writes under the prefix any more.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			n, err := deleteKeys(cctx, rc, prefix)
			if err != nil {
				h.logger.Warn("delete load keys", "prefix", prefix, "err", err)
			} else {
				h.logger.Info("deleted load keys", "prefix", prefix, "keys", n)
			}
		}
	}()
	if err := waitServing(ctx, addr, p, h.opts.StartTimeout); err != nil {
		r.err = err
		return r
	}

	ticks := clockTicks()
	spec := h.opts.loadSpec()
	h.logger.Info("driving", "target", target, "concurrency", spec.Concurrency, "connections", spec.Connections,
		"rate", spec.Rate, "warmup", spec.Warmup, "duration", spec.Duration)
	res, err := drive(ctx, addr, spec, cpuReader(p.pid(), rc, ticks))
	if err != nil {
		r.err = err
		return r
	}
	select {
	case <-p.exited:
		r.err = fmt.Errorf("%s exited during the load: %v\n%s", target, p.waitErr, p.logTail(20))
		return r
	default:
	}
	r.res = res
	if rss, err := procRSS(p.pid()); err == nil {
		r.rss = rss
	}
	return r
}

// loadSpec is the load every target gets under these options.
func (o options) loadSpec() loadSpec {
	return loadSpec{
		Concurrency: o.Concurrency, Connections: o.Connections,
		Warmup: o.Warmup, Duration: o.Duration, CallTimeout: o.CallTimeout,
		Domain: o.Domain, Key: o.Key, Keys: o.Keys, Seed: o.Seed, Rate: o.Rate,
	}
}

// cpuReader reads the cumulative CPU of the server process pid (none when 0), of this process, and of Redis
// through rc (none when nil).
func cpuReader(pid int, rc redis.UniversalClient, ticks int64) func(context.Context) (cpuTimes, error) {
	return func(ctx context.Context) (cpuTimes, error) {
		var t cpuTimes
		var err error
		if pid > 0 {
			if t.Server, err = procCPU(pid, ticks); err != nil {
				return t, fmt.Errorf("server process %d: %w", pid, err)
			}
			t.HasServer = true
		}
		if t.Self, err = procCPU(os.Getpid(), ticks); err != nil {
			return t, err
		}
		if rc != nil {
			rs, err := redisStats(ctx, rc)
			if err != nil {
				return t, err
			}
			t.Redis, t.RedisConns = rs.CPU, rs.Conns
			t.HasRedis = true
		}
		return t, nil
	}
}

// externalWait bounds the health check of a server the harness did not start.
const externalWait = 5 * time.Second

// runExternal drives the server at --addr, which the harness did not start: it waits until the server
// reports SERVING, and reads its CPU and RSS only when --pid names its process.
func (h *harness) runExternal(ctx context.Context) row {
	o := h.opts
	r := row{target: targetExternal}
	ticks := clockTicks()
	if o.PID > 0 {
		if _, err := procCPU(o.PID, ticks); err != nil {
			r.err = fmt.Errorf("--pid %d: %w", o.PID, err)
			return r
		}
	}
	// A running server answers its health check at once: give up after 5 s (--start-timeout if shorter).
	if err := waitServing(ctx, o.Addr, nil, min(o.StartTimeout, externalWait)); err != nil {
		r.err = err
		return r
	}
	spec := o.loadSpec()
	h.logger.Info("driving", "target", o.Addr, "concurrency", spec.Concurrency, "connections", spec.Connections,
		"rate", spec.Rate, "warmup", spec.Warmup, "duration", spec.Duration)
	res, err := drive(ctx, o.Addr, spec, cpuReader(o.PID, nil, ticks))
	if err != nil {
		r.err = err
		return r
	}
	r.res = res
	if o.PID > 0 {
		if rss, err := procRSS(o.PID); err == nil {
			r.rss = rss
		}
	}
	return r
}

// meta describes the machine and the load for the report's header.
type meta struct {
	Date         time.Time
	CPUModel     string
	NumCPU       int
	MemTotal     string
	Kernel       string
	GoVersion    string
	LoadAvg      string
	RedisURL     string
	RedisVersion string
	Commit       string
	Limits       string
	Opts         options
}

func collectMeta(ctx context.Context, o options, redisURL, limitsPath string) meta {
	m := meta{Date: time.Now().UTC(), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), Opts: o}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				if _, err := fmt.Sscan(strings.TrimSpace(v), &kb); err == nil {
					m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if slices.Contains(o.Targets, targetRedis) {
		m.RedisURL = redactURL(redisURL)
		if opts, err := redis.ParseURL(redisURL); err == nil {
			c := redis.NewClient(opts)
			if info, err := c.Info(ctx, "server").Result(); err == nil {
				for line := range strings.SplitSeq(info, "\n") {
					if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
						m.RedisVersion = v
					}
				}
			}
			c.Close()
		}
	}
	switch {
	case o.Config != "":
		m.Limits = "limits from " + o.Config
	case limitsPath != "":
		m.Limits = fmt.Sprintf("generated limit: %s, %d per %s on every `%s` value", o.Algorithm, o.Limit, o.Unit, o.Key)
	}
	return m
}

// redactURL hides a password in a Redis URL.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	return u[:scheme+3] + "***" + u[at:]
}
