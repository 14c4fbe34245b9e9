package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// renderMarkdown writes the run as Markdown: a header naming the machine and the load, one table row per
// target, then notes (errors, failed targets) to paste into BENCHMARKS.md.
func renderMarkdown(m meta, rows []row) string {
	o := m.Opts
	var b strings.Builder
	fmt.Fprintf(&b, "### floodgate-load, %s\n\n", m.Date.Format("2006-01-02 15:04 MST"))
	machine := fmt.Sprintf("%d × %s, %s RAM, Linux %s, %s", m.NumCPU, orDash(m.CPUModel), orDash(m.MemTotal), orDash(m.Kernel), m.GoVersion)
	if m.Commit != "" {
		machine += ", commit " + m.Commit
	}
	fmt.Fprintf(&b, "- Machine: %s; load average at start %s. Load generator, servers and Redis share these cores.\n", machine, orDash(m.LoadAvg))
	loop := "closed loop"
	if o.Rate > 0 {
		loop = fmt.Sprintf("open loop at %.0f calls/s (latency from each call's scheduled time)", o.Rate)
	}
	fmt.Fprintf(&b, "- Load: %s, %d callers over %d gRPC connections; %s warm-up then %s measured per target, "+
		"targets one after another. Each call: `ShouldRateLimit` domain `%s`, one descriptor (`%s` = one of %d values, uniform).\n",
		loop, o.Concurrency, o.Connections, o.Warmup, o.Duration, o.Domain, o.Key, o.Keys)
	if o.Addr != "" {
		pid := "its CPU and RSS not measured (no --pid)"
		if o.PID > 0 {
			pid = fmt.Sprintf("process %d", o.PID)
		}
		fmt.Fprintf(&b, "- Target: the server already running at %s, with its own limits and store; %s.\n", o.Addr, pid)
	}
	if m.Limits != "" {
		fmt.Fprintf(&b, "- Floodgate: %s; `--on-store-error %s`", m.Limits, o.OnStoreError)
		if o.StoreTimeout != "" {
			fmt.Fprintf(&b, ", `--store-timeout %s`", o.StoreTimeout)
		}
		b.WriteString(".\n")
	}
	if m.RedisURL != "" {
		shared := "shared with anything else using it: its CPU includes their load"
		if o.OwnRedis {
			shared = "private to this run"
		}
		fmt.Fprintf(&b, "- Redis %s at %s (%s).\n", orDash(m.RedisVersion), m.RedisURL, shared)
	}
	b.WriteString("- decisions/s counts answered calls completed in the measured window; latency is per call as the " +
		"caller sees it (nearest rank, ≤ 0.8 % high); CPU is utime+stime of the process (/proc/PID/stat) and " +
		"used_cpu_sys+used_cpu_user of Redis (INFO cpu) over the window, divided by decisions.\n\n")

	ratio := ratios(rows)
	rounds := 0
	for _, r := range rows {
		rounds = max(rounds, r.round)
	}
	var notes []string
	for _, r := range rows {
		where := targetLabel(r.target)
		if rounds > 1 {
			where = fmt.Sprintf("%s (round %d)", where, r.round)
		}
		if r.err != nil {
			notes = append(notes, fmt.Sprintf("%s failed: %s", where, firstLine(r.err.Error())))
			continue
		}
		if r.res.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s errors: %s; first: %s", where, fmtErrors(r.res), firstLine(r.res.FirstError)))
		}
		if r.res.Interrupted {
			notes = append(notes, fmt.Sprintf("%s: interrupted, its window ended after %s of %s", where,
				r.res.Window.Round(time.Millisecond), o.Duration))
		}
		if dps := r.res.decisionsPerSec() + float64(r.res.Errors)/r.res.Window.Seconds(); o.Rate > 0 && dps < 0.9*o.Rate {
			notes = append(notes, fmt.Sprintf("%s: offered %.0f calls/s, completed %.0f/s — the server (or this load "+
				"generator) could not keep up; latency includes the wait", where, o.Rate, dps))
		}
		if r.res.CPU.HasRedis && r.res.CPU.RedisConns > 0 {
			notes = append(notes, fmt.Sprintf("%s: Redis accepted %d new connections during the window (a steady pool opens "+
				"none; go-redis drops a connection whose call timed out)", where, r.res.CPU.RedisConns))
		}
	}

	if rounds > 1 {
		fmt.Fprintf(&b, "Median of %d rounds (the targets take turns: round 1 runs each once, then round 2...). Each row is "+
			"the target's round with the median decisions/s; its ratio is the median of the per-round ratios.\n\n", rounds)
	}
	b.WriteString("| target | decisions/s | vs do-nothing | p50 | p90 | p99 | p99.9 | max | server CPU µs/decision | Redis CPU µs/decision | load-gen CPU µs/decision | server RSS | over limit | errors |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, target := range targetsInOrder(rows) {
		var idx []int
		var rs []float64
		for i, r := range rows {
			if r.target != target {
				continue
			}
			if r.err == nil {
				idx = append(idx, i)
			}
			if v, ok := ratio[i]; ok {
				rs = append(rs, v)
			}
		}
		if len(idx) == 0 {
			fmt.Fprintf(&b, "| %s | failed | | | | | | | | | | | | |\n", targetLabel(target))
			continue
		}
		slices.SortStableFunc(idx, func(a, c int) int {
			return cmp.Compare(rows[a].res.decisionsPerSec(), rows[c].res.decisionsPerSec())
		})
		writeRow(&b, targetLabel(target), rows[idx[(len(idx)-1)/2]], fmtRatio(median(rs), len(rs) > 0))
	}

	if rounds > 1 {
		b.WriteString("\nEvery round:\n\n| round | target | decisions/s | vs do-nothing | p50 | p99 | p99.9 | server CPU µs/decision | Redis CPU µs/decision | errors |\n")
		b.WriteString("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for i, r := range rows {
			if r.err != nil {
				fmt.Fprintf(&b, "| %d | %s | failed | | | | | | | |\n", r.round, targetLabel(r.target))
				continue
			}
			v, ok := ratio[i]
			res, h := r.res, r.res.Latency
			fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n", r.round, targetLabel(r.target),
				res.decisionsPerSec(), fmtRatio(v, ok), fmtLatency(h.quantile(0.50)), fmtLatency(h.quantile(0.99)),
				fmtLatency(h.quantile(0.999)), serverPerDecision(res), redisPerDecision(res), fmtErrors(res))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// writeRow writes one target's row of the main table.
func writeRow(b *strings.Builder, name string, r row, ratio string) {
	res := r.res
	h := res.Latency
	rss := "—"
	if r.rss > 0 {
		rss = fmt.Sprintf("%.0f MiB", float64(r.rss)/(1<<20))
	}
	fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
		name, res.decisionsPerSec(), ratio,
		fmtLatency(h.quantile(0.50)), fmtLatency(h.quantile(0.90)), fmtLatency(h.quantile(0.99)),
		fmtLatency(h.quantile(0.999)), fmtLatency(h.max),
		serverPerDecision(res), redisPerDecision(res), perDecision(res.CPU.Self, res.decisions()), rss,
		share(res.OverLimit, res.calls()), fmtErrors(res))
}

