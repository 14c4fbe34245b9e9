package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "floodgate-load:", err)
		}
		os.Exit(1)
	}
}

// options are the harness's flags.
type options struct {
	Targets       []string
	Rounds        int
	Concurrency   int
	Connections   int
	Duration      time.Duration
	Warmup        time.Duration
	CallTimeout   time.Duration
	Keys          int
	Domain        string
	Key           string
	Config        string
	Algorithm     string
	Limit         int
	Unit          string
	FloodgateBin  string
	RedisURL      string
	OwnRedis      bool
	StoreTimeout  string
	OnStoreError  string
	Out           string
	MaxErrorRatio float64
	StartTimeout  time.Duration
	Seed          uint64
	Addr          string  // drive this running server instead of starting targets
	PID           int     // with Addr: its process, for the CPU and RSS columns
	Rate          float64 // open loop: calls per second over all callers; 0 = closed loop
}

var knownTargets = []string{targetNoop, targetMemory, targetRedis}

const (
	targetNoop     = "noop"
	targetMemory   = "memory"
	targetRedis    = "redis"
	targetExternal = "external" // --addr: a server the harness did not start
)

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("floodgate-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: floodgate-load [flags]\n\nStarts a do-nothing gRPC rate limit server, Floodgate on the memory store and Floodgate on Redis,\n"+
			"one after another, drives each with the same closed-loop ShouldRateLimit load and prints a Markdown table.\n"+
			"With --addr it drives a server that is already running instead (e.g. to watch its dashboard under load).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	redisDefault := getenv("FLOODGATE_TEST_REDIS_URL")
	if redisDefault == "" {
		redisDefault = "redis://127.0.0.1:6379/0"
	}
	targets := fs.String("targets", "noop,memory,redis", "comma-separated targets, run in this order: noop, memory, redis")
	fs.IntVar(&o.Rounds, "rounds", 1, "run the targets this many times, taking turns, and report each target's median round (steadier on a busy machine)")
	fs.IntVar(&o.Concurrency, "concurrency", 50, "concurrent callers (closed loop: each sends its next call when the last one is answered)")
	fs.IntVar(&o.Connections, "connections", 4, "gRPC (HTTP/2) connections the callers share, like Envoy's several connections")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per target")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured load before the measured time")
	fs.DurationVar(&o.CallTimeout, "call-timeout", time.Second, "deadline of one call; a call past it counts as an error")
	fs.IntVar(&o.Keys, "keys", 10_000, "distinct descriptor values (client addresses), chosen uniformly per call")
	fs.StringVar(&o.Domain, "domain", "api", "rate limit domain of every request")
	fs.StringVar(&o.Key, "key", "remote_address", "descriptor key of every request (one entry)")
	fs.StringVar(&o.Config, "config", "", "limits file or directory for Floodgate; empty writes one with a single limit on --domain/--key from --algorithm, --limit, --unit")
	fs.StringVar(&o.Algorithm, "algorithm", "fixed_window", "algorithm of the generated limit: fixed_window, sliding_window or token_bucket")
	fs.IntVar(&o.Limit, "limit", 1_000_000, "requests_per_unit of the generated limit (high: the realistic load is mostly admitted)")
	fs.StringVar(&o.Unit, "unit", "minute", "unit of the generated limit")
	fs.StringVar(&o.FloodgateBin, "floodgate-bin", "", "Floodgate binary; empty builds ./cmd/floodgate of the repository around the working directory")
	fs.StringVar(&o.RedisURL, "redis-url", redisDefault, "Redis of the redis target (default $FLOODGATE_TEST_REDIS_URL or redis://127.0.0.1:6379/0)")
	fs.BoolVar(&o.OwnRedis, "own-redis", false, "start a private redis-server for the redis target instead of --redis-url (clean Redis CPU figures on a shared machine)")
	fs.StringVar(&o.StoreTimeout, "store-timeout", "", "passed to Floodgate as --store-timeout; empty keeps its default")
	fs.StringVar(&o.OnStoreError, "on-store-error", "deny", "passed to Floodgate; deny makes store failures visible as errors here instead of silent fail-open answers")
	fs.StringVar(&o.Out, "out", "", "also write the Markdown report to this file")
	fs.Float64Var(&o.MaxErrorRatio, "max-error-ratio", 0.001, "exit non-zero when a target's errors exceed this share of its calls")
	fs.DurationVar(&o.StartTimeout, "start-timeout", 30*time.Second, "how long a server may take to report SERVING")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the callers' choice of descriptor values (same for every target)")
	fs.StringVar(&o.Addr, "addr", "", "drive an already running server at host:port (its own limits and store) instead of starting targets; --targets does not apply")
	fs.IntVar(&o.PID, "pid", 0, "with --addr: that server's process id on this machine, for its CPU and RSS columns")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: this many calls per second over all callers, latency counted from each call's scheduled time; 0 drives a closed loop")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	targetsSet := set["targets"]
	if !set["connections"] {
		o.Connections = min(o.Connections, o.Concurrency) // --concurrency 1 alone is valid
	}
	if o.Addr != "" {
		if _, port, err := net.SplitHostPort(o.Addr); err != nil || port == "" {
			return o, fmt.Errorf("--addr %q: want host:port", o.Addr)
		}
		if targetsSet {
			return o, errors.New("--addr and --targets exclude each other: --addr drives the server that is already running")
		}
		o.Targets = []string{targetExternal}
		return o, o.validate()
	}
	for t := range strings.SplitSeq(*targets, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(knownTargets, t) {
			return o, fmt.Errorf("--targets: unknown target %q (want noop, memory, redis)", t)
		}
		if !slices.Contains(o.Targets, t) {
			o.Targets = append(o.Targets, t)
		}
	}
	return o, o.validate()
}

