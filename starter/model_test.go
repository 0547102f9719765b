package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

var modelLine = regexp.MustCompile(`(?m)^model +((logistic|stumps)-[0-9a-f]{12}) \(schema [0-9a-f]{12}, threshold [0-9.]+\)$`)

// TestModelLoop is week 4 end to end: train on the warehouse's features
// (twice: the same bytes), on the Parquet export (the same model), register
// it, and score a batch run with it; MODEL_PATH wins over the registry; a
// model whose feature schema no longer matches is refused while the run
// succeeds; the dashboard shows model vs rules.
func TestModelLoop(t *testing.T) {
	b := e2e.NewBatch(t, 6)
	all := batch.Window{Start: e2e.SeedFrom, End: e2e.SeedTo}
	first := b.Wait(b.Start(workflows.BatchInput{WindowStart: all.Start, WindowEnd: all.End}))
	if first.Scoring.Model != "" || first.ScoringError != "" {
		t.Fatalf("scored without a model: %+v %q", first.Scoring, first.ScoringError)
	}
	dir := t.TempDir()
	train := func(args ...string) (string, string) {
		t.Helper()
		code, out, errOut := starter(t, b.Env, append([]string{"model", "train"}, args...)...)
		if code != 0 {
			t.Fatalf("model train %v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		m := modelLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no model line in:\n%s", out)
		}
		return m[1], out
	}
	p1, p2, pq := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json"), filepath.Join(dir, "pq.json")
	version, report := train("--out", p1, "--register")
	again, report2 := train("--out", p2)
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if again != version || string(b1) != string(b2) || len(b1) == 0 {
		t.Errorf("a second training differs: %s vs %s, %d vs %d bytes", version, again, len(b1), len(b2))
	}
	// The same report, but for where it was saved and registered.
	cut := func(r string) string { return r[:strings.Index(r, "\nsaved")] }
	if cut(report) != cut(report2) {
		t.Errorf("a second training reports differently:\n%s\n%s", report, report2)
	}
	fromParquet, pqReport := train("--parquet", b.Stack.Config.Export.URL, "--out", pq)
	if fromParquet != version {
		t.Errorf("trained on the Parquet export: %s, want %s (the same rows)\n%s", fromParquet, version, pqReport)
	}
	features := b.Count(`SELECT count(*) FROM dwh.ml_features`)
	heldOut := b.Count(`SELECT count(*) FROM dwh.ml_features WHERE hour >= $1`, e2e.Window.Start)
	for _, want := range []string{
		"source         dwh.ml_features",
		"registered     " + version + " is the active model in dwh.anomaly_models",
		"held out (" + itoa(heldOut) + " rows, ",
		"rules (anomaly_count >= 1)",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if !strings.Contains(report, "feature rows   "+itoa(features)+" device-hours") {
		t.Errorf("report does not count the %d feature rows:\n%s", features, report)
	}

	// The registered model scores the next run of the held-out day.
	scored := b.Wait(b.Start(workflows.BatchInput{}))
	sc := scored.Scoring
	if sc.Model != version || sc.Source != "dwh.anomaly_models" || int64(sc.Hours) != heldOut || scored.ScoringError != "" {
		t.Fatalf("scoring %+v (%q), want %s over %d device-hours", sc, scored.ScoringError, version, heldOut)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.anomaly_predictions WHERE model_version = $1 AND run_id = $2`, version, scored.RunID); n != heldOut {
		t.Errorf("%d predictions, want %d", n, heldOut)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.anomaly_predictions WHERE flagged`); n != int64(sc.ModelFlagged) {
		t.Errorf("%d flagged predictions, the run reports %d", n, sc.ModelFlagged)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.ml_features WHERE hour >= $1 AND anomaly_count > 0`, e2e.Window.Start); n != int64(sc.RuleFlagged) {
		t.Errorf("%d hours the rules flagged, the run reports %d", n, sc.RuleFlagged)
	}

	app, err := newApp(context.Background(), os.Stdout, os.Stderr, envconfig.MapLookuper(b.Env))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := recentRuns(context.Background(), app, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantCell := version + ": " + itoa(int64(sc.ModelFlagged)) + " of " + itoa(heldOut) + " h flagged by the model, " +
		itoa(int64(sc.RuleFlagged)) + " by the rules, " + itoa(int64(sc.BothFlagged)) + " by both"
	if len(runs) != 2 || runs[0].Model != wantCell || runs[1].Model != "–" {
		t.Errorf("dashboard model cells: %+v, want %q then –", runs, wantCell)
	}

	// MODEL_PATH wins over the registered model.
	stumpsPath := filepath.Join(dir, "stumps.json")
	stumps, _ := train("--kind", "stumps", "--out", stumpsPath)
	b.Worker.Kill()
	b.Env["MODEL_PATH"] = stumpsPath
	b.StartWorker()
	if r := b.Wait(b.Start(workflows.BatchInput{})); r.Scoring.Model != stumps || r.Scoring.Source != stumpsPath {
		t.Errorf("with MODEL_PATH: scoring %+v (%q), want %s from %s", r.Scoring, r.ScoringError, stumps, stumpsPath)
	}

	// A feature column whose type changed (the export still writes it): the model is refused, the run
	// succeeds.
	if _, err := b.Stack.Timescale.Exec(context.Background(), `ALTER TABLE dwh.ml_features ALTER COLUMN device_type TYPE varchar(64)`); err != nil {
		t.Fatal(err)
	}
	refused := b.Wait(b.Start(workflows.BatchInput{}))
	if refused.Status != "succeeded" || refused.Scoring.Model != "" || !strings.Contains(refused.ScoringError, `"device_type"`) {
		t.Errorf("with device_type retyped: status %s, scoring %+v, error %q; want succeeded and device_type named", refused.Status, refused.Scoring, refused.ScoringError)
	}
	code, out, errOut := starter(t, b.Env, "model", "train", "--out", filepath.Join(dir, "c.json"))
	if code == 0 || !strings.Contains(errOut, `dwh.ml_features does not have the feature schema the model reads: column "device_type" is character varying, want text`) {
		t.Errorf("train on the retyped table: exit %d\n%s\n%s", code, out, errOut)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