// ratios maps the index of every successful row to its decisions/s over those of the do-nothing server in
// the same round (rows without a successful do-nothing run in their round have none).
func ratios(rows []row) map[int]float64 {
	noop := map[int]float64{}
	for _, r := range rows {
		if r.target == targetNoop && r.err == nil && r.res.decisionsPerSec() > 0 {
			noop[r.round] = r.res.decisionsPerSec()
		}
	}
	out := map[int]float64{}
	for i, r := range rows {
		if d, ok := noop[r.round]; ok && r.err == nil {
			out[i] = r.res.decisionsPerSec() / d
		}
	}
	return out
}

// targetsInOrder lists the targets in the order they first ran.
func targetsInOrder(rows []row) []string {
	var ts []string
	for _, r := range rows {
		if !slices.Contains(ts, r.target) {
			ts = append(ts, r.target)
		}
	}
	return ts
}

// median of vs (the mean of the two middle values for an even count); 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRatio(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

func serverPerDecision(res *loadResult) string {
	if !res.CPU.HasServer {
		return "—"
	}
	return perDecision(res.CPU.Server, res.decisions())
}

func redisPerDecision(res *loadResult) string {
	if !res.CPU.HasRedis {
		return "—"
	}
	return perDecision(res.CPU.Redis, res.decisions())
}

func targetLabel(t string) string {
	switch t {
	case targetNoop:
		return "do-nothing gRPC server"
	case targetMemory:
		return "Floodgate, memory store"
	case targetRedis:
		return "Floodgate, Redis"
	case targetExternal:
		return "running server (--addr)"
	}
	return t
}

// fmtLatency prints µs below 1 ms and ms with 2 or 1 decimals above.
func fmtLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

// perDecision is cpu divided by n in microseconds.
func perDecision(cpu time.Duration, n uint64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", float64(cpu)/float64(time.Microsecond)/float64(n))
}

func share(k, n uint64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f %%", 100*float64(k)/float64(n))
}

// fmtErrors is "0" or "N (x %: Code×n, ...)".
func fmtErrors(r *loadResult) string {
	if r.Errors == 0 {
		return "0"
	}
	cs := slices.SortedFunc(maps.Keys(r.ErrorCodes), func(a, b codes.Code) int {
		return cmp.Or(cmp.Compare(r.ErrorCodes[b], r.ErrorCodes[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s×%d", c, r.ErrorCodes[c])
	}
	return fmt.Sprintf("%d (%s: %s)", r.Errors, share(r.Errors, r.calls()), strings.Join(parts, ", "))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
