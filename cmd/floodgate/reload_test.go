package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/floodgate/floodgate/internal/redistest"
)

// configMap lays files out the way the kubelet mounts a ConfigMap: dir/..<stamp>/<files>, dir/..data → the
// stamp directory, dir/<name> → ..data/<name>. swap replaces the whole set atomically (a new stamp directory,
// then a rename over ..data), as a ConfigMap update does.
type configMap struct {
	t   *testing.T
	dir string
	n   int
}

func newConfigMap(t *testing.T, files map[string]string) *configMap {
	c := &configMap{t: t, dir: t.TempDir()}
	c.swap(files)
	return c
}

func (c *configMap) swap(files map[string]string) {
	c.t.Helper()
	c.n++
	stamp := "..2026_12_03_00_00_0" + strconv.Itoa(c.n)
	if err := os.Mkdir(filepath.Join(c.dir, stamp), 0o755); err != nil {
		c.t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(c.dir, stamp, name), []byte(body), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	// The visible names: present for every file of the new set, gone for the others.
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			if _, ok := files[e.Name()]; !ok {
				os.Remove(filepath.Join(c.dir, e.Name()))
			}
		}
	}
	for name := range files {
		link := filepath.Join(c.dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			c.t.Fatal(err)
		}
	}
}

const productpage = `domain: api
descriptors:
  - key: path
    value: /productpage
    rate_limit: {unit: minute, requests_per_unit: %d}
`

const otherDomain = `domain: other
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1}
`

// B37: a ConfigMap symlink swap is applied without a restart, and a deleted file's domain goes away.
func TestFileReloadConfigMap(t *testing.T) {
	cm := newConfigMap(t, map[string]string{"api.yaml": strings.Replace(productpage, "%d", "3", 1), "other.yaml": otherDomain})
	s := startInProcess(t, "--config", cm.dir, "--admin-rate", "1000", "--admin-burst", "1000")
	c := api{t: t, base: "http://" + s.httpAddr}
	if r := c.do("GET", "/api/v1/limits/api", nil); r.code != 200 || !strings.Contains(string(r.body), "requests_per_unit: 3}") {
		t.Fatalf("limits before: %d %s", r.code, r.body)
	}
	reloads := metric(t, s, "floodgate_config_reloads_total")

	cm.swap(map[string]string{"api.yaml": strings.Replace(productpage, "%d", "1", 1), "other.yaml": otherDomain})
	start := time.Now()
	for !strings.Contains(string(c.do("GET", "/api/v1/limits/api", nil).body), "requests_per_unit: 1}") {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the swapped ConfigMap was not applied within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ConfigMap swap applied after %s", time.Since(start))
	if time.Since(start) > 2*time.Second {
		t.Errorf("reload took %s, want ≤ 2 s", time.Since(start))
	}
	if got := metric(t, s, "floodgate_config_reloads_total"); got != reloads+1 {
		t.Errorf("floodgate_config_reloads_total: got %v, want %v", got, reloads+1)
	}
	// The reload is in the audit trail, with its diff.
	var ev struct {
		Events []struct {
			Change struct {
				Actor   string `json:"actor"`
				Action  string `json:"action"`
				Summary string `json:"summary"`
			} `json:"change"`
		} `json:"events"`
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(ev.Events) == 0 && time.Now().Before(deadline) {
		c.do("GET", "/api/v1/audit?kind=config_change", nil).json(t, &ev)
		time.Sleep(50 * time.Millisecond)
	}
	if len(ev.Events) != 1 || ev.Events[0].Change.Action != "file_reload" || ev.Events[0].Change.Actor != "file" ||
		!strings.Contains(ev.Events[0].Change.Summary, "3/minute → 1/minute") {
		t.Errorf("audit of the reload: got %+v, want one file_reload by file saying 3/minute → 1/minute", ev.Events)
	}
	// The dashboard's feed carries the new value to a new session (the hello's limits).
	_, body := httpGet(t, "http://"+s.httpAddr+"/api/v1/limits")
	if !strings.Contains(body, `"requests":1`) {
		t.Errorf("the limits view does not show 1 request: %s", body)
	}
	waitMinuteStart(t)
	page := rlsRequest("api", "path", "/productpage")
	if c1, c2 := shouldLimit(t, s, page), shouldLimit(t, s, page); c1 != rlsv3.RateLimitResponse_OK || c2 != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("after the swap to 1/min: got %s then %s, want OK then OVER_LIMIT", c1, c2)
	}

	// Delete other.yaml: domain other has no limits any more (its requests are OK, no stale limit).
	other := rlsRequest("other", "user", "u")
	shouldLimit(t, s, other)
	if got := shouldLimit(t, s, other); got != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("other before deletion: got %s, want OVER_LIMIT", got)
	}
	cm.swap(map[string]string{"api.yaml": strings.Replace(productpage, "%d", "1", 1)})
	start = time.Now()
	for c.do("GET", "/api/v1/limits/other", nil).code != 404 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("domain other still configured 5 s after its file was deleted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := shouldLimit(t, s, other); got != rlsv3.RateLimitResponse_OK {
		t.Errorf("other after deletion: got %s, want OK", got)
	}
	// The file source is read-only through the API.
	if r := c.do("PUT", "/api/v1/limits/api", strings.Replace(productpage, "%d", "9", 1)); r.code != 409 {
		t.Errorf("PUT with the file source: got %d %s, want 409 read-only", r.code, r.body)
	}
}

