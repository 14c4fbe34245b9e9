package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Sources of the limits (RuntimeOptions.Source, Status.Source, ReplicaStatus.Source).
const (
	// SourceAPI: the Store is the truth; the admin API changes it through Runtime.Update.
	SourceAPI = "api"
	// SourceFile: the files are the truth on each replica; Update is refused with ErrReadOnly.
	SourceFile = "file"
)

// Revision sources besides SourceAPI and SourceFile.
const (
	// SourceSeed marks the first version put into an empty store (from --config or the bundled examples).
	SourceSeed = "seed"
	// SourceRollback marks a version that restores an older one's files.
	SourceRollback = "rollback"
)

// ErrReadOnly is returned by Runtime.Update when the limits come from files.
var ErrReadOnly = errors.New("the limits come from files (--config-source=file); edit the files")

// updateAttempts bounds Update's compare-and-set retries when the caller accepts any current version.
const updateAttempts = 5

// RuntimeOptions configure NewRuntime. Zero values take the defaults given.
type RuntimeOptions struct {
	// Source is SourceAPI or SourceFile. Empty: SourceFile when Path is set, else SourceAPI.
	Source string
	// Path is the --config file or directory. Empty: no files; the bundled examples (Default) seed the
	// store (api) or are served (file).
	Path string
	// Store is the api source's store: a MemoryStore (one process) or a RedisStore (the fleet). nil: a
	// new MemoryStore. Ignored by the file source, which keeps its local history in a new MemoryStore.
	Store Store
	// Replicas is the registry this replica reports to. nil: NewMemoryReplicas().
	Replicas Replicas
	// Replica is this replica's name in the registry. Empty: the host name.
	Replica string
	// Poll is how often the api source checks the store's version, the fallback for a missed pub/sub
	// message. Default 500 ms, so a change reaches every replica within about 1 s without pub/sub.
	Poll time.Duration
	// FilePoll is how often the file source reads the files. Default 1 s.
	FilePoll time.Duration
	// ReportEvery is the heartbeat to Replicas (also sent at once after every apply). Default 5 s.
	ReportEvery time.Duration
	// Observer is told about applied versions and rejected loads; may be nil.
	Observer RuntimeObserver
	// Logger; nil discards.
	Logger *slog.Logger
}

// RuntimeObserver hears about every apply and every rejected load (for metrics). Its methods are called
// one at a time, in order, on the goroutine applying the change; they must return quickly and must not
// call Runtime.Update.
type RuntimeObserver interface {
	// Applied: a new version is being enforced (also for the first load). lag is how long after the
	// revision was stored that happened (0 when the clocks disagree the other way).
	Applied(info Info, lag time.Duration)
	// LoadFailed: a candidate was rejected (file source), or a stored version does not compile. Called
	// once per distinct rejected document, not once per poll.
	LoadFailed(err error)
	// LoadRecovered: after a LoadFailed, the files are valid again and equal the running version (nothing
	// new to apply, so no Applied call follows).
	LoadRecovered()
}

// Status is what the runtime is enforcing and how its last load went (for /readyz and the admin API).
type Status struct {
	Source    string    // SourceAPI or SourceFile
	Version   uint64    // the running revision (0: a fallback that is not a stored version, see NewRuntime)
	Digest    string    // its DigestFiles
	AppliedAt time.Time // when this replica started enforcing it
	// LastLoadOK is false while the newest candidate (files, or a stored version) is rejected; the
	// running version keeps serving. LastError and LastErrorAt describe that rejection (empty when OK).
	LastLoadOK  bool
	LastError   string
	LastErrorAt time.Time
	// LastGoodAt is the time of the last good load: an apply, or files found valid again.
	LastGoodAt time.Time
	// Reloads counts the versions applied after the first.
	Reloads uint64
}

