package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// proc is a child process the harness started: a server under test or a private redis-server.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	exited  chan struct{} // closed when the process has exited; waitErr is then set
	waitErr error
}

// startProc starts bin with args and env, its stdout and stderr going to logPath. The child is killed if
// the harness dies (Pdeathsig), so a crashed run leaves no server behind.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, log: f, exited: make(chan struct{})}
	// Ends when the process exits (stop below signals it, or it dies on its own).
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, waits up to grace for the process to exit, then kills it. It returns the process's
// exit error when it did not exit cleanly on SIGTERM.
func (p *proc) stop(grace time.Duration) error {
	defer p.log.Close()
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited before it was stopped: %v", p.name, p.waitErr)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, grace)
	}
}

// logTail returns the last n lines the process wrote.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitServing polls grpc.health.v1 Check("") at addr until it answers SERVING, the process exits, or
// timeout passes.
func waitServing(ctx context.Context, addr string, p *proc, timeout time.Duration) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	name, exited, logTail := addr, (<-chan struct{})(nil), ""
	if p != nil {
		name, exited, logTail = p.name, p.exited, "\n"+p.logTail(20)
	}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: ""})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("status %s", resp.GetStatus())
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before serving: %v%s", name, p.waitErr, logTail)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			if p == nil {
				return fmt.Errorf("%s not SERVING after %s: %v", addr, timeout, last)
			}
			return fmt.Errorf("%s not SERVING on %s after %s: %v%s", name, addr, timeout, last, logTail)
		}
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// childEnv is the harness's environment without FLOODGATE_* variables: Floodgate reads each flag from
// FLOODGATE_<FLAG> when the flag is absent, and an inherited FLOODGATE_REDIS_URL would turn the memory
// target into a Redis one.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "FLOODGATE_") {
			out = append(out, kv)
		}
	}
	return out
}

const modulePath = "github.com/floodgate/floodgate"

// findRepoRoot walks up from dir to the directory whose go.mod declares the Floodgate module.
func findRepoRoot(dir string) (string, error) {
	for d := dir; ; {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" && f[1] == modulePath {
					return d, nil
				}
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of %s above %s: run from the repository or pass --floodgate-bin", modulePath, dir)
		}
		d = parent
	}
}

// buildFloodgate runs `go build -o out ./cmd/floodgate` in the repository root.
func buildFloodgate(ctx context.Context, root, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build floodgate: no go on PATH (pass --floodgate-bin): %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", out, "./cmd/floodgate")
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build floodgate in %s: %w\n%s", root, err, buf.String())
	}
	return nil
}

// limitsSpec is the limit the generated limits file puts on the load's descriptor.
type limitsSpec struct {
	Domain          string
	Key             string
	Algorithm       string // fixed_window, sliding_window or token_bucket
	RequestsPerUnit int
	Unit            string
}

// limitsYAML renders a one-descriptor limits file. The default algorithm is left out so the file stays in
// the plain envoyproxy/ratelimit format.
func limitsYAML(l limitsSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by floodgate-load: one limit, high enough that the load is mostly admitted.\n")
	fmt.Fprintf(&b, "domain: %s\ndescriptors:\n  - key: %s\n    rate_limit:\n", l.Domain, l.Key)
	if l.Algorithm != "" && l.Algorithm != "fixed_window" {
		fmt.Fprintf(&b, "      algorithm: %s\n", l.Algorithm)
	}
	fmt.Fprintf(&b, "      unit: %s\n      requests_per_unit: %d\n", l.Unit, l.RequestsPerUnit)
	return b.String()
}

// deleteKeys removes every key under prefix (SCAN + UNLINK in batches) and returns how many it removed.
func deleteKeys(ctx context.Context, c redis.UniversalClient, prefix string) (int, error) {
	if prefix == "" || strings.ContainsAny(prefix, "*?[]\\") {
		return 0, errors.New("delete keys: refusing an empty prefix or one with glob characters")
	}
	var cursor uint64
	n := 0
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return n, fmt.Errorf("scan %s*: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return n, fmt.Errorf("unlink %s*: %w", prefix, err)
			}
			n += len(keys)
		}
		if next == 0 {
			return n, nil
		}
		cursor = next
	}
}

// startRedisServer starts a private redis-server on a free loopback port (no persistence) and waits for PING.
func startRedisServer(ctx context.Context, dir string) (*proc, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("--own-redis: redis-server not found (Debian: apt-get install redis-server): %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, err := startProc("redis-server", bin, []string{"--bind", "127.0.0.1", "--port", port, "--save", "",
		"--appendonly", "no", "--dir", dir}, childEnv(os.Environ()), filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, "", err
	}
	url := "redis://" + addr + "/0"
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c.Ping(ctx).Err() == nil {
			return p, url, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = p.stop(5 * time.Second)
			return nil, "", fmt.Errorf("redis-server on %s did not answer PING\n%s", addr, p.logTail(10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
