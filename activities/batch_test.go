package activities

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

var (
	batchDay    = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	batchWindow = batch.Window{Start: batchDay, End: batchDay.Add(24 * time.Hour)}
)

// batchFixture is a seeded stack and the batch activities on it.
type batchFixture struct {
	t     *testing.T
	stack *testenv.Stack
	b     *Batch
	run   RunRef
}

func newBatchFixture(t *testing.T, devices int) *batchFixture {
	t.Helper()
	s := testenv.Databases(t)
	_, err := seeder.Run(context.Background(), s.DBs, seeder.Options{
		Seed: 3, Devices: devices, Days: batch.Window{Start: batchDay.Add(-24 * time.Hour), End: batchWindow.End}, Sim: simulate.DefaultOptions(),
	})
	if err != nil {
		t.Fatal(err)
	}
	run := RunRef{RunID: "run-id", WorkflowID: "wf"}
	if err := (warehouse.Run{TS: s.Timescale, ID: run.RunID}).CreateStaging(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &batchFixture{t: t, stack: s, run: run,
		b: &Batch{MySQL: s.MySQL, Locations: s.Locations, Timescale: s.Timescale, Export: export.NewLocal(t.TempDir()), Params: transform.DefaultParams()}}
}

func (f *batchFixture) env() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{ErrorClassifier()}})
	env.RegisterActivity(f.b)
	return env
}

