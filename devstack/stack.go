package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// component is one service of the dev stack.
type component interface {
	// Name is the short name used for the pid file, the log file and output.
	Name() string
	// Addr is the host:port the service is expected at.
	Addr() string
	// Service names the protocol for messages: "Kafka", "Temporal", ...
	Service() string
	// AddrVars names the variables that move the service elsewhere.
	AddrVars() string
	// Probe returns nil when the expected service answers at Addr and is
	// usable. It returns an *answeredError when the service answers but
	// cannot be used as configured (login refused, namespace missing), and
	// any other error when whatever listens there does not speak the
	// protocol.
	Probe(ctx context.Context) error
	// Command prepares the process that serves the component (initialising
	// its data directory when needed); the stack starts it detached. Output
	// of preparation steps goes to log.
	Command(ctx context.Context, log io.Writer) (*exec.Cmd, error)
	// StartTimeout bounds how long a freshly started process may take to
	// answer.
	StartTimeout() time.Duration
	// Prepare runs once the service answers: it creates what the pipeline
	// needs (topic, search attributes). managed tells whether devstack runs
	// the service.
	Prepare(ctx context.Context, managed bool) error
	// Describe adds facts for the status line, such as the topic's
	// partitions; empty when there is nothing to add.
	Describe(ctx context.Context) string
	// StopSignal asks the process for a clean shutdown.
	StopSignal() syscall.Signal
	// Owns reports whether a process with this command line is the one
	// devstack started for the component, guarding against a recycled pid.
	Owns(cmdline []string) bool
}

// answeredError means the expected service answers at the address but
// cannot be used as configured. Its message is shown as it is.
type answeredError struct{ err error }

func (e *answeredError) Error() string { return e.err.Error() }
func (e *answeredError) Unwrap() error { return e.err }

func answered(format string, args ...any) error {
	return &answeredError{fmt.Errorf(format, args...)}
}

// stack is the dev stack of one state directory.
type stack struct {
	cfg    *config.Config
	dir    string // as the user gave it, for messages
	absDir string
	comps  []component

	// self is the executable that runs `devstack kafka`.
	self string
	// probeTimeout bounds one probe of one service.
	probeTimeout time.Duration
	// stopTimeout is how long a process may take to stop before SIGKILL.
	stopTimeout time.Duration
}

func newStack(cfg *config.Config, dir string) (*stack, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--dir %s: %w", dir, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	s := &stack{cfg: cfg, dir: dir, absDir: abs, self: self, probeTimeout: 3 * time.Second, stopTimeout: 20 * time.Second}
	s.comps = defaultComponents(s)
	return s, nil
}

// defaultComponents lists the services in the order they are reported.
// TimescaleDB is its own component only when it is not the PostgreSQL
// server already listed.
func defaultComponents(s *stack) []component {
	comps := []component{newPostgres(s, "postgres", "POSTGRES", s.cfg.Postgres)}
	if s.cfg.Timescale.Addr() != s.cfg.Postgres.Addr() {
		comps = append(comps, newPostgres(s, "timescale", "TIMESCALE", s.cfg.Timescale))
	}
	return append(comps, newMySQL(s, s.cfg.MySQL), newKafka(s, s.cfg.Kafka), newTemporal(s, s.cfg.Temporal))
}

func (s *stack) path(parts ...string) string {
	return filepath.Join(append([]string{s.absDir}, parts...)...)
}

// shown is p relative to the working directory when --dir was relative,
// so messages read as the user typed them.
func (s *stack) shown(parts ...string) string {
	return filepath.Join(append([]string{s.dir}, parts...)...)
}

func (s *stack) pidFile(c component) string { return s.path("pids", c.Name()+".pid") }
func (s *stack) logFile(c component) string { return s.path("logs", c.Name()+".log") }
func (s *stack) shownLog(c component) string {
	return s.shown("logs", c.Name()+".log")
}

// report is the outcome for one component, printed as one line.
type report struct {
	name, addr, state, owner, detail string
	err                              error
}

func printReports(w io.Writer, reps []report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range reps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.name, r.addr, r.state, r.owner, r.detail)
	}
	return tw.Flush()
}

// forEach runs fn for every component concurrently and returns the results
// in component order.
func (s *stack) forEach(fn func(component) report) []report {
	reps := make([]report, len(s.comps))
	var wg sync.WaitGroup
	for i, c := range s.comps {
		wg.Go(func() { reps[i] = fn(c) })
	}
	wg.Wait()
	return reps
}

