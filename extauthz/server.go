package extauthz

import (
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// TransportOptions are the gRPC server options for serving Envoy, codec aside: a keepalive policy that
// tolerates Envoy's pings on idle connections, a 4 MiB message bound, and a pool of stream workers.
//
// grpc-go's default policy answers a client that pings more often than every 5 minutes with GOAWAY
// "too_many_pings". Envoy pings at its connection_keepalive interval with 15 % jitter by default, so the
// policy accepts pings 5 s apart: half of a 10 s interval, the shortest commonly configured, leaves room
// for the jitter and for a ping read late on a busy server (pings exactly as far apart as MinTime are
// struck when the first of them was read late).
//
// The workers matter for speed: without them grpc-go starts a goroutine per RPC, and every one of them grows
// its stack from 2 KiB to what the handler needs, copying it on the way — 10–13 % of the server's CPU in a
// profile at 20,000 decisions/s. A worker's stack stays grown from one RPC to the next; when every worker
// is busy (handlers waiting on Redis), grpc-go falls back to a goroutine per RPC, so the pool never queues.
func TransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.NumStreamWorkers(uint32(StreamWorkers())),
	}
}

// StreamWorkers is the size of the stream worker pool: 8 per CPU Go may use, at least 16.
func StreamWorkers() int { return max(16, 8*runtime.GOMAXPROCS(0)) }

// ServerOptions are TransportOptions plus the lenient codec (Codec): everything Floodgate's gRPC server is
// built with.
func ServerOptions() []grpc.ServerOption {
	return append(TransportOptions(), grpc.ForceServerCodecV2(Codec()))
}
