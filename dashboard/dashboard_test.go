package dashboard

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/metrics"
)

// feed is a bounded fan-out like the sampler's and the audit hub's: a subscriber whose buffer is full is
// dropped (its channel closed), never waited for.
type feed[T any] struct {
	mu   sync.Mutex
	subs map[chan T]struct{}
}

func (f *feed[T]) subscribe(buf int) (<-chan T, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[chan T]struct{}{}
	}
	ch := make(chan T, buf)
	f.subs[ch] = struct{}{}
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[ch]; ok {
			delete(f.subs, ch)
			close(ch)
		}
	}
}

func (f *feed[T]) publish(v T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- v:
		default:
			delete(f.subs, ch)
			close(ch)
		}
	}
}

func (f *feed[T]) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

type fakeTelemetry struct {
	feed[metrics.Snapshot]
	history []metrics.Snapshot
}

func (t *fakeTelemetry) Latest() metrics.Snapshot    { return t.history[len(t.history)-1] }
func (t *fakeTelemetry) History() []metrics.Snapshot { return t.history }
func (t *fakeTelemetry) Subscribe() (<-chan metrics.Snapshot, func()) {
	return t.subscribe(8)
}

type fakeAudit struct {
	feed[audit.Event]
	recent []audit.Event
}

func (a *fakeAudit) Recent(n int) []audit.Event { return a.recent }
func (a *fakeAudit) Subscribe(buf int) (<-chan audit.Event, func()) {
	return a.subscribe(buf)
}
func (a *fakeAudit) TopOffenders(w time.Duration, n int) audit.Offenders {
	return audit.Offenders{Window: w, Clients: []audit.Count{{Key: "198.51.100.7", Count: 3}}}
}
func (a *fakeAudit) Dropped() uint64 { return 0 }
func (a *fakeAudit) Replica() string { return "replica-1" }

type staticLimits struct{ s *config.Snapshot }

func (l staticLimits) Limits() *config.Snapshot { return l.s }

const testLimits = `
domain: api
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: sliding_window}
http_rules:
  - name: login
    match: {path_prefix: /login, methods: [POST]}
    key: [client_ip, {header: x-api-key, hash: true}]
    rate_limit: {unit: minute, requests_per_unit: 3}
`

type rig struct {
	d   *Dashboard
	tel *fakeTelemetry
	aud *fakeAudit
	srv *httptest.Server
	url string
}

func newRig(t *testing.T, mutate func(*Options)) *rig {
	t.Helper()
	snap, err := config.Parse("limits.yaml", []byte(testLimits))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{
		tel: &fakeTelemetry{history: []metrics.Snapshot{{Host: metrics.HostStats{CPUPercent: 12}}, {Host: metrics.HostStats{CPUPercent: 34}}}},
		aud: &fakeAudit{recent: []audit.Event{{ID: "01", Kind: audit.KindDenial, Rule: "api.user"}}},
	}
	o := Options{Telemetry: r.tel, Audit: r.aud, Limits: staticLimits{snap},
		Assets:     fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>Floodgate</title>")}, "dist/app.js": {Data: []byte("//js")}},
		EventBatch: 50 * time.Millisecond, PingEvery: time.Second, WriteTimeout: time.Second}
	if mutate != nil {
		mutate(&o)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Ends when the test's cleanup cancels ctx.
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	r.srv = httptest.NewServer(d.Handler())
	t.Cleanup(r.srv.Close)
	r.url = "ws" + strings.TrimPrefix(r.srv.URL, "http") + "/ws"
	return r
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 24)
	return c
}

