// Package audit records denials: every ext_authz 429 and RLS OVER_LIMIT, and every shadow would-be denial
// (flagged Shadow), becomes an append-only Event that operators can watch live and query later.
//
// A Recorder is an extauthz.Observer. Observe copies what it needs from the Observation (nothing is
// retained) into an Event and offers it to a bounded queue with a non-blocking send; Run owns the pipeline
// goroutine that takes events from the queue, stamps each with a ULID and fans it out to:
//
//   - an in-memory ring of the latest events (Recent) and live subscribers (Subscribe);
//   - the top offenders: Space-Saving summaries of TopK counters per one-minute bucket, 15 buckets;
//   - with Redis, the stream <StreamPrefix>audit (XADD MAXLEN ~, pipelined batches); a tailer reads the
//     stream (XREAD BLOCK) and feeds the other replicas' events to the ring, subscribers and top offenders,
//     skipping its own by replica id, so every replica's live view shows the whole fleet;
//   - with PostgreSQL, the append-only table audit_events (migrations in migrations/*.sql, embedded and
//     applied before the first write), written in batches of at most BatchSize every FlushInterval (or
//     as soon as a batch is full; up to 3 batches at once when a backlog waits). Time ranges of Query use
//     the primary key: ids are time-ordered.
//
// Invariants:
//   - Observe never blocks and never slows a decision: a full queue drops the event and counts it
//     (Stats.Dropped, floodgate_audit_dropped_total{stage="queue"}). Denials == Queued + Dropped, and every
//     queued event reaches the ring exactly once.
//   - Outages are never recorded: observations with Code OutcomeDegraded (failure mode allow or deny),
//     OutcomeInvalid, and OK decisions without a shadow would-be denial produce no event. A denial decided
//     by the local fallback during an outage is recorded with Degraded set.
//   - One event per denied request: the first non-shadow limit that denied (or, for a shadow would-be
//     denial, the first shadow limit that would have).
//   - IDs made by one Recorder strictly increase in pipeline order (monotonic ULID: 48-bit milliseconds of
//     the event time, 80 random bits incremented within a millisecond).
//   - Request-derived strings (host, path, descriptor values, addresses) are bounded by Bound: invalid UTF-8
//     escaped, at most MaxValueBytes, a long value ending with a SHA-256 prefix of the full value.
//   - Sinks never block the pipeline. Each has its own bounded buffer (PostgresBuffer, StreamBuffer); an
//     event leaves it only once written. A failed batch is retried with exponential backoff (50 ms to 2 s),
//     so a slow or down PostgreSQL loses nothing until PostgresBuffer events wait; past that bound new events
//     are not written to PostgreSQL and are counted as dropped (stage "postgres") while still reaching the
//     ring, subscribers and stream. Retries are idempotent (INSERT … ON CONFLICT (id) DO NOTHING). At
//     shutdown the sinks get ShutdownTimeout to flush; what is still pending then is counted as dropped.
//   - The ring and the top offenders hold remote (stream) events too, in arrival order; PostgreSQL holds only
//     this replica's events (each replica writes its own).
//   - Top offenders use memory O(15·TopK) whatever the number of distinct clients; a key with more than
//     1/TopK of a minute's denials is always tracked, its count exact if tracked since its first denial of
//     that minute. Shadow would-be denials are not counted.
//   - Times are the replica's clock (Options.Now), truncated to microseconds (PostgreSQL's precision);
//     PostgreSQL stores durations in whole milliseconds.
package audit
