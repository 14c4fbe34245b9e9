package metrics

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// HostStats is the machine's load in one sample.
type HostStats struct {
	// CPUPercent is the busy share of all logical CPUs since the previous sample, 0-100.
	CPUPercent float64 `json:"cpu_percent"`
	// MemoryPercent is the share of physical memory in use (gopsutil's UsedPercent), 0-100.
	MemoryPercent float64 `json:"memory_percent"`
}

// ProcessStats is Floodgate's own footprint in one sample.
type ProcessStats struct {
	RSSBytes uint64 `json:"rss_bytes"`
	// CPUPercent is the process's CPU time since the previous sample as a share of the whole machine
	// (all logical CPUs), 0-100, so it compares directly with HostStats.CPUPercent.
	CPUPercent float64 `json:"cpu_percent"`
	Goroutines int     `json:"goroutines"`
	// GCPauseLastSeconds is the stop-the-world pause of the most recent GC cycle; GCCount the cycles so far.
	GCPauseLastSeconds float64 `json:"gc_pause_last_seconds"`
	GCCount            int64   `json:"gc_count"`
}

// systemProbe reads host and process figures. CPU percentages come from deltas of cumulative CPU times
// between two reads, so the probe keeps the previous read; it is used by one goroutine at a time.
type systemProbe struct {
	proc    *process.Process
	ncpu    float64
	gc      debug.GCStats
	primed  bool
	at      time.Time
	hostBus float64 // cumulative busy seconds of all CPUs
	hostAll float64 // cumulative seconds of all CPUs
	procCPU float64 // cumulative user+system seconds of the process
}

func newSystemProbe(ctx context.Context) (*systemProbe, error) {
	p, err := process.NewProcessWithContext(ctx, int32(os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("open own process: %w", err)
	}
	n, err := cpu.CountsWithContext(ctx, true)
	if err != nil || n < 1 {
		n = runtime.NumCPU()
	}
	return &systemProbe{proc: p, ncpu: float64(n)}, nil
}

// read fills host and process figures at time now. A figure whose source fails stays zero and the first
// error is returned after every other figure has been read.
func (p *systemProbe) read(ctx context.Context, now time.Time) (HostStats, ProcessStats, error) {
	var (
		h     HostStats
		ps    ProcessStats
		first error
	)
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	busy, all, hostErr := hostCPUTimes(ctx)
	if hostErr != nil {
		keep(hostErr)
	}
	var procCPU float64
	times, procErr := p.proc.TimesWithContext(ctx)
	if procErr != nil {
		keep(fmt.Errorf("process cpu times: %w", procErr))
	} else {
		procCPU = times.User + times.System
	}
	if p.primed {
		if hostErr == nil && all > p.hostAll {
			h.CPUPercent = clampPercent(100 * (busy - p.hostBus) / (all - p.hostAll))
		}
		if wall := now.Sub(p.at).Seconds(); procErr == nil && wall > 0 {
			ps.CPUPercent = clampPercent(100 * (procCPU - p.procCPU) / (wall * p.ncpu))
		}
	}
	if hostErr == nil && procErr == nil {
		p.primed, p.at, p.hostBus, p.hostAll, p.procCPU = true, now, busy, all, procCPU
	}

	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		keep(fmt.Errorf("virtual memory: %w", err))
	} else {
		h.MemoryPercent = clampPercent(vm.UsedPercent)
	}
	if mi, err := p.proc.MemoryInfoWithContext(ctx); err != nil {
		keep(fmt.Errorf("process memory: %w", err))
	} else {
		ps.RSSBytes = mi.RSS
	}
	ps.Goroutines = runtime.NumGoroutine()
	debug.ReadGCStats(&p.gc) // reuses p.gc.Pause; most recent pause first
	ps.GCCount = p.gc.NumGC
	if len(p.gc.Pause) > 0 {
		ps.GCPauseLastSeconds = p.gc.Pause[0].Seconds()
	}
	return h, ps, first
}

// hostCPUTimes returns the cumulative busy and total CPU seconds of all CPUs. Guest time is already part of
// user time on Linux, so it is not added again; idle and iowait are not busy.
func hostCPUTimes(ctx context.Context) (busy, all float64, err error) {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return 0, 0, fmt.Errorf("host cpu times: %w", err)
	}
	if len(ts) == 0 {
		return 0, 0, fmt.Errorf("host cpu times: no data")
	}
	t := ts[0]
	all = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	return all - t.Idle - t.Iowait, all, nil
}

func clampPercent(v float64) float64 {
	switch {
	case v != v || v < 0: // NaN or a counter that went backwards
		return 0
	case v > 100:
		return 100
	}
	return v
}
