package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestBatchLoadsTheWarehouse seeds 12 devices over two days, loads the
// second, and checks the warehouse against the source and the ground truth;
// a rerun of the same window leaves everything identical; a firmware change
// in the registry opens a second dim_devices version.
func TestBatchLoadsTheWarehouse(t *testing.T) {
	b := e2e.NewBatch(t, 12)
	res := b.Wait(b.Start(workflows.BatchInput{CSV: true}))

	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	lookback := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start.Add(-time.Hour), e2e.Window.End)
	if res.Status != "succeeded" || res.Devices != 12 || res.Rejects != 0 || res.LoadAttempts != 1 {
		t.Errorf("result: status %s, %d devices, %d rejects, %d load attempts", res.Status, res.Devices, res.Rejects, res.LoadAttempts)
	}
	if res.Extracted != lookback {
		t.Errorf("extracted %d readings, want %d (window + 1h lookback)", res.Extracted, lookback)
	}
	facts := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`)
	if res.RowsLoaded != readings || facts != readings {
		t.Errorf("fact rows: result %d, table %d; want %d readings in the window", res.RowsLoaded, facts, readings)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE is_anomaly`); n != res.Anomalies {
		t.Errorf("anomalous facts %d, result says %d", n, res.Anomalies)
	}
	buckets := b.Count(`SELECT count(DISTINCT (device_id, date_trunc('hour', time))) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if got := b.Count(`SELECT count(*) FROM dwh.fact_hourly_agg`); got != buckets || res.HourlyRows != buckets {
		t.Errorf("hourly buckets: table %d, result %d, want %d", got, res.HourlyRows, buckets)
	}
	// The hourly aggregate agrees with the facts it summarises.
	if n := b.Count(`
		SELECT count(*) FROM dwh.fact_hourly_agg h
		JOIN (SELECT device_id, date_trunc('hour', time) AS bucket, count(*) AS n, count(*) FILTER (WHERE is_anomaly) AS a
		      FROM dwh.fact_sensor_readings_enriched GROUP BY 1, 2) f USING (device_id, bucket)
		WHERE h.reading_count = f.n AND h.anomaly_count = f.a`); n != buckets {
		t.Errorf("%d of %d hourly buckets match the facts", n, buckets)
	}

	// Detection against the seeded ground truth of the window.
	for _, kind := range []string{"spike", "out_of_range", "stuck"} {
		events := b.Count(`SELECT count(*) FROM public.anomaly_ground_truth WHERE kind = $1 AND start_time >= $2 AND end_time < $3`, kind, e2e.Window.Start, e2e.Window.End)
		d := res.Detection[kind]
		if events == 0 {
			t.Fatalf("no %s events in the window: the seed does not exercise the detector", kind)
		}
		if d.FalseNegatives != 0 || d.Precision < 0.9 || d.Recall < 0.9 {
			t.Errorf("%s: %+v over %d events; want every event found and precision ≥ 0.9", kind, d, events)
		}
	}

	// Dimensions and lineage.
	if n := b.Count(`SELECT count(*) FROM dwh.dim_devices WHERE is_current`); n != 12 {
		t.Errorf("%d current devices, want 12", n)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.dim_locations`); n != int64(b.Seed.Locations) {
		t.Errorf("%d locations, want %d", n, b.Seed.Locations)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id <> $1`, res.RunID); n != 0 {
		t.Errorf("%d facts carry another run id", n)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'succeeded' AND rows_loaded = $2 AND fact_checksum = $3`, res.RunID, readings, res.FactChecksum); n != 1 {
		t.Error("etl_runs does not record the run")
	}
	// The checksum the finish added up from the shards' loads is the one
	// a single query over the window's facts gives.
	var whole string
	if err := b.Stack.Timescale.QueryRow(context.Background(), `SELECT count(*) || ':' || coalesce(sum(('x' || substr(md5(ROW(f.device_id, f.time, f.value, f.battery, f.rssi,
		f.device_type, f.metric, f.unit, f.location_id, f.site, f.building, f.floor, f.zone, f.roll_count, f.roll_mean, f.roll_std, f.roll_min,
		f.roll_max, f.zscore, f.is_anomaly, f.anomaly_reasons, f.quality_score, f.quality_flags)::text), 1, 15))::bit(60)::bigint), 0)
		FROM dwh.fact_sensor_readings_enriched f WHERE f.time >= $1 AND f.time < $2`, e2e.Window.Start, e2e.Window.End).Scan(&whole); err != nil {
		t.Fatal(err)
	} else if whole != res.FactChecksum {
		t.Errorf("fact checksum %s; one query over the window gives %s", res.FactChecksum, whole)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_watermarks WHERE pipeline = 'batch' AND high_watermark = $1`, e2e.Window.End); n != 1 {
		t.Error("the batch watermark is not at the window end")
	}
	for _, table := range []string{"staging.readings", "staging.enriched", "staging.devices"} {
		if n := b.Count(`SELECT count(*) FROM ` + table); n != 0 {
			t.Errorf("%s keeps %d rows after the run", table, n)
		}
	}

	// Features: the manifest lists the files of this run's first attempt,
	// which match it and the table.
	m := readManifest(t, res.Features.ManifestURL)
	// The window's first hour has no previous hour loaded and its last has
	// no next one: rows cover the device-hours of [start, end − 1h).
	wantFeatures := b.Count(`SELECT count(DISTINCT (device_id, date_trunc('hour', time))) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End.Add(-time.Hour))
	if m.Rows != wantFeatures || res.Features.Rows != wantFeatures || len(m.Files) != 2 || len(res.Features.Files) != 2 {
		t.Errorf("manifest: %d rows in %d files, result %d rows in %d files; want %d rows, parquet + csv", m.Rows, len(m.Files), res.Features.Rows, len(res.Features.Files), wantFeatures)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.ml_features`); n != wantFeatures {
		t.Errorf("dwh.ml_features has %d rows, want %d", n, wantFeatures)
	}
	firstSums := map[string]string{}
	var fileURLs []string
	for i, f := range m.Files {
		if want := res.RunID + "/attempt-1/features." + f.Format; f.Path != want || f.URL != res.Features.WindowURL+want {
			t.Errorf("file %s at %s; want %s under %s", f.Path, f.URL, want, res.Features.WindowURL)
		}
		if i < len(res.Features.Files) && (res.Features.Files[i].URL != f.URL || res.Features.Files[i].SHA256 != f.SHA256) {
			t.Errorf("result file %+v, manifest %+v", res.Features.Files[i], f)
		}
		data := readFileURL(t, f.URL)
		if sum := sha256Hex(data); sum != f.SHA256 || int64(len(data)) != f.Bytes {
			t.Errorf("%s: %d bytes sha256 %s, manifest says %d bytes %s", f.Path, len(data), sum, f.Bytes, f.SHA256)
		}
		if f.Format == "csv" {
			if lines := strings.Count(string(data), "\n"); int64(lines) != wantFeatures+1 {
				t.Errorf("features.csv has %d lines, want %d rows + header", lines, wantFeatures)
			}
		}
		firstSums[f.Format] = f.SHA256
		fileURLs = append(fileURLs, f.URL)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND export_manifest_url = $2 AND export_files = $3 AND features_path = $4`,
		res.RunID, res.Features.ManifestURL, fileURLs, res.Features.WindowURL); n != 1 {
		t.Error("etl_runs does not record the export's URLs")
	}

	// Rerun: same warehouse, nothing rewritten, same files.
	loadedAt := b.Count(`SELECT extract(epoch FROM max(loaded_at))::bigint * 1000000 + extract(microseconds FROM max(loaded_at))::bigint FROM dwh.fact_sensor_readings_enriched`)
	again := b.Wait(b.Start(workflows.BatchInput{CSV: true}))
	if again.FactChecksum != res.FactChecksum || again.RowsLoaded != res.RowsLoaded || again.HourlyRows != res.HourlyRows {
		t.Errorf("rerun: checksum %s rows %d buckets %d; first run %s %d %d", again.FactChecksum, again.RowsLoaded, again.HourlyRows, res.FactChecksum, res.RowsLoaded, res.HourlyRows)
	}
	if n := b.Count(`SELECT extract(epoch FROM max(loaded_at))::bigint * 1000000 + extract(microseconds FROM max(loaded_at))::bigint FROM dwh.fact_sensor_readings_enriched`); n != loadedAt {
		t.Error("the rerun rewrote fact rows that had not changed")
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id <> $1`, res.RunID); n != 0 {
		t.Errorf("%d facts were rewritten by the identical rerun", n)
	}
	for _, f := range again.Features.Files {
		if firstSums[f.Format] != f.SHA256 {
			t.Errorf("rerun changed the content of %s", f.Format)
		}
	}
	// The rerun's manifest replaced the first; the first run's files stay
	// for readers who fetched its manifest.
	if got, want := exportRunDirs(t, again.Features.WindowURL), sortedStrings(res.RunID, again.RunID); !cmp.Equal(want, got) {
		t.Errorf("run directories after the rerun: %v, want the first run's and the rerun's %v", got, want)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.dim_devices`); n != 12 {
		t.Errorf("rerun: %d device versions, want 12 (nothing changed)", n)
	}

	// SCD2: a firmware upgrade opens a new version; the rest stay.
	if _, err := b.Stack.MySQL.Exec(`UPDATE devices SET firmware = 'v9.9.9', updated_at = '2026-11-02 12:00:00' WHERE device_id = 'TEMP-001'`); err != nil {
		t.Fatal(err)
	}
	third := b.Wait(b.Start(workflows.BatchInput{}))
	// The third export deleted the first generation: only the files of its
	// manifest and of the one it replaced remain.
	if got, want := exportRunDirs(t, third.Features.WindowURL), sortedStrings(again.RunID, third.RunID); !cmp.Equal(want, got) {
		t.Errorf("run directories after the third export: %v, want %v", got, want)
	}
	if m := readManifest(t, third.Features.ManifestURL); len(m.Files) != 1 || m.Files[0].Format != "parquet" || m.RunID != third.RunID {
		t.Errorf("third manifest: run %s, files %+v; want the third run's parquet only", m.RunID, m.Files)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.dim_devices`); n != 13 {
		t.Errorf("%d device versions after a firmware change, want 13", n)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.dim_devices WHERE device_id = 'TEMP-001' AND is_current AND firmware = 'v9.9.9' AND valid_from = '2026-11-02 12:00:00+00'`); n != 1 {
		t.Error("no current TEMP-001 version with the new firmware from its updated_at")
	}
	if n := b.Count(`SELECT count(*) FROM dwh.dim_devices WHERE device_id = 'TEMP-001' AND NOT is_current AND valid_to = '2026-11-02 12:00:00+00'`); n != 1 {
		t.Error("the old TEMP-001 version was not closed at the change")
	}
}

