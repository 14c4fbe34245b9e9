package audit

import (
	"cmp"
	"container/heap"
	"slices"
	"sync"
	"time"
)

// bucketCount is the number of one-minute buckets kept: TopOffenders looks back at most 15 whole minutes
// before the current one.
const bucketCount = 16

// Count is one heavy hitter. Its true number of denials lies in [Count-Error, Count]; Error is 0 when the
// key was tracked from its first denial in every bucket of the window.
type Count struct {
	Key   string `json:"key"`
	Count uint64 `json:"count"`
	Error uint64 `json:"error"`
}

// Offenders are the clients and rules with the most denials, most first.
type Offenders struct {
	Window  time.Duration `json:"window_ns"`
	Clients []Count       `json:"clients"`
	Rules   []Count       `json:"rules"`
}

// topOffenders counts denials per client and per rule with Space-Saving summaries of k counters, one pair
// per minute in a ring of 16: memory is O(16·k) whatever the number of distinct clients.
type topOffenders struct {
	mu      sync.Mutex
	k       int
	buckets [bucketCount]minuteBucket
}

type minuteBucket struct {
	minute  int64 // Unix minute; 0 = unused
	clients *spaceSaving
	rules   *spaceSaving
}

func newTopOffenders(k int) *topOffenders { return &topOffenders{k: k} }

func (t *topOffenders) add(at time.Time, client, rule string) {
	m := at.Unix() / 60
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &t.buckets[m%bucketCount]
	if b.minute != m {
		if b.clients == nil {
			b.clients, b.rules = newSpaceSaving(t.k), newSpaceSaving(t.k)
		} else {
			b.clients.reset()
			b.rules.reset()
		}
		b.minute = m
	}
	if client != "" { // an RLS request without a remote_address entry has no client: only its rule counts
		b.clients.add(client)
	}
	b.rules.add(rule)
}

// query merges the buckets covering at least the last window (whole minutes, 1 to 15) ending at now: the
// current minute so far and the window's whole minutes before it, so that a window never covers less than
// it says (a 1-minute window covers the last 60 to 120 s). Offenders.Window is the time actually covered.
func (t *topOffenders) query(now time.Time, window time.Duration, n int) Offenders {
	minutes := int64((window + time.Minute - 1) / time.Minute)
	minutes = min(max(minutes, 1), bucketCount-1)
	cur := now.Unix() / 60
	clients, rules := map[string]Count{}, map[string]Count{}
	t.mu.Lock()
	for m := cur - minutes; m <= cur; m++ {
		b := &t.buckets[((m%bucketCount)+bucketCount)%bucketCount]
		if b.minute != m || b.clients == nil {
			continue
		}
		b.clients.mergeInto(clients)
		b.rules.mergeInto(rules)
	}
	t.mu.Unlock()
	covered := now.Sub(time.Unix((cur-minutes)*60, 0))
	return Offenders{Window: covered, Clients: topN(clients, n), Rules: topN(rules, n)}
}

func topN(m map[string]Count, n int) []Count {
	out := make([]Count, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Count) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// spaceSaving is the Space-Saving summary (Metwally et al.): k counters; an untracked key replaces the
// smallest counter and inherits its count as error. Every key with more than N/k hits is tracked.
type spaceSaving struct {
	k     int
	index map[string]*ssEntry
	heap  ssHeap // min-heap by count
}

type ssEntry struct {
	key   string
	count uint64
	err   uint64
	pos   int
}

func newSpaceSaving(k int) *spaceSaving {
	return &spaceSaving{k: k, index: make(map[string]*ssEntry, k)}
}

func (s *spaceSaving) reset() {
	clear(s.index)
	s.heap = s.heap[:0]
}

func (s *spaceSaving) add(key string) {
	if e, ok := s.index[key]; ok {
		e.count++
		heap.Fix(&s.heap, e.pos)
		return
	}
	if len(s.heap) < s.k {
		e := &ssEntry{key: key, count: 1}
		s.index[key] = e
		heap.Push(&s.heap, e)
		return
	}
	e := s.heap[0]
	delete(s.index, e.key)
	e.key, e.err = key, e.count
	e.count++
	s.index[key] = e
	heap.Fix(&s.heap, 0)
}

func (s *spaceSaving) mergeInto(m map[string]Count) {
	for _, e := range s.heap {
		c := m[e.key]
		c.Key = e.key
		c.Count += e.count
		c.Error += e.err
		m[e.key] = c
	}
}

type ssHeap []*ssEntry

func (h ssHeap) Len() int           { return len(h) }
func (h ssHeap) Less(i, j int) bool { return h[i].count < h[j].count }
func (h ssHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *ssHeap) Push(x any) {
	e := x.(*ssEntry)
	e.pos = len(*h)
	*h = append(*h, e)
}
func (h *ssHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
