package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// redisLogger routes go-redis's own log lines (dial failures, pool events) into slog, so that
// --log-format json stays JSON during a Redis outage, at most one line per interval (the rest counted in
// the next line as "suppressed"): a down Redis makes every pooled dial log.
type redisLogger struct {
	l        *slog.Logger
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newRedisLogger(l *slog.Logger) *redisLogger {
	return &redisLogger{l: l.With("component", "go-redis"), interval: 5 * time.Second}
}

func (r *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.interval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	r.last = now
	n := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...), "suppressed", n)
}
