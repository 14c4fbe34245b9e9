package redistest

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a target address. Blackhole(true) makes it stop forwarding bytes
// in both directions (connections stay open and stall, as when a network drops packets); Blackhole(false)
// resumes and delivers what was held back, as TCP retransmission would.
type Proxy struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	gate   chan struct{} // closed while traffic flows; open while blackholed
	conns  map[net.Conn]struct{}
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// NewProxy listens on a free 127.0.0.1 port and forwards every connection to target. Closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{target: target, ln: ln, gate: open, conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	p.wg.Add(1)
	// Ends when Close closes the listener.
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port; point clients here instead of at the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stalls (on) or resumes (off) all traffic through the proxy, on existing and new connections.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate: // currently flowing
		if on {
			p.gate = make(chan struct{})
		}
	default: // currently blackholed
		if !on {
			close(p.gate)
		}
	}
}

// Close stops listening, closes every connection and waits for the proxy's goroutines.
func (p *Proxy) Close() {
	p.once.Do(func() {
		close(p.closed)
		_ = p.ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		_ = c.Close()
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		// Ends when either side of the connection closes or the proxy is closed.
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	var wg sync.WaitGroup
	wg.Add(2)
	// Both pumps end when a read or write fails; each closes both conns so the other one ends too.
	go func() { defer wg.Done(); p.pump(server, client); _ = client.Close(); _ = server.Close() }()
	go func() { defer wg.Done(); p.pump(client, server); _ = client.Close(); _ = server.Close() }()
	wg.Wait()
}

// pump copies src to dst, holding each chunk while the proxy is blackholed.
func (p *Proxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			select {
			case <-gate:
			case <-p.closed:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection
		}
	}
}
