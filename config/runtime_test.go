package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redistest"
)

// userDoc is domain api with user=* at perMinute requests per minute (B38's v1 shape).
func userDoc(perMinute int) string {
	return fmt.Sprintf(`domain: api
descriptors:
  - key: user
    value: "*"
    rate_limit: {unit: minute, requests_per_unit: %d}
`, perMinute)
}

// dupDoc is B38's v2: userDoc(5) plus two identical user=vip entries at 10 and 20 per minute.
const dupDoc = `domain: api
descriptors:
  - key: user
    value: "*"
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 20}
`

func apiFiles(doc string) []File { return []File{{Name: "api/api.yaml", Data: []byte(doc)}} }

// userLimit is the per-minute limit the snapshot applies to user=u1 (0 when nothing matches).
func userLimit(s *Snapshot) uint64 {
	r, ok := s.Match("api", []Entry{{Key: "user", Value: "u1"}})
	if !ok || len(r.Limits) == 0 {
		return 0
	}
	return r.Limits[0].RequestsPerUnit
}

// logBuffer is a bytes.Buffer for a slog handler written by several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// count returns how many log lines contain every one of subs.
func (s *logBuffer) count(subs ...string) int {
	n := 0
	for line := range strings.Lines(s.String()) {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			n++
		}
	}
	return n
}

func captureLog(t *testing.T) (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// runtimeRecorder is a RuntimeObserver that remembers every call.
type runtimeRecorder struct {
	mu      sync.Mutex
	applied []Info
	lags    []time.Duration
	failed  []error
	healed  int
}

func (r *runtimeRecorder) LoadRecovered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.healed++
}

func (r *runtimeRecorder) Applied(info Info, lag time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied, r.lags = append(r.applied, info), append(r.lags, lag)
}

func (r *runtimeRecorder) LoadFailed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, err)
}

func (r *runtimeRecorder) counts() (applied, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied), len(r.failed)
}

// runRuntime runs r.Run until the test ends, then waits for it to return.
func runRuntime(t *testing.T, r *Runtime) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Ends when the test's cleanup cancels ctx.
	go func() {
		r.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5 s of ctx ending")
		}
	})
}

// waitUntil polls cond every 10 ms until it holds or within passes; it returns how long that took.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// quietStore is a Store whose Changes never fires: only the poll can bring changes.
type quietStore struct{ Store }