func read(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var m map[string]any
	if err := wsjson.Read(ctx, c, &m); err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func TestHelloThenStream(t *testing.T) {
	r := newRig(t, nil)
	c := dial(t, r.url)
	defer c.CloseNow()

	hello := read(t, c)
	if hello["type"] != "hello" || hello["replica"] != "replica-1" {
		t.Fatalf("first message: got type %v replica %v, want hello replica-1", hello["type"], hello["replica"])
	}
	if h := hello["history"].([]any); len(h) != 2 {
		t.Errorf("history: got %d snapshots, want 2", len(h))
	}
	if cpu := hello["snapshot"].(map[string]any)["host"].(map[string]any)["cpu_percent"]; cpu != 34.0 {
		t.Errorf("latest snapshot cpu: got %v, want 34", cpu)
	}
	limits := hello["limits"].(map[string]any)["domains"].([]any)[0].(map[string]any)
	rule := limits["rules"].([]any)[0].(map[string]any)
	if rule["name"] != "api.user" || rule["limits"].([]any)[0].(map[string]any)["algorithm"] != "sliding_window" {
		t.Errorf("limits rule: got %v", rule)
	}
	httpRule := limits["http_rules"].([]any)[0].(map[string]any)
	if got := httpRule["key"].([]any); len(got) != 2 || got[1] != "header:x-api-key (hashed)" {
		t.Errorf("http rule key: got %v", got)
	}
	if _, ok := hello["offenders"].(map[string]any)["15m"]; !ok {
		t.Errorf("hello lacks 15m offenders: %v", hello["offenders"])
	}

	waitFor(t, "one subscription each, whatever the sessions", func() bool { return r.tel.count() == 1 && r.aud.count() == 1 })
	r.tel.publish(metrics.Snapshot{Host: metrics.HostStats{CPUPercent: 56}})
	if m := read(t, c); m["type"] != "snapshot" || m["snapshot"].(map[string]any)["host"].(map[string]any)["cpu_percent"] != 56.0 {
		t.Errorf("snapshot message: got %v", m)
	}
	for i := range 3 {
		r.aud.publish(audit.Event{ID: string(rune('a' + i)), Kind: audit.KindDenial})
	}
	start := time.Now()
	m := read(t, c)
	if m["type"] != "events" || len(m["events"].([]any)) != 3 {
		t.Errorf("events message: got %v, want one batch of 3", m)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("events arrived after %s, want within the batch interval", d)
	}
}

func TestIndexAndAssets(t *testing.T) {
	r := newRig(t, nil)
	for path, want := range map[string]string{"/": "<title>Floodgate</title>", "/assets/dist/app.js": "//js"} {
		resp, err := http.Get(r.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: got %d %q, want 200 containing %q", path, resp.StatusCode, b, want)
		}
	}
}

func TestForeignOriginRefused(t *testing.T) {
	r := newRig(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, r.url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil {
		t.Fatal("a foreign Origin opened /ws")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign Origin: got %v, want 403", resp)
	}
	// An allowed pattern opens it.
	r2 := newRig(t, func(o *Options) { o.OriginPatterns = []string{"dash.example"} })
	c, _, err := websocket.Dial(ctx, r2.url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://dash.example"}}})
	if err != nil {
		t.Fatalf("allowed Origin: %v", err)
	}
	c.CloseNow()
}

// A client that stops reading is disconnected; the others keep receiving and nothing waits for it.
func TestSlowClientDropped(t *testing.T) {
	r := newRig(t, nil)
	slow := dial(t, r.url)
	defer slow.CloseNow()
	fast := dial(t, r.url)
	defer fast.CloseNow()
	read(t, fast) // hello
	waitFor(t, "two sessions", func() bool { return r.d.Sessions() == 2 && r.aud.count() == 1 })

	done := make(chan struct{})
	// Ends when the test closes done.
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for {
			select {
			case <-done:
				return
			default:
			}
			var m map[string]any
			if err := wsjson.Read(ctx, fast, &m); err != nil {
				return
			}
		}
	}()
	big := strings.Repeat("x", 200)
	deadline := time.Now().Add(20 * time.Second)
	for r.d.Sessions() > 1 && time.Now().Before(deadline) {
		for range 200 {
			r.aud.publish(audit.Event{ID: big, Kind: audit.KindDenial, Path: big})
		}
		time.Sleep(time.Millisecond)
	}
	close(done)
	if got := r.d.Sessions(); got != 1 {
		t.Fatalf("sessions after flooding a client that never reads: got %d, want 1", got)
	}
}

// B50: 1,000 dashboards connect while denials flow, then half close cleanly and half drop the TCP connection
// without a close frame; the sessions and their goroutines all go away.
func TestSessionsLeaveNothingBehind(t *testing.T) {
	r := newRig(t, func(o *Options) { o.PingEvery, o.WriteTimeout = 15*time.Second, 10*time.Second })
	baseline := runtime.NumGoroutine()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	// Ends when stop is closed: 100 denials a second.
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				r.aud.publish(audit.Event{ID: "e", Kind: audit.KindDenial})
			}
		}
	}()

	n := 1000
	if raceEnabled {
		n = 150 // the race detector makes 1,000 sessions take minutes; `make test` also runs this without -race
	}
	// One cycle: n dashboards connect, then half close cleanly and half drop the TCP connection.
	cycle := func() {
		var readers sync.WaitGroup
		conns := make([]*websocket.Conn, n)
		raws := make([]net.Conn, n)
		var dialers sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range conns {
			dialers.Add(1)
			sem <- struct{}{}
			// Ends after one dial.
			go func() {
				defer func() { <-sem; dialers.Done() }()
				conns[i], raws[i] = dialReader(t, r.url, &readers)
			}()
		}
		dialers.Wait()
		if t.Failed() {
			t.FailNow()
		}
		waitFor(t, "all sessions", func() bool { return r.d.Sessions() == n })
		for i := range conns {
			if i%2 == 0 {
				_ = conns[i].Close(websocket.StatusNormalClosure, "bye")
			} else {
				_ = raws[i].Close() // no close frame
			}
		}
		waitFor(t, "no sessions", func() bool { return r.d.Sessions() == 0 && r.d.peerCount() == 0 })
		readers.Wait()
		r.srv.CloseClientConnections()
		waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseline+10 })
	}
	cycle()
	cycle() // a second round: nothing of the first is left to collide with or accumulate
	close(stop)
	wg.Wait()
}

