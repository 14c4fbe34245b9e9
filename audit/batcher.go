package audit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Backoff bounds of a failing sink.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// batcher buffers events for one sink (PostgreSQL or the Redis stream) and writes them in batches from
// its own goroutine, retrying a failed batch with exponential backoff. The buffer is bounded: past max
// events, add drops (counted). Events leave the buffer only once written.
type batcher struct {
	name     string
	max      int
	batch    int
	interval time.Duration
	write    func(ctx context.Context, events []*Event) error
	// parallel batches are written at once when that many are waiting; only for an idempotent write,
	// since a failure of one retries them all.
	parallel int
	log      *slog.Logger

	mu   sync.Mutex
	buf  []*Event
	kick chan struct{}

	written, dropped, failures atomic.Uint64
}

func newBatcher(name string, max, batch int, interval time.Duration, write func(context.Context, []*Event) error, log *slog.Logger) *batcher {
	if interval <= 0 {
		interval = time.Millisecond
	}
	return &batcher{name: name, max: max, batch: batch, interval: interval, write: write, log: log,
		parallel: 1, kick: make(chan struct{}, 1)}
}

// add buffers e, or drops it when the buffer is full.
func (b *batcher) add(e *Event) {
	b.mu.Lock()
	if len(b.buf) >= b.max {
		b.mu.Unlock()
		b.dropped.Add(1)
		return
	}
	b.buf = append(b.buf, e)
	n := len(b.buf)
	b.mu.Unlock()
	if n >= b.batch {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

func (b *batcher) pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// run writes batches every interval (or as soon as a batch is full) until stop is closed, then flushes
// what is left, retrying until ctx is cancelled; what is still buffered then is counted as dropped.
func (b *batcher) run(ctx context.Context, stop <-chan struct{}) {
	ticker := time.NewTicker(b.interval)
	defer ticker.Stop()
	backoff := time.Duration(0)
	stopping := false
	for {
		if !stopping {
			select {
			case <-stop:
				stopping = true
			case <-ticker.C:
			case <-b.kick:
			case <-ctx.Done():
				stopping = true
			}
		}
		err := b.flush(ctx)
		if err == nil {
			backoff = 0
			if stopping {
				return
			}
			continue
		}
		b.failures.Add(1)
		if ctx.Err() != nil {
			n := b.pending()
			b.dropped.Add(uint64(n))
			b.log.Error("audit sink gave up at shutdown", "sink", b.name, "dropped", n, "err", err)
			return
		}
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		b.log.Warn("audit sink write failed, retrying", "sink", b.name, "pending", b.pending(),
			"backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-stop:
			stopping = true
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// flush writes the buffer in batches (up to parallel at once) until it is empty or a write fails.
func (b *batcher) flush(ctx context.Context) error {
	for {
		b.mu.Lock()
		n := min(len(b.buf), b.batch*b.parallel)
		head := b.buf[:n:n] // only flush removes from the head; add appends past it
		b.mu.Unlock()
		if n == 0 {
			return nil
		}
		var err error
		if n <= b.batch {
			err = b.write(ctx, head)
		} else {
			var g errgroup.Group
			for lo := 0; lo < n; lo += b.batch {
				chunk := head[lo:min(lo+b.batch, n)]
				// Ends when its write returns.
				g.Go(func() error { return b.write(ctx, chunk) })
			}
			err = g.Wait()
		}
		if err != nil {
			return err
		}
		b.written.Add(uint64(n))
		b.mu.Lock()
		clear(b.buf[:n])
		b.buf = b.buf[n:]
		if len(b.buf) == 0 {
			b.buf = nil
		}
		b.mu.Unlock()
	}
}
