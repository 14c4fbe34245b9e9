package extauthz

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

const benchLimits = `
domain: api
descriptors:
  - key: user
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
http_rules:
  - name: per_ip
    key: [client_ip]
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
`

// reportCPU adds cpu-ns/op: process CPU time (user+system, GC included) per operation, which stays
// meaningful when other processes share the machine and wall time per op does not.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
	}
}

func benchService(b *testing.B) *Service {
	b.Helper()
	svc, err := New(Options{Limits: staticLimits{mustParse(b, benchLimits)},
		Store: limiter.NewMemory(limiter.MemoryOptions{}), Logger: discard()})
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

// BenchmarkShouldRateLimit calls the handler directly (no gRPC) with the memory store; each goroutine has
// its own descriptor value, so the store's shards are not the bottleneck.
func BenchmarkShouldRateLimit(b *testing.B) {
	svc := benchService(b)
	var n atomic.Int64
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		req := rlsReq("api", desc("user", "u"+strconv.FormatInt(n.Add(1), 10)))
		for pb.Next() {
			if _, err := svc.ShouldRateLimit(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCheck calls the ext_authz handler directly with the memory store.
func BenchmarkCheck(b *testing.B) {
	svc := benchService(b)
	var n atomic.Int64
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		i := n.Add(1)
		req := checkReq{source: "198.51.100." + strconv.FormatInt(i%250, 10), ext: map[string]string{"domain": "api"},
			xff: "203.0.113.1", headers: map[string]string{"user-agent": "bench"}}.proto()
		for pb.Next() {
			if _, err := svc.Check(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkKeyBuild builds one RLS counter key into a reused buffer.
func BenchmarkKeyBuild(b *testing.B) {
	d := desc("remote_address", "198.51.100.7", "path", "/api/v1/items")
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		for pb.Next() {
			buf = appendDescriptorKey(buf[:0], "api", d.GetEntries(), nil)
			buf = appendIndex(buf, 0)
			if finishKey(buf) == "" {
				b.Fatal("empty key")
			}
		}
	})
}
