package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

// workerProc is one worker process of a slot.
type workerProc struct {
	slot    int
	cmd     *exec.Cmd
	log     string
	started time.Time
	done    chan struct{} // closed when the process has exited
	err     error         // its exit, once done is closed
	killed  bool          // this program killed or stopped it
}

// workerPool keeps one worker process per slot, all serving the stream
// queue with the same environment.
type workerPool struct {
	bin   string
	env   []string
	dir   string // the processes' logs
	slots []*workerProc
	n     int // processes started so far
}

func newWorkerPool(bin, dir string, env map[string]string, slots int) *workerPool {
	p := &workerPool{bin: bin, dir: dir, slots: make([]*workerProc, slots)}
	p.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	return p
}

// start starts the worker of slot.
func (p *workerPool) start(slot int) (*workerProc, error) {
	p.n++
	w := &workerProc{slot: slot, log: filepath.Join(p.dir, fmt.Sprintf("worker-%d-%d.log", slot, p.n)), done: make(chan struct{})}
	f, err := os.Create(w.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w.cmd = exec.Command(p.bin, "-queues", "stream", "-stop-timeout", "5s")
	w.cmd.Env = p.env
	w.cmd.Stdout, w.cmd.Stderr = f, f
	// A worker never outlives this program, however it ends.
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %d: %w", slot, err)
	}
	w.started = time.Now()
	go func() { w.err = w.cmd.Wait(); close(w.done) }()
	p.slots[slot] = w
	return w, nil
}

// kill is kill -9 of the worker of slot: no shutdown, its open batches
// are lost and its leases time out.
func (p *workerPool) kill(slot int) (int, error) {
	w := p.slots[slot]
	w.killed = true
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill worker %d (pid %d): %w", slot, w.cmd.Process.Pid, err)
	}
	<-w.done
	return w.cmd.Process.Pid, nil
}

// stop asks every worker to shut down (SIGTERM) and kills those still up
// after timeout.
func (p *workerPool) stop(timeout time.Duration) {
	for _, w := range p.slots {
		if w != nil {
			w.killed = true
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(timeout)
	for _, w := range p.slots {
		if w == nil {
			continue
		}
		select {
		case <-w.done:
		case <-deadline:
			_ = w.cmd.Process.Signal(syscall.SIGKILL)
			<-w.done
		}
	}
}

// exited is an error for the first worker that ended without being killed.
func (p *workerPool) exited() error {
	for _, w := range p.slots {
		select {
		case <-w.done:
			if !w.killed {
				cause := w.err
				if cause == nil {
					cause = errors.New("exit status 0")
				}
				return fmt.Errorf("worker %d (pid %d) exited by itself: %w; its log ends:\n%s", w.slot, w.cmd.Process.Pid, cause, tail(w.log, 20))
			}
		default:
		}
	}
	return nil
}

// rss is the resident set size (VmRSS) of the worker of slot, in KiB, 0
// when it cannot be read.
func (p *workerPool) rss(slot int) int64 {
	return statusKiB(p.slots[slot].cmd.Process.Pid, "VmRSS")
}

// peakRSS is the peak resident set size (VmHWM) of the worker of slot.
func (p *workerPool) peakRSS(slot int) int64 {
	return benchutil.PeakRSSKiB(p.slots[slot].cmd.Process.Pid)
}

// statusKiB reads a "<key>: <n> kB" line of /proc/<pid>/status.
func statusKiB(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}
