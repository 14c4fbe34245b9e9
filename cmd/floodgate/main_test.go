package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/redistest"
)

const e2eLimits = `# limits used by the end-to-end tests
domain: e2e
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 3
  - key: internal
    rate_limit:
      unlimited: true
http_rules:
  - name: per_client
    key: [client_ip]
    rate_limit:
      unit: hour
      requests_per_unit: 2
`

func writeLimits(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "limits.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// server is a Floodgate started in-process through run.
type server struct {
	grpcAddr, httpAddr string
	conn               *grpc.ClientConn
	logs               *syncBuffer
	cancel             context.CancelFunc
	done               chan error
	// stop (processes only) sends SIGTERM and waits up to 15 s for the exit; later calls return the
	// first one's result.
	stop func() error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startInProcess(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	addrs := make(chan [2]string, 1)
	args = append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--drain-timeout", "0s"}, args...)
	// Ends when ctx is cancelled (t.Cleanup below) and run has shut down.
	go func() {
		s.done <- run(ctx, args, func(string) string { return "" }, io.Discard, s.logs, func(g, h net.Addr) {
			addrs <- [2]string{g.String(), h.String()}
		})
	}()
	select {
	case a := <-addrs:
		s.grpcAddr, s.httpAddr = a[0], a[1]
	case err := <-s.done:
		cancel()
		t.Fatalf("run returned before serving: %v\nlogs:\n%s", err, s.logs)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("server did not start\nlogs:\n%s", s.logs)
	}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s.conn = conn
	t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return after cancel")
		}
	})
	return s
}

func rlsRequest(domain string, entries ...string) *rlsv3.RateLimitRequest {
	d := &commonrl.RateLimitDescriptor{}
	for i := 0; i+1 < len(entries); i += 2 {
		d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: entries[i], Value: entries[i+1]})
	}
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*commonrl.RateLimitDescriptor{d}}
}

func checkRequest(ip string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/hello?x=1", Host: "example.test",
			Headers: map[string]string{":method": "GET", ":path": "/hello?x=1", ":authority": "example.test"},
		}},
		ContextExtensions: map[string]string{"domain": "e2e"},
	}}
}

