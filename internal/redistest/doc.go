// Package redistest gives tests a Redis to talk to: the shared server named by FLOODGATE_TEST_REDIS_URL
// (default redis://127.0.0.1:6379/0) with a unique key prefix per test, a throwaway redis-server process that
// a test may stop and restart, and a TCP proxy that can stall traffic like a network dropping packets.
//
// Invariants:
//   - A test never touches keys outside its Prefix on the shared server; the prefix's keys are deleted when
//     the test ends. Nothing here issues FLUSHALL, CONFIG SET or SHUTDOWN against the shared server.
//   - An unreachable Redis (or a missing redis-server binary) fails the test when the CI environment variable
//     is set and skips it loudly otherwise.
//   - Every process and goroutine started here is ended by t.Cleanup.
package redistest
