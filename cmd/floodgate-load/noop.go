package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/floodgate/floodgate/extauthz"
)

// noopRLS answers every ShouldRateLimit with overall OK and one OK status per descriptor, without looking at
// anything else: the ceiling the gRPC stack, the loopback network and the load generator allow on this
// machine, against which Floodgate's throughput is reported as a ratio.
type noopRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (noopRLS) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	statuses := make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(req.GetDescriptors()))
	for i := range statuses {
		statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: statuses}, nil
}

// newNoopServer builds the do-nothing server with the same transport options as Floodgate's (keepalive,
// message bound, stream workers) and a health service that reports SERVING for "" and the RLS service.
func newNoopServer() *grpc.Server {
	s := grpc.NewServer(extauthz.TransportOptions()...)
	rlsv3.RegisterRateLimitServiceServer(s, noopRLS{})
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, h)
	return s
}

// serveNoop serves the do-nothing server on ln until ctx ends, then stops gracefully.
func serveNoop(ctx context.Context, ln net.Listener) error {
	s := newNoopServer()
	served := make(chan error, 1)
	// Ends when Serve returns: after GracefulStop below, or on a listener error.
	go func() { served <- s.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve noop %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	// Ends when in-flight calls finish or Stop below cuts them off.
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		s.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve noop %s: %w", ln.Addr(), err)
	}
	return nil
}

// runNoopServer is the hidden "noop-server --addr ADDR" mode the harness re-executes itself in.
func runNoopServer(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("floodgate-load noop-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	fmt.Fprintf(stderr, "noop-server listening on %s\n", ln.Addr())
	return serveNoop(ctx, ln)
}