// exerciseDecisions drives both Envoy services and checks the decisions, the 429 shape and health.
func exerciseDecisions(t *testing.T, conn *grpc.ClientConn, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rls := rlsv3.NewRateLimitServiceClient(conn)
	for i := 1; i <= 4; i++ {
		resp, err := rls.ShouldRateLimit(ctx, rlsRequest("e2e", "user", user))
		if err != nil {
			t.Fatalf("ShouldRateLimit #%d: %v", i, err)
		}
		want := rlsv3.RateLimitResponse_OK
		if i == 4 {
			want = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if resp.GetOverallCode() != want {
			t.Fatalf("call %d: overall_code got %v, want %v", i, resp.GetOverallCode(), want)
		}
		if len(resp.GetStatuses()) != 1 {
			t.Fatalf("call %d: got %d statuses, want 1", i, len(resp.GetStatuses()))
		}
		st := resp.GetStatuses()[0]
		if got, want := st.GetCurrentLimit().GetRequestsPerUnit(), uint32(3); got != want {
			t.Errorf("call %d: requests_per_unit got %d, want %d", i, got, want)
		}
		if i < 4 {
			if got, want := st.GetLimitRemaining(), uint32(3-i); got != want {
				t.Errorf("call %d: limit_remaining got %d, want %d", i, got, want)
			}
		}
		if d := st.GetDurationUntilReset().AsDuration(); d <= 0 || d > time.Hour {
			t.Errorf("call %d: duration_until_reset %s not in (0, 1h]", i, d)
		}
	}
	resp, err := rls.ShouldRateLimit(ctx, rlsRequest("e2e", "internal", "batch"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetStatuses()[0].GetLimitRemaining(); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || got != 4294967295 {
		t.Errorf("unlimited: got %v remaining %d, want OK 4294967295", resp.GetOverallCode(), got)
	}
	if _, err := rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: ""}); err == nil || grpcCode(err) != codes.InvalidArgument {
		t.Errorf("empty domain: got %v, want InvalidArgument", err)
	}

	authz := authv3.NewAuthorizationClient(conn)
	ip := "198.51.100." + fmt.Sprint(len(user)%200+1)
	if strings.HasPrefix(user, "redis") {
		ip = "203.0.113." + fmt.Sprint(len(user)%200+1)
	}
	for i := 1; i <= 3; i++ {
		resp, err := authz.Check(ctx, checkRequest(ip))
		if err != nil {
			t.Fatalf("Check #%d: %v", i, err)
		}
		if i <= 2 {
			if resp.GetStatus().GetCode() != 0 || resp.GetOkResponse() == nil {
				t.Fatalf("Check #%d: got status %d, want allowed", i, resp.GetStatus().GetCode())
			}
			continue
		}
		if got := resp.GetStatus().GetCode(); got != int32(codes.ResourceExhausted) {
			t.Fatalf("Check #3: status.code got %d, want %d", got, codes.ResourceExhausted)
		}
		dr := resp.GetDeniedResponse()
		if got := dr.GetStatus().GetCode(); int(got) != http.StatusTooManyRequests {
			t.Fatalf("Check #3: HTTP status got %d, want 429", got)
		}
		headers := map[string]string{}
		for _, h := range dr.GetHeaders() {
			headers[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s: append_action %v, want OVERWRITE_IF_EXISTS_OR_ADD", h.GetHeader().GetKey(), h.GetAppendAction())
			}
		}
		if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(headers["retry-after"]) {
			t.Errorf("Retry-After %q is not a positive integer", headers["retry-after"])
		}
		if headers["ratelimit-policy"] == "" || headers["ratelimit"] == "" {
			t.Errorf("denied headers lack RateLimit/RateLimit-Policy: %v", headers)
		}
		if !strings.Contains(headers["content-type"], "application/problem+json") {
			t.Errorf("content-type %q, want application/problem+json", headers["content-type"])
		}
	}

	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "envoy.service.ratelimit.v3.RateLimitService", "envoy.service.auth.v3.Authorization"} {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: got %v %v, want SERVING", svc, r.GetStatus(), err)
		}
	}
}

func grpcCode(err error) codes.Code { return status.Code(err) }

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func checkHTTP(t *testing.T, base string) {
	t.Helper()
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: got %d, want 200", code)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz: got %d (%s), want 200", code, body)
	}
	code, body := httpGet(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: got %d", code)
	}
	for _, want := range []string{
		`floodgate_decisions_total{domain="e2e",outcome="over_limit",service="ratelimit"} 1`,
		`floodgate_decisions_total{domain="e2e",outcome="over_limit",service="authz"} 1`,
		`floodgate_decision_duration_seconds_bucket{service="ratelimit",le="0.0005"}`,
		`floodgate_store_up 1`,
		`floodgate_host_cpu_percent`,
		`floodgate_host_memory_percent`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "198.51.100") || strings.Contains(body, `user="`) {
		t.Errorf("/metrics carries request values as labels")
	}
}

func TestRunMemory(t *testing.T) {
	s := startInProcess(t, "--config", writeLimits(t, e2eLimits))
	exerciseDecisions(t, s.conn, "alice")
	checkHTTP(t, "http://"+s.httpAddr)
	if !strings.Contains(s.logs.String(), "store=memory") {
		t.Errorf("start-up log does not name the memory store:\n%s", s.logs)
	}
}

func TestRunRedis(t *testing.T) {
	url := redistest.URL(t)
	prefix := redistest.Prefix(t)
	s := startInProcess(t, "--config", writeLimits(t, e2eLimits), "--redis-url", url, "--redis-prefix", prefix,
		"--store-timeout", "200ms")
	exerciseDecisions(t, s.conn, "redis-bob")
	checkHTTP(t, "http://"+s.httpAddr)
	client := redistest.Client(t)
	keys, err := client.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatalf("no Redis key under %q: decisions did not use Redis", prefix)
	}
	for _, k := range keys {
		if ttl := client.PTTL(context.Background(), k).Val(); ttl <= 0 {
			t.Errorf("key %q has PTTL %s, want > 0", k, ttl)
		}
	}
}

