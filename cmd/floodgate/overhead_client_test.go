package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc"
)

// The audit comparison drives Floodgate from a separate process, the test binary started again with
// FLOODGATE_OVERHEAD_CLIENT set, so that the load generator's CPU is not Floodgate's: in production the
// callers are Envoys on other machines. FLOODGATE_OVERHEAD_CLIENT_CPUS (a taskset list) pins that process,
// which scripts/overhead-pinned.sh uses to give Floodgate a core of its own.

func TestMain(m *testing.M) {
	if addr := os.Getenv("FLOODGATE_OVERHEAD_CLIENT"); addr != "" {
		if err := ohClientMain(addr); err != nil {
			fmt.Fprintln(os.Stderr, "overhead client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// ohClientReport is what the client process writes to FLOODGATE_OVERHEAD_CLIENT_OUT.
type ohClientReport struct {
	Calls, Over, Errs uint64
	WarmupCalls       uint64
	// ControlRows and ControlPostgresCPU are the PostgreSQL control load's (ohPGControl), if any.
	ControlRows        uint64
	ControlPostgresCPU time.Duration
	Elapsed            time.Duration
	Latencies          []time.Duration // sorted
}

// ohClientMain runs one measured phase against addr: a 1 s warm-up (not recorded), then ohLoad for
// FLOODGATE_OVERHEAD_CLIENT_DURATION over the denied addresses in the order FLOODGATE_OVERHEAD_CLIENT_SEED
// ("round,target") gives.
func ohClientMain(addr string) error {
	d, err := time.ParseDuration(os.Getenv("FLOODGATE_OVERHEAD_CLIENT_DURATION"))
	if err != nil {
		return fmt.Errorf("FLOODGATE_OVERHEAD_CLIENT_DURATION: %w", err)
	}
	var round, target uint64
	if _, err := fmt.Sscanf(os.Getenv("FLOODGATE_OVERHEAD_CLIENT_SEED"), "%d,%d", &round, &target); err != nil {
		return fmt.Errorf("FLOODGATE_OVERHEAD_CLIENT_SEED: %w", err)
	}
	out := os.Getenv("FLOODGATE_OVERHEAD_CLIENT_OUT")
	if out == "" {
		return fmt.Errorf("FLOODGATE_OVERHEAD_CLIENT_OUT is not set")
	}
	addrs := ohAddrs()
	rng := mrand.New(mrand.NewPCG(round, target))
	seq := make([]int, 1<<16)
	for i := range seq {
		seq[i] = rng.IntN(ohKeys)
	}
	pick := func(g, n int) int { return seq[(g*7919+n)&(len(seq)-1)] }
	var load func(time.Duration) ohResult
	switch caller := cmp.Or(os.Getenv("FLOODGATE_OVERHEAD_CALLER"), "lean"); caller {
	case "lean":
		l, err := newOHH2Load(addr, addrs, pick)
		if err != nil {
			return err
		}
		defer l.Close()
		load = l.run
	case "grpc":
		conns, err := ohDialConns(addr)
		if err != nil {
			return err
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		load = func(d time.Duration) ohResult {
			return ohLoad(conns, d, func(g, n int) *rlsv3.RateLimitRequest { return ohRLS(addrs[pick(g, n)]) })
		}
	default:
		return fmt.Errorf("FLOODGATE_OVERHEAD_CALLER %q: want lean or grpc", caller)
	}
	ctlErr := make(chan error, 1)
	var ctlRows uint64
	var ctlCPU time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	if db := os.Getenv("FLOODGATE_OVERHEAD_CLIENT_PGCONTROL"); db != "" {
		batch, _ := strconv.Atoi(os.Getenv("FLOODGATE_OVERHEAD_CLIENT_PGBATCH"))
		every, err := time.ParseDuration(os.Getenv("FLOODGATE_OVERHEAD_CLIENT_PGEVERY"))
		if err != nil {
			cancel()
			return fmt.Errorf("FLOODGATE_OVERHEAD_CLIENT_PGEVERY: %w", err)
		}
		// Ends when cancel is called after the phase.
		go func() {
			var err error
			ctlRows, ctlCPU, err = ohPGControl(ctx, db, every, max(batch, 1), addrs)
			ctlErr <- err
		}()
	} else {
		ctlErr <- nil
	}
	w := load(time.Second)
	r := load(d)
	cancel()
	if err := <-ctlErr; err != nil {
		return fmt.Errorf("PostgreSQL control load: %w", err)
	}
	if r.errs > 0 {
		return fmt.Errorf("%d of %d calls failed", r.errs, r.calls)
	}
	b, err := json.Marshal(ohClientReport{Calls: r.calls, Over: r.over, Errs: r.errs, WarmupCalls: w.calls, ControlRows: ctlRows, ControlPostgresCPU: ctlCPU, Elapsed: r.elapsed, Latencies: r.lat})
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o600)
}

// ohLoadProcess runs one measured phase from a client process and returns its result, its report (warm-up
// calls, control load) and the client process's CPU time.
func ohLoadProcess(t *testing.T, addr string, d time.Duration, round, target int, env ...string) (ohResult, ohClientReport, time.Duration) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "client-"+strconv.Itoa(round)+"-"+strconv.Itoa(target)+".json")
	args := []string{os.Args[0], "-test.run=^$"}
	if cpus := os.Getenv("FLOODGATE_OVERHEAD_CLIENT_CPUS"); cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "FLOODGATE_OVERHEAD_CLIENT="+addr,
		"FLOODGATE_OVERHEAD_CLIENT_DURATION="+d.String(),
		fmt.Sprintf("FLOODGATE_OVERHEAD_CLIENT_SEED=%d,%d", round, target),
		"FLOODGATE_OVERHEAD_CLIENT_OUT="+out)
	cmd.Env = append(cmd.Env, env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client process: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep ohClientReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(rep.Latencies) || uint64(len(rep.Latencies)) != rep.Calls {
		t.Fatalf("client report: %d latencies for %d calls", len(rep.Latencies), rep.Calls)
	}
	return ohResult{calls: rep.Calls, over: rep.Over, errs: rep.Errs, elapsed: rep.Elapsed, lat: rep.Latencies},
		rep, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

func ohBatch() int {
	n, _ := strconv.Atoi(os.Getenv("FLOODGATE_OVERHEAD_BATCH"))
	return n
}

// ohServerTimer is a gRPC unary interceptor that histograms each RPC's time in Floodgate's handler, from
// the decoded request to the response (before it is encoded and written): the decision latency as Floodgate
// sees it, without the client's, the network's and the transport's share. (A stats handler would also
// cover the transport, but with one installed grpc-go copies every request's metadata — 6 % of the
// server's CPU at 20,000 requests/s, a cost production does not have.)
type ohServerTimer struct {
	buckets [ohTimerBuckets]atomic.Uint64 // 10 µs each; the last one holds everything longer
}

const ohTimerBuckets = 10_000

func (h *ohServerTimer) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := next(ctx, req)
	i := int(time.Since(start) / (10 * time.Microsecond))
	h.buckets[min(max(i, 0), ohTimerBuckets-1)].Add(1)
	return resp, err
}

// snapshot returns the counts so far; quantiles of a phase come from the difference of two snapshots.
func (h *ohServerTimer) snapshot() []uint64 {
	out := make([]uint64, ohTimerBuckets)
	for i := range out {
		out[i] = h.buckets[i].Load()
	}
	return out
}

// ohQuantiles returns the upper bounds of the buckets holding quantiles ps of after−before.
func ohQuantiles(before, after []uint64, ps ...float64) []time.Duration {
	var total uint64
	for i := range after {
		total += after[i] - before[i]
	}
	out := make([]time.Duration, len(ps))
	for j, p := range ps {
		want := uint64(p*float64(total) + 0.999999)
		var seen uint64
		for i := range after {
			seen += after[i] - before[i]
			if seen >= want {
				out[j] = time.Duration(i+1) * 10 * time.Microsecond
				break
			}
		}
	}
	return out
}

// ohPGControl gives PostgreSQL the audit trail's work without Floodgate's share: from the client
// process, it writes audit-like rows (the audit_events table of the schema in dbURL, time-ordered
// 26-character ids, the denied addresses as client_ip, one descriptor entry) with COPY, batch rows
// every interval, as the Recorder's PostgreSQL sink does under load, until ctx ends.
// It returns the rows written and the CPU time of its PostgreSQL backend process.
func ohPGControl(ctx context.Context, dbURL string, every time.Duration, batch int, addrs []string) (rows uint64, cpu time.Duration, err error) {
	conn, err := pgconn.Connect(ctx, dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	backend := strconv.FormatUint(uint64(conn.PID()), 10)
	cpu0, err := ohProcCPU(backend)
	if err != nil {
		return 0, 0, err
	}
	const cols = "COPY audit_events (id, time, kind, service, domain, rule, entries, client_ip, proxy_ip, method, " +
		"host, path, limit_name, limit_requests, limit_window_ms, algorithm, remaining, retry_after_ms, replica, " +
		"config_version, shadow, degraded, change) FROM STDIN"
	tick := time.NewTicker(every)
	defer tick.Stop()
	// The rows are encoded once; each batch only rewrites every row's id and time in place, so that the
	// control costs the client process next to nothing (its CPU would otherwise favour the "on" phases).
	// Like the sink's rows under the load, the clients are all the addresses in random order: one template
	// per batch-sized slice of a shuffled list, used in turn.
	const stamp = "2006-01-02T15:04:05.000000Z"
	type template struct {
		buf  []byte
		idAt []int
	}
	order := mrand.New(mrand.NewPCG(1, 2)).Perm(len(addrs))
	var templates []template
	for lo := 0; lo < len(order); lo += batch {
		var tp template
		for i := range batch {
			a := addrs[order[(lo+i)%len(order)]]
			tp.idAt = append(tp.idAt, len(tp.buf))
			tp.buf = fmt.Appendf(tp.buf, "%026X\t%s\tdenial\tratelimit\tapi\tapi.remote_address\t"+
				`[{"key":"remote_address","value":"%s"}]`+"\t%s\t\t\t\t\tapi.remote_address\t1\t3600000\tfixed_window\t0\t1800000\tcontrol\t1\tf\tf\t\\N\n",
				0, stamp, a, a)
		}
		templates = append(templates, tp)
	}
	var n uint64
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			cpu1, err := ohProcCPU(backend)
			return rows, cpu1 - cpu0, err
		case <-tick.C:
		}
		tp := templates[k%len(templates)]
		buf := tp.buf
		now := time.Now().UTC()
		ts := now.AppendFormat(nil, stamp)
		for _, at := range tp.idAt {
			n++
			// 26 hex digits, time-ordered like the Recorder's ULIDs: 16 of nanoseconds, 10 of sequence.
			ohPutHex(buf[at:at+16], uint64(now.UnixNano()))
			ohPutHex(buf[at+16:at+26], n)
			copy(buf[at+27:at+27+len(stamp)], ts)
		}
		tag, err := conn.CopyFrom(ctx, bytes.NewReader(buf), cols)
		if err != nil && ctx.Err() == nil {
			return rows, 0, err
		}
		rows += uint64(tag.RowsAffected())
	}
}

// ohPutHex writes v's low len(b) hex digits into b.
func ohPutHex(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = "0123456789ABCDEF"[v&15]
		v >>= 4
	}
}