// waitMinuteStart sleeps to just after the next minute boundary when less than 10 s of this minute remain.
func waitMinuteStart(t *testing.T) {
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < 10*time.Second {
		t.Logf("waiting %s for the next minute", left+time.Second)
		time.Sleep(left + time.Second)
	}
}

const b38v1 = `domain: api
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 5}
`

const b38v2 = b38v1 + `  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 20}
`

// B38: duplicate descriptors are rejected whole, from a file (one ERROR line, one load error, status says
// the last load failed) and from the API (400 naming api.user_vip); v1 keeps serving.
func TestDuplicateDescriptorsRejected(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.yaml")
	if err := os.WriteFile(path, []byte(b38v1), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startInProcess(t, "--config", dir, "--config-poll", "200ms", "--admin-rate", "1000", "--admin-burst", "1000")
	c := api{t: t, base: "http://" + s.httpAddr}
	errorsBefore := metric(t, s, "floodgate_config_load_errors_total")

	if err := os.WriteFile(path, []byte(b38v2), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // ≥ 5 polls
	logs := s.logs.String()
	if n := strings.Count(logs, "level=ERROR"); n != 1 {
		t.Errorf("got %d ERROR lines for the rejected file over ≥ 5 polls, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "api.user_vip") {
		t.Errorf("the ERROR line does not name api.user_vip:\n%s", logs)
	}
	if got := metric(t, s, "floodgate_config_load_errors_total"); got != errorsBefore+1 {
		t.Errorf("floodgate_config_load_errors_total: got %v, want %v", got, errorsBefore+1)
	}
	var st struct {
		LastLoadOK bool      `json:"last_load_ok"`
		LastError  string    `json:"last_error"`
		LastGoodAt time.Time `json:"last_good_at"`
		Version    string    `json:"version"`
	}
	c.do("GET", "/api/v1/status", nil).json(t, &st)
	if st.LastLoadOK || !strings.Contains(st.LastError, "api.user_vip") || st.LastGoodAt.IsZero() || st.Version != "1" {
		t.Errorf("status: got %+v, want last load failed naming api.user_vip, a last good time, version 1", st)
	}
	if got := metric(t, s, "floodgate_config_last_load_success"); got != 0 {
		t.Errorf("floodgate_config_last_load_success: got %v, want 0", got)
	}

	// v1 still serves: u1 5 OK then OVER_LIMIT; vip falls under user=* (5 OK, then 6 OVER_LIMIT).
	waitMinuteStart(t)
	if got := admitted(t, s, 6, rlsRequest("api", "user", "u1")); got != 5 {
		t.Errorf("u1: got %d admitted, want 5", got)
	}
	if got := admitted(t, s, 11, rlsRequest("api", "user", "vip")); got != 5 {
		t.Errorf("vip: got %d admitted, want 5", got)
	}

	// Fixing the file (back to what runs) clears the failure everywhere, the metric included.
	if err := os.WriteFile(path, []byte(b38v1), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for metric(t, s, "floodgate_config_last_load_success") != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	c.do("GET", "/api/v1/status", nil).json(t, &st)
	if got := metric(t, s, "floodgate_config_last_load_success"); got != 1 || !st.LastLoadOK {
		t.Errorf("after the fix: floodgate_config_last_load_success %v, status %+v; want 1 and last_load_ok", got, st)
	}
}

// B38 through the API (api source): 400 naming the duplicate path; a YAML map with a repeated key too.
func TestDuplicateDescriptorsAPI(t *testing.T) {
	s := startInProcess(t, "--config-source", "api", "--config", writeLimits(t, b38v1))
	c := api{t: t, base: "http://" + s.httpAddr}
	for name, doc := range map[string]string{
		"duplicate descriptors": b38v2,
		"repeated key":          "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 5, requests_per_unit: 50}\n",
	} {
		r := c.do("PUT", "/api/v1/limits/api", doc)
		var p struct {
			Errors []struct {
				Field  string `json:"field"`
				Reason string `json:"reason"`
			} `json:"errors"`
		}
		r.json(t, &p)
		if r.code != 400 || len(p.Errors) == 0 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: got %d %s, want a 400 problem with errors", name, r.code, r.body)
			continue
		}
		if name == "duplicate descriptors" && !strings.Contains(string(r.body), "api.user_vip") {
			t.Errorf("%s: the problem does not name api.user_vip: %s", name, r.body)
		}
	}
	if v := c.version(); v != 1 {
		t.Errorf("version after rejected changes: got %d, want 1", v)
	}
}

// B40: with the over-limit cache on, raising a limit through the API is enforced at once (the counter of
// 2 carries over: 8 more fit); the same with a per-request override.
func TestRaiseWithOverLimitCache(t *testing.T) {
	const doc = "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 2}\n"
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			args := []string{"--config-source", "api", "--config", writeLimits(t, doc), "--over-limit-cache", "1000"}
			if store == "redis" {
				args = append(args, "--redis-url", redistest.URL(t), "--redis-prefix", redistest.Prefix(t))
			}
			s := startInProcess(t, args...)
			c := api{t: t, base: "http://" + s.httpAddr}
			u := rlsRequest("api", "user", "u1")
			if got := admitted(t, s, 3, u); got != 2 {
				t.Fatalf("before: got %d admitted, want 2", got)
			}
			if r := c.do("PATCH", "/api/v1/limits/api/rules/"+url2("api.user"), map[string]any{"requests_per_unit": 10}); r.code != 200 {
				t.Fatalf("raise: %d %s", r.code, r.body)
			}
			if got := admitted(t, s, 9, u); got != 8 {
				t.Errorf("after raising 2 → 10: got %d of 9 admitted, want 8", got)
			}

			override := func(n uint32) *rlsv3.RateLimitRequest {
				r := rlsRequest("api", "user", "u2")
				r.Descriptors[0].Limit = &commonrl.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: n, Unit: 3} // HOUR
				return r
			}
			if got := admitted(t, s, 3, override(2)); got != 2 {
				t.Fatalf("override 2: got %d admitted, want 2", got)
			}
			if got := admitted(t, s, 9, override(10)); got != 8 {
				t.Errorf("override 2 → 10: got %d of 9 admitted, want 8", got)
			}
		})
	}
}

