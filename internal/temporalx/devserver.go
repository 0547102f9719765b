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
)

// DevServer is a headless, in-memory Temporal dev server on free ports, for
// tests and benchmarks (the dev stack runs its own, persistent one).
type DevServer struct {
	Addr string
	Log  string // the server's log file
	cmd  *exec.Cmd
}

// StartDevServer starts `temporal server start-dev` on free 127.0.0.1 ports
// with the project's search attributes and waits until the default namespace
// answers.
func StartDevServer(ctx context.Context) (*DevServer, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"server", "start-dev", "--headless", "--ip", "127.0.0.1",
		"--port", strconv.Itoa(ports[0]), "--http-port", strconv.Itoa(ports[1]),
		"--metrics-port", strconv.Itoa(ports[2]), "--log-level", "error"}
	for _, sa := range CLIFlags() {
		args = append(args, "--search-attribute", sa)
	}
	logf, err := os.CreateTemp("", "iotetl-temporal-*.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &DevServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), Log: logf.Name(), cmd: cmd}
	if err := WaitReady(ctx, s.Addr, 90*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w (server log: %s)", err, s.Log)
	}
	return s, nil
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

// WaitReady waits until the frontend at addr is healthy and the default
// namespace can be described (it is created just after the frontend
// answers).
func WaitReady(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := client.DialContext(cctx, client.Options{HostPort: addr, Logger: silentLogger{}})
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
	return fmt.Errorf("temporal at %s not ready after %s: %v", addr, timeout, last)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// silentLogger drops the SDK's client logs while probing.
type silentLogger struct{}

func (silentLogger) Debug(string, ...any) {}
func (silentLogger) Info(string, ...any)  {}
func (silentLogger) Warn(string, ...any)  {}
func (silentLogger) Error(string, ...any) {}
