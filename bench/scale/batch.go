package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
	"github.com/iot-etl/iot-etl/workflows"
)

// batch seeds fresh databases and times BatchETLWorkflow over the seeded
// range with k worker processes on the batch queue. It returns the run,
// the seeded readings and the machine.
func (e *env) batch(ctx context.Context, k int) (Run, int64, benchutil.Machine, error) {
	o := e.opts
	stack, err := benchutil.OpenStack(ctx, e.base, "scale")
	if err != nil {
		return Run{}, 0, benchutil.Machine{}, err
	}
	defer closeStack(ctx, stack)
	machine := benchutil.Describe(ctx, stack.Timescale)

	to := time.Date(2026, 1, 12, 0, 0, 0, 0, time.UTC)
	from := to.AddDate(0, 0, -o.days)
	step("batch, %d worker(s): seeding %d devices x %d days", k, o.devices, o.days)
	sum, err := seeder.Run(ctx, stack.DBs, seeder.Options{Seed: o.seed, Devices: o.devices, Days: batch.Window{Start: from, End: to}, Sim: simulate.DefaultOptions()})
	if err != nil {
		return Run{}, 0, machine, err
	}
	checkpoint(ctx, stack)

	cfg := *stack.Cfg
	benchutil.UseDevServer(&cfg, e.srv.Addr)
	cfg.Temporal.BatchTaskQueue = fmt.Sprintf("bench-scale-batch-%d", k)
	exportDir, err := filepath.Abs(filepath.Join(e.dir, fmt.Sprintf("exports-%d", k)))
	if err != nil {
		return Run{}, 0, machine, err
	}
	cfg.Export.URL = "file://" + filepath.ToSlash(exportDir) // the local export store
	cfg.LogLevel = "warn"
	tc, err := temporalx.Dial(ctx, cfg.Temporal, nil)
	if err != nil {
		return Run{}, 0, machine, err
	}
	defer tc.Close()
	ws, err := startWorkers(&cfg, e.workerBin, e.dir, fmt.Sprintf("batch-%d", k), "batch", k)
	if err != nil {
		return Run{}, 0, machine, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = ws.stop()
		}
	}()
	if err := waitPollers(ctx, tc, cfg.Temporal.BatchTaskQueue, k, ws); err != nil {
		return Run{}, 0, machine, err
	}
	m, err := newMeter(ctx, ws, e.srv.Pid(), stack.Locations, stack.Timescale)
	if err != nil {
		return Run{}, 0, machine, err
	}

	step("batch, %d worker(s): %d readings seeded; running the batch over [%s, %s)", k, sum.Readings, from.Format("2006-01-02"), to.Format("2006-01-02"))
	before, err := m.read()
	if err != nil {
		return Run{}, 0, machine, err
	}
	began := time.Now()
	wr, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: cfg.Temporal.BatchTaskQueue},
		workflows.BatchWorkflowName, workflows.BatchInput{WindowStart: from, WindowEnd: to, Shards: o.shards})
	if err != nil {
		return Run{}, 0, machine, err
	}
	var res workflows.BatchResult
	if err := wr.Get(ctx, &res); err != nil {
		return Run{}, 0, machine, err
	}
	elapsed := time.Since(began)
	after, err := m.read()
	if err != nil {
		return Run{}, 0, machine, err
	}
	if res.RowsLoaded != sum.Readings {
		return Run{}, 0, machine, fmt.Errorf("the batch loaded %d rows, the seed wrote %d", res.RowsLoaded, sum.Readings)
	}
	r := newRun(k, res.RowsLoaded, elapsed, after.since(before))
	r.PhaseSeconds = map[string]float64{}
	for p, ms := range res.PhaseMillis {
		r.PhaseSeconds[p] = float64(ms) / 1000
	}
	step("batch, %d worker(s): %d rows in %.1f s (%.0f rows/s); stopping the workers", k, r.Rows, r.Seconds, r.RowsPerS)
	stopped = true
	return r, sum.Readings, machine, ws.stop()
}

// checkpoint flushes the seed's dirty pages before the clock starts, so a
// run does not pay for the set-up's I/O. It needs superuser; without it
// the runs simply go on.
func checkpoint(ctx context.Context, stack *benchutil.Stack) {
	_, _ = stack.Timescale.Exec(ctx, "CHECKPOINT")
}

func closeStack(ctx context.Context, stack *benchutil.Stack) {
	if err := stack.Close(context.WithoutCancel(ctx)); err != nil {
		fmt.Fprintln(os.Stderr, "bench/scale:", err)
	}
}
