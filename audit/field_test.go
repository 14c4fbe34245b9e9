package audit

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/extauthz"
	"github.com/floodgate/floodgate/limiter"
)

type staticLimits struct{ snap *config.Snapshot }

func (l staticLimits) Limits() *config.Snapshot { return l.snap }

// authzService returns a real ext_authz Service on a memory store whose clock stands still (one window
// for the whole test), observed by r.
func authzService(t testing.TB, yaml string, r *Recorder, mutate func(*extauthz.Options)) *extauthz.Service {
	t.Helper()
	snap, err := config.Parse("test.yaml", []byte(strings.TrimSpace(yaml)+"\n"))
	if err != nil {
		t.Fatalf("parse limits: %v", err)
	}
	now := time.Date(2031, 1, 1, 0, 0, 30, 0, time.UTC)
	o := extauthz.Options{
		Limits:       staticLimits{snap},
		Store:        limiter.NewMemory(limiter.MemoryOptions{Now: func() time.Time { return now }}),
		Observer:     r,
		StoreTimeout: 2 * time.Second,
	}
	if mutate != nil {
		mutate(&o)
	}
	svc, err := extauthz.New(o)
	if err != nil {
		t.Fatalf("extauthz.New: %v", err)
	}
	return svc
}

func check(source, xff, path string) *authv3.CheckRequest {
	headers := map[string]string{}
	if xff != "" {
		headers["x-forwarded-for"] = xff
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Host: "example.com", Path: path, Headers: headers}},
	}}
}

// is429 reports whether a CheckResponse is a 429 denial.
func is429(resp *authv3.CheckResponse) bool {
	return int(resp.GetDeniedResponse().GetStatus().GetCode()) == 429
}

const edgePerIP = `
domain: edge
http_rules:
  - name: per_ip
    key: [client_ip]
    rate_limit:
      unit: minute
      requests_per_unit: 5
`

// B47: behind a trusted proxy the audit rows name the real client, and the proxy separately.
func TestB47AuditRecordsClientNotProxy(t *testing.T) {
	db := newTestDB(t)
	r, err := New(Options{DB: db.pool(t, ""), FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	svc := authzService(t, edgePerIP, r, func(o *extauthz.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	ctx := context.Background()
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		denied := 0
		for range 6 {
			resp, err := svc.Check(ctx, check("10.0.0.5", client+", 10.0.0.5", "/login"))
			if err != nil {
				t.Fatal(err)
			}
			if is429(resp) {
				denied++
			}
		}
		if denied != 1 {
			t.Errorf("client %s: got %d denied of 6, want 1", client, denied)
		}
	}
	eventually(t, 10*time.Second, "2 rows", func() bool { return db.count(t) == 2 })
	rows, err := db.admin.Query(ctx, "SELECT client_ip, proxy_ip, domain, rule, method, host, path, limit_requests FROM audit_events ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var client, proxy, domain, rule, method, host, path string
		var requests int64
		if err := rows.Scan(&client, &proxy, &domain, &rule, &method, &host, &path, &requests); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s %s %s %s %d", client, proxy, domain, rule, method, host, path, requests))
	}
	want := []string{
		"198.51.100.1 10.0.0.5 edge per_ip POST example.com /login 5",
		"198.51.100.2 10.0.0.5 edge per_ip POST example.com /login 5",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const perUserPerMinute = `
domain: edge
http_rules:
  - name: per_user
    key: [client_ip]
    rate_limit:
      unit: minute
      requests_per_unit: 1
`

// B45 (scaled): 10,000 requests from 500 users at 1/min with 50 ms added on every PostgreSQL packet: the
// rows equal the 429s the clients saw, exactly, with nothing dropped, and every row is complete.
func TestB45NoSilentDropsUnderLoad(t *testing.T) {
	db := newTestDB(t)
	proxy := newDelayProxy(t, "127.0.0.1:5432", 50*time.Millisecond)
	r, err := New(Options{DB: db.pool(t, proxy.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	svc := authzService(t, perUserPerMinute, r, nil)
	const users, requests, workers = 500, 10000, 8
	var denied atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= requests {
					return
				}
				u := i % users
				src := fmt.Sprintf("192.0.%d.%d", 2+u/250, 1+u%250)
				resp, err := svc.Check(context.Background(), check(src, "", "/api"))
				if err != nil {
					t.Error(err)
					return
				}
				if is429(resp) {
					denied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	load := time.Since(began)
	want := int(denied.Load())
	if want != requests-users {
		t.Errorf("got %d 429s, want %d", want, requests-users)
	}
	eventually(t, 60*time.Second, "rows equal to 429s", func() bool { return db.count(t) >= want })
	drained := time.Since(began)
	if got := db.count(t); got != want {
		t.Errorf("got %d rows, want %d", got, want)
	}
	st := r.Stats()
	if st.Dropped != 0 || st.PostgresDropped != 0 {
		t.Errorf("got %d queue drops and %d PostgreSQL drops, want 0", st.Dropped, st.PostgresDropped)
	}
	var incomplete int
	err = db.admin.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE time IS NULL
		OR domain <> 'edge' OR rule <> 'per_user' OR client_ip = '' OR limit_requests <> 1 OR kind <> 'denial'`).Scan(&incomplete)
	if err != nil {
		t.Fatal(err)
	}
	if incomplete != 0 {
		t.Errorf("got %d incomplete rows, want 0", incomplete)
	}
	t.Logf("B45: %d requests in %s, %d 429s, all %d rows in PostgreSQL after %s (50 ms per packet)",
		requests, load.Round(time.Millisecond), want, want, drained.Round(time.Millisecond))
}
