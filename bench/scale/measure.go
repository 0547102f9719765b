package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

// workers are the worker processes of one run.
type workers []*benchutil.Worker

// startWorkers starts k worker processes serving queue ("batch" or
// "stream") with cfg, each logging to its own file in dir.
func startWorkers(cfg *config.Config, bin, dir, name string, queue string, k int) (workers, error) {
	var ws workers
	for i := range k {
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-worker-%d.log", name, i)))
		if err != nil {
			return nil, errors.Join(err, ws.stop())
		}
		w, err := benchutil.StartWorker(bin, benchutil.WorkerEnv(cfg), log, "-queues", queue, "-stop-timeout", "10s")
		log.Close() // the process holds its own descriptor
		if err != nil {
			return nil, errors.Join(err, ws.stop())
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// stop stops every worker (SIGTERM, then a kill after a minute) and
// reports the first that did not stop cleanly.
func (ws workers) stop() error {
	errs := make(chan error, len(ws))
	for _, w := range ws {
		go func() { errs <- w.Stop(time.Minute) }()
	}
	var err error
	for range ws {
		err = errors.Join(err, <-errs)
	}
	return err
}

// exited is an error once any worker has ended by itself.
func (ws workers) exited() error {
	for _, w := range ws {
		if err := w.Exited(); err != nil {
			return err
		}
	}
	return nil
}

// waitPollers waits until queue lists at least k pollers of workflow tasks
// and of activity tasks, and fails if a worker exits meanwhile.
func waitPollers(ctx context.Context, tc client.Client, queue string, k int, ws workers) error {
	return benchutil.WaitPollers(ctx, tc, queue, k, ws.exited)
}

// meter reads the CPU time of the components of a run.
type meter struct {
	workers     workers
	postmasters []int // the PostgreSQL servers the stack uses, usually one
	temporal    int
}

// newMeter finds the postmasters of pools' servers.
func newMeter(ctx context.Context, ws workers, temporalPid int, pools ...*pgxpool.Pool) (*meter, error) {
	m := &meter{workers: ws, temporal: temporalPid}
	for _, p := range pools {
		pid, err := benchutil.PostmasterPID(ctx, p)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(m.postmasters, pid) {
			m.postmasters = append(m.postmasters, pid)
		}
	}
	if m.temporal == 0 {
		return nil, errors.New("the Temporal dev server is not running")
	}
	return m, nil
}

// cpuReading is one reading of every component, in CPU seconds since each
// process started, and of the machine since boot.
type cpuReading struct {
	workers  []float64
	postgres float64
	temporal float64
	bench    float64
	machine  float64
	loadAvg  float64
}

func (m *meter) read() (cpuReading, error) {
	var r cpuReading
	var errs []error
	for _, w := range m.workers {
		c, err := benchutil.TreeCPU(w.Pid())
		r.workers = append(r.workers, c)
		errs = append(errs, err)
	}
	for _, pid := range m.postmasters {
		c, err := benchutil.TreeCPU(pid)
		r.postgres += c
		errs = append(errs, err)
	}
	var err error
	r.temporal, err = benchutil.TreeCPU(m.temporal)
	errs = append(errs, err)
	// This process's own threads only: the workers and the dev server are
	// its children.
	self, err := benchutil.ReadProcCPU(os.Getpid())
	r.bench = self.Self
	errs = append(errs, err)
	r.machine, err = benchutil.MachineBusyCPU()
	errs = append(errs, err)
	r.loadAvg = benchutil.LoadAverage()
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("read CPU time: %w", err)
	}
	return r, nil
}

// cpuDelta is what the components spent between two readings.
type cpuDelta struct {
	cpu     CPU
	workers []float64
	machine float64
	loadAvg float64 // at the first reading
}

func (after cpuReading) since(before cpuReading) cpuDelta {
	d := cpuDelta{machine: after.machine - before.machine, loadAvg: before.loadAvg}
	for i := range after.workers {
		w := after.workers[i] - before.workers[i]
		d.workers = append(d.workers, w)
		d.cpu.Worker += w
	}
	d.cpu.Postgres = after.postgres - before.postgres
	d.cpu.Temporal = after.temporal - before.temporal
	d.cpu.Bench = after.bench - before.bench
	d.cpu.Total = d.cpu.Worker + d.cpu.Postgres + d.cpu.Temporal + d.cpu.Bench
	return d
}