func TestReflectionListsServices(t *testing.T) {
	s := startInProcess(t, "--config", writeLimits(t, e2eLimits))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(s.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, svc := range resp.GetListServicesResponse().GetService() {
		got[svc.GetName()] = true
	}
	for _, want := range []string{"envoy.service.ratelimit.v3.RateLimitService", "envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
		if !got[want] {
			t.Errorf("reflection lacks %s (got %v)", want, got)
		}
	}
}

func TestDefaultLimitsServe(t *testing.T) {
	// No --config: the bundled examples are served; every example domain answers.
	s := startInProcess(t)
	if !strings.Contains(s.logs.String(), "limits loaded") {
		t.Fatalf("no limits loaded log:\n%s", s.logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(s.conn).ShouldRateLimit(ctx, rlsRequest("api", "remote_address", "192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || resp.GetStatuses()[0].GetCurrentLimit() == nil {
		t.Errorf("default config: got %v with limit %v, want OK with the example limit", resp.GetOverallCode(), resp.GetStatuses()[0].GetCurrentLimit())
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"failure mode", []string{"--on-store-error", "maybe"}, "--on-store-error"},
		{"bad config path", []string{"--config", "/nonexistent/limits.yaml"}, "load limits"},
		{"bad redis url", []string{"--redis-url", "http://x"}, "--redis-url"},
		{"local share", []string{"--local-share", "2"}, "--local-share"},
		{"env var", nil, "FLOODGATE_STORE_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(string) string { return "" }
			if tt.args == nil {
				getenv = func(k string) string {
					if k == "FLOODGATE_STORE_TIMEOUT" {
						return "soon"
					}
					return ""
				}
			}
			err := run(context.Background(), tt.args, getenv, io.Discard, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	good := writeLimits(t, e2eLimits)
	bad := writeLimits(t, "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      unit: minutes\n      requests_per_unit: 5\n")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check-config", good}, os.Getenv, &out, &errOut, nil); err != nil {
		t.Fatalf("good file: %v (%s)", err, errOut.String())
	}
	if !strings.Contains(out.String(), "OK") {
		t.Errorf("good file output %q lacks OK", out.String())
	}
	out.Reset()
	errOut.Reset()
	if err := run(context.Background(), []string{"check-config", bad}, os.Getenv, &out, &errOut, nil); err == nil {
		t.Fatalf("bad file accepted")
	}
	msg := errOut.String()
	for _, want := range []string{bad + ":5", "unit", "minutes"} {
		if !strings.Contains(msg, want) {
			t.Errorf("check-config output %q lacks %q", msg, want)
		}
	}
}

// TestBinary builds floodgate, runs it as a process on memory and on Redis, drives both services and stops it
// with SIGTERM: it must report NOT_SERVING while draining and exit 0.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "floodgate")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	limits := writeLimits(t, e2eLimits)

	t.Run("check-config", func(t *testing.T) {
		bad := writeLimits(t, "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: -1}\n")
		out, err := exec.Command(bin, "check-config", bad).CombinedOutput()
		if err == nil {
			t.Fatalf("check-config accepted a negative limit:\n%s", out)
		}
		if !strings.Contains(string(out), bad+":4") {
			t.Errorf("output lacks file:line: %s", out)
		}
		if out, err := exec.Command(bin, "check-config", limits).CombinedOutput(); err != nil {
			t.Errorf("check-config rejected a good file: %v\n%s", err, out)
		}
	})

	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			args := []string{"--config", limits, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--drain-timeout", "1s", "--log-format", "json"}
			user := "proc-" + store
			if store == "redis" {
				args = append(args, "--redis-url", redistest.URL(t), "--redis-prefix", redistest.Prefix(t), "--store-timeout", "200ms")
				user = "redis-proc"
			}
			cmd := exec.Command(bin, args...)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			lines := make(chan string, 100)
			// Ends when the process closes stderr (it exits).
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var grpcAddr, httpAddr string
			re := regexp.MustCompile(`"grpc_addr":"([^"]+)","http_addr":"([^"]+)"`)
			deadline := time.After(15 * time.Second)
			for grpcAddr == "" {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatal("process exited before serving")
					}
					if m := re.FindStringSubmatch(l); m != nil {
						grpcAddr, httpAddr = m[1], m[2]
					}
				case <-deadline:
					t.Fatal("no serving log line")
				}
			}
			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			exerciseDecisions(t, conn, user)
			if code, _ := httpGet(t, "http://"+httpAddr+"/readyz"); code != 200 {
				t.Errorf("/readyz got %d", code)
			}

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			// During the drain the Envoy services must report NOT_SERVING.
			hc := healthpb.NewHealthClient(conn)
			var sawNotServing bool
			for i := 0; i < 40 && !sawNotServing; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.ratelimit.v3.RateLimitService"})
				cancel()
				sawNotServing = err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
				time.Sleep(20 * time.Millisecond)
			}
			if !sawNotServing {
				t.Errorf("health never reported NOT_SERVING during the drain")
			}
			errc := make(chan error, 1)
			// Ends when the process exits.
			go func() {
				for range lines {
				}
				errc <- cmd.Wait()
			}()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("exit after SIGTERM: %v, want status 0", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("process did not exit within 15 s of SIGTERM")
			}
		})
	}
}

