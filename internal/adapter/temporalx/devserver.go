package temporalx

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// DevServer is a headless Temporal dev server on free ports, for tests and
// benchmarks (the dev stack runs its own, persistent one). It keeps its
// state in memory, or in a SQLite file that survives a Kill and a Start.
type DevServer struct {
	Addr string
	Log  string // the server's log file
	args []string
	cmd  *exec.Cmd
}

// DevServerOptions shape StartDevServerWith.
type DevServerOptions struct {
	// DBFile, when set, is the SQLite file the server persists to, so a
	// restart keeps every workflow; empty means in memory.
	DBFile string
}

// StartDevServer starts an in-memory dev server: `temporal server
// start-dev` on free 127.0.0.1 ports with the project's search attributes;
// it waits until the default namespace answers.
func StartDevServer(ctx context.Context) (*DevServer, error) {
	return StartDevServerWith(ctx, DevServerOptions{})
}

// StartDevServerWith is StartDevServer as opts say.
func StartDevServerWith(ctx context.Context, opts DevServerOptions) (*DevServer, error) {
	ports := make([]int, 3)
	for i := range ports {
		var err error
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"server", "start-dev", "--headless", "--ip", "127.0.0.1",
		"--port", strconv.Itoa(ports[0]), "--http-port", strconv.Itoa(ports[1]),
		"--metrics-port", strconv.Itoa(ports[2]), "--log-level", "error"}
	if opts.DBFile != "" {
		args = append(args, "--db-filename", opts.DBFile)
	}
	args = append(args, DevServerArgs()...)
	logf, err := os.CreateTemp("", "iotetl-temporal-*.log")
	if err != nil {
		return nil, err
	}
	logf.Close()
	s := &DevServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), Log: logf.Name(), args: args}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Start starts the server (again, after Stop or Kill) on the same ports
// and waits until the default namespace answers.
func (s *DevServer) Start(ctx context.Context) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(s.Log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.cmd = cmd
	if err := WaitReady(ctx, s.Addr, 90*time.Second); err != nil {
		s.Stop()
		return fmt.Errorf("%w (server log: %s)", err, s.Log)
	}
	return nil
}

// Stop terminates the server and its children.
func (s *DevServer) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	s.cmd = nil
}

// Pid is the process id of the running server, 0 when it is not running.
func (s *DevServer) Pid() int {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill is kill -9 of the server's process group: no shutdown at all.
func (s *DevServer) Kill() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// WaitReady waits until the frontend at addr is healthy and the default
// namespace can be described (it is created just after the frontend
// answers).
func WaitReady(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := client.DialContext(cctx, client.Options{HostPort: addr, Logger: Silent})
		if err == nil {
			_, err = c.CheckHealth(cctx, &client.CheckHealthRequest{})
			if err == nil {
				_, err = c.WorkflowService().DescribeNamespace(cctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
			}
			c.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return fmt.Errorf("temporal at %s not ready after %s: %w", addr, timeout, last)
}

// FreePort asks the kernel for an unused TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Silent is an SDK logger that drops everything: for probes, which fail
// by design while a server starts, and for tests, whose output it would
// bury.
var Silent tlog.Logger = silent{}

type silent struct{}

func (silent) Debug(string, ...any) {}
func (silent) Info(string, ...any)  {}
func (silent) Warn(string, ...any)  {}
func (silent) Error(string, ...any) {}
