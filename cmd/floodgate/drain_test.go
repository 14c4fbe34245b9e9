package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// testSchema creates a PostgreSQL schema dropped when the test ends; it returns a database URL whose
// search_path is that schema and a pool on it.
func testSchema(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	base := ohDatabaseURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "floodgate_main_" + hex.EncodeToString(b[:])
	admin, err := pgxpool.New(ctx, base)
	if err == nil {
		_, err = admin.Exec(ctx, "CREATE SCHEMA "+schema)
	}
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v (make test starts one; see README)", base, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	return u.String(), pool
}

// Denials answered while the server drains after SIGTERM (Envoy still sends traffic until its health
// checks move it) are audited like any other: every OVER_LIMIT the clients saw, before and during the
// drain, is a row in PostgreSQL once the process has exited.
func TestDrainDenialsAudited(t *testing.T) {
	bin := buildBinary(t)
	dbURL, pool := testSchema(t)
	limits := writeLimits(t, "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 1}\n")
	s := startProcess(t, bin, "--config", limits, "--database-url", dbURL, "--drain-timeout", "2s")
	client := rlsv3.NewRateLimitServiceClient(s.conn)
	req := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*commonrl.RateLimitDescriptor{{
		Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "drain"}}}}}
	deny := func(d time.Duration) (denied int) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := client.ShouldRateLimit(ctx, req)
			cancel()
			if err != nil {
				t.Fatalf("ShouldRateLimit: %v", err)
			}
			if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
				denied++
			}
		}
		return denied
	}
	before := deny(300 * time.Millisecond)
	stopped := make(chan error, 1)
	// Ends when the process has exited (after its 2 s drain).
	go func() { stopped <- s.stop() }()
	during := deny(1200 * time.Millisecond) // well inside the drain: every call is still answered
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if before == 0 || during == 0 {
		t.Fatalf("denied %d before and %d during the drain; want both > 0", before, during)
	}
	var rows int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM audit_events WHERE kind = 'denial'").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != before+during {
		t.Errorf("%d denial rows in PostgreSQL, want %d (%d before SIGTERM + %d during the drain)", rows, before+during, before, during)
	}
}
