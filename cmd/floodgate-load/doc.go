// Command floodgate-load measures Floodgate's decision path under a realistic gRPC load and compares it
// with a do-nothing server driven by the same load generator in the same run.
//
// In one run it starts, one after another and each as its own process on a free 127.0.0.1 port:
//
//   - noop: this binary re-executed as "floodgate-load noop-server --addr ADDR", a gRPC server whose
//     ShouldRateLimit answers OK at once (same keepalive policy as Floodgate, grpc.health.v1 SERVING);
//   - memory: Floodgate (--floodgate-bin, or `go build ./cmd/floodgate` of the surrounding repository) on
//     its in-memory store;
//   - redis: Floodgate on Redis (--redis-url, default $FLOODGATE_TEST_REDIS_URL or redis://127.0.0.1:6379/0,
//     or a private redis-server with --own-redis) under a unique --redis-prefix whose keys are deleted after.
//
// It waits until each reports SERVING on grpc.health.v1 Check(""), then runs a closed loop: --concurrency
// callers over --connections HTTP/2 connections, each sending ShouldRateLimit(domain api, one descriptor
// remote_address = one of --keys addresses of 198.18.0.0/15) as soon as its previous call is answered, for
// --warmup (not measured) then --duration. Floodgate gets a generated limits file with one high limit so the
// traffic is mostly admitted, and --on-store-error deny so a store failure shows up here as an error instead
// of a silent fail-open answer.
//
// Invariants of the figures:
//   - Only calls that complete inside the measured window count; decisions/s is answered calls ÷ window.
//   - Latency is measured by the caller around each call and kept in a log-linear histogram (exact below
//     256 ns, ≤ 0.8 % high above); quantiles are nearest-rank.
//   - CPU is read at the window's two edges: utime+stime of the server process from /proc/PID/stat (clock
//     ticks from the auxiliary vector, 10 ms resolution), the harness's own likewise, and Redis's
//     used_cpu_sys+used_cpu_user from INFO cpu; each difference is divided by the answered calls.
//   - Every child process is stopped with SIGTERM (killed after 15 s) and dies with the harness (Pdeathsig);
//     children never inherit FLOODGATE_* variables, which Floodgate would read as flags.
//
// The report is a Markdown table on stdout (and --out FILE) for BENCHMARKS.md; progress goes to stderr.
// The exit status is non-zero when a target could not run or more than --max-error-ratio of its calls failed.
package main
