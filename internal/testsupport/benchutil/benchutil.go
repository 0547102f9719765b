// Package benchutil describes the machine a benchmark ran on and writes
// results files, so every figure in docs/PERFORMANCE.md carries its context.
// Figures are compared as ratios against a baseline measured in the same run,
// because shared machines are noisy.
package benchutil

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Machine is what a result needs to be read against.
type Machine struct {
	CPUModel   string `json:"cpu_model"`
	Cores      int    `json:"cores"`
	MemoryGiB  int    `json:"memory_gib"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	PostgreSQL string `json:"postgresql,omitempty"`
	Hostname   string `json:"hostname"`
}

// Describe reads the machine description; pool, when not nil, adds the
// PostgreSQL server version.
func Describe(ctx context.Context, pool *pgxpool.Pool) Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	m.CPUModel = firstField("/proc/cpuinfo", "model name")
	if kb := firstField("/proc/meminfo", "MemTotal"); kb != "" {
		if n, err := strconv.Atoi(strings.Fields(kb)[0]); err == nil {
			m.MemoryGiB = (n + 512*1024) / (1024 * 1024)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Hostname, _ = os.Hostname()
	if pool != nil {
		_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&m.PostgreSQL)
	}
	return m
}

func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Result is one results file: a named benchmark, when it ran, where, and its
// figures (free-form, per benchmark).
type Result struct {
	Benchmark string    `json:"benchmark"`
	RanAt     time.Time `json:"ran_at"`
	Machine   Machine   `json:"machine"`
	Figures   any       `json:"figures"`
	Notes     []string  `json:"notes,omitempty"`
}

// Write stores r as indented JSON at path, creating its directory.
func Write(path string, r Result) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// PeakRSSKiB returns the peak resident set size of process pid (VmHWM), in
// KiB, or 0 when it cannot be read.
func PeakRSSKiB(pid int) int64 {
	f := strings.Fields(firstField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM"))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

// LoadAverage is the 1-minute load average, 0 when unknown: the machine is
// shared, and other work skews every figure.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	l, _ := strconv.ParseFloat(fields[0], 64)
	return l
}

// WaitFor polls cond every 50 ms until it holds or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