func (q quietStore) Changes(ctx context.Context) <-chan uint64 {
	ch := make(chan uint64)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

func newAPIRuntime(t *testing.T, o RuntimeOptions) *Runtime {
	t.Helper()
	o.Source = SourceAPI
	r, err := NewRuntime(context.Background(), o)
	if err != nil {
		t.Fatalf("NewRuntime(%s): %v", o.Replica, err)
	}
	return r
}

// TestRuntimeAPIPropagation: replicas sharing a RedisStore through separate clients. An Update on A runs
// on A when it returns and on B (pub/sub) and C (poll only) within 1 s; an invalid one changes nothing.
func TestRuntimeAPIPropagation(t *testing.T) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	newReplica := func(name string, quiet bool) (*Runtime, *runtimeRecorder, *logBuffer) {
		client := newRedisClient(t, "fgtest-"+name)
		var store Store = NewRedisStore(RedisStoreOptions{Client: client, Prefix: prefix})
		if quiet {
			store = quietStore{store}
		}
		logger, logs := captureLog(t)
		obs := &runtimeRecorder{}
		r := newAPIRuntime(t, RuntimeOptions{Store: store, Replicas: NewRedisReplicas(client, prefix, 0),
			Replica: name, Observer: obs, Logger: logger})
		runRuntime(t, r)
		return r, obs, logs
	}
	a, obsA, _ := newReplica("a", false)
	b, _, logsB := newReplica("b", false)
	c, _, _ := newReplica("c", true)

	// A seeded the empty store with the bundled examples; B and C found version 1 and ignored their seed.
	for _, r := range []*Runtime{a, b, c} {
		if info := r.Snapshot().Info(); info.Version != 1 || info.Source != SourceSeed || info.Digest != Default().Info().Digest {
			t.Errorf("%s: got version %d source %q, want the seeded version 1", r.replica, info.Version, info.Source)
		}
	}
	if logsB.count("seed is ignored") != 1 {
		t.Errorf("B: got %d 'seed is ignored' log lines, want 1", logsB.count("seed is ignored"))
	}

	for i, limit := range []uint64{3, 4, 5} {
		rev, snap, err := a.Update(ctx, uint64(i+1), apiFiles(userDoc(int(limit))), Revision{Author: "alice", Message: "tighten"})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if rev.Version != uint64(i+2) || rev.Source != SourceAPI || rev.Author != "alice" {
			t.Errorf("Update: got version %d source %q author %q, want %d api alice", rev.Version, rev.Source, rev.Author, i+2)
		}
		if got := a.Snapshot(); got != snap || got.Info().Version != rev.Version || userLimit(got) != limit {
			t.Errorf("A right after Update: got version %d limit %d, want %d and %d",
				got.Info().Version, userLimit(got), rev.Version, limit)
		}
		for _, r := range []*Runtime{b, c} {
			took := waitUntil(t, time.Second, r.replica+" applies version "+fmt.Sprint(rev.Version), func() bool {
				return r.Snapshot().Info().Version == rev.Version
			})
			t.Logf("%s applied version %d after %v", r.replica, rev.Version, took)
			if got := userLimit(r.Snapshot()); got != limit {
				t.Errorf("%s: got limit %d, want %d", r.replica, got, limit)
			}
		}
	}

	// Invalid: Errors naming the duplicate, nothing stored, nothing applied anywhere.
	_, _, err := a.Update(ctx, 0, apiFiles(dupDoc), Revision{Author: "alice"})
	var errs Errors
	if !errors.As(err, &errs) || !strings.Contains(err.Error(), "api.user_vip") {
		t.Fatalf("Update(duplicate descriptors): got %v, want Errors naming api.user_vip", err)
	}
	time.Sleep(600 * time.Millisecond) // more than one poll
	for _, r := range []*Runtime{a, b, c} {
		if v := r.Status().Version; v != 4 {
			t.Errorf("%s after the invalid Update: got version %d, want 4", r.replica, v)
		}
	}
	if cur, _ := a.Store().Current(ctx); cur.Version != 4 {
		t.Errorf("store after the invalid Update: got version %d, want 4", cur.Version)
	}

	// A stale expect is a conflict; expect 0 applies to whatever is current.
	if _, _, err := b.Update(ctx, 2, apiFiles(userDoc(9)), Revision{}); !errors.Is(err, ErrConflict) {
		t.Errorf("Update(stale 2): got %v, want ErrConflict", err)
	}
	if rev, _, err := b.Update(ctx, 0, apiFiles(userDoc(9)), Revision{}); err != nil || rev.Version != 5 {
		t.Errorf("Update(0): got version %d, %v; want 5", rev.Version, err)
	}

	waitUntil(t, time.Second, "A applies version 5", func() bool { return a.Status().Version == 5 })
	st := a.Status()
	if st.Source != SourceAPI || !st.LastLoadOK || st.Reloads != 4 || st.LastGoodAt.IsZero() || st.Digest != a.Snapshot().Info().Digest {
		t.Errorf("A status: got %+v, want source api, last load OK, 4 reloads", st)
	}
	if applied, failed := obsA.counts(); applied != 5 || failed != 0 {
		t.Errorf("A observer: got %d applied, %d failed; want 5, 0", applied, failed)
	}

	// Every replica reports the version it runs.
	waitUntil(t, 2*time.Second, "all replicas report version 5", func() bool {
		rs, err := c.Replicas(ctx)
		if err != nil || len(rs) != 3 {
			return false
		}
		for _, s := range rs {
			if s.Version != 5 || s.Source != SourceAPI || s.AppliedAt.IsZero() {
				return false
			}
		}
		return true
	})
}

