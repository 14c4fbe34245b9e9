// Package metrics holds Floodgate's Prometheus collectors, registered on a registry owned by the caller
// (never the global one).
//
// Invariants: every label value comes from a fixed set (service, outcome, failure mode, store kind) or from the
// limits configuration (domain, rule name); descriptor values, client addresses and header values never become
// labels, so the number of series does not grow with traffic. A request naming a domain the configuration
// lacks is counted under domain="unknown". Latency histograms are in seconds with buckets from 25 µs to 1 s.
package metrics

// # Telemetry sampler
//
// Sampler is the live operations view's source (the dashboard reads its snapshots; Prometheus gets the
// figures it lacks). It is an extauthz.Observer like Metrics: the caller fans each Observation out to both.
//
// Observe only adds to atomic counters and to a latency sketch; it allocates nothing once a rule has been
// seen and never blocks. Per-rule counters live in a copy-on-write map keyed by (domain, rule name), both
// from the configuration; past MaxRules (1,000) distinct rules, decisions count under OtherRule ("other",
// domain "") so memory cannot grow with configurations that churn rule names. A decision counts once per
// rule: denied if any limit of the rule denied it, shadow if one would have, else allowed; decisions the
// store failed count as degraded (under the allow and deny modes no limit was evaluated, so only degraded).
//
// Run samples every Interval (1 s) until its context ends: host CPU % (from /proc/stat deltas via
// gopsutil's cpu.Times, busy = total - idle - iowait) and memory % (mem.VirtualMemory), process RSS and CPU %
// (process CPU time over wall time and all logical CPUs, so 0-100 like the host figure), goroutines, the last
// GC pause (debug.ReadGCStats), decision rates as counter deltas over the measured elapsed time (not the
// nominal interval), latency quantiles, and store health. The first rates and CPU figures are measured from
// a baseline Run takes when it starts.
//
// Latency quantiles come from a log-linear histogram of nanoseconds (8 sub-buckets per power of two,
// reported at the bucket midpoint: within ±6.25 %), one histogram per interval in a ring covering the last
// LatencyWindow (10 s) of completed intervals. A window of more than 60 intervals advances in steps so the
// sketch never holds more than 61 histograms (~4 KiB each).
//
// Store health: each sample calls Ping with a PingTimeout (Interval/2) context in a goroutine of its own
// and waits at most that long, so a pinger that ignores its context cannot delay sampling. At most one
// ping is in flight: while a stalled one is, the store reads as down and no new ping starts. Run waits for
// it before returning. Without a pinger (the in-process store) the store is reported up and unconfigured.
//
// History keeps History/Interval snapshots (900) in a ring, oldest first. Subscribe hands out channels of
// SubscriberBuffer (8) snapshots; a publish that finds a channel full drops that subscriber (closes its
// channel) rather than wait, so a slow dashboard never slows sampling. Run closes every channel when it
// returns, and later subscriptions get a closed channel.
//
// Prometheus: the sampler adds floodgate_host_cpu_percent, floodgate_host_memory_percent and
// floodgate_store_ping_seconds (no labels). Process, runtime, decision and latency series already come from
// the process and Go collectors and from Metrics (floodgate_decision_duration_seconds); OnPing can feed
// Metrics.ObservePing from the same ping.