// readFileURL reads a file:// URL of the local export store.
func readFileURL(t *testing.T, u string) []byte {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "file" {
		t.Fatalf("%s: not a file:// URL (%v)", u, err)
	}
	b, err := os.ReadFile(filepath.FromSlash(p.Path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readManifest(t *testing.T, u string) export.Manifest {
	t.Helper()
	var m export.Manifest
	if err := json.Unmarshal(readFileURL(t, u), &m); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return m
}

// exportRunDirs lists the run directories of a local export's window.
func exportRunDirs(t *testing.T, windowURL string) []string {
	t.Helper()
	p, err := url.Parse(windowURL)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.FromSlash(p.Path))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	sort.Strings(dirs)
	return dirs
}

func sortedStrings(s ...string) []string {
	sort.Strings(s)
	return s
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestBatchSurvivesWorkerKill: SIGKILL the worker in the middle of a run,
// start a new one: the run completes with the same checksum as an
// uninterrupted run of the same window.
func TestBatchSurvivesWorkerKill(t *testing.T) {
	b := e2e.NewBatch(t, 40)
	reference := b.Wait(b.Start(workflows.BatchInput{}))
	for _, table := range []string{"dwh.fact_sensor_readings_enriched", "dwh.fact_hourly_agg", "dwh.ml_features", "dwh.dim_devices", "dwh.dim_locations"} {
		if _, err := b.Stack.Timescale.Exec(context.Background(), "TRUNCATE "+table); err != nil {
			t.Fatal(err)
		}
	}

	run := b.Start(workflows.BatchInput{})
	p := b.ProgressUntil(run, func(p workflows.Progress) bool {
		return p.Phase == workflows.PhaseTransform || p.Phase == workflows.PhaseLoad
	})
	b.Worker.Kill()
	t.Logf("worker killed in phase %s at %d/%d", p.Phase, p.ChunksDone, p.ChunksTotal)
	time.Sleep(time.Second)
	b.StartWorker()
	res := b.Wait(run)
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
	b := e2e.NewBatch(t, 6)
	ctx := context.Background()
	if _, err := b.Stack.Timescale.Exec(ctx, `ALTER TABLE dwh.fact_sensor_readings_enriched ADD CONSTRAINT no_temp_001 CHECK (device_id <> 'TEMP-001')`); err != nil {
		t.Fatal(err)
	}
	run := b.Start(workflows.BatchInput{Shards: 2})
	parked := b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseLoadFailed })
	if !strings.Contains(parked.LoadError, "no_temp_001") || parked.LoadAttempts != 1 {
		t.Errorf("parked: %+v; want the constraint in the error after 1 attempt", parked)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'load_failed' AND error LIKE '%no_temp_001%'`, run.GetRunID()); n != 1 {
		t.Error("etl_runs does not show the run as load_failed with its error")
	}
	starterBin := testenv.Build(t, "./starter")

	// Retrying before the fix fails again and parks again.
	out := e2e.RunStarter(t, starterBin, b.Env, "batch", "retry-load", run.GetID())
	if !strings.Contains(out, "sent retry-load to "+run.GetID()) {
		t.Errorf("retry-load output: %s", out)
	}
	b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseLoadFailed && p.LoadAttempts == 2 })

	if _, err := b.Stack.Timescale.Exec(ctx, `ALTER TABLE dwh.fact_sensor_readings_enriched DROP CONSTRAINT no_temp_001`); err != nil {
		t.Fatal(err)
	}
	e2e.RunStarter(t, starterBin, b.Env, "batch", "retry-load", run.GetID())
	res := b.Wait(run)
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if res.Status != "succeeded" || res.LoadAttempts != 3 || res.RowsLoaded != readings {
		t.Errorf("after the fix: status %s, %d load attempts, %d rows; want succeeded, 3, %d", res.Status, res.LoadAttempts, res.RowsLoaded, readings)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE device_id = 'TEMP-001'`); n == 0 {
		t.Error("TEMP-001 was not loaded after the fix")
	}
	// A run that is not parked refuses the signal.
	if out, err := e2e.RunStarterErr(starterBin, b.Env, "batch", "retry-load", run.GetID()); err == nil || !strings.Contains(out, "not load_failed") {
		t.Errorf("retry-load on a finished run: err %v, output %s", err, out)
	}
}
