package limiter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// call is one script run waiting for a pipeline: the request's keys and arguments, and its answer.
// A call belongs to the worker from the moment it is queued until done is closed; a caller that stops
// waiting (its context ended) abandons the call to the garbage collector instead of reusing its buffers.
type call struct {
	ctx  context.Context
	keys []string
	args []any
	vals []int64
	err  error
	done chan struct{}
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// pipeliner decides the requests of concurrent callers together: each worker takes the first waiting call and
// every other call already queued (up to max) and decides them in ONE run of the script, one request after
// another, each all-or-nothing on its own. What they share is the round trip, the script call overhead and the
// system calls on both sides, which at high concurrency cost more than deciding. At low load a batch holds one
// call and nothing waits. A script error (for example a key of the wrong type) fails every call of its batch.
type pipeliner struct {
	client  redis.UniversalClient
	script  *redis.Script
	queue   chan *call
	max     int
	timeout time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newPipeliner(client redis.UniversalClient, script *redis.Script, workers, max int, timeout time.Duration) *pipeliner {
	p := &pipeliner{client: client, script: script, queue: make(chan *call, workers*max), max: max,
		timeout: timeout, stop: make(chan struct{})}
	for range workers {
		p.wg.Add(1)
		// Ends when close stops the pipeliner.
		go p.work()
	}
	return p
}

// close stops the workers after the batches in flight; calls still queued are answered with an error.
func (p *pipeliner) close() {
	close(p.stop)
	p.wg.Wait()
	for {
		select {
		case c := <-p.queue:
			c.err = errPipelineClosed
			c.done <- struct{}{}
		default:
			return
		}
	}
}

type pipelineError string

func (e pipelineError) Error() string { return string(e) }

const errPipelineClosed = pipelineError("redis store closed")

// do queues c and waits for its answer or the end of ctx. It reports false when it stopped waiting: c then
// still belongs to the worker and must not be reused.
func (p *pipeliner) do(ctx context.Context, c *call) bool {
	c.ctx = ctx
	select {
	case p.queue <- c:
	case <-ctx.Done():
		c.err = ctx.Err()
		return true
	}
	select {
	case <-c.done:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *pipeliner) work() {
	defer p.wg.Done()
	batch := make([]*call, 0, p.max)
	var keys []string
	var args []any
	for {
		select {
		case c := <-p.queue:
			batch = append(batch[:0], c)
		case <-p.stop:
			return
		}
	fill:
		for len(batch) < p.max {
			select {
			case c := <-p.queue:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		keys, args = p.run(batch, keys[:0], args[:0])
		clear(batch)
	}
}

// run decides the live calls of batch in one script run and answers every call of it. It returns keys and
// args, emptied, for reuse.
func (p *pipeliner) run(batch []*call, keys []string, args []any) ([]string, []any) {
	live := batch[:0:0]
	var deadline time.Time
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			c.done <- struct{}{}
			continue
		}
		live = append(live, c)
		if d, ok := c.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return keys, args
	}
	// The run lives as long as its most patient caller; the others stop waiting on their own deadline.
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	} else if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	args = append(args, len(live))
	for _, c := range live {
		keys = append(keys, c.keys...)
		args = append(args, c.args...)
	}
	vals, err := p.script.Run(ctx, p.client, keys, args...).Int64Slice()
	clear(keys)
	clear(args)
	off := 0
	for _, c := range live {
		n := 1 + 4*len(c.keys)
		switch {
		case err != nil:
			c.err = err
		case off+n > len(vals):
			c.err = fmt.Errorf("script returned %d values for a batch of %d requests", len(vals), len(live))
		default:
			c.vals = vals[off : off+n : off+n]
		}
		off += n
		c.done <- struct{}{}
	}
	return keys[:0], args[:0]
}