// B42: 500 reloads under load leak no goroutines, Redis connections or memory, and every decision matches
// one of the configurations (the one in force when it was made).
func TestReloadsLeakNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 500 reloads take ~15 s")
	}
	srv := redistest.Start(t) // a private Redis: every client connection on it is ours
	docA := "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 1000}\n"
	docB := "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 2000}\n"
	s := startInProcess(t, "--config-source", "api", "--config", writeLimits(t, docA), "--redis-url", srv.URL()+"?pool_size=10",
		"--admin-rate", "1000", "--admin-burst", "1000",
		// Every decision must come from Redis: with the 10 ms default, a slow call on a loaded CI machine
		// (-race) is answered degraded, without a limit, and could not be told apart from a mixed-up config.
		"--store-timeout", "2s")
	c := api{t: t, base: "http://" + s.httpAddr}
	rdb := srv.Client()
	ctx := context.Background()
	clients := func() int {
		list, err := rdb.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(list, "\n") - 1 // minus the test's own connection
	}
	rss := func() int64 {
		b, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	// 50 decisions/s while n reloads alternate A and B (ending on B); it returns the decisions that were
	// neither A's nor B's (or failed) and all decisions made.
	reloadUnderLoad := func(n int) (bad, decisions int64) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var badN, okN atomic.Int64
		wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			cl := rlsv3.NewRateLimitServiceClient(s.conn)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				resp, err := cl.ShouldRateLimit(ctx, rlsRequest("api", "user", "u"+strconv.Itoa(i%50)))
				if err != nil {
					badN.Add(1)
					t.Logf("decision %d: %v", i, err)
					continue
				}
				okN.Add(1)
				if n := resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit(); n != 1000 && n != 2000 {
					badN.Add(1)
					t.Logf("decision %d: limit %d, want 1000 or 2000; headers %v", i, n, resp.GetResponseHeadersToAdd())
				}
			}
		})
		for i := range n {
			doc := docA
			if i%2 == 1 {
				doc = docB
			}
			if r := c.do("PUT", "/api/v1/limits/api", doc); r.code != 200 {
				close(stop)
				wg.Wait()
				t.Fatalf("reload %d: %d %s", i, r.code, r.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		return badN.Load(), okN.Load()
	}
	liveHeap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	// Warm up with the same work, so pools, caches, the heap and (under -race) the detector's shadow
	// memory reach their working size first: what grows after that grows with the number of reloads.
	reloadUnderLoad(100)
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	baseG, baseC, baseRSS, baseHeap := runtime.NumGoroutine(), clients(), rss(), liveHeap()

	bad, decisions := reloadUnderLoad(500)
	if bad != 0 || decisions < 100 {
		t.Errorf("got %d bad decisions of %d, want 0 (each from config A or B)", bad, decisions)
	}
	// The last reload was B: every decision now says 2000.
	resp, err := rlsv3.NewRateLimitServiceClient(s.conn).ShouldRateLimit(ctx, rlsRequest("api", "user", "last"))
	if err != nil || resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() != 2000 {
		t.Errorf("after the last reload: got %v, %v; want the limit 2000", resp, err)
	}
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	g, cn, r, h := runtime.NumGoroutine(), clients(), rss(), liveHeap()
	t.Logf("goroutines %d → %d, redis connections %d → %d, live heap %d → %d MB, RSS %d → %d MB", baseG, g, baseC, cn,
		baseHeap>>20, h>>20, baseRSS>>20, r>>20)
	if g > baseG+20 {
		t.Errorf("goroutines: %d after 500 reloads, baseline %d (want ≤ +20)", g, baseG)
	}
	// Pools grow to their working size under load, never beyond their bounds: the decision pool
	// (pool_size=10) plus the control plane's (6: audit stream, limits store, replicas) and its one pub/sub
	// connection. A client per reload would show as hundreds.
	const bound = 10 + 6 + 1
	if cn > bound {
		t.Errorf("redis connections: %d after 500 reloads (%d before), want ≤ %d", cn, baseC, bound)
	}
	// The live heap after a collection is what a leak would grow (RSS also moves with the collector's
	// pacing and, under -race, the detector's shadow memory: it is logged, and bounded loosely).
	if h-baseHeap > 10<<20 {
		t.Errorf("live heap grew by %d MB over 500 reloads, want ≤ 10", (h-baseHeap)>>20)
	}
	if r-baseRSS > 40<<20 {
		t.Errorf("RSS grew by %d MB, want ≤ 40", (r-baseRSS)>>20)
	}
}
