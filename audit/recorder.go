package audit

import (
	"context"
	"encoding/json"
	"errors"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/extauthz"
)

// Defaults of Options.
const (
	DefaultQueueSize       = 65536
	DefaultRingSize        = 10000
	DefaultStreamMaxLen    = 2000
	DefaultBatchSize       = 1000
	DefaultFlushInterval   = 250 * time.Millisecond
	DefaultPostgresBuffer  = 200000
	DefaultStreamBuffer    = 100000
	DefaultTopK            = 1024
	DefaultShutdownTimeout = 5 * time.Second
)

// postgresParallel is how many batches go to PostgreSQL at once when a backlog waits (inserts are
// idempotent, so a failed round is simply retried whole).
const postgresParallel = 3

// Options configures a Recorder. Zero values take the documented defaults.
type Options struct {
	// Replica names this process in events and in the shared stream (default a random "replica-<hex>").
	Replica string
	// QueueSize bounds the queue between Observe and the pipeline (default 65,536 events).
	QueueSize int
	// RingSize is the number of recent events kept in memory for Recent (default 10,000).
	RingSize int
	// Redis, when set, carries the fleet's events: each replica writes StreamPrefix+"{audit}:"+Replica and
	// tails the others' (see stream.go).
	Redis        redis.UniversalClient
	StreamPrefix string
	// StreamMaxLen trims the stream to about this many entries (XADD MAXLEN ~; default 2,000), each holding
	// the events of one write (up to 256): the stream is the fleet's live feed, not its history.
	StreamMaxLen int64
	// StreamBuffer bounds the events waiting for Redis (default 100,000); past it they are dropped (counted).
	StreamBuffer int
	// DB, when set, receives every event in the table audit_events (created by the embedded migrations).
	DB *pgxpool.Pool
	// PostgresBuffer bounds the events waiting for PostgreSQL while it is slow or down (default 200,000,
	// about 100 MB); past it new events are dropped for PostgreSQL only (counted, still in ring and stream).
	PostgresBuffer int
	// BatchSize and FlushInterval bound how long an event waits for a sink: a batch is written when it
	// holds BatchSize events or FlushInterval after the last write (defaults 1000 and 250 ms).
	BatchSize     int
	FlushInterval time.Duration
	// ShutdownTimeout bounds the final flush when Run's context ends (default 5 s).
	ShutdownTimeout time.Duration
	// TopK is the number of counters per minute bucket of the top offenders (default 1024).
	TopK int
	// ConfigVersion, if set, reports the version of the limits in force (see the report: the lead will
	// move this into extauthz.Observation).
	ConfigVersion func() uint64
	// Now is the clock of event times and top-offender buckets (default time.Now).
	Now func() time.Time
	// Registerer, if set, receives the audit metrics (floodgate_audit_dropped_total and friends).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Stats are the Recorder's counters. Denials == Queued + Dropped always holds.
type Stats struct {
	Denials         uint64 // events Observe produced
	Queued          uint64 // events accepted by the queue
	Dropped         uint64 // events lost because the queue was full
	Processed       uint64 // events the pipeline took from the queue
	Remote          uint64 // events of other replicas read from the stream
	StreamWritten   uint64
	StreamDropped   uint64 // events not sent to the stream (buffer full, or still failing at shutdown)
	StreamErrors    uint64
	PostgresWritten uint64
	PostgresDropped uint64 // events not written to PostgreSQL (buffer full, or still failing at shutdown)
	PostgresErrors  uint64
	PostgresPending int
}

// Recorder turns denials into Events: an extauthz.Observer whose Observe never blocks, plus a pipeline
// (Run) that fans the events out to the ring, live subscribers, the Redis stream and PostgreSQL.
type Recorder struct {
	replica    string
	now        func() time.Time
	cfgVersion func() uint64
	log        *slog.Logger
	queue      chan *Event
	hub        *hub
	top        *topOffenders
	pg         *batcher // nil without DB
	db         *pgxpool.Pool
	stream     *batcher // nil without Redis
	redis      redis.UniversalClient
	streamKey  string // this replica's stream
	writersKey string // the sorted set of the fleet's streams
	legacyKey  string // the single stream of replicas before per-replica streams
	maxLen     int64
	shutdown   time.Duration
	running    atomic.Bool
	migrated   atomic.Bool

	denials, queued, dropped, processed, remote atomic.Uint64
	// closed is set when Run has taken the last events: later ones are dropped (counted), never left
	// unprocessed in the queue. inflight counts the Observe/RecordChange calls putting an event in.
	closed   atomic.Bool
	inflight atomic.Int64
}

// New returns a Recorder; call Run to start its pipeline.
func New(o Options) (*Recorder, error) {
	if o.QueueSize < 0 || o.RingSize < 0 || o.BatchSize < 0 || o.PostgresBuffer < 0 || o.StreamBuffer < 0 ||
		o.TopK < 0 || o.FlushInterval < 0 || o.StreamMaxLen < 0 || o.ShutdownTimeout < 0 {
		return nil, errors.New("audit: negative option")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.QueueSize, DefaultQueueSize)
	def(&o.RingSize, DefaultRingSize)
	def(&o.BatchSize, DefaultBatchSize)
	def(&o.PostgresBuffer, DefaultPostgresBuffer)
	def(&o.StreamBuffer, DefaultStreamBuffer)
	def(&o.TopK, DefaultTopK)
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.StreamMaxLen == 0 {
		o.StreamMaxLen = DefaultStreamMaxLen
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Replica == "" {
		o.Replica = randomReplica()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{
		replica:    o.Replica,
		now:        o.Now,
		cfgVersion: o.ConfigVersion,
		log:        o.Logger,
		queue:      make(chan *Event, o.QueueSize),
		hub:        newHub(o.RingSize),
		top:        newTopOffenders(o.TopK),
		db:         o.DB,
		redis:      o.Redis,
		maxLen:     o.StreamMaxLen,
		shutdown:   o.ShutdownTimeout,
	}
	if o.DB != nil {
		r.pg = newBatcher("postgres", o.PostgresBuffer, o.BatchSize, o.FlushInterval, r.writePostgres, o.Logger)
		r.pg.parallel = postgresParallel
	}
	r.streamKey, r.writersKey, r.legacyKey = streamKeys(o.StreamPrefix, o.Replica)
	if o.Redis != nil {
		r.stream = newBatcher("stream", o.StreamBuffer, o.BatchSize, o.FlushInterval/5, r.writeStream, o.Logger)
	}
	if o.Registerer != nil {
		if err := r.register(o.Registerer); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Observe queues an Event for a denial (OutcomeOverLimit) or a shadow would-be denial; every other
// observation, outages (OutcomeDegraded) included, is ignored. It never blocks: when the queue is full, or
// Run has ended, the event is dropped and counted. It keeps nothing of o.
func (r *Recorder) Observe(o *extauthz.Observation) {
	var rr *extauthz.RuleResult
	shadow := false
	switch o.Code {
	case extauthz.OutcomeOverLimit:
		for i := range o.Rules {
			if !o.Rules[i].Result.Allowed && !o.Rules[i].Shadow && o.Rules[i].Limit != nil {
				rr = &o.Rules[i]
				break
			}
		}
	case extauthz.OutcomeOK:
		for i := range o.Rules {
			if o.Rules[i].Shadow && !o.Rules[i].Result.Allowed && o.Rules[i].Limit != nil {
				rr = &o.Rules[i]
				shadow = true
				break
			}
		}
		if rr == nil {
			return
		}
	default:
		return
	}
	e := &Event{
		Time:     r.now().UTC().Truncate(time.Microsecond),
		Kind:     KindDenial,
		Service:  o.Service,
		Domain:   Bound(o.Domain),
		ClientIP: Bound(o.ClientIP),
		ProxyIP:  Bound(o.ProxyIP),
		Method:   Bound(o.Method),
		Host:     Bound(o.Host),
		Path:     Bound(o.Path),
		Replica:  r.replica,
		Shadow:   shadow,
		Degraded: o.StoreErr != nil,
	}
	if rr != nil {
		if rr.Rule != nil {
			e.Rule = rr.Rule.Name
		}
		if rr.Limit != nil {
			e.Limit = Limit{Name: rr.Limit.Name, Requests: rr.Limit.Requests, Window: rr.Limit.Window,
				Algorithm: rr.Limit.Algorithm.String()}
		}
		e.Remaining = rr.Result.Remaining
		e.RetryAfter = rr.Result.RetryAfter
		if d := rr.Descriptor; d >= 0 && d < len(o.RLSDescriptors) {
			for _, en := range o.RLSDescriptors[d].GetEntries() {
				e.Entries = append(e.Entries, Entry{Key: Bound(en.GetKey()), Value: Bound(en.GetValue())})
			}
		}
	}
	if e.ClientIP == "" && len(o.RLSDescriptors) > 0 {
		e.ClientIP = rlsClient(o, rr)
	}
	e.ConfigVersion = o.ConfigVersion
	if e.ConfigVersion == 0 && r.cfgVersion != nil {
		e.ConfigVersion = r.cfgVersion()
	}
	r.denials.Add(1)
	r.enqueue(e)
}

// enqueue puts e in the queue, or counts it as dropped when the queue is full or Run has ended.
func (r *Recorder) enqueue(e *Event) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	if r.closed.Load() {
		r.dropped.Add(1)
		return
	}
	select {
	case r.queue <- e:
		r.queued.Add(1)
	default:
		r.dropped.Add(1)
	}
}

// rlsClient is the client of a rate limit service request: the value of a remote_address entry (what
// Envoy's remote_address action sends: the trusted client address), in the denied descriptor first, else
// in any; "" when there is none.
func rlsClient(o *extauthz.Observation, rr *extauthz.RuleResult) string {
	find := func(d *ratelimitv3.RateLimitDescriptor) string {
		for _, en := range d.GetEntries() {
			if en.GetKey() == "remote_address" && en.GetValue() != "" {
				return Bound(en.GetValue())
			}
		}
		return ""
	}
	if rr != nil && rr.Descriptor >= 0 && rr.Descriptor < len(o.RLSDescriptors) {
		if c := find(o.RLSDescriptors[rr.Descriptor]); c != "" {
			return c
		}
	}
	for _, d := range o.RLSDescriptors {
		if c := find(d); c != "" {
			return c
		}
	}
	return ""
}

// RecordChange queues a configuration change event (the audit trail keeps changes alongside denials). Like
// Observe it never blocks; a full queue drops and counts it.
func (r *Recorder) RecordChange(c Change) {
	c.Actor, c.Remote, c.Action = Bound(c.Actor), Bound(c.Remote), Bound(c.Action)
	if len(c.Summary) > MaxDiffBytes {
		c.Summary = Bound(c.Summary[:MaxDiffBytes])
	}
	if len(c.Diff) > MaxDiffBytes {
		c.Diff = json.RawMessage(`[{"note":"diff larger than the audit limit; see the limits history"}]`)
	}
	e := &Event{
		Time:          r.now().UTC().Truncate(time.Microsecond),
		Kind:          KindConfigChange,
		Service:       "admin",
		Replica:       r.replica,
		ConfigVersion: c.VersionAfter,
		Change:        &c,
	}
	r.enqueue(e)
}

// Dropped returns the number of events lost because the queue was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Replica returns the replica id written into events.
func (r *Recorder) Replica() string { return r.replica }

// Stats returns the counters.
func (r *Recorder) Stats() Stats {
	s := Stats{
		Denials:   r.denials.Load(),
		Queued:    r.queued.Load(),
		Dropped:   r.dropped.Load(),
		Processed: r.processed.Load(),
		Remote:    r.remote.Load(),
	}
	if r.stream != nil {
		s.StreamWritten, s.StreamDropped, s.StreamErrors = r.stream.written.Load(), r.stream.dropped.Load(), r.stream.failures.Load()
	}
	if r.pg != nil {
		s.PostgresWritten, s.PostgresDropped, s.PostgresErrors = r.pg.written.Load(), r.pg.dropped.Load(), r.pg.failures.Load()
		s.PostgresPending = r.pg.pending()
	}
	return s
}

// Recent returns up to n of the latest events, oldest first (local and, with Redis, other replicas').
func (r *Recorder) Recent(n int) []Event { return r.hub.recent(n) }

// Subscribe returns a live feed of events (local and fleet) with a buffer of buf events, and a cancel
// function that ends it. A subscriber whose buffer is full when an event arrives is dropped: its channel
// is closed. The channel is also closed by cancel.
func (r *Recorder) Subscribe(buf int) (<-chan Event, func()) { return r.hub.subscribe(buf) }

// TopOffenders returns the n clients and n rules with the most denials over the last window (rounded up
// to whole minutes, 1 to 15), local and fleet events, shadow would-be denials excluded.
func (r *Recorder) TopOffenders(window time.Duration, n int) Offenders {
	return r.top.query(r.now(), window, n)
}

// Run runs the pipeline until ctx ends, then drains the queue and flushes the sinks (bounded by
// Options.ShutdownTimeout) before returning. It returns an error only if the Recorder is already running.
func (r *Recorder) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("audit: recorder already running")
	}
	defer r.running.Store(false)
	r.closed.Store(false)
	stop := make(chan struct{})
	// Sinks keep writing after ctx ends, until the final flush succeeds or the shutdown timeout passes.
	sinkCtx, cancelSinks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSinks()
	var wg sync.WaitGroup
	if r.pg != nil {
		// Ends when stop is closed and its buffer is flushed, or when sinkCtx is cancelled.
		wg.Go(func() { r.pg.run(sinkCtx, stop) })
	}
	if r.stream != nil {
		// Ends like the PostgreSQL writer.
		wg.Go(func() { r.stream.run(sinkCtx, stop) })
		// Ends when ctx ends.
		wg.Go(func() { r.tail(ctx) })
	}
	// The pipeline takes the queue every pipelineEvery rather than waiting on it: a decision's Observe then
	// only ever puts an event into a buffered channel and never wakes this goroutine (measured: the
	// wake-up per denial cost the decision path more than the event's processing).
	var ids idGen
	tick := time.NewTicker(pipelineEvery)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-tick.C:
			r.drain(&ids)
		case <-ctx.Done():
			done = true
		}
	}
	// From here on events are counted as dropped; wait for the calls already putting one in, then take
	// the queue for the last time, so no event stays in it unprocessed and uncounted.
	r.closed.Store(true)
	for r.inflight.Load() > 0 {
		runtime.Gosched()
	}
	r.drain(&ids)
	close(stop)
	timer := time.AfterFunc(r.shutdown, cancelSinks)
	defer timer.Stop()
	wg.Wait()
	r.hub.closeAll()
	return nil
}

