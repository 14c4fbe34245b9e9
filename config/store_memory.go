package config

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// memoryKeep is how many revisions a MemoryStore keeps.
const memoryKeep = 100

// MemoryStore is a Store inside one process: the api source without Redis, and the local history of the
// file source. It keeps the last 100 revisions. Safe for concurrent use.
type MemoryStore struct {
	mu   sync.Mutex
	revs []Revision // oldest first, at most memoryKeep; revs[len-1] is the current one
	last uint64     // the current version (kept apart from revs so it survives trimming)
	subs map[chan uint64]struct{}
}

// NewMemoryStore returns an empty MemoryStore (Current has Version 0).
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{subs: map[chan uint64]struct{}{}}
}

// Current returns the newest revision, or a zero Revision when nothing was stored.
func (m *MemoryStore) Current(ctx context.Context) (Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.revs) == 0 {
		return Revision{}, nil
	}
	return shareRevision(m.revs[len(m.revs)-1]), nil
}

// currentVersion is the cheap check of the runtime's poll.
func (m *MemoryStore) currentVersion(ctx context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, nil
}

// Put stores rev as version expect+1 if expect is the current version (see Store).
func (m *MemoryStore) Put(ctx context.Context, expect uint64, rev Revision) (Revision, error) {
	if err := ctx.Err(); err != nil {
		return Revision{}, fmt.Errorf("put limits: %w", err)
	}
	rev.Files = copyFiles(rev.Files)
	rev.Digest = DigestFiles(rev.Files)
	m.mu.Lock()
	defer m.mu.Unlock()
	if expect != m.last {
		return Revision{}, fmt.Errorf("put limits: expected version %d, current is %d: %w", expect, m.last, ErrConflict)
	}
	m.last++
	rev.Version = m.last
	rev.CreatedAt = time.Now().UTC().Truncate(time.Microsecond) // what a JSON round trip through Redis keeps
	m.revs = append(m.revs, rev)
	if n := len(m.revs) - memoryKeep; n > 0 {
		m.revs = slices.Delete(m.revs, 0, n)
	}
	for ch := range m.subs {
		offerVersion(ch, rev.Version)
	}
	return shareRevision(rev), nil
}

// Get returns one stored version, or an error wrapping ErrNotFound.
func (m *MemoryStore) Get(ctx context.Context, version uint64) (Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.revs {
		if r.Version == version {
			return shareRevision(r), nil
		}
	}
	return Revision{}, fmt.Errorf("get limits version %d: %w", version, ErrNotFound)
}

// History returns up to n revisions, newest first.
func (m *MemoryStore) History(ctx context.Context, n int) ([]Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n = min(n, len(m.revs))
	if n <= 0 {
		return nil, nil
	}
	out := make([]Revision, 0, n)
	for i := len(m.revs) - 1; len(out) < n; i-- {
		out = append(out, shareRevision(m.revs[i]))
	}
	return out, nil
}

// Changes delivers the version of every later Put. The channel holds one value: when the reader is
// behind, it holds the newest version only. It is closed when ctx ends.
func (m *MemoryStore) Changes(ctx context.Context) <-chan uint64 {
	ch := make(chan uint64, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	// The callback runs once, in its own goroutine, when ctx ends; it returns at once.
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		close(ch)
		m.mu.Unlock()
	})
	return ch
}

// offerVersion puts v into ch (capacity 1) without ever blocking: a value still waiting there is replaced
// by the newer of the two. Only one goroutine sends on ch at a time.
func offerVersion(ch chan uint64, v uint64) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case old := <-ch:
			v = max(v, old)
		default:
		}
	}
}

// copyFiles deep-copies files, sorted by name as a Revision holds them, so a caller that reuses its
// buffers cannot change a stored revision.
func copyFiles(files []File) []File {
	out := make([]File, len(files))
	for i, f := range files {
		out[i] = File{Name: f.Name, Data: slices.Clone(f.Data)}
	}
	sortFiles(out)
	return out
}

// sortFiles orders files by name, the order of Revision.Files.
func sortFiles(files []File) {
	slices.SortStableFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
}

// shareRevision returns r with its own Files slice (the data bytes stay shared and must not be modified).
func shareRevision(r Revision) Revision {
	r.Files = slices.Clone(r.Files)
	return r
}
