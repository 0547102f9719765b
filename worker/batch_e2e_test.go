package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/simulate"
	"github.com/iot-etl/iot-etl/internal/store"
	"github.com/iot-etl/iot-etl/internal/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// The seeded days and the window the tests load: the first day is the
// lookback history of the second.
var (
	seedFrom = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	seedTo   = time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	window   = activities.Window{Start: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), End: seedTo}
)

// batchStack is one test's databases, seeded, and a worker subprocess
// serving a task queue of its own on the shared dev server.
type batchStack struct {
	t      *testing.T
	stack  *testenv.Stack
	env    map[string]string
	tc     client.Client
	worker *testenv.Process
	seed   store.SeedSummary
}

func newBatchStack(t *testing.T, devices int) *batchStack {
	t.Helper()
	s := testenv.Databases(t)
	s.Config.Temporal.Address = testenv.Temporal(t)
	s.Config.Temporal.BatchTaskQueue = "batch-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	s.Config.ExportDir = t.TempDir()
	b := &batchStack{t: t, stack: s, env: testenv.EnvMap(s.Config), tc: testenv.TemporalClient(t)}
	ctx := context.Background()
	var err error
	b.seed, err = store.Seed(ctx, s.MySQL, s.Locations, s.Timescale, store.SeedOptions{Seed: 7, Devices: devices, From: seedFrom, To: seedTo, Sim: simulate.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker()
	return b
}

func (b *batchStack) startWorker() {
	b.worker = testenv.Start(b.t, "worker", testenv.Build(b.t, "./worker"), b.env, "-queues", "batch")
}

func (b *batchStack) start(in workflows.BatchInput) client.WorkflowRun {
	b.t.Helper()
	if in.WindowStart.IsZero() {
		in.WindowStart, in.WindowEnd = window.Start, window.End
	}
	if in.HeartbeatTimeout == 0 {
		in.HeartbeatTimeout = 5 * time.Second
	}
	run, err := b.tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		TaskQueue:                b.stack.Config.Temporal.BatchTaskQueue,
		WorkflowExecutionTimeout: 5 * time.Minute,
	}, workflows.BatchWorkflowName, in)
	if err != nil {
		b.t.Fatal(err)
	}
	return run
}

func (b *batchStack) wait(run client.WorkflowRun) workflows.BatchResult {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var res workflows.BatchResult
	if err := run.Get(ctx, &res); err != nil {
		b.t.Fatalf("batch run: %v", err)
	}
	return res
}

