package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// The seeded days and the window the batch tests load: the first day is the
// lookback history of the second.
var (
	SeedFrom = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	SeedTo   = time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	Window   = batch.Window{Start: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), End: SeedTo}
)

// Batch is one test's databases, seeded, and a worker subprocess serving a
// task queue of its own.
type Batch struct {
	T      *testing.T
	Stack  *testenv.Stack
	Env    map[string]string // the worker's environment
	TC     client.Client
	Worker *testenv.Process
	Seed   seeder.Summary
}

// BatchOptions shape NewBatchWith. Zero values are the defaults of NewBatch.
type BatchOptions struct {
	Devices int
	// Stack is the test's databases; nil means testenv.Databases.
	Stack *testenv.Stack
	// Temporal is the server's address and TC a client of it; empty means
	// the dev server shared by the test binary.
	Temporal string
	TC       client.Client
	// Configure, when set, changes the configuration (the export store,
	// say) before Env is rendered from it.
	Configure func(*config.Config)
	// NoWorker leaves starting the worker to the test (after it rewrote
	// Env, say).
	NoWorker bool
}

// NewBatch seeds devices devices over SeedFrom..SeedTo into fresh databases
// and starts a worker on the shared dev server.
func NewBatch(t *testing.T, devices int) *Batch {
	t.Helper()
	return NewBatchWith(t, BatchOptions{Devices: devices})
}

// NewBatchWith is NewBatch as opts say.
func NewBatchWith(t *testing.T, opts BatchOptions) *Batch {
	t.Helper()
	s := opts.Stack
	if s == nil {
		s = testenv.Databases(t)
	}
	tc := opts.TC
	if opts.Temporal == "" {
		s.Config.Temporal.Address, tc = testenv.Temporal(t), testenv.TemporalClient(t)
	} else {
		s.Config.Temporal.Address = opts.Temporal
	}
	s.Config.Temporal.BatchTaskQueue = "batch-" + testName(t)
	s.Config.Export.URL = t.TempDir()
	if opts.Configure != nil {
		opts.Configure(s.Config)
	}
	b := &Batch{T: t, Stack: s, Env: testenv.EnvMap(s.Config), TC: tc}
	var err error
	b.Seed, err = seeder.Run(context.Background(), s.DBs, seeder.Options{Seed: 7, Devices: opts.Devices,
		Days: batch.Window{Start: SeedFrom, End: SeedTo}, Sim: simulate.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	if !opts.NoWorker {
		b.StartWorker()
	}
	return b
}

// testName is the test's name as a task queue or topic suffix.
func testName(t *testing.T) string { return strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) }

// StartWorker starts a worker process serving the batch queue with Env and
// args; it becomes b.Worker.
func (b *Batch) StartWorker(args ...string) *testenv.Process {
	b.Worker = testenv.Start(b.T, "worker", testenv.Build(b.T, "./worker"), b.Env, append([]string{"-queues", "batch"}, args...)...)
	return b.Worker
}

// Start starts a batch run of in; an empty window is Window, a zero
// heartbeat timeout 5 s.
func (b *Batch) Start(in workflows.BatchInput) client.WorkflowRun {
	b.T.Helper()
	if in.WindowStart.IsZero() {
		in.WindowStart, in.WindowEnd = Window.Start, Window.End
	}
	if in.HeartbeatTimeout == 0 {
		in.HeartbeatTimeout = 5 * time.Second
	}
	run, err := b.TC.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		TaskQueue:                b.Stack.Config.Temporal.BatchTaskQueue,
		WorkflowExecutionTimeout: 5 * time.Minute,
	}, workflows.BatchWorkflowName, in)
	if err != nil {
		b.T.Fatal(err)
	}
	return run
}

// Wait waits up to 4 minutes for run's result; a failed run fails the test.
func (b *Batch) Wait(run client.WorkflowRun) workflows.BatchResult {
	b.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var res workflows.BatchResult
	if err := run.Get(ctx, &res); err != nil {
		b.T.Fatalf("batch run: %v", err)
	}
	return res
}

// Count runs a count query on the TimescaleDB database.
func (b *Batch) Count(query string, args ...any) int64 {
	b.T.Helper()
	return count(b.T, b.Stack, query, args...)
}

// HoldTable locks table in ACCESS EXCLUSIVE mode, which blocks every
// read and write of it, until the returned function (or the end of t)
// releases it: whatever of a run reaches the table waits there, which
// holds a phase open however fast the machine is. A lock whose session a
// PostgreSQL crash ended releases quietly.
func (b *Batch) HoldTable(t testing.TB, table string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.Stack.Timescale.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		_ = tx.Rollback(ctx)
		t.Fatalf("lock %s: %v", table, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(ctx); err != nil && !tx.Conn().IsClosed() {
				t.Errorf("release %s: %v", table, err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// ProgressUntil polls the progress query until cond holds (2 minutes at
// most).
func (b *Batch) ProgressUntil(run client.WorkflowRun, cond func(workflows.Progress) bool) workflows.Progress {
	b.T.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		v, err := b.TC.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), workflows.QueryProgress)
		if err == nil {
			var p workflows.Progress
			if err := v.Get(&p); err == nil && cond(p) {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.T.Fatal("progress condition not reached in 2 minutes")
	return workflows.Progress{}
}

// ClearWarehouse empties the warehouse tables a run writes, so the next run
// loads everything again.
func (b *Batch) ClearWarehouse() {
	b.T.Helper()
	for _, table := range []string{"dwh.fact_sensor_readings_enriched", "dwh.fact_hourly_agg", "dwh.ml_features", "dwh.dim_devices", "dwh.dim_locations"} {
		if _, err := b.Stack.Timescale.Exec(context.Background(), "TRUNCATE "+table); err != nil {
			b.T.Fatal(err)
		}
	}
}

func count(t *testing.T, s *testenv.Stack, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.Timescale.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// RunStarterErr runs the starter binary with env and returns its combined
// output.
func RunStarterErr(bin string, env map[string]string, args ...string) (string, error) {
	out, err := testenv.Command(context.Background(), bin, env, args...).CombinedOutput()
	return string(out), err
}

// RunStarter is RunStarterErr; an error fails the test.
func RunStarter(t *testing.T, bin string, env map[string]string, args ...string) string {
	t.Helper()
	out, err := RunStarterErr(bin, env, args...)
	if err != nil {
		t.Fatalf("starter %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