// process stamps e with its id and hands it to every destination.
// pipelineEvery is how often the pipeline takes the queued events (at most this much delay before an
// event reaches the ring, the live feed and the sinks' buffers).
const pipelineEvery = 5 * time.Millisecond

// drain processes every event queued now, yielding the processor every yieldEvery events.
func (r *Recorder) drain(ids *idGen) {
	for n := 1; ; n++ {
		select {
		case e := <-r.queue:
			r.process(ids, e)
		default:
			return
		}
		if n%yieldEvery == 0 {
			runtime.Gosched()
		}
	}
}

// yieldEvery is how many events the pipeline and the sinks handle between two runtime.Gosched calls. The
// audit goroutines work in bursts (a 5 ms queue, a 1,000-event batch) on the cores that answer decisions;
// yielding every few dozen events (≈ 10–30 µs of work) lets a decision that became ready meanwhile run
// instead of waiting for the whole burst, which otherwise shows in the decision latency's tail.
const yieldEvery = 32

func (r *Recorder) process(ids *idGen, e *Event) {
	e.ID = ids.next(e.Time)
	r.processed.Add(1)
	if !e.Shadow && e.Kind == KindDenial { // counted before it is visible, so a reader of the feed sees it counted
		r.top.add(e.Time, e.ClientIP, e.Rule)
	}
	r.hub.publish(e)
	if r.stream != nil {
		r.stream.add(e)
	}
	if r.pg != nil {
		r.pg.add(e)
	}
}

