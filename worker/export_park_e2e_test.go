package main

import (
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestExportParksThenRetryExport: with every upload of features.csv
// failing (503 from a proxy in front of the S3 server), ExportFeatures
// fails its ExportMaxAttempts attempts and the run parks in export_failed,
// recorded in dwh.etl_runs with an error that names the failed upload; the
// warehouse stays loaded and no manifest exists. Healed, `starter batch
// retry-export` runs the export again, in attempt directories of its own,
// and the run succeeds with exactly one manifest, whose files are the only
// objects left.
func TestExportParksThenRetryExport(t *testing.T) {
	srv := testenv.S3(t)
	proxy := newFaultProxy(t, srv.Endpoint)
	b := newS3BatchStack(t, 4, srv, proxy.srv.URL, "exports")
	r := newReader(t, srv)
	starterBin := testenv.Build(t, "./starter")
	windowKey := "exports/" + export.WindowDir(e2e.Window.Start, e2e.Window.End) + "/"
	manifestKey := windowKey + export.ManifestName
	manifests := func() []string {
		var out []string
		for _, k := range r.list("exports/") {
			if strings.HasSuffix(k, "/"+export.ManifestName) {
				out = append(out, k)
			}
		}
		return out
	}

	proxy.failCSV.Store(true)
	run := b.Start(workflows.BatchInput{CSV: true, ExportMaxAttempts: 2})
	parked := b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseExportFailed })
	t.Logf("parked: %s", parked.ExportError)
	if !strings.HasPrefix(parked.ExportError, "export features: ") || !strings.Contains(parked.ExportError, export.CSVName) ||
		!strings.Contains(parked.ExportError, "503") || parked.ExportAttempts != 1 {
		t.Errorf("parked: %+v; want the failed features.csv upload (503) after 1 export", parked)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'export_failed' AND error = $2`, run.GetRunID(), parked.ExportError); n != 1 {
		t.Error("dwh.etl_runs does not record the run as export_failed with the error")
	}
	// Both attempts tried the upload, each through the SDK's own retries.
	for _, attempt := range []string{"attempt-1", "attempt-2"} {
		if n := len(proxy.requests(windowKey + run.GetRunID() + "/" + attempt + "/" + export.CSVName)); n < 2 {
			t.Errorf("%s: %d requests for features.csv, want the SDK's retries", attempt, n)
		}
	}
	if got := manifests(); len(got) != 0 {
		t.Errorf("manifests while parked: %v; want none", got)
	}
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != readings {
		t.Errorf("%d facts while parked, want the %d loaded", n, readings)
	}
	if out, err := e2e.RunStarterErr(starterBin, b.Env, "batch", "retry-load", run.GetID()); err == nil || !strings.Contains(out, "is in phase export_failed, not load_failed") {
		t.Errorf("retry-load of a run parked in export_failed: err %v, output %s", err, out)
	}

	proxy.failCSV.Store(false)
	out := e2e.RunStarter(t, starterBin, b.Env, "batch", "retry-export", run.GetID())
	if want := "sent retry-export to " + run.GetID() + " (export failed with: " + parked.ExportError + ")"; !containsLine(out, want) {
		t.Errorf("retry-export output %q, want %q", out, want)
	}
	res := b.Wait(run)
	if res.Status != "succeeded" || res.ExportAttempts != 2 || res.LoadAttempts != 1 || res.RowsLoaded != readings {
		t.Errorf("result: %s, %d exports, %d loads, %d rows; want succeeded, 2, 1, %d", res.Status, res.ExportAttempts, res.LoadAttempts, res.RowsLoaded, readings)
	}
	if diff := cmp.Diff([]string{manifestKey}, manifests()); diff != "" {
		t.Errorf("manifests (-want +got):\n%s", diff)
	}
	m, _ := r.manifest(manifestKey)
	// The export after the park numbers its attempts after the 2 before it.
	if m.RunID != run.GetRunID() || m.Attempt != 3 || len(m.Files) != 2 {
		t.Fatalf("manifest of run %s attempt %d with %d files; want run %s attempt 3, parquet + csv", m.RunID, m.Attempt, len(m.Files), run.GetRunID())
	}
	keys := r.checkFiles(m, windowKey)
	want := append([]string{manifestKey}, keys...)
	sort.Strings(want)
	if diff := cmp.Diff(want, r.list("exports/")); diff != "" {
		t.Errorf("objects (-want +got): the failed attempts' leftovers must be gone:\n%s", diff)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'succeeded' AND export_manifest_url = $2 AND error IS NULL`, run.GetRunID(), res.Features.ManifestURL); n != 1 {
		t.Error("dwh.etl_runs does not record the run as succeeded with its manifest")
	}
	if t.Failed() {
		t.Log(proxyLog(proxy))
	}
}