// TestEnvoyKeepalivePings: Envoy pings idle HTTP/2 connections (every 30 s is common). grpc-go's default
// server policy (pings at most every 5 min) answers a client pinging every 10 s with GOAWAY "too_many_pings"
// after two strikes, which would cut Envoy's connections; Floodgate's policy accepts it.
func TestEnvoyKeepalivePings(t *testing.T) {
	if testing.Short() {
		t.Skip("idles for 45 s")
	}
	t.Parallel()
	s := startInProcess(t, "--config", writeLimits(t, e2eLimits))
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rls := rlsv3.NewRateLimitServiceClient(conn)
	call := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := rls.ShouldRateLimit(ctx, rlsRequest("e2e", "internal", "x")); err != nil {
			t.Fatalf("call: %v", err)
		}
	}
	call()
	// Watch the connection while it idles through four client pings (grpc-go's default policy sends GOAWAY at
	// the third strike, ~40 s in): a GOAWAY would move it out of READY.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var left []connectivity.State
	for st := conn.GetState(); conn.WaitForStateChange(ctx, st); {
		st = conn.GetState()
		left = append(left, st)
	}
	if len(left) > 0 {
		t.Errorf("connection left READY while idling with keepalive pings: %v", left)
	}
	call()
	if strings.Contains(s.logs.String(), "too_many_pings") {
		t.Errorf("server logged too_many_pings:\n%s", s.logs)
	}
}

