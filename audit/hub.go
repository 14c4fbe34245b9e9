package audit

import "sync"

// hub keeps the ring of recent events and the live subscribers. Safe for concurrent use: the pipeline
// and the stream tailer publish, readers call recent and subscribe.
type hub struct {
	mu   sync.Mutex
	ring []Event
	next int // index of the next write
	full bool
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch   chan Event
	once sync.Once
}

func (s *subscriber) close() { s.once.Do(func() { close(s.ch) }) }

func newHub(size int) *hub {
	return &hub{ring: make([]Event, size), subs: map[*subscriber]struct{}{}}
}

// publish stores e in the ring and offers it to every subscriber without blocking; a subscriber with a
// full buffer is removed and its channel closed.
func (h *hub) publish(e *Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.next] = *e
	h.next++
	if h.next == len(h.ring) {
		h.next, h.full = 0, true
	}
	for s := range h.subs {
		select {
		case s.ch <- *e:
		default:
			delete(h.subs, s)
			s.close()
		}
	}
}

// recent returns up to n of the latest events, oldest first.
func (h *hub) recent(n int) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	size := h.next
	if h.full {
		size = len(h.ring)
	}
	if n > size {
		n = size
	}
	if n <= 0 {
		return nil
	}
	out := make([]Event, n)
	start := h.next - n
	if start < 0 {
		start += len(h.ring)
	}
	for i := range out {
		out[i] = h.ring[(start+i)%len(h.ring)]
	}
	return out
}

// subscribe registers a live feed with a buffer of buf events (at least 1).
func (h *hub) subscribe(buf int) (<-chan Event, func()) {
	if buf < 1 {
		buf = 1
	}
	s := &subscriber{ch: make(chan Event, buf)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s.ch, func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
		s.close()
	}
}

// closeAll ends every subscription (the pipeline stopped).
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		delete(h.subs, s)
		s.close()
	}
}