func (o options) validate() error {
	var errs []error
	if len(o.Targets) == 0 {
		errs = append(errs, errors.New("--targets: none given"))
	}
	if o.Rounds < 1 || o.Rounds > 100 {
		errs = append(errs, fmt.Errorf("--rounds: %d not in 1..100", o.Rounds))
	}
	if o.Concurrency < 1 || o.Concurrency > 10_000 {
		errs = append(errs, fmt.Errorf("--concurrency: %d not in 1..10000", o.Concurrency))
	}
	if o.Connections < 1 || o.Connections > o.Concurrency {
		errs = append(errs, fmt.Errorf("--connections: %d not in 1..concurrency", o.Connections))
	}
	if o.Duration <= 0 || o.Warmup < 0 || o.CallTimeout <= 0 || o.StartTimeout <= 0 {
		errs = append(errs, errors.New("--duration, --call-timeout and --start-timeout must be positive, --warmup not negative"))
	}
	if o.Keys < 1 || o.Keys > 1_000_000 {
		errs = append(errs, fmt.Errorf("--keys: %d not in 1..1000000", o.Keys))
	}
	if o.Domain == "" || o.Key == "" {
		errs = append(errs, errors.New("--domain and --key must not be empty"))
	}
	switch o.Algorithm {
	case "fixed_window", "sliding_window", "token_bucket":
	default:
		errs = append(errs, fmt.Errorf("--algorithm: %q is not fixed_window, sliding_window or token_bucket", o.Algorithm))
	}
	switch o.Unit {
	case "second", "minute", "hour", "day":
	default:
		errs = append(errs, fmt.Errorf("--unit: %q is not second, minute, hour or day", o.Unit))
	}
	if o.Limit < 1 {
		errs = append(errs, fmt.Errorf("--limit: %d must be positive", o.Limit))
	}
	if o.PID < 0 || (o.PID > 0 && o.Addr == "") {
		errs = append(errs, fmt.Errorf("--pid: %d needs --addr and must be positive", o.PID))
	}
	if o.Rate < 0 || o.Rate > 10_000_000 {
		errs = append(errs, fmt.Errorf("--rate: %g not in 0..10000000", o.Rate))
	}
	if o.MaxErrorRatio < 0 || o.MaxErrorRatio > 1 {
		errs = append(errs, fmt.Errorf("--max-error-ratio: %g not in [0, 1]", o.MaxErrorRatio))
	}
	return errors.Join(errs...)
}

// run dispatches the hidden noop-server mode or runs the harness.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "noop-server" {
		return runNoopServer(ctx, args[1:], stderr)
	}
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locate own binary for the noop server: %w", err)
	}
	h := &harness{
		opts:   o,
		logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		self:   self,
		env:    childEnv(os.Environ()),
	}
	return h.run(ctx, stdout)
}
