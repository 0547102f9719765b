package benchutil

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// BuildWorker builds ./worker (run from the repository root) into dir and
// returns the binary's path.
func BuildWorker(dir string) (string, error) {
	bin := filepath.Join(dir, "worker")
	if b, err := exec.Command("go", "build", "-o", bin, "./worker").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build worker: %w\n%s", err, b)
	}
	return bin, nil
}

// UseDevServer points cfg at a benchmark's own Temporal dev server at addr:
// plain gRPC, whatever TEMPORAL_TLS_* says of the operator's cluster.
func UseDevServer(cfg *config.Config, addr string) {
	cfg.Temporal.Address, cfg.Temporal.TLSOn, cfg.Temporal.TLS, cfg.Temporal.APIKey = addr, false, config.TLS{}, ""
}

// WorkerEnv is the environment of a worker process configured by cfg and
// nothing else of this process's, but PATH and HOME.
func WorkerEnv(cfg *config.Config) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range cfg.Env() {
		env = append(env, k+"="+v)
	}
	return env
}

// Worker is a worker process started by StartWorker.
type Worker struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

// StartWorker starts bin with args and env, its output to out. The worker
// never outlives this program, however it ends.
func StartWorker(bin string, env []string, out io.Writer, args ...string) (*Worker, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &Worker{cmd: cmd, done: make(chan struct{})}
	go func() { w.err = cmd.Wait(); close(w.done) }()
	return w, nil
}

// Pid is the worker's process id.
func (w *Worker) Pid() int { return w.cmd.Process.Pid }

// Exited is an error once the worker has ended (it should not before
// Stop), nil while it runs.
func (w *Worker) Exited() error {
	select {
	case <-w.done:
		if w.err == nil {
			return fmt.Errorf("worker %d exited with status 0", w.Pid())
		}
		return fmt.Errorf("worker %d exited: %w", w.Pid(), w.err)
	default:
		return nil
	}
}

// Stop asks the worker to shut down with SIGTERM (it lets its running
// activities finish), waits up to timeout, then kills it.
func (w *Worker) Stop(timeout time.Duration) error {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(timeout):
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.done
		return fmt.Errorf("worker %d did not stop within %s: killed", w.Pid(), timeout)
	}
	if w.err != nil {
		return fmt.Errorf("worker %d: %w", w.Pid(), w.err)
	}
	return nil
}

// Workbench is what a benchmark of the workflows runs on: a Temporal dev
// server, and the worker binary built into a scratch directory that also
// holds the run's logs and exports.
type Workbench struct {
	Server    *temporalx.DevServer
	Dir       string
	WorkerBin string
	// KeepDir keeps Dir at Close: the logs of a failed run.
	KeepDir bool
}

// StartWorkbench starts a dev server and builds the worker into a new
// directory named after the benchmark.
func StartWorkbench(ctx context.Context, name string) (*Workbench, error) {
	srv, err := temporalx.StartDevServer(ctx)
	if err != nil {
		return nil, err
	}
	w := &Workbench{Server: srv}
	if w.Dir, err = os.MkdirTemp("", "iotetl-bench-"+name+"-*"); err != nil {
		w.Close()
		return nil, err
	}
	if w.WorkerBin, err = BuildWorker(w.Dir); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Close stops the server and removes the directory, unless KeepDir.
func (w *Workbench) Close() {
	w.Server.Stop()
	if w.Dir != "" && !w.KeepDir {
		os.RemoveAll(w.Dir)
	}
}

// WaitPollers waits until queue lists at least k pollers of workflow tasks
// and of activity tasks: every worker is connected and asking for work, so
// a timed run starts without the workers' start-up. alive, when not nil,
// fails the wait once it returns an error (a worker exited).
func WaitPollers(ctx context.Context, tc client.Client, queue string, k int, alive func() error) error {
	err := WaitFor(ctx, 2*time.Minute, func() (bool, error) {
		if alive != nil {
			if err := alive(); err != nil {
				return false, err
			}
		}
		for _, typ := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			d, err := tc.DescribeTaskQueue(ctx, queue, typ)
			if err != nil {
				return false, err
			}
			if len(d.GetPollers()) < k {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d pollers on %s: %w", k, queue, err)
	}
	return nil
}