// TestStoreHealthFollowsRedis: the once-a-second store ping drives /readyz and, with --on-store-error=deny,
// the gRPC health of the Envoy services; both recover when Redis is back.
func TestStoreHealthFollowsRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := startInProcess(t, "--config", writeLimits(t, e2eLimits), "--redis-url", srv.URL(), "--on-store-error", "deny",
		"--store-timeout", "100ms")
	hc := healthpb.NewHealthClient(s.conn)
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.ratelimit.v3.RateLimitService"})
		if err != nil {
			t.Fatalf("health: %v", err)
		}
		return r.GetStatus()
	}
	waitFor := func(what string, want healthpb.HealthCheckResponse_ServingStatus, wantReady int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, _ := httpGet(t, "http://"+s.httpAddr+"/readyz")
			got := status()
			if got == want && code == wantReady {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got health %v and /readyz %d, want %v and %d", what, got, code, want, wantReady)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("redis up", healthpb.HealthCheckResponse_SERVING, 200)
	srv.Shutdown()
	waitFor("redis down", healthpb.HealthCheckResponse_NOT_SERVING, 503)
	srv.Restart()
	waitFor("redis back", healthpb.HealthCheckResponse_SERVING, 200)
}

// TestDashboardFeed: the dashboard's WebSocket starts with telemetry history and the limits in force, and a
// denial made over gRPC reaches it as an audit event within 2 s — the real client, never the proxy.
func TestDashboardFeed(t *testing.T) {
	s := startInProcess(t, "--config", writeLimits(t, e2eLimits))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.httpAddr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 24)
	var hello struct {
		Type   string `json:"type"`
		Limits struct {
			Domains []struct {
				Domain string `json:"domain"`
			} `json:"domains"`
		} `json:"limits"`
	}
	if err := wsjson.Read(ctx, c, &hello); err != nil || hello.Type != "hello" {
		t.Fatalf("hello: %v %+v", err, hello)
	}
	if len(hello.Limits.Domains) != 1 || hello.Limits.Domains[0].Domain != "e2e" {
		t.Errorf("hello limits: got %+v, want domain e2e", hello.Limits.Domains)
	}

	authz := authv3.NewAuthorizationClient(s.conn)
	req := checkRequest("10.0.0.5")
	req.GetAttributes().GetRequest().GetHttp().Headers["x-forwarded-for"] = "198.51.100.9, 10.0.0.5"
	for range 3 {
		if _, err := authz.Check(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	for {
		var m struct {
			Type   string `json:"type"`
			Events []struct {
				Rule     string `json:"rule"`
				ClientIP string `json:"client_ip"`
				ProxyIP  string `json:"proxy_ip"`
				Path     string `json:"path"`
			} `json:"events"`
		}
		if err := wsjson.Read(ctx, c, &m); err != nil {
			t.Fatalf("read: %v", err)
		}
		if m.Type != "events" {
			continue
		}
		if d := time.Since(sent); d > 2*time.Second {
			t.Errorf("denial reached the dashboard after %s, want within 2 s", d)
		}
		e := m.Events[0]
		if len(m.Events) != 1 || e.Rule != "per_client" || e.ClientIP != "10.0.0.5" || e.Path != "/hello" {
			t.Errorf("events: got %+v, want one per_client denial of 10.0.0.5 (XFF is not trusted by default) for /hello", m.Events)
		}
		break
	}
	_, body := httpGet(t, "http://"+s.httpAddr+"/metrics")
	if !strings.Contains(body, "floodgate_audit_events_total 1") || !strings.Contains(body, "floodgate_dashboard_sessions 1") {
		t.Errorf("/metrics lacks the audit and dashboard series")
	}
	if code, page := httpGet(t, "http://"+s.httpAddr+"/"); code != 200 || !strings.Contains(page, "<html") {
		t.Errorf("GET /: got %d, want the dashboard page", code)
	}
}

// A start that fails after the listeners and the gRPC server exist (here: the OIDC issuer cannot be
// reached) leaves nothing behind: both ports can be bound again and no gRPC stream worker is left.
func TestStartupFailureReleasesEverything(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	workers := func() int {
		buf := make([]byte, 1<<22)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "grpc.(*Server).serverWorker")
	}
	grpcAddr, httpAddr := free(), free()
	before := workers()
	err := run(context.Background(), []string{"--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--auth-oidc-issuer", "http://127.0.0.1:1", "--auth-audience", "floodgate"},
		func(string) string { return "" }, io.Discard, io.Discard, nil)
	if err == nil {
		t.Fatal("run with an unreachable OIDC issuer: got no error")
	}
	// Stop closes the workers' channel; they exit on their own, soon after.
	got := workers()
	for deadline := time.Now().Add(5 * time.Second); got != before && time.Now().Before(deadline); got = workers() {
		time.Sleep(10 * time.Millisecond)
	}
	if got != before {
		t.Errorf("gRPC stream workers: got %d 5 s after the failed start, want %d as before", got, before)
	}
	for _, addr := range []string{grpcAddr, httpAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still held after the failed start: %v", addr, err)
			continue
		}
		ln.Close()
	}
}
