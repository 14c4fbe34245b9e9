package config

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// storeDoc is a small valid document, distinct for each n.
func storeDoc(n int) []File {
	return []File{
		{Name: "api/zeta.yaml", Data: fmt.Appendf(nil, "domain: zeta\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: %d}\n", n+1)},
		{Name: "api/alpha.yaml", Data: []byte("domain: alpha\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 7}\n")},
	}
}

// testStoreConformance is the behaviour every Store shares. newStore returns an empty store that keeps
// keep revisions.
func testStoreConformance(t *testing.T, keep int, newStore func(t *testing.T) Store) {
	ctx := context.Background()

	t.Run("empty", func(t *testing.T) {
		s := newStore(t)
		cur, err := s.Current(ctx)
		if err != nil || cur.Version != 0 {
			t.Fatalf("Current: got version %d, %v; want 0, nil", cur.Version, err)
		}
		if _, err := s.Get(ctx, 1); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(1): got %v, want ErrNotFound", err)
		}
		if h, err := s.History(ctx, 10); err != nil || len(h) != 0 {
			t.Errorf("History: got %d revisions, %v; want 0, nil", len(h), err)
		}
	})

	t.Run("versions, conflict, get, history", func(t *testing.T) {
		s := newStore(t)
		start := time.Now()
		var stored []Revision
		for i := range 3 {
			rev, err := s.Put(ctx, uint64(i), Revision{Files: storeDoc(i), Author: "alice", Remote: "10.0.0.1",
				Source: "api", Message: fmt.Sprintf("change %d", i)})
			if err != nil {
				t.Fatalf("Put(%d): %v", i, err)
			}
			if rev.Version != uint64(i+1) {
				t.Errorf("Put(%d): got version %d, want %d", i, rev.Version, i+1)
			}
			if want := DigestFiles(storeDoc(i)); rev.Digest != want {
				t.Errorf("Put(%d): got digest %s, want %s", i, rev.Digest, want)
			}
			if rev.CreatedAt.Before(start.Add(-time.Minute)) || rev.CreatedAt.After(time.Now().Add(time.Minute)) {
				t.Errorf("Put(%d): got CreatedAt %v, want about %v", i, rev.CreatedAt, start)
			}
			if rev.Files[0].Name != "api/alpha.yaml" {
				t.Errorf("Put(%d): got files %s, %s; want them sorted by name", i, rev.Files[0].Name, rev.Files[1].Name)
			}
			stored = append(stored, rev)
		}
		if _, err := s.Put(ctx, 1, Revision{Files: storeDoc(9)}); !errors.Is(err, ErrConflict) ||
			!strings.Contains(err.Error(), "current is 3") {
			t.Errorf("Put(stale 1): got %v, want ErrConflict naming current version 3", err)
		}
		if _, err := s.Put(ctx, 7, Revision{Files: storeDoc(9)}); !errors.Is(err, ErrConflict) {
			t.Errorf("Put(future 7): got %v, want ErrConflict", err)
		}
		cur, err := s.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(stored[2], cur); diff != "" {
			t.Errorf("Current (-put +current):\n%s", diff)
		}
		got, err := s.Get(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(stored[1], got); diff != "" {
			t.Errorf("Get(2) (-put +get):\n%s", diff)
		}
		if _, err := s.Get(ctx, 4); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(4): got %v, want ErrNotFound", err)
		}
		h, err := s.History(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := []Revision{stored[2], stored[1], stored[0]}
		if diff := cmp.Diff(want, h); diff != "" {
			t.Errorf("History(10) (-want +got):\n%s", diff)
		}
		h, err = s.History(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 2 || h[0].Version != 3 || h[1].Version != 2 {
			t.Errorf("History(2): got %d revisions, want versions 3, 2", len(h))
		}
	})

	t.Run("trim to keep", func(t *testing.T) {
		s := newStore(t)
		n := keep + 3
		for i := range n {
			if _, err := s.Put(ctx, uint64(i), Revision{Files: storeDoc(i), Source: "api"}); err != nil {
				t.Fatalf("Put(%d): %v", i, err)
			}
		}
		h, err := s.History(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != keep || h[0].Version != uint64(n) || h[keep-1].Version != uint64(n-keep+1) {
			t.Fatalf("History(%d): got %d revisions, want %d (versions %d..%d)", n, len(h), keep, n, n-keep+1)
		}
		for v := uint64(1); v <= uint64(n-keep); v++ {
			if _, err := s.Get(ctx, v); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%d) after trim: got %v, want ErrNotFound", v, err)
			}
		}
		if _, err := s.Get(ctx, uint64(n-keep+1)); err != nil {
			t.Errorf("Get(%d), the oldest kept: %v", n-keep+1, err)
		}
		if cur, _ := s.Current(ctx); cur.Version != uint64(n) {
			t.Errorf("Current after trim: got version %d, want %d", cur.Version, n)
		}
	})

	t.Run("20 racing puts, one wins", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Put(ctx, 0, Revision{Files: storeDoc(0)}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins, conflicts int
		start := make(chan struct{})
		for i := range 20 {
			wg.Add(1)
			// Ends after its one Put.
			go func() {
				defer wg.Done()
				<-start
				_, err := s.Put(ctx, 1, Revision{Files: storeDoc(i + 1)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrConflict):
					conflicts++
				default:
					t.Errorf("Put: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins != 1 || conflicts != 19 {
			t.Errorf("got %d wins and %d conflicts, want 1 and 19", wins, conflicts)
		}
		if cur, _ := s.Current(ctx); cur.Version != 2 {
			t.Errorf("Current: got version %d, want 2", cur.Version)
		}
	})

	t.Run("changes", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		ch := s.Changes(cctx)
		if _, err := s.Put(ctx, 0, Revision{Files: storeDoc(0)}); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-ch:
			if v != 1 {
				t.Errorf("Changes: got version %d, want 1", v)
			}
		case <-time.After(time.Second):
			t.Fatal("Changes: nothing within 1 s of a Put")
		}
		cancel()
		select {
		case _, ok := <-drainVersions(ch):
			if ok {
				t.Error("Changes: channel still open after ctx ended")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Changes: channel not closed within 2 s of ctx ending")
		}
	})
}

// drainVersions returns a channel that yields (zero, false) once ch is closed.
func drainVersions(ch <-chan uint64) <-chan uint64 {
	done := make(chan uint64)
	// Ends when ch is closed.
	go func() {
		for range ch {
		}
		close(done)
	}()
	return done
}

func TestMemoryStore(t *testing.T) {
	testStoreConformance(t, memoryKeep, func(*testing.T) Store { return NewMemoryStore() })
}

// TestMemoryStoreChangesCoalesce: a reader that is behind gets the newest version, and Put never blocks.
func TestMemoryStoreChangesCoalesce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewMemoryStore()
	ch := s.Changes(ctx)
	for i := range 5 {
		if _, err := s.Put(ctx, uint64(i), Revision{Files: storeDoc(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-ch; got != 5 {
		t.Errorf("got version %d, want the newest, 5", got)
	}
	select {
	case v := <-ch:
		t.Errorf("got a second value %d, want one value only", v)
	default:
	}
}

// TestMemoryStoreCopies: a caller reusing its buffers cannot change a stored revision.
func TestMemoryStoreCopies(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	files := storeDoc(1)
	if _, err := s.Put(ctx, 0, Revision{Files: files}); err != nil {
		t.Fatal(err)
	}
	files[0].Data[0] = 'X'
	cur, _ := s.Current(ctx)
	if cur.Digest != DigestFiles(cur.Files) || cur.Digest != DigestFiles(storeDoc(1)) {
		t.Error("stored revision changed with the caller's buffer")
	}
}
