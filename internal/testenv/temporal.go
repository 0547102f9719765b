package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/temporalx"
)

var (
	temporalOnce sync.Once
	temporalAddr string
	temporalErr  error
	temporalCmd  *exec.Cmd
)

// Temporal returns the host:port of a Temporal dev server shared by all tests
// of this test binary. IOT_TEST_TEMPORAL_ADDRESS selects an already running
// server; otherwise one is started on free ports (headless, in memory) and
// stopped by Main.
func Temporal(t testing.TB) string {
	t.Helper()
	temporalOnce.Do(func() {
		if a := os.Getenv("IOT_TEST_TEMPORAL_ADDRESS"); a != "" {
			temporalAddr = a
			temporalErr = waitTemporal(a, 60*time.Second)
			return
		}
		temporalAddr, temporalErr = startTemporal()
	})
	if temporalErr != nil {
		Unavailable(t, "Temporal dev server", temporalErr)
	}
	return temporalAddr
}

// TemporalClient dials the shared dev server; the client is closed with the test.
func TemporalClient(t testing.TB) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: Temporal(t), Namespace: "default", Logger: quietLogger{}})
	if err != nil {
		t.Fatalf("dial temporal: %v", err)
	}
	t.Cleanup(c.Close)
	return c
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

func startTemporal() (string, error) {
	bin, err := temporalx.Binary()
	if err != nil {
		return "", err
	}
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	httpPort, err := FreePort()
	if err != nil {
		return "", err
	}
	metricsPort, err := FreePort()
	if err != nil {
		return "", err
	}
	args := []string{"server", "start-dev", "--headless", "--ip", "127.0.0.1",
		"--port", strconv.Itoa(port), "--http-port", strconv.Itoa(httpPort),
		"--metrics-port", strconv.Itoa(metricsPort), "--log-level", "error",
		// Short timers keep activity retries and heartbeat timeouts quick in tests.
		"--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true",
	}
	for _, sa := range temporalx.CLIFlags() {
		args = append(args, "--search-attribute", sa)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.CreateTemp("", "iotetl-temporal-*.log")
	if err == nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	temporalCmd = cmd
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitTemporal(addr, 90*time.Second); err != nil {
		stopTemporal()
		return "", fmt.Errorf("%w (server log: %s)", err, logf.Name())
	}
	return addr, nil
}

func waitTemporal(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.DialContext(ctx, client.Options{HostPort: addr, Logger: quietLogger{}})
		if err == nil {
			_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
			if err == nil {
				// The default namespace is created just after the frontend answers.
				_, err = c.WorkflowService().DescribeNamespace(ctx, describeDefault())
			}
			c.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("temporal at %s not ready after %s: %v", addr, timeout, last)
}

func stopTemporal() {
	if temporalCmd == nil || temporalCmd.Process == nil {
		return
	}
	_ = syscall.Kill(-temporalCmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = temporalCmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-temporalCmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	temporalCmd = nil
}

// Main runs the tests of a package and then stops the shared servers:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	stopTemporal()
	os.Exit(code)
}
