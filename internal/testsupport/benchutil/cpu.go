package benchutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on every
// architecture Linux runs Go on, whatever the kernel's own tick rate.
const clockTicks = 100

// ProcCPU is the CPU time of one process, in seconds, from /proc/<pid>/stat.
type ProcCPU struct {
	PPID int
	// Self is utime + stime: the process's own threads.
	Self float64
	// Reaped is cutime + cstime: its children that exited and that it
	// waited for. A child still running, or exited but not yet waited
	// for, is not in it.
	Reaped float64
}

// Total is the process with its reaped children.
func (c ProcCPU) Total() float64 { return c.Self + c.Reaped }

// ReadProcCPU reads the CPU time of process pid.
func ReadProcCPU(pid int) (ProcCPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcCPU{}, err
	}
	return parseStat(b)
}

// parseStat reads the fields of a /proc/<pid>/stat line that follow the
// command name, which is in parentheses and may itself hold spaces and
// parentheses: the last ')' ends it.
func parseStat(b []byte) (ProcCPU, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return ProcCPU{}, errors.New("stat: no command name")
	}
	// After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16)
	// cstime(17), numbered as in proc(5).
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return ProcCPU{}, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	var n [5]int64
	for i, field := range []int{4, 14, 15, 16, 17} {
		v, err := strconv.ParseInt(f[field-3], 10, 64)
		if err != nil {
			return ProcCPU{}, fmt.Errorf("stat field %d: %w", field, err)
		}
		n[i] = v
	}
	return ProcCPU{
		PPID:   int(n[0]),
		Self:   float64(n[1]+n[2]) / clockTicks,
		Reaped: float64(n[3]+n[4]) / clockTicks,
	}, nil
}

// TreeCPU is the CPU time of process pid and of every live descendant,
// each with its reaped children: a child counts once, while it runs in its
// own figure and once waited for in its parent's. The descendants are found
// by the ppid of every /proc/<pid>/stat; a process that exits between the
// scan and the read is missed until its parent reaps it.
func TreeCPU(pid int) (float64, error) {
	root, err := ReadProcCPU(pid)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	procs := map[int]ProcCPU{}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		c, err := ReadProcCPU(p)
		if err != nil {
			continue // it exited meanwhile
		}
		procs[p] = c
		children[c.PPID] = append(children[c.PPID], p)
	}
	total := root.Total()
	for queue := slices.Clone(children[pid]); len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		total += procs[p].Total()
		queue = append(queue, children[p]...)
	}
	return total, nil
}

// MachineBusyCPU is the CPU time every core of the machine spent busy since
// boot (the cpu line of /proc/stat less idle and iowait), in seconds: the
// difference of two readings, less the processes a benchmark measures, is
// what everything else on the machine used meanwhile.
func MachineBusyCPU() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice,
	// already in user and nice].
	var busy int64
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return float64(busy) / clockTicks, nil
}

// PostmasterPID is the pid of the PostgreSQL server pool is connected to:
// the parent of the pool's backend. The server must run on this machine, in
// this pid namespace.
func PostmasterPID(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var backend int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0, err
	}
	c, err := ReadProcCPU(backend)
	if err != nil {
		return 0, fmt.Errorf("the PostgreSQL backend %d is not a process of this machine: %w", backend, err)
	}
	return c.PPID, nil
}
