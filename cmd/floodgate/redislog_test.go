package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// go-redis's log lines come out as slog records (JSON with --log-format json), at most one per interval,
// the next one saying how many were suppressed.
func TestRedisLoggerRoutesAndThrottles(t *testing.T) {
	var buf bytes.Buffer
	rl := newRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	rl.interval = 50 * time.Millisecond
	for range 10 {
		rl.Printf(context.Background(), "redis: %s", "dial tcp 127.0.0.1:1: connect: connection refused")
	}
	time.Sleep(60 * time.Millisecond)
	rl.Printf(context.Background(), "redis: again")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("line 1 is not JSON: %v: %s", err, lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatalf("line 2 is not JSON: %v: %s", err, lines[1])
	}
	if first["component"] != "go-redis" || first["level"] != "WARN" || !strings.Contains(first["msg"].(string), "connection refused") {
		t.Errorf("line 1: %v", first)
	}
	if second["suppressed"] != float64(9) {
		t.Errorf("line 2 suppressed = %v, want 9", second["suppressed"])
	}
}
