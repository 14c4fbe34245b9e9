package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/limiter"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf("SKIPPED, NOT PASSED: "+format, args...)
}

func databaseURL() string {
	if u := os.Getenv("FLOODGATE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultDatabaseURL
}

// testDB is one test's PostgreSQL schema.
type testDB struct {
	schema string
	admin  *pgxpool.Pool // search_path = the schema, direct connection
}

// newTestDB creates a schema dropped when the test ends.
func newTestDB(t testing.TB) *testDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "audit_test_" + hex.EncodeToString(b[:])
	base, err := pgxpool.New(ctx, databaseURL())
	if err == nil {
		_, err = base.Exec(ctx, "CREATE SCHEMA "+schema)
	}
	if err != nil {
		if base != nil {
			base.Close()
		}
		unavailable(t, "PostgreSQL at %s unavailable: %v", databaseURL(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := base.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		base.Close()
	})
	db := &testDB{schema: schema}
	db.admin = db.pool(t, "")
	return db
}

// pool returns a pool on the test schema, through addr ("host:port") when not empty.
func (d *testDB) pool(t testing.TB, addr string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(databaseURL())
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = d.schema
	if addr != "" {
		host, port, _ := net.SplitHostPort(addr)
		cfg.ConnConfig.Host = host
		var p uint16
		for _, c := range port {
			p = p*10 + uint16(c-'0')
		}
		cfg.ConnConfig.Port = p
		cfg.ConnConfig.ConnectTimeout = time.Second
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// count returns the number of rows in audit_events (0 if the table does not exist yet).
func (d *testDB) count(t testing.TB) int {
	t.Helper()
	var n int
	err := d.admin.QueryRow(context.Background(), "SELECT count(*) FROM audit_events").Scan(&n)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return 0
	}
	if err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

// ids returns every id of audit_events in id order.
func (d *testDB) ids(t testing.TB) []string {
	t.Helper()
	rows, err := d.admin.Query(context.Background(), "SELECT id FROM audit_events ORDER BY id")
	if err != nil {
		t.Fatalf("select ids: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("scan: %v", err)
		}
		out = append(out, id)
	}
	return out
}

// start runs r until the test ends and waits for Run to return.
func start(t testing.TB, r *Recorder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Ends when cancel is called (by stop or at cleanup).
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// denial returns an over-limit Observation for client.
func denial(client string) *extauthz.Observation {
	rule := &config.Rule{Name: "api.user"}
	lim := &config.Limit{Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Minute}, Name: "api.user"}
	return &extauthz.Observation{
		Service: "authz", Domain: "api", Code: extauthz.OutcomeOverLimit,
		Rules: []extauthz.RuleResult{{Rule: rule, Limit: lim,
			Result: limiter.Result{Allowed: false, RetryAfter: 1500 * time.Millisecond}}},
		ClientIP: client, ProxyIP: "10.0.0.5", Method: "GET", Host: "example.com", Path: "/login",
	}
}

// delayProxy forwards TCP to a target, adding a delay to every chunk in both directions, and can be
// taken down (connections refused and cut) and up again.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newDelayProxy(t testing.TB, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &delayProxy{ln: ln, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	// Ends when the listener is closed at cleanup.
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

// SetDown refuses new connections and cuts the current ones while on.
func (p *delayProxy) SetDown(on bool) {
	p.down.Store(on)
	if on {
		p.cut()
	}
}

func (p *delayProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *delayProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

func (p *delayProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.track(c, up)
		p.wg.Add(2)
		// Both pumps end when either side closes (each closes both connections on exit).
		go p.pump(up, c)
		go p.pump(c, up)
	}
}

func (p *delayProxy) pump(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.untrack(dst, src)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(p.delay)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