// dialReader opens /ws like a live dashboard that reads the feed (and so answers pings) in a goroutine
// counted by readers; it returns the connection and the TCP connection under it.
func dialReader(t *testing.T, url string, readers *sync.WaitGroup) (*websocket.Conn, net.Conn) {
	var raw net.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			raw = conn
			return conn, err
		},
	}}})
	if err != nil {
		t.Errorf("dial: %v", err)
		return nil, nil
	}
	c.SetReadLimit(1 << 24)
	readers.Add(1)
	// Ends when the connection closes.
	go func() {
		defer readers.Done()
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return c, raw
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (goroutines %d)", what, runtime.NumGoroutine())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *Dashboard) peerCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.peers)
}

type swappableLimits struct {
	p atomic.Pointer[config.Snapshot]
}

func (l *swappableLimits) Limits() *config.Snapshot { return l.p.Load() }

// A new limits version reaches open sessions with the next snapshot tick, as a "limits" message.
func TestLimitsChangePushed(t *testing.T) {
	first, err := config.Parse("limits.yaml", []byte(testLimits))
	if err != nil {
		t.Fatal(err)
	}
	src := &swappableLimits{}
	src.p.Store(first)
	r := newRig(t, func(o *Options) { o.Limits = src })
	c := dial(t, r.url)
	defer c.CloseNow()
	if m := read(t, c); m["type"] != "hello" {
		t.Fatalf("got %v, want hello", m["type"])
	}
	second, err := config.Parse("limits.yaml", []byte(strings.Replace(testLimits, "requests_per_unit: 5", "requests_per_unit: 7", 1)))
	if err != nil {
		t.Fatal(err)
	}
	for r.tel.count() == 0 { // Run has subscribed (and read the running limits) once it listens
		time.Sleep(10 * time.Millisecond)
	}
	src.p.Store(second.WithRevision(config.Revision{Version: 2}))
	r.tel.publish(metrics.Snapshot{})
	for {
		m := read(t, c)
		if m["type"] != "limits" {
			continue
		}
		l := m["limits"].(map[string]any)
		rule := l["domains"].([]any)[0].(map[string]any)["rules"].([]any)[0].(map[string]any)
		if l["version"] != "2" || rule["limits"].([]any)[0].(map[string]any)["requests"] != 7.0 {
			t.Errorf("limits message: got version %v, rule %v; want version 2 with 7 requests", l["version"], rule)
		}
		return
	}
}