// Runtime holds the limits this replica enforces and keeps them current: from the Store (api source:
// pub/sub notifications plus a version poll) or from the files (file source: a poll). Snapshot is the
// hot path. Safe for concurrent use; Run is called once.
type Runtime struct {
	source      string
	path        string
	store       Store
	replicas    Replicas
	replica     string
	poll        time.Duration
	filePoll    time.Duration
	reportEvery time.Duration
	observer    RuntimeObserver
	logger      *slog.Logger

	snap atomic.Pointer[Snapshot] // never nil after NewRuntime
	kick chan struct{}            // capacity 1: report to the registry now (after an apply or a failure)

	// applyMu serialises applying and the observer's calls.
	applyMu    sync.Mutex
	loaded     bool   // a first version was applied
	badVersion uint64 // a stored version that does not compile, reported once (written by NewRuntime and Run)

	stMu   sync.Mutex
	status Status
	lag    time.Duration // of the running version

	// Owned by the goroutine running Run.
	watch      fileWatch // file source
	behind     int       // api source: consecutive polls that found the store behind the running version
	reportFail bool      // the last heartbeat failed (logged once)
	syncFail   bool      // the last store read failed (logged once)
}

// NewRuntime loads the first version, so Snapshot is usable when it returns.
//
// The api source reads the store's current version; when the store is empty, it puts the seed (the files
// at Path, else the bundled examples) as version 1 (Source "seed"). When the store already holds a
// version, that version wins and the seed is ignored (logged at info). Should the stored version not
// compile (it was validated when stored, so only a downgrade of Floodgate could do it), the seed is
// served as version 0, the failure is reported (Status, LoadFailed) and the next good version replaces it.
//
// The file source reads and compiles the files at Path (or serves the bundled examples when Path is
// empty) and keeps them as version 1 of a local MemoryStore.
//
// An error means invalid seed or files, or an unreachable store.
func NewRuntime(ctx context.Context, o RuntimeOptions) (*Runtime, error) {
	if o.Source == "" {
		o.Source = SourceAPI
		if o.Path != "" {
			o.Source = SourceFile
		}
	}
	if o.Source != SourceAPI && o.Source != SourceFile {
		return nil, fmt.Errorf("limits source %q: want %q or %q", o.Source, SourceAPI, SourceFile)
	}
	if o.Store == nil || o.Source == SourceFile {
		o.Store = NewMemoryStore()
	}
	if o.Replicas == nil {
		o.Replicas = NewMemoryReplicas()
	}
	if o.Replica == "" {
		o.Replica, _ = os.Hostname()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{
		source:      o.Source,
		path:        o.Path,
		store:       o.Store,
		replicas:    o.Replicas,
		replica:     o.Replica,
		poll:        positive(o.Poll, 500*time.Millisecond),
		filePoll:    positive(o.FilePoll, time.Second),
		reportEvery: positive(o.ReportEvery, 5*time.Second),
		observer:    o.Observer,
		logger:      o.Logger,
		kick:        make(chan struct{}, 1),
		status:      Status{Source: o.Source},
	}
	if r.source == SourceFile {
		return r, r.loadFiles(ctx)
	}
	return r, r.loadStore(ctx)
}

func positive(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// seed returns the first document: the files at Path, else the bundled examples, compiled.
func (r *Runtime) seed() ([]File, *Snapshot, error) {
	var files []File
	if r.path == "" {
		files = copyFiles(Default().Files())
	} else {
		var err error
		if files, err = readLimitFiles(r.path); err != nil {
			return nil, nil, fmt.Errorf("load limits %s: %w", r.path, err)
		}
	}
	s, err := ParseFiles(files...)
	if err != nil {
		return nil, nil, fmt.Errorf("load limits %s: %w", r.seedName(), err)
	}
	return files, s, nil
}

func (r *Runtime) seedName() string {
	if r.path == "" {
		return "bundled examples"
	}
	return r.path
}

func (r *Runtime) loadFiles(ctx context.Context) error {
	files, s, err := r.seed()
	if err != nil {
		return err
	}
	rev := Revision{Files: files, Source: SourceFile, Author: SourceFile}
	if r.path == "" {
		rev.Source, rev.Author = SourceSeed, SourceSeed
	}
	_, err = r.putAndApply(ctx, rev, s)
	return err
}

func (r *Runtime) loadStore(ctx context.Context) error {
	cur, err := r.store.Current(ctx)
	if err != nil {
		return fmt.Errorf("read limits store: %w", err)
	}
	if cur.Version == 0 {
		files, s, err := r.seed()
		if err != nil {
			return err
		}
		seed := Revision{Files: files, Source: SourceSeed, Author: SourceSeed, Message: "seed from " + r.seedName()}
		rev, err := r.store.Put(ctx, 0, seed)
		switch {
		case err == nil:
			r.applyMu.Lock()
			r.swap(rev, s)
			r.applyMu.Unlock()
			return nil
		case !errors.Is(err, ErrConflict):
			return fmt.Errorf("seed limits store: %w", err)
		}
		// Another replica seeded the store first: its version wins.
		if cur, err = r.store.Current(ctx); err != nil {
			return fmt.Errorf("read limits store: %w", err)
		}
	} else {
		r.logger.Info("limits store already holds a version; the seed is ignored",
			"seed", r.seedName(), "version", cur.Version, "source", cur.Source)
	}
	if r.applyStored(cur, false) {
		return nil
	}
	// The stored version does not compile (reported by applyStored): serve the seed as version 0, and
	// keep the failure visible in Status until a good version replaces it.
	failed := r.Status()
	files, s, err := r.seed()
	if err != nil {
		return err
	}
	r.applyMu.Lock()
	r.swap(Revision{Files: files, Source: SourceSeed, Author: SourceSeed}, s)
	r.applyMu.Unlock()
	r.stMu.Lock()
	r.status.LastLoadOK, r.status.LastError, r.status.LastErrorAt = false, failed.LastError, failed.LastErrorAt
	r.stMu.Unlock()
	return nil
}

// Snapshot returns the limits being enforced: one atomic load, never nil.
func (r *Runtime) Snapshot() *Snapshot { return r.snap.Load() }

// Store returns the store holding the versions (the local MemoryStore for the file source).
func (r *Runtime) Store() Store { return r.store }

// Replicas lists the live replicas of the registry.
func (r *Runtime) Replicas(ctx context.Context) ([]ReplicaStatus, error) { return r.replicas.List(ctx) }

// Status reports the running version and the last load.
func (r *Runtime) Status() Status {
	r.stMu.Lock()
	defer r.stMu.Unlock()
	return r.status
}

func (r *Runtime) runningVersion() uint64 {
	if s := r.snap.Load(); s != nil {
		return s.info.Version
	}
	return 0
}

// Update stores files as a new version and applies it here before returning (api source only; the file
// source returns ErrReadOnly). The document is compiled first: an invalid one returns Errors and stores
// nothing. expect is the version the caller edited: a stale one returns an error wrapping ErrConflict;
// 0 accepts whatever is current (retrying the compare-and-set a few times). meta gives Author, Remote,
// Source (default "api") and Message; its Version, Digest, Files and CreatedAt are ignored.
//
// The returned snapshot is the stored version's; it is the running one unless a newer version was
// applied meanwhile.
func (r *Runtime) Update(ctx context.Context, expect uint64, files []File, meta Revision) (Revision, *Snapshot, error) {
	if r.source == SourceFile {
		return Revision{}, nil, ErrReadOnly
	}
	files = copyFiles(files)
	s, err := ParseFiles(files...)
	if err != nil {
		return Revision{}, nil, err
	}
	meta.Files = files
	if meta.Source == "" {
		meta.Source = SourceAPI
	}
	for attempt := 1; ; attempt++ {
		base := expect
		if expect == 0 {
			if base, err = r.storeVersion(ctx); err != nil {
				return Revision{}, nil, fmt.Errorf("update limits: %w", err)
			}
		}
		before := r.runningVersion()
		rev, err := r.store.Put(ctx, base, meta)
		if err != nil {
			if expect == 0 && errors.Is(err, ErrConflict) && attempt < updateAttempts {
				continue
			}
			return Revision{}, nil, fmt.Errorf("update limits: %w", err)
		}
		snap := s.WithRevision(rev)
		r.applyMu.Lock()
		// Newer than the running version; or the store had gone back (base < before, e.g. an emptied
		// Redis) and nothing was applied meanwhile: the store is the truth either way.
		switch running := r.runningVersion(); {
		case rev.Version > running || base < before && running == before:
			r.swap(rev, s)
			snap = r.snap.Load()
		case rev.Version == running: // Run applied it first, from the store's notification
			snap = r.snap.Load()
		}
		r.applyMu.Unlock()
		return rev, snap, nil
	}
}

// versioner is a store that can report its current version without reading the revision (the poll).
type versioner interface {
	currentVersion(ctx context.Context) (uint64, error)
}

func (r *Runtime) storeVersion(ctx context.Context) (uint64, error) {
	if v, ok := r.store.(versioner); ok {
		return v.currentVersion(ctx)
	}
	cur, err := r.store.Current(ctx)
	return cur.Version, err
}

// applyStored compiles rev and applies it when it is newer than the running version (with allowOlder,
// also when older: the store went back, see pollStore). It reports whether rev runs now.
// A revision that does not compile is reported once (log, Status, LoadFailed) and the running one stays.
func (r *Runtime) applyStored(rev Revision, allowOlder bool) bool {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	running := r.runningVersion()
	if r.loaded && (rev.Version == running || rev.Version < running && !allowOlder) {
		return rev.Version == running
	}
	if rev.Version == r.badVersion {
		return false
	}
	s, err := ParseFiles(rev.Files...)
	if err != nil {
		r.badVersion = rev.Version
		r.loadFailed(fmt.Errorf("compile stored limits version %d: %w", rev.Version, err),
			"stored limits version does not compile; the running version keeps serving", "version", rev.Version)
		return false
	}
	r.swap(rev, s)
	return true
}

// swap makes s (compiled from rev) the running snapshot. applyMu is held.
func (r *Runtime) swap(rev Revision, s *Snapshot) {
	snap := s.WithRevision(rev)
	lag := max(time.Since(rev.CreatedAt), 0)
	if rev.CreatedAt.IsZero() {
		lag = 0
	}
	r.snap.Store(snap)
	now := time.Now()
	r.stMu.Lock()
	if r.loaded {
		r.status.Reloads++
	}
	r.status.Version, r.status.Digest, r.status.AppliedAt = rev.Version, snap.info.Digest, now
	r.status.LastLoadOK, r.status.LastError, r.status.LastErrorAt, r.status.LastGoodAt = true, "", time.Time{}, now
	r.lag = lag
	r.stMu.Unlock()
	r.loaded = true
	r.logger.Info("limits applied", "version", rev.Version, "digest", snap.info.Digest, "source", rev.Source,
		"author", rev.Author, "domains", len(snap.names), "lag_seconds", lag.Seconds())
	if r.observer != nil {
		r.observer.Applied(snap.Info(), lag)
	}
	r.kickReport()
}

// loadFailed reports a rejected candidate: one ERROR line, Status, the observer, a heartbeat.
func (r *Runtime) loadFailed(err error, msg string, args ...any) {
	args = append(args, "running_version", r.runningVersion(), "error", err.Error())
	r.logger.Error(msg, args...)
	r.markFailed(err)
	if r.observer != nil {
		r.observer.LoadFailed(err)
	}
	r.kickReport()
}

func (r *Runtime) markFailed(err error) {
	r.stMu.Lock()
	r.status.LastLoadOK, r.status.LastError, r.status.LastErrorAt = false, err.Error(), time.Now()
	r.stMu.Unlock()
}

func (r *Runtime) kickReport() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run keeps the limits current and reports to the replica registry until ctx ends. The api source
// follows the store's Changes and polls its version every Poll (the fallback for lost messages); the
// file source reads the files every FilePoll. Every apply is reported to the registry at once, and
// the state every ReportEvery. Run creates its subscription and tickers once: an apply creates no
// goroutine, timer or connection. Call Run once; it returns when ctx ends and its subscription is closed.
func (r *Runtime) Run(ctx context.Context) {
	heartbeat := time.NewTicker(r.reportEvery)
	defer heartbeat.Stop()
	every := r.poll
	var changes <-chan uint64
	if r.source == SourceFile {
		every = r.filePoll
	} else {
		changes = r.store.Changes(ctx)
		sub := changes
		// Run returns only after the store's subscriber goroutine has closed the channel.
		defer func() {
			for range sub {
			}
		}()
	}
	poll := time.NewTicker(every)
	defer poll.Stop()
	r.report(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-changes:
			if !ok {
				changes = nil // ctx ended, or the store gave up: the poll carries on
				continue
			}
			if v > r.runningVersion() {
				r.sync(ctx, false)
			}
		case <-poll.C:
			if r.source == SourceFile {
				r.checkFiles(ctx)
			} else {
				r.pollStore(ctx)
			}
		case <-r.kick:
			r.report(ctx)
		case <-heartbeat.C:
			r.report(ctx)
		}
	}
}

// pollStore compares the store's version with the running one. Newer: apply the store's current
// revision. Older on two polls in a row (one could be a read that raced this replica's own Update): the
// store went back, e.g. Redis restarted without persistence. An empty store is seeded again with the
// running document (version 1); a store that holds an older version is followed, since it is the truth.
func (r *Runtime) pollStore(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := r.storeVersion(cctx)
	if err != nil {
		r.syncFailed(err)
		return
	}
	running := r.runningVersion()
	switch {
	case v > running && v != r.badVersion:
		r.behind = 0
		r.sync(ctx, false)
	case v < running:
		if r.behind++; r.behind < 2 {
			return
		}
		r.behind = 0
		if v == 0 {
			r.reseed(cctx)
			return
		}
		r.logger.Warn("limits store holds an older version than the one running; following the store",
			"store_version", v, "running_version", running)
		r.sync(ctx, true)
	default:
		r.behind = 0
		r.syncOK()
	}
}

// sync applies the store's current revision.
func (r *Runtime) sync(ctx context.Context, allowOlder bool) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cur, err := r.store.Current(cctx)
	if err != nil {
		r.syncFailed(err)
		return
	}
	r.syncOK()
	if cur.Version > 0 {
		r.applyStored(cur, allowOlder)
	}
}