// lock serialises up and down on one state directory, so two `up`s run at
// once (make -j, two terminals) cannot start a service twice.
func (s *stack) lock() (unlock func(), err error) {
	if err := os.MkdirAll(s.absDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.path("devstack.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func (s *stack) up(ctx context.Context, out io.Writer) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	reps := s.forEach(func(c component) report { return s.ensure(ctx, c) })
	return reportAll(out, reps)
}

// ensure makes c answer: it uses a service already there, waits for one
// devstack started earlier, or starts one.
func (s *stack) ensure(ctx context.Context, c component) report {
	r := report{name: c.Name(), addr: c.Addr()}
	fail := func(err error) report {
		r.state, r.owner, r.detail, r.err = "down", "-", "failed, see below", err
		return r
	}
	pid := s.managedPid(c)
	up, probeErr := s.check(ctx, c)
	var how string
	switch {
	case up:
		how = "already running"
	case pid != 0:
		// Started by an earlier `up` and not answering yet.
		if err := s.waitReady(ctx, c, pid, nil); err != nil {
			return fail(err)
		}
		how = "already running"
	case probeErr != nil:
		return fail(probeErr)
	default:
		var err error
		pid, err = s.start(ctx, c)
		if err != nil {
			return fail(err)
		}
		how = "started"
	}
	if err := c.Prepare(ctx, pid != 0); err != nil {
		return fail(err)
	}
	r.state = "up"
	if pid != 0 {
		r.owner = "managed"
		r.detail = joinDetail(fmt.Sprintf("%s (pid %d)", how, pid), c.Describe(ctx), "log "+s.shownLog(c))
	} else {
		r.owner = "external"
		r.detail = joinDetail(how, c.Describe(ctx))
	}
	return r
}

func joinDetail(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ", ")
}

// check reports whether c's service answers. With nothing listening it
// returns false and no error: the port is free for devstack to use.
func (s *stack) check(ctx context.Context, c component) (bool, error) {
	if !listening(ctx, c.Addr()) {
		return false, nil
	}
	pctx, cancel := context.WithTimeout(ctx, s.probeTimeout)
	defer cancel()
	err := c.Probe(pctx)
	if err == nil {
		return true, nil
	}
	var a *answeredError
	if errors.As(err, &a) {
		return false, a
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return false, portTakenError(c.Addr(), c.Service(), c.AddrVars())
}

func portTakenError(addr, service, vars string) error {
	return fmt.Errorf("%s is in use by another program that does not answer as %s (stop it or set %s)", addr, service, vars)
}

// listening reports whether something accepts TCP connections at addr.
func listening(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// start launches c's process detached from devstack, records its pid and
// waits until the service answers.
func (s *stack) start(ctx context.Context, c component) (int, error) {
	for _, d := range []string{"pids", "logs"} {
		if err := os.MkdirAll(s.path(d), 0o755); err != nil {
			return 0, err
		}
	}
	logf, err := os.OpenFile(s.logFile(c), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== devstack: starting %s at %s ===\n", c.Name(), time.Now().UTC().Format(time.RFC3339))
	cmd, err := c.Command(ctx, logf)
	if err != nil {
		return 0, err
	}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own session: the service outlives devstack and the terminal, and
	// the whole group can be signalled on stop.
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(s.pidFile(c), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return 0, err
	}
	exited := make(chan error, 1)
	// Reap the child if it dies while devstack still runs, so a crash
	// during start-up is seen at once instead of as a zombie.
	go func() { exited <- cmd.Wait() }()
	if err := s.waitReady(ctx, c, pid, exited); err != nil {
		return 0, err
	}
	return pid, nil
}

// waitReady polls c until it answers, the process exits or the start-up
// timeout passes. exited may be nil when the process is not devstack's
// child.
func (s *stack) waitReady(ctx context.Context, c component, pid int, exited <-chan error) error {
	timeout := time.NewTimer(c.StartTimeout())
	defer timeout.Stop()
	var last error
	for {
		up, err := s.check(ctx, c)
		if up {
			return nil
		}
		if err != nil {
			last = err
		}
		if exited == nil && !alive(pid) {
			exited = closedWith(errors.New("process is gone"))
		}
		select {
		case err := <-exited:
			_ = os.Remove(s.pidFile(c))
			return fmt.Errorf("%s exited during start-up (%w); last lines of %s:\n%s", c.Name(), err, s.shownLog(c), tail(s.logFile(c), 15))
		case <-timeout.C:
			return fmt.Errorf("%s (pid %d) did not answer at %s within %s (last probe: %w); see %s", c.Name(), pid, c.Addr(), c.StartTimeout(), last, s.shownLog(c))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func closedWith(err error) <-chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// managedPid returns the pid of the process devstack started for c, or 0.
// A pid file whose process is gone is removed.
func (s *stack) managedPid(c component) int {
	b, err := os.ReadFile(s.pidFile(c))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err == nil && pid > 0 && alive(pid) {
		args, ok := cmdline(pid)
		if !ok || c.Owns(args) {
			return pid
		}
	}
	_ = os.Remove(s.pidFile(c))
	return 0
}

// alive reports whether pid is a running process; zombies count as gone.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			return stat[i+2] != 'Z' && stat[i+2] != 'X'
		}
		return true
	}
	if _, statErr := os.Stat("/proc/self"); statErr == nil {
		return false // /proc exists, so the process does not
	}
	return syscall.Kill(pid, 0) == nil
}

// cmdline is the argument vector of pid; ok is false where /proc is
// missing.
func cmdline(pid int) (args []string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, false
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), true
}

func (s *stack) down(ctx context.Context, out io.Writer) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	// Stop in parallel; nothing in the stack depends on another's shutdown.
	reps := s.forEach(func(c component) report {
		r := report{name: c.Name(), addr: c.Addr()}
		pid := s.managedPid(c)
		if pid == 0 {
			r.state, r.owner, r.detail = "-", "-", "not started by devstack, left alone"
			return r
		}
		r.owner = "managed"
		if err := s.stop(ctx, c, pid); err != nil {
			r.state, r.detail, r.err = "up", "failed, see below", err
			return r
		}
		r.state, r.detail = "down", fmt.Sprintf("stopped (pid %d)", pid)
		return r
	})
	return reportAll(out, reps)
}

// stop asks pid to shut down cleanly and kills its process group when it
// has not exited after stopTimeout.
func (s *stack) stop(ctx context.Context, c component, pid int) error {
	if err := syscall.Kill(pid, c.StopSignal()); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	if !waitGone(ctx, pid, s.stopTimeout) {
		// The group goes too: its leader started every process in it.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		if !waitGone(ctx, pid, 5*time.Second) {
			return fmt.Errorf("pid %d still running after SIGKILL", pid)
		}
	}
	// Helpers left in the session by the leader have no reason to live on.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if err := os.Remove(s.pidFile(c)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func waitGone(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

func (s *stack) status(ctx context.Context, out io.Writer) error {
	reps := s.forEach(func(c component) report {
		r := report{name: c.Name(), addr: c.Addr(), state: "down", owner: "-"}
		pid := s.managedPid(c)
		up, err := s.check(ctx, c)
		if up {
			r.state = "up"
		}
		switch {
		case pid != 0:
			r.owner = "managed"
		case up:
			r.owner = "external"
		}
		var facts []string
		switch {
		case pid != 0 && !up:
			facts = append(facts, fmt.Sprintf("pid %d, not answering (starting, or see %s)", pid, s.shownLog(c)))
		case pid != 0:
			facts = append(facts, fmt.Sprintf("pid %d", pid))
		}
		if err != nil && pid == 0 {
			facts = append(facts, err.Error())
		}
		if up {
			facts = append(facts, c.Describe(ctx))
		}
		if pid != 0 {
			facts = append(facts, "log "+s.shownLog(c))
		}
		r.detail = joinDetail(facts...)
		if r.detail == "" {
			r.detail = "not running"
		}
		return r
	})
	return printReports(out, reps)
}

// isLocalHost reports whether host names this machine, where devstack can
// start a server.
func isLocalHost(host string) bool {
	if host == "localhost" || host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// notLocalError explains why devstack cannot start a service for an
// address on another machine.
func notLocalError(addr, service, vars string) error {
	return fmt.Errorf("nothing answers at %s, and devstack starts %s only on this machine (127.0.0.1 or localhost): start it there or fix %s", addr, service, vars)
}

// findBinary looks name up in PATH, then in dirs (globs allowed, later
// matches of a glob first so the newest version wins).
func findBinary(name string, dirs ...string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range dirs {
		matches, _ := filepath.Glob(d)
		// Shorter first, then by text: "9" sorts before "15", so the
		// newest version of /usr/lib/postgresql/*/bin comes last.
		sort.Slice(matches, func(i, j int) bool {
			if len(matches[i]) != len(matches[j]) {
				return len(matches[i]) < len(matches[j])
			}
			return matches[i] < matches[j]
		})
		for i := len(matches) - 1; i >= 0; i-- {
			p := filepath.Join(matches[i], name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p, true
			}
		}
	}
	return "", false
}

func portOf(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, n, nil
}

// reportAll prints the reports and returns their errors, each named by
// its component.
func reportAll(out io.Writer, reps []report) error {
	if err := printReports(out, reps); err != nil {
		return err
	}
	var errs []error
	for _, r := range reps {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		}
	}
	return errors.Join(errs...)
}
