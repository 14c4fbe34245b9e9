package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultClockTicks is USER_HZ on every Linux architecture Go supports; clockTicks reads the real value.
const defaultClockTicks = 100

// atClkTck is the auxiliary vector entry carrying sysconf(_SC_CLK_TCK).
const atClkTck = 17

// clockTicks returns the kernel's clock ticks per second (the unit of utime and stime in /proc/PID/stat),
// read from this process's auxiliary vector, since Go has no sysconf without cgo.
func clockTicks() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return defaultClockTicks
	}
	for len(b) >= 16 {
		k, v := binary.NativeEndian.Uint64(b[:8]), binary.NativeEndian.Uint64(b[8:16])
		b = b[16:]
		if k == atClkTck && v > 0 && v < 1<<20 {
			return int64(v)
		}
		if k == 0 {
			break
		}
	}
	return defaultClockTicks
}

// procCPU returns the CPU time (user + system, every thread, living and exited) that process pid has used,
// from /proc/PID/stat fields 14 and 15. Its resolution is one clock tick (10 ms).
func procCPU(pid int, ticks int64) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	d, err := parseProcStatCPU(b, ticks)
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	return d, nil
}

// parseProcStatCPU extracts utime + stime from the text of /proc/PID/stat. The second field (comm) is in
// parentheses and may itself contain spaces and parentheses, so fields are counted from the last ')'.
func parseProcStatCPU(b []byte, ticks int64) (time.Duration, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("parse /proc stat: no ')' in %q", truncate(string(b), 80))
	}
	// After ')' come field 3 (state), 4 (ppid), ... so field k is at index k-3.
	f := strings.Fields(string(b[end+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("parse /proc stat: %d fields after comm, want > %d", len(f), stime)
	}
	u, err := strconv.ParseInt(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc stat utime: %w", err)
	}
	s, err := strconv.ParseInt(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc stat stime: %w", err)
	}
	if ticks <= 0 {
		ticks = defaultClockTicks
	}
	return time.Duration(u+s) * time.Second / time.Duration(ticks), nil
}

// procRSS returns the resident set size of process pid in bytes (VmRSS of /proc/PID/status).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("parse VmRSS %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// redisSample is what the harness reads from Redis at the edges of the measured window.
type redisSample struct {
	CPU   time.Duration // used_cpu_sys + used_cpu_user: the server's CPU time (all threads), µs resolution
	Conns int64         // total_connections_received: connections accepted since start
}

// redisStats reads INFO cpu and INFO stats.
func redisStats(ctx context.Context, c redis.UniversalClient) (redisSample, error) {
	info, err := c.Info(ctx, "cpu", "stats").Result()
	if err != nil {
		return redisSample{}, fmt.Errorf("redis info: %w", err)
	}
	return parseRedisInfo(info)
}

func parseRedisInfo(info string) (redisSample, error) {
	var s redisSample
	var cpu float64
	found := 0
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "used_cpu_sys", "used_cpu_user":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return s, fmt.Errorf("parse redis %s %q: %w", k, v, err)
			}
			cpu += f
			found++
		case "total_connections_received":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return s, fmt.Errorf("parse redis %s %q: %w", k, v, err)
			}
			s.Conns = n
		}
	}
	if found != 2 {
		return s, fmt.Errorf("redis info: found %d of used_cpu_sys, used_cpu_user", found)
	}
	s.CPU = time.Duration(cpu * float64(time.Second))
	return s, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