// register adds the audit metrics to reg.
func (r *Recorder) register(reg prometheus.Registerer) error {
	counter := func(name, help string, labels prometheus.Labels, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) })
	}
	const droppedHelp = "Audit events lost, by stage: queue (full queue, or after the pipeline stopped: lost everywhere), postgres and " +
		"stream (that sink's buffer full, or still failing at shutdown)."
	zero := func() uint64 { return 0 }
	streamDropped, pgDropped, pgWritten, pgErrors := zero, zero, zero, zero
	if r.stream != nil {
		streamDropped = r.stream.dropped.Load
	}
	if r.pg != nil {
		pgDropped, pgWritten, pgErrors = r.pg.dropped.Load, r.pg.written.Load, r.pg.failures.Load
	}
	cs := []prometheus.Collector{
		counter("floodgate_audit_events_total", "Denial events produced by the decision path.", nil, r.denials.Load),
		counter("floodgate_audit_dropped_total", droppedHelp, prometheus.Labels{"stage": "queue"}, r.dropped.Load),
		counter("floodgate_audit_dropped_total", droppedHelp, prometheus.Labels{"stage": "postgres"}, pgDropped),
		counter("floodgate_audit_dropped_total", droppedHelp, prometheus.Labels{"stage": "stream"}, streamDropped),
		counter("floodgate_audit_postgres_written_total", "Audit events written to PostgreSQL.", nil, pgWritten),
		counter("floodgate_audit_postgres_errors_total", "Failed PostgreSQL batch writes (retried).", nil, pgErrors),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
