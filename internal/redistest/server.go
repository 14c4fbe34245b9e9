package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a throwaway redis-server process owned by one test. It may be shut down and restarted on the
// same port; it is killed when the test ends.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	extra []string // more redis-server arguments (cluster mode)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start runs a redis-server on a free 127.0.0.1 port with persistence off and waits until it answers PING.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t)
}

func start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server binary not found: %v", err)
	}
	pick := freePort
	if len(extra) > 0 && extra[0] == "--cluster-enabled" {
		pick = freeClusterPort
	}
	port, err := pick()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: port, extra: extra}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	return s
}

// freeClusterPort picks a port below the kernel's ephemeral range (so outgoing connections never take it)
// whose cluster bus port (+10000) is free too; kernel-chosen ports would put the bus port above 65535 or
// on a port another process is using.
func freeClusterPort() (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(2768) // bus port 30000–32767: both below the ephemeral range (32768+)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p, nil
	}
	return 0, errors.New("no free port pair (port, port+10000) found")
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL (database 0).
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redis-server on %s already running", s.Addr())
	}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"))
	cmd.Args = append(cmd.Args, s.extra...)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	// Ends when the redis-server process exits (Shutdown, Stop or a crash).
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	return s.waitReady(done)
}

// waitReady polls PING until the server answers, it exits, or 10 s pass.
func (s *Server) waitReady(done <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr(), log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready: %w", s.Addr(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Shutdown sends SHUTDOWN NOSAVE and waits for the process to exit; the data is gone.
func (s *Server) Shutdown() {
	s.t.Helper()
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	_ = c.Do(context.Background(), "SHUTDOWN", "NOSAVE").Err() // the connection closes: an error is expected
	_ = c.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redis-server on %s did not exit after SHUTDOWN NOSAVE; killing it", s.Addr())
	}
	s.kill()
}

// Restart starts the server again on the same port (after Shutdown or Stop) and waits for PING.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart redis-server: %v", err)
	}
}

// Stop kills the process if it runs and waits for it. It is registered with t.Cleanup by Start.
func (s *Server) Stop() { s.kill() }

func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}