func (f *batchFixture) count(q string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.stack.Timescale.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestExtractReadingsResumesFromHeartbeat: a retry whose last heartbeat
// says the first 3 hours are staged stages only the rest and reports the
// total.
func TestExtractReadingsResumesFromHeartbeat(t *testing.T) {
	f := newBatchFixture(t, 3)
	chunk := batch.Chunk{ID: 0, From: batchDay, To: batchDay.Add(6 * time.Hour)}
	resumeAt := batchDay.Add(3 * time.Hour)
	// The attempt that died staged hour 3 but did not heartbeat it.
	run := warehouse.Run{TS: f.stack.Timescale, ID: f.run.RunID}
	if _, err := run.StageReadings(context.Background(), batch.Window{Start: resumeAt, End: resumeAt.Add(time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	env := f.env()
	env.SetHeartbeatDetails(ExtractReadingsProgress{NextFrom: resumeAt, Rows: 1000})
	v, err := env.ExecuteActivity(f.b.ExtractReadings, ExtractReadingsInput{Run: f.run, Chunk: chunk})
	if err != nil {
		t.Fatal(err)
	}
	var res ExtractReadingsResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	rest := f.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, resumeAt, chunk.To)
	if staged := f.count(`SELECT count(*) FROM staging.readings r, unnest(r.times) t WHERE run_key = $1`, f.run.RunID); staged != rest {
		t.Errorf("staged %d readings, want %d (only [3h, 6h), each once)", staged, rest)
	}
	if twice := f.count(`SELECT count(*) - count(DISTINCT (r.device_id, t)) FROM staging.readings r, unnest(r.times) t WHERE run_key = $1`, f.run.RunID); twice != 0 {
		t.Errorf("%d readings staged twice", twice)
	}
	if before := f.count(`SELECT count(*) FROM staging.readings WHERE run_key = $1 AND range_start < $2`, f.run.RunID, resumeAt); before != 0 {
		t.Errorf("%d blocks before the heartbeat's hour", before)
	}
	if res.Rows != 1000+rest {
		t.Errorf("result %d rows, want %d (heartbeat 1000 + %d staged now)", res.Rows, 1000+rest, rest)
	}
}

// TestTransformResumesAfterLastDevice: a retry skips the devices its last
// heartbeat committed and drops whatever the failed attempt wrote after them.
func TestTransformResumesAfterLastDevice(t *testing.T) {
	f := newBatchFixture(t, 4)
	ctx := context.Background()
	env := f.env()
	for _, call := range []func() error{
		func() error {
			_, err := env.ExecuteActivity(f.b.ExtractDevices, ExtractDevicesInput{Run: f.run, Shards: 1})
			return err
		},
		func() error {
			_, err := env.ExecuteActivity(f.b.ExtractLocations, ExtractLocationsInput{Run: f.run})
			return err
		},
		func() error {
			_, err := env.ExecuteActivity(f.b.ExtractReadings, ExtractReadingsInput{Run: f.run, Chunk: batch.Chunk{From: batchDay.Add(-time.Hour), To: batchWindow.End}})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	devices, err := (warehouse.Run{TS: f.stack.Timescale, ID: f.run.RunID}).ShardDevices(ctx, 0, "")
	if err != nil || len(devices) != 4 {
		t.Fatalf("shard devices: %d, %v", len(devices), err)
	}
	// A first attempt transforms everything, then "fails" after committing
	// the first two devices: its retry must keep those, drop the rest and
	// redo only the rest.
	transform := func(hb *TransformProgress) TransformTotal {
		t.Helper()
		env := f.env()
		if hb != nil {
			env.SetHeartbeatDetails(*hb)
		}
		v, err := env.ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		var total TransformTotal
		if err := v.Get(&total); err != nil {
			t.Fatal(err)
		}
		return total
	}
	// stagedSums are the sums of the staged rows of devices up to through
	// as the load would measure them.
	stagedSums := func(through string) batch.FactSums {
		t.Helper()
		var s batch.FactSums
		if err := pgx.BeginFunc(ctx, f.stack.Timescale, func(tx pgx.Tx) error {
			var err error
			s, err = warehouse.SumFacts(ctx, tx, "staging.enriched f", "run_key = $1 AND device_id <= $2", f.run.RunID, through)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	last := devices[len(devices)-1].Device.ID
	first := transform(nil)
	if want := stagedSums(last); first.Sums == nil || *first.Sums != want {
		t.Errorf("first attempt's sums %+v, staged rows measure %+v", first.Sums, want)
	}
	done := devices[1].Device.ID
	doneSums := stagedSums(done)
	total := transform(&TransformProgress{LastDevice: done, Totals: TransformTotal{Devices: 2, Rows: doneSums.Rows, Sums: &doneSums}})
	if want := stagedSums(last); total.Sums == nil || *total.Sums != want {
		t.Errorf("resumed attempt's sums %+v, staged rows measure %+v", total.Sums, want)
	}
	// A heartbeat without sums (from a worker before them): the sums of
	// the rows it covers are unknown, and so are the shard's.
	if old := transform(&TransformProgress{LastDevice: done, Totals: TransformTotal{Devices: 2, Rows: doneSums.Rows}}); old.Sums != nil {
		t.Errorf("resumed from a heartbeat without sums: sums %+v, want none", old.Sums)
	}
	all := f.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, batchWindow.Start, batchWindow.End)
	rest := f.count(`SELECT count(*) FROM public.sensor_readings WHERE device_id > $1 AND time >= $2 AND time < $3`, done, batchWindow.Start, batchWindow.End)
	if got := f.count(`SELECT count(*) FROM staging.enriched WHERE run_key = $1`, f.run.RunID); got != all {
		t.Errorf("staging.enriched has %d rows, want %d: every reading exactly once", got, all)
	}
	if got := f.count(`SELECT count(DISTINCT (device_id, time)) FROM staging.enriched WHERE run_key = $1`, f.run.RunID); got != all {
		t.Errorf("%d distinct readings in staging.enriched, want %d", got, all)
	}
	if total.Devices != 4 || total.Rows != all || all-rest != doneSums.Rows {
		t.Errorf("totals %+v, want 4 devices and %d rows (heartbeat %d + %d redone)", total, all, doneSums.Rows, rest)
	}
}

// TestLoadFactsDetectsLostStaging: fewer staged rows than Transform wrote
// is a non-retryable StagingLost error, and nothing is loaded.
func TestLoadFactsDetectsLostStaging(t *testing.T) {
	f := newBatchFixture(t, 1)
	env := f.env()
	_, err := env.ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: f.run, Shard: 0, Window: batchWindow, ExpectedRows: 1440})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != "StagingLost" || !appErr.NonRetryable() {
		t.Fatalf("error = %v, want a non-retryable StagingLost", err)
	}
	if n := f.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != 0 {
		t.Errorf("%d facts loaded", n)
	}
}

func TestClassify(t *testing.T) {
	f := newBatchFixture(t, 1)
	_, dataErr := f.stack.Timescale.Exec(context.Background(), `INSERT INTO dwh.etl_watermarks (pipeline, high_watermark, last_run_id, updated_at) VALUES (NULL, now(), 'r', now())`)
	cases := []struct {
		err      error
		wantType string // "" = retryable, left as is
	}{
		{dataErr, "InvalidData"},
		{warehouse.ErrStagingLost, "StagingLost"},
		{fmt.Errorf("transform dev-1: readings of dev-1: %w: staged block: two readings at 2026-01-05T00:00:00Z", warehouse.ErrInvalidStagedReadings), "InvalidData"},
		{fmt.Errorf("read devices: %w: MySQL table devices: Unknown column 'firmware' in 'field list'", warehouse.ErrSourceSchema), "SourceSchema"},
		{errors.New("dial tcp 127.0.0.1:5432: connection refused"), ""},
	}
	for _, c := range cases {
		got := Classify(c.err)
		var appErr *temporal.ApplicationError
		switch {
		case c.wantType == "" && errors.As(got, &appErr):
			t.Errorf("classify(%v) = %v, want it retryable and unchanged", c.err, got)
		case c.wantType != "" && (!errors.As(got, &appErr) || appErr.Type() != c.wantType || !appErr.NonRetryable()):
			t.Errorf("classify(%v) = %v, want non-retryable %s", c.err, got, c.wantType)
		}
	}
}

// stageAll runs the extract of the fixture's run: devices (one shard),
// locations and the readings of the window with its lookback hour.
func (f *batchFixture) stageAll(env *testsuite.TestActivityEnvironment) {
	f.t.Helper()
	if _, err := env.ExecuteActivity(f.b.ExtractDevices, ExtractDevicesInput{Run: f.run, Shards: 1}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := env.ExecuteActivity(f.b.ExtractLocations, ExtractLocationsInput{Run: f.run}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := env.ExecuteActivity(f.b.ExtractReadings, ExtractReadingsInput{Run: f.run, Chunk: batch.Chunk{From: batchDay.Add(-time.Hour), To: batchWindow.End}}); err != nil {
		f.t.Fatal(err)
	}
}

// crash empties the run's staging partitions, its marker's included,
// as PostgreSQL's crash recovery empties every unlogged table.
func (f *batchFixture) crash() {
	f.t.Helper()
	if _, err := f.stack.Timescale.Exec(context.Background(), "TRUNCATE "+strings.Join(warehouse.StagingPartitions(f.run.RunID), ", ")); err != nil {
		f.t.Fatal(err)
	}
}

func wantStagingLost(t *testing.T, what string, err error) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeStagingLost || !appErr.NonRetryable() || !strings.Contains(appErr.Message(), "staging marker of run run-id") {
		t.Errorf("%s: error %v; want a non-retryable StagingLost naming the marker", what, err)
	}
}

// TestStagingMarkerDetectsLostStaging: once the run's unlogged staging is
// emptied (crash recovery), every activity that reads, resumes from or
// writes staging fails with StagingLost, whatever the row counts say, and
// nothing reaches the warehouse; ResetStaging for the next generation makes
// staging usable again for that generation only.
func TestStagingMarkerDetectsLostStaging(t *testing.T) {
	f := newBatchFixture(t, 2)
	ctx := context.Background()
	f.run.StagingGeneration = 1
	if err := f.b.run(f.run).CreateStaging(ctx); err != nil {
		t.Fatal(err)
	}
	env := f.env()
	f.stageAll(env)
	v, err := env.ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var total TransformTotal
	if err := v.Get(&total); err != nil || total.Rows == 0 {
		t.Fatalf("transform: %+v, %v", total, err)
	}
	f.crash()

	chunk := batch.Chunk{From: batchDay.Add(-time.Hour), To: batchWindow.End}
	resume := f.env()
	resume.SetHeartbeatDetails(ExtractReadingsProgress{NextFrom: batchDay.Add(6 * time.Hour), Rows: 100})
	_, err = resume.ExecuteActivity(f.b.ExtractReadings, ExtractReadingsInput{Run: f.run, Chunk: chunk})
	wantStagingLost(t, "ExtractReadings resuming", err)
	_, err = f.env().ExecuteActivity(f.b.ExtractReadings, ExtractReadingsInput{Run: f.run, Chunk: chunk})
	wantStagingLost(t, "ExtractReadings", err)
	_, err = f.env().ExecuteActivity(f.b.ExtractDevices, ExtractDevicesInput{Run: f.run, Shards: 1})
	wantStagingLost(t, "ExtractDevices", err)
	_, err = f.env().ExecuteActivity(f.b.ExtractLocations, ExtractLocationsInput{Run: f.run})
	wantStagingLost(t, "ExtractLocations", err)
	_, err = f.env().ExecuteActivity(f.b.RecordRejects, RejectsInput{Run: f.run, Window: batchWindow})
	wantStagingLost(t, "RecordRejects", err)
	_, err = f.env().ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour})
	wantStagingLost(t, "Transform", err)
	tr := f.env()
	tr.SetHeartbeatDetails(TransformProgress{LastDevice: "A", Totals: TransformTotal{Devices: 1, Rows: 5}})
	_, err = tr.ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour})
	wantStagingLost(t, "Transform resuming", err)
	_, err = f.env().ExecuteActivity(f.b.LoadDimensions, LoadDimensionsInput{Run: f.run})
	wantStagingLost(t, "LoadDimensions", err)
	// Even expecting no rows, which an emptied staging would match.
	_, err = f.env().ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: f.run, Shard: 0, Window: batchWindow, ExpectedRows: 0})
	wantStagingLost(t, "LoadFacts", err)
	_, err = f.env().ExecuteActivity(f.b.ExportFeatures, ExportFeaturesInput{Run: f.run, Window: batchWindow})
	wantStagingLost(t, "ExportFeatures", err)
	_, err = f.env().ExecuteActivity(f.b.FinishRun, FinishRunInput{Run: f.run, Window: batchWindow, Status: batch.StatusSucceeded})
	wantStagingLost(t, "FinishRun", err)
	for _, table := range []string{"dwh.fact_sensor_readings_enriched", "dwh.dim_devices", "dwh.dim_locations", "dwh.ml_features", "dwh.etl_rejects"} {
		if n := f.count(`SELECT count(*) FROM ` + table); n != 0 {
			t.Errorf("%s has %d rows after lost staging", table, n)
		}
	}
	if files, _ := f.b.Export.List(ctx, ""); len(files) != 0 {
		t.Errorf("the export store holds %v after lost staging", files)
	}

	// Generation 2: usable again, for generation 2 only.
	stale := f.run
	f.run.StagingGeneration = 2
	if _, err := f.env().ExecuteActivity(f.b.ResetStaging, ResetStagingInput{Run: f.run}); err != nil {
		t.Fatal(err)
	}
	f.stageAll(f.env())
	if _, err := f.env().ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := f.count(`SELECT count(*) FROM staging.enriched WHERE run_key = $1`, f.run.RunID); got != total.Rows {
		t.Errorf("generation 2 transformed %d rows, generation 1 %d", got, total.Rows)
	}
	_, err = f.env().ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: stale, Shard: 0, Window: batchWindow, ExpectedRows: total.Rows})
	wantStagingLost(t, "LoadFacts of generation 1", err)
	if _, err := f.env().ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: f.run, Shard: 0, Window: batchWindow, ExpectedRows: total.Rows}); err != nil {
		t.Errorf("LoadFacts of generation 2: %v", err)
	}
}