func (b *batchStack) count(query string, args ...any) int64 {
	b.t.Helper()
	var n int64
	if err := b.stack.Timescale.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		b.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// progress polls the progress query until cond holds.
func (b *batchStack) progressUntil(run client.WorkflowRun, cond func(workflows.Progress) bool) workflows.Progress {
	b.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		v, err := b.tc.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), workflows.QueryProgress)
		if err == nil {
			var p workflows.Progress
			if err := v.Get(&p); err == nil && cond(p) {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatal("progress condition not reached in 2 minutes")
	return workflows.Progress{}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestBatchLoadsTheWarehouse seeds 12 devices over two days, loads the
// second, and checks the warehouse against the source and the ground truth;
// a rerun of the same window leaves everything identical; a firmware change
// in the registry opens a second dim_devices version.
func TestBatchLoadsTheWarehouse(t *testing.T) {
	b := newBatchStack(t, 12)
	res := b.wait(b.start(workflows.BatchInput{CSV: true}))

	readings := b.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, window.Start, window.End)
	lookback := b.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, window.Start.Add(-time.Hour), window.End)
	if res.Status != "succeeded" || res.Devices != 12 || res.Rejects != 0 || res.LoadAttempts != 1 {
		t.Errorf("result: status %s, %d devices, %d rejects, %d load attempts", res.Status, res.Devices, res.Rejects, res.LoadAttempts)
	}
	if res.Extracted != lookback {
		t.Errorf("extracted %d readings, want %d (window + 1h lookback)", res.Extracted, lookback)
	}
	facts := b.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`)
	if res.RowsLoaded != readings || facts != readings {
		t.Errorf("fact rows: result %d, table %d; want %d readings in the window", res.RowsLoaded, facts, readings)
	}
	if n := b.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE is_anomaly`); n != res.Anomalies {
		t.Errorf("anomalous facts %d, result says %d", n, res.Anomalies)
	}
	buckets := b.count(`SELECT count(DISTINCT (device_id, date_trunc('hour', time))) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, window.Start, window.End)
	if got := b.count(`SELECT count(*) FROM dwh.fact_hourly_agg`); got != buckets || res.HourlyRows != buckets {
		t.Errorf("hourly buckets: table %d, result %d, want %d", got, res.HourlyRows, buckets)
	}
	// The hourly aggregate agrees with the facts it summarises.
	if n := b.count(`
		SELECT count(*) FROM dwh.fact_hourly_agg h
		JOIN (SELECT device_id, date_trunc('hour', time) AS bucket, count(*) AS n, count(*) FILTER (WHERE is_anomaly) AS a
		      FROM dwh.fact_sensor_readings_enriched GROUP BY 1, 2) f USING (device_id, bucket)
		WHERE h.reading_count = f.n AND h.anomaly_count = f.a`); n != buckets {
		t.Errorf("%d of %d hourly buckets match the facts", n, buckets)
	}

	// Detection against the seeded ground truth of the window.
	for _, kind := range []string{"spike", "out_of_range", "stuck"} {
		events := b.count(`SELECT count(*) FROM public.anomaly_ground_truth WHERE kind = $1 AND start_time >= $2 AND end_time < $3`, kind, window.Start, window.End)
		d := res.Detection[kind]
		if events == 0 {
			t.Fatalf("no %s events in the window: the seed does not exercise the detector", kind)
		}
		if d.FalseNegatives != 0 || d.Precision < 0.9 || d.Recall < 0.9 {
			t.Errorf("%s: %+v over %d events; want every event found and precision ≥ 0.9", kind, d, events)
		}
	}

	// Dimensions and lineage.
	if n := b.count(`SELECT count(*) FROM dwh.dim_devices WHERE is_current`); n != 12 {
		t.Errorf("%d current devices, want 12", n)
	}
	if n := b.count(`SELECT count(*) FROM dwh.dim_locations`); n != int64(b.seed.Locations) {
		t.Errorf("%d locations, want %d", n, b.seed.Locations)
	}
	if n := b.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id <> $1`, res.RunID); n != 0 {
		t.Errorf("%d facts carry another run id", n)
	}
	if n := b.count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'succeeded' AND rows_loaded = $2 AND fact_checksum = $3`, res.RunID, readings, res.FactChecksum); n != 1 {
		t.Error("etl_runs does not record the run")
	}
	if n := b.count(`SELECT count(*) FROM dwh.etl_watermarks WHERE pipeline = 'batch' AND high_watermark = $1`, window.End); n != 1 {
		t.Error("the batch watermark is not at the window end")
	}
	for _, table := range []string{"staging.readings", "staging.enriched", "staging.devices"} {
		if n := b.count(`SELECT count(*) FROM ` + table); n != 0 {
			t.Errorf("%s keeps %d rows after the run", table, n)
		}
	}

	// Features: the files match the manifest and the table.
	var m struct {
		Rows  int64 `json:"rows"`
		Files []struct {
			Path, SHA256 string
			Rows         int64
		} `json:"files"`
	}
	raw, err := os.ReadFile(res.Features.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	// The window's first hour has no previous hour loaded and its last has
	// no next one: rows cover the device-hours of [start, end − 1h).
	wantFeatures := b.count(`SELECT count(DISTINCT (device_id, date_trunc('hour', time))) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, window.Start, window.End.Add(-time.Hour))
	if m.Rows != wantFeatures || res.Features.Rows != wantFeatures || len(m.Files) != 2 {
		t.Errorf("manifest: %d rows in %d files, result %d rows; want %d rows, parquet + csv", m.Rows, len(m.Files), res.Features.Rows, wantFeatures)
	}
	if n := b.count(`SELECT count(*) FROM dwh.ml_features`); n != wantFeatures {
		t.Errorf("dwh.ml_features has %d rows, want %d", n, wantFeatures)
	}
	firstSums := map[string]string{}
	for _, f := range m.Files {
		sum := fileSHA256(t, filepath.Join(res.Features.Dir, f.Path))
		if sum != f.SHA256 {
			t.Errorf("%s: sha256 %s, manifest says %s", f.Path, sum, f.SHA256)
		}
		firstSums[f.Path] = sum
	}
	csvLines := strings.Count(string(must(os.ReadFile(filepath.Join(res.Features.Dir, "features.csv")))), "\n")
	if int64(csvLines) != wantFeatures+1 {
		t.Errorf("features.csv has %d lines, want %d rows + header", csvLines, wantFeatures)
	}

	// Rerun: same warehouse, nothing rewritten, same files.
	loadedAt := b.count(`SELECT extract(epoch FROM max(loaded_at))::bigint * 1000000 + extract(microseconds FROM max(loaded_at))::bigint FROM dwh.fact_sensor_readings_enriched`)
	again := b.wait(b.start(workflows.BatchInput{CSV: true}))
	if again.FactChecksum != res.FactChecksum || again.RowsLoaded != res.RowsLoaded || again.HourlyRows != res.HourlyRows {
		t.Errorf("rerun: checksum %s rows %d buckets %d; first run %s %d %d", again.FactChecksum, again.RowsLoaded, again.HourlyRows, res.FactChecksum, res.RowsLoaded, res.HourlyRows)
	}
	if n := b.count(`SELECT extract(epoch FROM max(loaded_at))::bigint * 1000000 + extract(microseconds FROM max(loaded_at))::bigint FROM dwh.fact_sensor_readings_enriched`); n != loadedAt {
		t.Error("the rerun rewrote fact rows that had not changed")
	}
	if n := b.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id <> $1`, res.RunID); n != 0 {
		t.Errorf("%d facts were rewritten by the identical rerun", n)
	}
	for _, f := range again.Features.Files {
		if firstSums[f.Path] != f.SHA256 {
			t.Errorf("rerun changed %s", f.Path)
		}
	}
	if n := b.count(`SELECT count(*) FROM dwh.dim_devices`); n != 12 {
		t.Errorf("rerun: %d device versions, want 12 (nothing changed)", n)
	}

	// SCD2: a firmware upgrade opens a new version; the rest stay.
	if _, err := b.stack.MySQL.Exec(`UPDATE devices SET firmware = 'v9.9.9', updated_at = '2026-11-02 12:00:00' WHERE device_id = 'TEMP-001'`); err != nil {
		t.Fatal(err)
	}
	b.wait(b.start(workflows.BatchInput{}))
	if n := b.count(`SELECT count(*) FROM dwh.dim_devices`); n != 13 {
		t.Errorf("%d device versions after a firmware change, want 13", n)
	}
	if n := b.count(`SELECT count(*) FROM dwh.dim_devices WHERE device_id = 'TEMP-001' AND is_current AND firmware = 'v9.9.9' AND valid_from = '2026-11-02 12:00:00+00'`); n != 1 {
		t.Error("no current TEMP-001 version with the new firmware from its updated_at")
	}
	if n := b.count(`SELECT count(*) FROM dwh.dim_devices WHERE device_id = 'TEMP-001' AND NOT is_current AND valid_to = '2026-11-02 12:00:00+00'`); n != 1 {
		t.Error("the old TEMP-001 version was not closed at the change")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestBatchSurvivesWorkerKill: SIGKILL the worker in the middle of a run,
// start a new one: the run completes with the same checksum as an
// uninterrupted run of the same window.
func TestBatchSurvivesWorkerKill(t *testing.T) {
	b := newBatchStack(t, 40)
	reference := b.wait(b.start(workflows.BatchInput{}))
	for _, table := range []string{"dwh.fact_sensor_readings_enriched", "dwh.fact_hourly_agg", "dwh.ml_features", "dwh.dim_devices", "dwh.dim_locations"} {
		if _, err := b.stack.Timescale.Exec(context.Background(), "TRUNCATE "+table); err != nil {
			t.Fatal(err)
		}
	}

	run := b.start(workflows.BatchInput{})
	p := b.progressUntil(run, func(p workflows.Progress) bool {
		return p.Phase == workflows.PhaseTransform || p.Phase == workflows.PhaseLoad
	})
	b.worker.Kill()
	t.Logf("worker killed in phase %s at %d/%d", p.Phase, p.ChunksDone, p.ChunksTotal)
	time.Sleep(time.Second)
	b.startWorker()
	res := b.wait(run)
	if res.FactChecksum != reference.FactChecksum || res.RowsLoaded != reference.RowsLoaded || res.HourlyRows != reference.HourlyRows {
		t.Errorf("after SIGKILL: checksum %s rows %d buckets %d; uninterrupted %s %d %d",
			res.FactChecksum, res.RowsLoaded, res.HourlyRows, reference.FactChecksum, reference.RowsLoaded, reference.HourlyRows)
	}
	if res.Features.Rows != reference.Features.Rows {
		t.Errorf("features: %d rows, uninterrupted %d", res.Features.Rows, reference.Features.Rows)
	}
}

// TestBatchRetryLoadAfterFailure: Load fails on a constraint the operator
// added by mistake; the run parks in load_failed; `starter batch
// retry-load` before the fix parks it again; after the fix it completes
// with exactly the rows of an untroubled run.
func TestBatchRetryLoadAfterFailure(t *testing.T) {
	b := newBatchStack(t, 6)
	ctx := context.Background()
	if _, err := b.stack.Timescale.Exec(ctx, `ALTER TABLE dwh.fact_sensor_readings_enriched ADD CONSTRAINT no_temp_001 CHECK (device_id <> 'TEMP-001')`); err != nil {
		t.Fatal(err)
	}
	run := b.start(workflows.BatchInput{Shards: 2})
	parked := b.progressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseLoadFailed })
	if !strings.Contains(parked.LoadError, "no_temp_001") || parked.LoadAttempts != 1 {
		t.Errorf("parked: %+v; want the constraint in the error after 1 attempt", parked)
	}
	if n := b.count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'load_failed' AND error LIKE '%no_temp_001%'`, run.GetRunID()); n != 1 {
		t.Error("etl_runs does not show the run as load_failed with its error")
	}
	starterBin := testenv.Build(t, "./starter")

	// Retrying before the fix fails again and parks again.
	out := runStarter(t, starterBin, b.env, "batch", "retry-load", run.GetID())
	if !strings.Contains(out, "sent retry-load to "+run.GetID()) {
		t.Errorf("retry-load output: %s", out)
	}
	b.progressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseLoadFailed && p.LoadAttempts == 2 })

	if _, err := b.stack.Timescale.Exec(ctx, `ALTER TABLE dwh.fact_sensor_readings_enriched DROP CONSTRAINT no_temp_001`); err != nil {
		t.Fatal(err)
	}
	runStarter(t, starterBin, b.env, "batch", "retry-load", run.GetID())
	res := b.wait(run)
	readings := b.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, window.Start, window.End)
	if res.Status != "succeeded" || res.LoadAttempts != 3 || res.RowsLoaded != readings {
		t.Errorf("after the fix: status %s, %d load attempts, %d rows; want succeeded, 3, %d", res.Status, res.LoadAttempts, res.RowsLoaded, readings)
	}
	if n := b.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE device_id = 'TEMP-001'`); n == 0 {
		t.Error("TEMP-001 was not loaded after the fix")
	}
	// A run that is not parked refuses the signal.
	if out, err := runStarterErr(starterBin, b.env, "batch", "retry-load", run.GetID()); err == nil || !strings.Contains(out, "not load_failed") {
		t.Errorf("retry-load on a finished run: err %v, output %s", err, out)
	}
}

// runStarterErr runs the starter binary with env and returns its combined
// output.
func runStarterErr(bin string, env map[string]string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func runStarter(t *testing.T, bin string, env map[string]string, args ...string) string {
	t.Helper()
	out, err := runStarterErr(bin, env, args...)
	if err != nil {
		t.Fatalf("starter %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