// TestRuntimeAPIConcurrentUpdates: Updates with expect 0 from several replicas all land, in some order.
func TestRuntimeAPIConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	var rs []*Runtime
	for i := range 3 {
		client := newRedisClient(t, fmt.Sprintf("fgtest-cu-%d", i))
		rs = append(rs, newAPIRuntime(t, RuntimeOptions{Store: NewRedisStore(RedisStoreOptions{Client: client, Prefix: prefix}),
			Replica: fmt.Sprint(i)}))
	}
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		// Ends after its one Update.
		go func() {
			defer wg.Done()
			if _, _, err := r.Update(ctx, 0, apiFiles(userDoc(10+i)), Revision{}); err != nil {
				t.Errorf("Update on %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if cur, _ := rs[0].Store().Current(ctx); cur.Version != 4 {
		t.Errorf("got version %d, want 4 (seed + 3 updates)", cur.Version)
	}
}

// TestRuntimeBrokenStoredVersion: a stored version that does not compile (Store.Put does not validate)
// is reported once and the running version keeps serving; the next good version applies.
func TestRuntimeBrokenStoredVersion(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	logger, logs := captureLog(t)
	obs := &runtimeRecorder{}
	r := newAPIRuntime(t, RuntimeOptions{Store: quietStore{store}, Observer: obs, Logger: logger, Poll: 20 * time.Millisecond})
	runRuntime(t, r)
	if _, err := store.Put(ctx, 1, Revision{Files: apiFiles(dupDoc)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "the failure is reported", func() bool { return !r.Status().LastLoadOK })
	time.Sleep(200 * time.Millisecond) // 10 polls
	if v := r.Snapshot().Info().Version; v != 1 {
		t.Errorf("got version %d running, want 1", v)
	}
	if _, failed := obs.counts(); failed != 1 {
		t.Errorf("LoadFailed: got %d calls, want 1", failed)
	}
	if n := logs.count("level=ERROR"); n != 1 {
		t.Errorf("got %d ERROR lines, want 1", n)
	}
	if st := r.Status(); !strings.Contains(st.LastError, "api.user_vip") || st.LastErrorAt.IsZero() || st.LastGoodAt.IsZero() {
		t.Errorf("status: got %+v, want the error naming api.user_vip and both times", st)
	}
	if _, _, err := r.Update(ctx, 0, apiFiles(userDoc(8)), Revision{}); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Version != 3 || !st.LastLoadOK || st.LastError != "" {
		t.Errorf("status after a good version: got %+v, want version 3, last load OK", st)
	}
}

// TestRuntimeStoreEmptied: when Redis loses every key (a restart without persistence), the runtime stores
// the running document again as version 1 and the fleet follows it; updates work again.
func TestRuntimeStoreEmptied(t *testing.T) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	client := newRedisClient(t, "fgtest-emptied")
	a := newAPIRuntime(t, RuntimeOptions{Store: NewRedisStore(RedisStoreOptions{Client: client, Prefix: prefix}),
		Replica: "a", Poll: 50 * time.Millisecond})
	b := newAPIRuntime(t, RuntimeOptions{Store: NewRedisStore(RedisStoreOptions{Client: newRedisClient(t, "fgtest-emptied-b"), Prefix: prefix}),
		Replica: "b", Poll: 50 * time.Millisecond})
	runRuntime(t, a)
	runRuntime(t, b)
	for i := range 3 {
		if _, _, err := a.Update(ctx, 0, apiFiles(userDoc(20+i)), Revision{}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, time.Second, "b runs version 4", func() bool { return b.Status().Version == 4 })
	digest := a.Status().Digest
	redistest.DeleteMatching(ctx, client, prefix+"*")
	for _, r := range []*Runtime{a, b} {
		waitUntil(t, 2*time.Second, r.replica+" follows the re-seeded store", func() bool { return r.Status().Version == 1 })
		if st := r.Status(); st.Digest != digest {
			t.Errorf("%s: got digest %s, want the running document's %s", r.replica, st.Digest, digest)
		}
	}
	if rev, _, err := b.Update(ctx, 0, apiFiles(userDoc(30)), Revision{}); err != nil || rev.Version != 2 {
		t.Fatalf("Update after the re-seed: got version %d, %v; want 2", rev.Version, err)
	}
	waitUntil(t, time.Second, "a applies version 2", func() bool { return userLimit(a.Snapshot()) == 30 })
}

// TestRuntimeSeed: the api source seeds an empty store from Path; a store holding a version ignores the
// seed; an invalid seed or an unreachable store fail NewRuntime; the file source refuses Update.
func TestRuntimeSeed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good, bad := dir+"/good.yaml", dir+"/bad.yaml"
	writeFile(t, good, userDoc(6))
	writeFile(t, bad, dupDoc)

	store := NewMemoryStore()
	r, err := NewRuntime(ctx, RuntimeOptions{Source: SourceAPI, Path: good, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := store.Current(ctx)
	if cur.Version != 1 || cur.Source != SourceSeed || cur.Files[0].Name != good || userLimit(r.Snapshot()) != 6 {
		t.Errorf("seeded: got version %d source %q, limit %d; want version 1 from %s, limit 6",
			cur.Version, cur.Source, userLimit(r.Snapshot()), good)
	}
	if st := r.Status(); st.Version != 1 || !st.LastLoadOK || st.Reloads != 0 {
		t.Errorf("status: got %+v, want version 1 OK, 0 reloads", st)
	}

	// The store holds a version: an invalid seed does not matter, the stored version runs.
	r2, err := NewRuntime(ctx, RuntimeOptions{Source: SourceAPI, Path: bad, Store: store})
	if err != nil || userLimit(r2.Snapshot()) != 6 {
		t.Errorf("seed over a stored version: got %v, want the stored version", err)
	}

	var errs Errors
	if _, err := NewRuntime(ctx, RuntimeOptions{Source: SourceAPI, Path: bad}); !errors.As(err, &errs) {
		t.Errorf("invalid seed: got %v, want Errors", err)
	}
	if _, err := NewRuntime(ctx, RuntimeOptions{Source: SourceAPI, Path: dir + "/missing.yaml"}); err == nil {
		t.Error("missing seed: got no error")
	}
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer down.Close()
	if _, err := NewRuntime(ctx, RuntimeOptions{Store: NewRedisStore(RedisStoreOptions{Client: down})}); err == nil {
		t.Error("unreachable store: got no error")
	}
	if _, err := NewRuntime(ctx, RuntimeOptions{Source: "git"}); err == nil {
		t.Error(`source "git": got no error`)
	}

	f, err := NewRuntime(ctx, RuntimeOptions{Path: good}) // Path given: the file source by default
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Update(ctx, 0, apiFiles(userDoc(1)), Revision{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Update on the file source: got %v, want ErrReadOnly", err)
	}
	if st := f.Status(); st.Source != SourceFile || st.Version != 1 {
		t.Errorf("file source status: got %+v, want source file, version 1", st)
	}

	d, err := NewRuntime(ctx, RuntimeOptions{}) // nothing given: api source, MemoryStore, bundled examples
	if err != nil {
		t.Fatal(err)
	}
	if info := d.Snapshot().Info(); info.Digest != Default().Info().Digest || info.Version != 1 || d.Status().Source != SourceAPI {
		t.Errorf("defaults: got %+v, want the bundled examples as version 1 of the api source", info)
	}
}

// TestRuntimeReloadsLeakNothing (B42): 500 Updates alternating two documents, applied on A directly and
// on B through the store's notifications, leave the goroutine count and both clients' Redis connections
// where they were.
func TestRuntimeReloadsLeakNothing(t *testing.T) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	admin := redistest.Client(t)
	names := []string{"fgtest-b42-a-" + prefix[7:15], "fgtest-b42-b-" + prefix[7:15]}
	var rs []*Runtime
	for i, name := range names {
		opts, err := redis.ParseURL(redistest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		opts.ClientName, opts.PoolSize = name, 4
		client := redis.NewClient(opts)
		t.Cleanup(func() { _ = client.Close() })
		r := newAPIRuntime(t, RuntimeOptions{Store: NewRedisStore(RedisStoreOptions{Client: client, Prefix: prefix}),
			Replicas: NewRedisReplicas(client, prefix, 0), Replica: fmt.Sprint(i), ReportEvery: 100 * time.Millisecond})
		runRuntime(t, r)
		rs = append(rs, r)
	}
	a, b := rs[0], rs[1]
	docs := [][]File{apiFiles(userDoc(11)), apiFiles(userDoc(22))}
	update := func(i int) {
		if _, _, err := a.Update(ctx, 0, docs[i%2], Revision{}); err != nil {
			t.Fatal(err)
		}
	}
	connections := func() map[string]int {
		list, err := admin.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for line := range strings.Lines(list) {
			for _, name := range names {
				if strings.Contains(line, " name="+name+" ") {
					n[name]++
				}
			}
		}
		return n
	}
	for i := range 20 { // warm up: pools and subscriptions at their working size
		update(i)
	}
	time.Sleep(300 * time.Millisecond)
	baseG, baseC := runtime.NumGoroutine(), connections()

	for i := range 500 {
		update(i)
	}
	waitUntil(t, 2*time.Second, "B applies the last version", func() bool { return b.Status().Version == a.Status().Version })
	time.Sleep(300 * time.Millisecond)

	if st := a.Status(); st.Version != 521 || st.Reloads != 520 {
		t.Errorf("A: got version %d after %d reloads, want 521 after 520", st.Version, st.Reloads)
	}
	if got, want := userLimit(b.Snapshot()), uint64(22); got != want {
		t.Errorf("B: got limit %d, want the last document's %d", got, want)
	}
	if g := runtime.NumGoroutine(); g > baseG+5 {
		t.Errorf("goroutines: got %d after 500 reloads, want at most the baseline %d + 5", g, baseG)
	}
	afterC := connections()
	for _, name := range names {
		t.Logf("client %s: %d connections before, %d after (pool size 4 + 1 subscription)", name, baseC[name], afterC[name])
		if afterC[name] > baseC[name] || afterC[name] > 5 {
			t.Errorf("client %s: got %d connections after 500 reloads, want at most %d (before) and 5",
				name, afterC[name], baseC[name])
		}
	}
}

// TestRuntimeSnapshotAllocs: the hot path is one atomic load.
func TestRuntimeSnapshotAllocs(t *testing.T) {
	r := newAPIRuntime(t, RuntimeOptions{})
	if n := testing.AllocsPerRun(1000, func() { _ = r.Snapshot() }); n != 0 {
		t.Errorf("Snapshot: got %v allocations, want 0", n)
	}
}