// TestResetStagingRecreatesMissingPartitions: staging whose partitions
// were dropped (by hand, or a sweep) is re-created whole.
func TestResetStagingRecreatesMissingPartitions(t *testing.T) {
	f := newBatchFixture(t, 1)
	ctx := context.Background()
	run := f.b.run(RunRef{RunID: f.run.RunID, StagingGeneration: 3})
	if err := run.DropStaging(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run.ResetStaging(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run.ResetStaging(ctx); err != nil {
		t.Fatalf("a second reset: %v", err)
	}
	if err := run.CheckStaging(ctx); err != nil {
		t.Errorf("after reset: %v", err)
	}
	for _, p := range warehouse.StagingPartitions(f.run.RunID) {
		if n := f.count(`SELECT count(*) FROM pg_class WHERE oid = to_regclass($1) AND relpersistence = 'u'`, p); n != 1 {
			t.Errorf("%s is not an unlogged table after the reset", p)
		}
	}
}

// TestExtractDevicesSourceSchema: a column the batch reads dropped from
// the registry is a non-retryable SourceSchema error naming the table and
// the column, and nothing is staged; a column added changes nothing.
func TestExtractDevicesSourceSchema(t *testing.T) {
	f := newBatchFixture(t, 3)
	if _, err := f.stack.MySQL.Exec(`ALTER TABLE devices ADD COLUMN notes VARCHAR(64) NULL FIRST`); err != nil {
		t.Fatal(err)
	}
	v, err := f.env().ExecuteActivity(f.b.ExtractDevices, ExtractDevicesInput{Run: f.run, Shards: 2})
	if err != nil {
		t.Fatalf("with an added column: %v", err)
	}
	var res ExtractDevicesResult
	if err := v.Get(&res); err != nil || res.Devices != 3 {
		t.Errorf("with an added column: %+v, %v; want 3 devices", res, err)
	}
	for _, c := range []struct{ table, alter, column string }{
		{"devices", `ALTER TABLE devices DROP COLUMN firmware`, "firmware"},
		{"device_types", `ALTER TABLE device_types RENAME COLUMN unit TO units`, "unit"},
	} {
		if _, err := f.stack.MySQL.Exec(c.alter); err != nil {
			t.Fatal(err)
		}
		_, err := f.env().ExecuteActivity(f.b.ExtractDevices, ExtractDevicesInput{Run: f.run, Shards: 2})
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != ErrTypeSourceSchema || !appErr.NonRetryable() ||
			!strings.Contains(appErr.Message(), "MySQL table "+c.table+": Unknown column '"+c.column+"'") {
			t.Errorf("%s: error %v; want a non-retryable SourceSchema naming table %s and column %s", c.alter, err, c.table, c.column)
		}
		// The staged devices of the earlier extract are as they were.
		if n := f.count(`SELECT count(*) FROM staging.devices WHERE run_key = $1`, f.run.RunID); n != 3 {
			t.Errorf("%s: %d staged devices, want the 3 of the earlier extract", c.alter, n)
		}
	}
}

// fakeTemporal answers the sweep's questions about workflow runs: status
// by run id (absent: not found), a termination's reason in the close
// event. It records which runs were asked about.
type fakeTemporal struct {
	mu     sync.Mutex
	status map[string]enumspb.WorkflowExecutionStatus
	asked  []string
}

func (f *fakeTemporal) DescribeWorkflow(_ context.Context, workflowID, runID string) (*client.WorkflowExecutionDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, runID)
	st, ok := f.status[runID]
	if !ok {
		return nil, serviceerror.NewNotFound("workflow execution not found for workflow id " + workflowID)
	}
	closed := batchDay
	return &client.WorkflowExecutionDescription{WorkflowExecutionMetadata: client.WorkflowExecutionMetadata{Status: st, WorkflowCloseTime: &closed}}, nil
}

func (f *fakeTemporal) GetWorkflowHistory(context.Context, string, string, bool, enumspb.HistoryEventFilterType) client.HistoryEventIterator {
	return &fakeHistory{events: []*historypb.HistoryEvent{{
		EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
		Attributes: &historypb.HistoryEvent_WorkflowExecutionTerminatedEventAttributes{WorkflowExecutionTerminatedEventAttributes: &historypb.WorkflowExecutionTerminatedEventAttributes{
			Reason: "stuck since Tuesday", Identity: "ops@host",
		}},
	}}}
}

type fakeHistory struct{ events []*historypb.HistoryEvent }

func (h *fakeHistory) HasNext() bool { return len(h.events) > 0 }
func (h *fakeHistory) Next() (*historypb.HistoryEvent, error) {
	ev := h.events[0]
	h.events = h.events[1:]
	return ev, nil
}

// TestSweepStaging: the sweep drops the staging of runs whose row is
// closed (without asking Temporal) and of runs whose workflow Temporal
// describes as closed, marking their open rows terminated with the reason;
// it leaves alone the staging of a running workflow, of the run it is told
// to spare, of a workflow Temporal does not know, and staging without a
// run row.
func TestSweepStaging(t *testing.T) {
	f := newBatchFixture(t, 1) // stages "run-id" without a run row
	ctx := context.Background()
	fake := &fakeTemporal{status: map[string]enumspb.WorkflowExecutionStatus{
		"running":    enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		"terminated": enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED,
		"timed-out":  enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT,
		"self":       enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, // never asked
	}}
	f.b.Temporal = fake
	for _, r := range []struct {
		id      string
		status  batch.Status
		staging bool
	}{
		{"running", batch.StatusRunning, true},
		{"terminated", batch.StatusRunning, true},
		{"timed-out", batch.StatusLoadFailed, false},
		{"succeeded", batch.StatusSucceeded, true},
		{"unknown", batch.StatusExportFailed, true},
		{"self", batch.StatusRunning, true},
	} {
		run := warehouse.Run{TS: f.stack.Timescale, ID: r.id, Generation: 1}
		if err := run.Start(ctx, warehouse.RunStart{WorkflowID: "wf-" + r.id, Window: batchWindow, StartedAt: batchDay}); err != nil {
			t.Fatal(err)
		}
		if r.status != batch.StatusRunning {
			if err := run.Mark(ctx, r.status, ""); err != nil {
				t.Fatal(err)
			}
		}
		if r.staging {
			if err := run.CreateStaging(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	v, err := f.env().ExecuteActivity(f.b.SweepStaging, SweepStagingInput{Except: "self", LockWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var res SweepStagingResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	staged, err := warehouse.StagedRuns(ctx, f.stack.Timescale)
	if err != nil {
		t.Fatal(err)
	}
	six := len(warehouse.StagingPartitions("x"))
	if diff := cmp.Diff(map[string]int{"running": six, "unknown": six, "self": six, "run-id": six}, staged); diff != "" {
		t.Errorf("staging partitions per run after the sweep (-want +got):\n%s", diff)
	}
	status := func(id string) (string, string) {
		var s string
		var e *string
		if err := f.stack.Timescale.QueryRow(ctx, `SELECT status, error FROM dwh.etl_runs WHERE run_id = $1`, id).Scan(&s, &e); err != nil {
			t.Fatal(err)
		}
		if e == nil {
			return s, ""
		}
		return s, *e
	}
	for id, want := range map[string]string{
		"terminated": `workflow terminated in Temporal (reason "stuck since Tuesday", by ops@host) before it finished the run; its staging was swept`,
		"timed-out":  "workflow timed out in Temporal before it finished the run; its staging was swept",
	} {
		if s, e := status(id); s != "terminated" || e != want {
			t.Errorf("run %s: %s %q; want terminated %q", id, s, e, want)
		}
	}
	for id, want := range map[string]string{"running": "running", "succeeded": "succeeded", "unknown": "export_failed", "self": "running"} {
		if s, _ := status(id); s != want {
			t.Errorf("run %s: status %s, want %s", id, s, want)
		}
	}
	sort.Strings(fake.asked)
	if diff := cmp.Diff([]string{"running", "terminated", "timed-out", "unknown"}, fake.asked); diff != "" {
		t.Errorf("runs asked about (-want +got):\n%s", diff)
	}
	if res.Dropped != 1 || res.Closed != 2 || res.Running != 1 || res.Unknown != 2 || res.Failed != 0 {
		t.Errorf("result %+v; want 1 dropped, 2 terminated, 1 running, 2 unknown", res)
	}

	// A second sweep finds nothing more to do.
	v, err = f.env().ExecuteActivity(f.b.SweepStaging, SweepStagingInput{Except: "self"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Get(&res); err != nil || res.Dropped != 0 || res.Closed != 0 || res.Unknown != 2 {
		t.Errorf("second sweep: %+v, %v; want only the 2 unknown left", res, err)
	}
}

// TestTransformWritesFirstLoadFacts: with Direct and no facts of the
// window, the transform copies its rows into the fact table, not to
// staging; a retry drops what it wrote past its heartbeat and redoes the
// rest; LoadFacts then inserts nothing and reports the transform's sums.
// With facts there already the shard is staged, and facts of another run
// appearing mid-transform send the shard through staging from the start,
// without the facts this run wrote.
func TestTransformWritesFirstLoadFacts(t *testing.T) {
	f := newBatchFixture(t, 4)
	f.b.FlushRows = 1000 // a commit after every device
	ctx := context.Background()
	f.stageAll(f.env())
	run := warehouse.Run{TS: f.stack.Timescale, ID: f.run.RunID}
	devices, err := run.ShardDevices(ctx, 0, "")
	if err != nil || len(devices) != 4 {
		t.Fatalf("shard devices: %d, %v", len(devices), err)
	}
	in := TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour, Direct: true, StageHours: true}
	// transform runs one attempt from hb (none: a first attempt) and
	// returns its result and the last progress it heartbeated.
	transform := func(hb *TransformProgress) (TransformTotal, TransformProgress, error) {
		t.Helper()
		env := f.env()
		if hb != nil {
			env.SetHeartbeatDetails(*hb)
		}
		var last TransformProgress
		env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
			var p TransformProgress
			if err := d.Get(&p); err != nil {
				t.Error(err)
			}
			last = p
		})
		v, err := env.ExecuteActivity(f.b.Transform, in)
		var total TransformTotal
		if err == nil {
			err = v.Get(&total)
		}
		return total, last, err
	}
	// scored is the detection scoring of the shard's facts, as a load that
	// is not a first load does it.
	scored := func() *Detection {
		t.Helper()
		d, err := f.b.detect(ctx, f.run, batchWindow, 0)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	factSums := func(where string, args ...any) batch.FactSums {
		t.Helper()
		var s batch.FactSums
		if err := pgx.BeginFunc(ctx, f.stack.Timescale, func(tx pgx.Tx) error {
			var err error
			s, err = warehouse.SumFacts(ctx, tx, "dwh.fact_sensor_readings_enriched f", where, args...)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	all := f.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, batchWindow.Start, batchWindow.End)
	staged := func() int64 { return f.count(`SELECT count(*) FROM staging.enriched WHERE run_key = $1`, f.run.RunID) }
	facts := func() int64 {
		return f.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id = $1`, f.run.RunID)
	}

	first, _, err := transform(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Direct || first.Rows != all || facts() != all || staged() != 0 {
		t.Fatalf("first attempt: direct %v, %d rows, %d facts, %d staged; want direct, %d facts, none staged", first.Direct, first.Rows, facts(), staged(), all)
	}
	if want := factSums("run_id = $1", f.run.RunID); first.Sums == nil || *first.Sums != want {
		t.Errorf("first attempt's sums %+v, its facts measure %+v", first.Sums, want)
	}
	want := scored()
	if !want.Truth || want.Kinds[anomaly.KindSpike].TP == 0 {
		t.Fatalf("the seeded devices' facts score %+v; want injected events and found spikes", want)
	}
	if diff := cmp.Diff(want, first.Detection); diff != "" {
		t.Errorf("first attempt's detection scores (-facts +transform):\n%s", diff)
	}

	// A retry after the first two devices: the facts past them go, and
	// come back once each. Its heartbeat has what the first attempt had
	// committed by then: the sums and the detection scores of the first
	// two devices' facts.
	done := devices[1].Device.ID
	doneSums := factSums("device_id <= $1", done)
	truth, err := run.GroundTruth(ctx, batchWindow, 0)
	if err != nil {
		t.Fatal(err)
	}
	var doneEvents []anomaly.TruthEvent
	for _, ev := range truthEvents(truth) {
		if ev.DeviceID <= done {
			doneEvents = append(doneEvents, ev)
		}
	}
	var doneFlagged []anomaly.Detection
	if err := run.FlaggedReadings(ctx, batchWindow, 0, func(r warehouse.FlaggedReading) error {
		if kinds := anomaly.Classify(r.Reasons, r.Flags); r.DeviceID <= done && len(kinds) > 0 {
			doneFlagged = append(doneFlagged, anomaly.Detection{DeviceID: r.DeviceID, Time: r.Time, Kinds: kinds})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	resume := TransformProgress{LastDevice: done, Totals: TransformTotal{Devices: 2, Rows: doneSums.Rows, Sums: &doneSums, Direct: true,
		Detection: &Detection{Truth: len(doneEvents) > 0, Kinds: anomaly.Score(doneEvents, doneFlagged, time.Minute)}}}
	total, _, err := transform(&resume)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, total.Detection); diff != "" {
		t.Errorf("resumed attempt's detection scores (-facts +transform):\n%s", diff)
	}
	distinct := f.count(`SELECT count(DISTINCT (device_id, time)) FROM dwh.fact_sensor_readings_enriched`)
	if !total.Direct || total.Devices != 4 || total.Rows != all || facts() != all || distinct != all || staged() != 0 {
		t.Errorf("resumed: %+v, %d facts (%d distinct), %d staged; want 4 devices, %d facts once each, none staged", total, facts(), distinct, staged(), all)
	}
	if want := factSums("true"); total.Sums == nil || *total.Sums != want {
		t.Errorf("resumed attempt's sums %+v, the facts measure %+v", total.Sums, want)
	}

	// The load inserts nothing and reports the transform's sums; it
	// rewrites the shard's hourly buckets.
	v, err := f.env().ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: f.run, Shard: 0, Window: batchWindow,
		ExpectedRows: total.Rows, Transformed: total.Sums, Direct: true, Detection: total.Detection, StagedHours: true})
	if err != nil {
		t.Fatal(err)
	}
	var load LoadFactsResult
	if err := v.Get(&load); err != nil {
		t.Fatal(err)
	}
	hours := f.count(`SELECT count(DISTINCT (device_id, date_trunc('hour', time))) FROM dwh.fact_sensor_readings_enriched`)
	if load.Rows != all || load.Sums == nil || *load.Sums != *total.Sums || load.Buckets != hours || facts() != all {
		t.Errorf("direct load: %d rows, %d buckets, sums %+v, %d facts; want %d rows, %d buckets, the transform's sums %+v", load.Rows, load.Buckets, load.Sums, facts(), all, hours, *total.Sums)
	}
	if diff := cmp.Diff(want, load.Detection); diff != "" {
		t.Errorf("direct load's detection scores (-facts +reported):\n%s", diff)
	}
	// The buckets it copied from the transform's staged ones are those the
	// aggregate query computes from the facts.
	if n := f.count(`SELECT count(*) FROM staging.hourly WHERE run_key = $1`, f.run.RunID); n != hours {
		t.Errorf("%d staged hourly buckets; want %d", n, hours)
	}
	const bucketCols = `bucket, device_id, reading_count, value_count, mean, min, max, std, anomaly_count, mean_quality`
	const fromFacts = `SELECT date_trunc('hour', time), device_id, count(*), count(value), avg(value), min(value), max(value),
		stddev_samp(value), count(*) FILTER (WHERE is_anomaly), avg(quality_score) FROM dwh.fact_sensor_readings_enriched GROUP BY 1, 2`
	if n := f.count(`SELECT count(*) FROM ((SELECT ` + bucketCols + ` FROM dwh.fact_hourly_agg EXCEPT ` + fromFacts + `)
		UNION ALL (` + fromFacts + ` EXCEPT SELECT ` + bucketCols + ` FROM dwh.fact_hourly_agg)) d`); n != 0 {
		t.Errorf("%d hourly buckets differ from the aggregates of the facts", n)
	}
	// They were copied, not aggregated: a staged bucket altered shows; a
	// load told nothing was staged aggregates the facts again.
	if _, err := f.stack.Timescale.Exec(ctx, `UPDATE staging.hourly SET anomaly_count = anomaly_count + 1000 WHERE run_key = $1 AND bucket = $2`,
		f.run.RunID, batchWindow.Start); err != nil {
		t.Fatal(err)
	}
	reload := func(staged bool) {
		t.Helper()
		if _, err := f.env().ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: f.run, Shard: 0, Window: batchWindow,
			ExpectedRows: total.Rows, Transformed: total.Sums, Direct: true, Detection: total.Detection, StagedHours: staged}); err != nil {
			t.Fatal(err)
		}
	}
	reload(true)
	if n := f.count(`SELECT count(*) FROM dwh.fact_hourly_agg WHERE bucket = $1 AND anomaly_count >= 1000`, batchWindow.Start); n != 4 {
		t.Errorf("%d buckets of the first hour carry the altered staged count; want the 4 devices'", n)
	}
	reload(false)
	if n := f.count(`SELECT count(*) FROM dwh.fact_hourly_agg WHERE anomaly_count >= 1000`); n != 0 {
		t.Errorf("%d buckets still carry the altered count after a load that aggregates the facts", n)
	}

	// A rerun over loaded facts stages the shard.
	again, _, err := transform(nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Direct || staged() != all {
		t.Errorf("over loaded facts: direct %v, %d staged; want staged, %d", again.Direct, staged(), all)
	}

	// Another run's facts appear after the decision: the attempt fails,
	// retryable, with progress that starts the shard again through
	// staging, and the next attempt stages it whole.
	if _, err := f.stack.Timescale.Exec(ctx, `UPDATE dwh.fact_sensor_readings_enriched SET run_id = 'other' WHERE device_id = $1`, devices[3].Device.ID); err != nil {
		t.Fatal(err)
	}
	_, hb, err := transform(&resume)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeFactsRefused || appErr.NonRetryable() {
		t.Fatalf("facts of another run: error %v; want a retryable %s", err, ErrTypeFactsRefused)
	}
	if hb.Totals.Direct || hb.LastDevice != "" || hb.Totals.Rows != 0 {
		t.Fatalf("progress after the refusal: %+v; want the shard from the start, staged", hb)
	}
	if n := facts(); n != 0 {
		t.Errorf("after the refusal the run still has %d facts; want none (the load writes them)", n)
	}
	restaged, _, err := transform(&hb)
	if err != nil {
		t.Fatal(err)
	}
	if restaged.Direct || restaged.Rows != all || staged() != all {
		t.Errorf("after the refusal: %+v, %d staged; want %d rows staged", restaged, staged(), all)
	}
}

// TestExportFromTransformMatchesFacts: the features built from the
// transform's staged device-hours (with the facts of the two hours before
// the window, from an earlier run) are the features built from the facts
// read back: the same rows, and files with the same bytes.
func TestExportFromTransformMatchesFacts(t *testing.T) {
	f := newBatchFixture(t, 4)
	f.b.FlushRows = 1000 // a commit after every device
	ctx := context.Background()
	f.stageAll(f.env())
	v, err := f.env().ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour, Direct: true, StageHours: true})
	if err != nil {
		t.Fatal(err)
	}
	var total TransformTotal
	if err := v.Get(&total); err != nil {
		t.Fatal(err)
	}
	if !total.Direct {
		t.Fatal("the transform did not write the facts")
	}
	if _, err := f.env().ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: f.run, Shard: 0, Window: batchWindow,
		ExpectedRows: total.Rows, Transformed: total.Sums, Direct: true, Detection: total.Detection}); err != nil {
		t.Fatal(err)
	}
	hours := f.count(`SELECT count(DISTINCT (device_id, date_trunc('hour', time))) FROM dwh.fact_sensor_readings_enriched`)
	if n := f.count(`SELECT count(*) FROM staging.feature_hours WHERE run_key = $1`, f.run.RunID); n != hours || n < 4*23 {
		t.Fatalf("staged %d device-hours; the facts have %d (4 devices x 24 hours, less the hours of a gap)", n, hours)
	}
	// An earlier run's facts of the two hours before the window: the
	// window's first two hours, two hours earlier.
	cols := strings.Join(warehouse.EnrichedColumns[1:], ", ")
	if _, err := f.stack.Timescale.Exec(ctx, `INSERT INTO dwh.fact_sensor_readings_enriched (time, `+cols+`, run_id)
		SELECT time - interval '2 hours', `+cols+`, 'earlier' FROM dwh.fact_sensor_readings_enriched WHERE time < $1`,
		batchWindow.Start.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	export := func(fromTransform bool) ExportFeaturesResult {
		t.Helper()
		v, err := f.env().ExecuteActivity(f.b.ExportFeatures, ExportFeaturesInput{Run: f.run, Window: batchWindow, CSV: true, FromTransform: fromTransform})
		if err != nil {
			t.Fatal(err)
		}
		var res ExportFeaturesResult
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	facts, staged := export(false), export(true)
	if facts.Rows == 0 || facts.Positive == 0 || len(facts.Files) != 2 {
		t.Fatalf("export from the facts: %+v; want rows, positive labels and two files", facts)
	}
	if staged.Rows != facts.Rows || staged.Positive != facts.Positive || len(staged.Files) != len(facts.Files) {
		t.Fatalf("export from the transform: %d rows, %d positive, %d files; from the facts %d, %d, %d",
			staged.Rows, staged.Positive, len(staged.Files), facts.Rows, facts.Positive, len(facts.Files))
	}
	for i := range facts.Files {
		if staged.Files[i].SHA256 != facts.Files[i].SHA256 || staged.Files[i].Rows != facts.Files[i].Rows {
			t.Errorf("%s: from the transform %s (%d rows), from the facts %s (%d rows)", facts.Files[i].Format,
				staged.Files[i].SHA256, staged.Files[i].Rows, facts.Files[i].SHA256, facts.Files[i].Rows)
		}
	}
	// The hour before the window has its row (its label is the window's
	// first hour), and the window's first hour its previous-hour mean.
	if n := f.count(`SELECT count(*) FROM dwh.ml_features WHERE hour = $1`, batchWindow.Start.Add(-time.Hour)); n != 4 {
		t.Errorf("%d feature rows of the hour before the window; want 4", n)
	}
	if n := f.count(`SELECT count(*) FROM dwh.ml_features WHERE hour = $1 AND prev_hour_mean IS NOT NULL`, batchWindow.Start); n != 4 {
		t.Errorf("%d feature rows of the window's first hour with a previous-hour mean; want 4", n)
	}
}