// reseed puts the running document into an empty store as version 1 and follows it. Several replicas
// may race: one Put wins, the others get ErrConflict and follow the winner.
func (r *Runtime) reseed(ctx context.Context) {
	snap := r.Snapshot()
	rev, err := r.store.Put(ctx, 0, Revision{Files: snap.Files(), Source: SourceSeed, Author: SourceSeed,
		Message: fmt.Sprintf("re-seeded from version %d: the store was empty", snap.info.Version)})
	switch {
	case err == nil:
		r.logger.Warn("limits store was empty; stored the running document again as version 1",
			"running_version", snap.info.Version, "digest", rev.Digest)
		r.applyStored(rev, true)
	case errors.Is(err, ErrConflict):
		r.sync(ctx, true)
	default:
		r.syncFailed(err)
	}
}

func (r *Runtime) syncFailed(err error) {
	if !r.syncFail {
		r.logger.Warn("limits store unreachable; the running version keeps serving", "error", err)
	}
	r.syncFail = true
}

func (r *Runtime) syncOK() {
	if r.syncFail {
		r.logger.Info("limits store reachable again")
	}
	r.syncFail = false
}

// report sends this replica's status to the registry; a failure is logged once until one succeeds.
func (r *Runtime) report(ctx context.Context) {
	r.stMu.Lock()
	st, lag := r.status, r.lag
	r.stMu.Unlock()
	rs := ReplicaStatus{
		Replica:     r.replica,
		Version:     st.Version,
		Digest:      st.Digest,
		Source:      r.source,
		AppliedAt:   st.AppliedAt,
		LagSeconds:  lag.Seconds(),
		LastError:   st.LastError,
		LastErrorAt: st.LastErrorAt,
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := r.replicas.Report(cctx, rs)
	switch {
	case err != nil && !r.reportFail && ctx.Err() == nil:
		r.logger.Warn("report to the replica registry", "replica", r.replica, "error", err)
		r.reportFail = true
	case err == nil && r.reportFail:
		r.logger.Info("reporting to the replica registry again", "replica", r.replica)
		r.reportFail = false
	}
}
