package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// buildBinary builds the floodgate binary into a test directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "floodgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs the binary as its own process (JSON logs, loopback ports chosen by the kernel) and
// returns once it serves; the process gets SIGTERM at cleanup. logs collects its stderr.
func startProcess(t *testing.T, bin string, args ...string) *server {
	t.Helper()
	args = append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--drain-timeout", "0s", "--log-format", "json"}, args...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{logs: &syncBuffer{}}
	addrs := make(chan [2]string, 1)
	exited := make(chan error, 1)
	re := regexp.MustCompile(`"grpc_addr":"([^"]+)","http_addr":"([^"]+)"`)
	// Ends when the process closes stderr (it exits), then reaps it.
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.logs.Write(append(sc.Bytes(), '\n'))
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case a := <-addrs:
		s.grpcAddr, s.httpAddr = a[0], a[1]
	case err := <-exited:
		t.Fatalf("process exited before serving: %v\n%s", err, s.logs)
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("process did not serve within 20 s\n%s", s.logs)
	}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s.conn = conn
	s.stop = sync.OnceValue(func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("process exit: %w\n%s", err, s.logs)
			}
			return nil
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("process did not exit within 15 s of SIGTERM")
		}
	})
	t.Cleanup(func() {
		conn.Close()
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}
