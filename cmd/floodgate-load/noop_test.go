package main

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startNoop serves the do-nothing server in-process on a loopback port until the test ends.
func startNoop(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Ends when cancel (test cleanup) stops the server.
	go func() { done <- serveNoop(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("noop server: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestNoopServerAnswers(t *testing.T) {
	addr := startNoop(t)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if got, want := h.GetStatus(), healthpb.HealthCheckResponse_SERVING; got != want {
		t.Errorf("health: got %s, want %s", got, want)
	}
	resp, err := rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: "api",
		Descriptors: []*rlcommon.RateLimitDescriptor{
			{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "198.18.0.1"}}},
			{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}},
		},
	})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	if got, want := resp.GetOverallCode(), rlsv3.RateLimitResponse_OK; got != want {
		t.Errorf("overall code: got %s, want %s", got, want)
	}
	if got, want := len(resp.GetStatuses()), 2; got != want {
		t.Fatalf("statuses: got %d, want %d (one per descriptor)", got, want)
	}
	for i, s := range resp.GetStatuses() {
		if got, want := s.GetCode(), rlsv3.RateLimitResponse_OK; got != want {
			t.Errorf("status %d: got %s, want %s", i, got, want)
		}
	}
}

// TestDriveNoop drives the in-process noop server for a short window and checks the tally adds up.
func TestDriveNoop(t *testing.T) {
	addr := startNoop(t)
	spec := loadSpec{Concurrency: 6, Connections: 3, Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond,
		CallTimeout: time.Second, Domain: "api", Key: "remote_address", Keys: 50, Seed: 1}
	reads := 0
	ticks := clockTicks()
	res, err := drive(context.Background(), addr, spec, func(context.Context) (cpuTimes, error) {
		reads++
		self, err := procCPU(os.Getpid(), ticks)
		return cpuTimes{Server: self, HasServer: true, Self: self}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if reads != 2 {
		t.Errorf("cpu reads: got %d, want 2 (window start and end)", reads)
	}
	if res.OK == 0 || res.Errors != 0 || res.OverLimit != 0 || res.Unknown != 0 {
		t.Errorf("tally: got ok=%d over=%d unknown=%d errors=%d (%s), want ok>0 and nothing else",
			res.OK, res.OverLimit, res.Unknown, res.Errors, res.FirstError)
	}
	if got, want := res.Latency.count(), res.calls(); got != want {
		t.Errorf("latency samples: got %d, want %d (one per completed call)", got, want)
	}
	if res.Window < spec.Duration || res.Window > spec.Duration+200*time.Millisecond {
		t.Errorf("window: got %s, want about %s", res.Window, spec.Duration)
	}
	if p50, p99 := res.Latency.quantile(0.5), res.Latency.quantile(0.99); p50 <= 0 || p99 < p50 || p99 > time.Second {
		t.Errorf("latency: got p50 %s p99 %s, want 0 < p50 ≤ p99 < 1s", p50, p99)
	}
	if res.CPU.Server < 0 {
		t.Errorf("cpu: got %s, want ≥ 0", res.CPU.Server)
	}
}

// TestDriveCountsErrors drives an address where nothing listens: every call must be an error, none an
// answer, and drive must still return after the window.
func TestDriveCountsErrors(t *testing.T) {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	spec := loadSpec{Concurrency: 2, Connections: 1, Duration: time.Second, CallTimeout: 100 * time.Millisecond,
		Domain: "api", Key: "remote_address", Keys: 5, Seed: 1}
	res, err := drive(context.Background(), addr, spec, func(context.Context) (cpuTimes, error) { return cpuTimes{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.OK != 0 {
		t.Errorf("against a closed port: got errors=%d ok=%d, want errors>0 ok=0", res.Errors, res.OK)
	}
	if res.FirstError == "" || len(res.ErrorCodes) == 0 {
		t.Errorf("error detail: got first=%q codes=%v, want both set", res.FirstError, res.ErrorCodes)
	}
}
