package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/model"
)

func init() {
	register(command{Name: "model train", Summary: "train the anomaly model on dwh.ml_features with a time-based split; report it against the rules on the held-out days; save it as JSON (--register: the batch scores with it)", Run: runModelTrain})
}

func runModelTrain(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "model train", "[--from DAY] [--to DAY] [--test-days N] [--kind logistic|stumps] [--seed N] [--out FILE] [--parquet PATH] [--register]")
	from := fs.String("from", "", "first day of feature rows, YYYY-MM-DD (default: the first in dwh.ml_features)")
	to := fs.String("to", "", "day after the last, exclusive (default: after the last in dwh.ml_features)")
	testDays := fs.Int("test-days", 1, "the last N whole UTC days are held out for the report")
	kind := fs.String("kind", model.KindLogistic, "logistic (regression) or stumps (gradient-boosted decision stumps)")
	seed := fs.Int64("seed", 42, "seed, recorded with the model (training is deterministic)")
	out := fs.String("out", "", "model file to write (default: models/<version>.json)")
	parquetPath := fs.String("parquet", "", "train on a local Parquet export instead of dwh.ml_features: a features.parquet file, or a directory whose manifest.json files name them (such as EXPORT_URL's features/)")
	register := fs.Bool("register", false, "also store the model in dwh.anomaly_models as the active one: the batch scores each run with it (unless MODEL_PATH is set)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var f warehouse.FeatureFilter
	var err error
	if *from != "" {
		if f.From, err = parseDay("from", *from); err != nil {
			return err
		}
	}
	if *to != "" {
		if f.To, err = parseDay("to", *to); err != nil {
			return err
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return fmt.Errorf("%w: --from must be before --to", errUsage)
	}
	ts, err := app.Timescale(ctx)
	if err != nil {
		return err
	}
	var rows []model.Row
	source := "dwh.ml_features"
	if *parquetPath != "" {
		source = *parquetPath
		rows, err = parquetRows(*parquetPath, f)
		if err == nil {
			err = warehouse.MarkTruth(ctx, ts, rows)
		}
	} else {
		rows, err = databaseRows(ctx, ts, f)
	}
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("no feature rows in %s%s: run the batch first (starter batch run)", source, rangeText(f))
	}
	train, test, at, err := model.SplitLastDays(rows, *testDays)
	if err != nil {
		return err
	}
	if len(test) == 0 {
		return fmt.Errorf("no rows in the last %d days to hold out", *testDays)
	}
	m, err := model.Train(train, model.Options{Kind: *kind, Seed: *seed})
	if err != nil {
		return err
	}
	m.Training.SplitAt = at

	w := app.Out
	fmt.Fprintf(w, "source         %s\n", source)
	fmt.Fprintf(w, "feature rows   %d device-hours from %s to %s, %d with a seeded anomaly\n",
		len(rows), rows[0].Hour.Format(time.RFC3339), lastHour(rows).Add(time.Hour).Format(time.RFC3339), positives(rows))
	fmt.Fprintf(w, "split at       %s: %d training rows (%d positive), %d held out (%d positive)\n",
		at.Format(time.RFC3339), len(train), positives(train), len(test), positives(test))
	fmt.Fprintf(w, "model          %s (schema %.12s, threshold %.4f)\n\n", m.Version, m.SchemaHash, m.Threshold)
	modelReport(w, m, test)

	data, err := model.Encode(m)
	if err != nil {
		return err
	}
	path := *out
	if path == "" {
		path = filepath.Join("models", m.Version+".json")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsaved          %s\n", path)
	if *register {
		if err := warehouse.RegisterModel(ctx, ts, m, data); err != nil {
			return fmt.Errorf("register the model: %w", err)
		}
		fmt.Fprintf(w, "registered     %s is the active model in dwh.anomaly_models: the batch scores each run with it\n", m.Version)
	}
	return nil
}

// modelReport prints the model and the rule-based detector side by side on the
// held-out rows, against the seeded ground truth.
func modelReport(w io.Writer, m *model.Model, test []model.Row) {
	scores := make([]float64, len(test))
	rules := make([]float64, len(test))
	truth := make([]bool, len(test))
	for i := range test {
		scores[i], rules[i], truth[i] = m.Score(&test[i]), model.RuleScore(&test[i]), test[i].Truth
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "held out (%d rows, %d positive)\tprecision\trecall\tPR-AUC\tflagged\tTP\tFP\tFN\n", len(test), positives(test))
	for _, d := range []struct {
		name string
		m    model.Metrics
	}{
		{"model " + m.Version, model.Evaluate(scores, truth, m.Threshold)},
		{"rules (anomaly_count >= 1)", model.Evaluate(rules, truth, model.RuleThreshold)},
	} {
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%d\t%d\t%d\t%d\n", d.name, d.m.Precision, d.m.Recall, d.m.PRAUC, d.m.TP+d.m.FP, d.m.TP, d.m.FP, d.m.FN)
	}
	tw.Flush()
}

// databaseRows reads the feature rows of dwh.ml_features, with their
// ground truth, after checking the table has the columns the model reads.
func databaseRows(ctx context.Context, ts *pgxpool.Pool, f warehouse.FeatureFilter) ([]model.Row, error) {
	cols, err := warehouse.FeatureSchema(ctx, ts, model.Inputs())
	if err != nil {
		return nil, err
	}
	if err := checkInputs("dwh.ml_features", cols); err != nil {
		return nil, err
	}
	return warehouse.FeatureRows(ctx, ts, f)
}

// parquetRows reads the feature rows of a local Parquet export in f's
// range, after checking each file has the columns the model reads. A
// device-hour in two files (windows exported twice) counts once.
func parquetRows(path string, f warehouse.FeatureFilter) ([]model.Row, error) {
	files, err := export.LocalParquetFiles(path)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var rows []model.Row
	for _, file := range files {
		have, err := export.ParquetColumns(file.Path)
		if err != nil {
			return nil, err
		}
		var cols []model.Column
		for _, c := range model.Inputs() {
			if t, ok := have[c.Name]; ok {
				cols = append(cols, model.Column{Name: c.Name, Type: t})
			}
		}
		if err := checkInputs(file.Path, cols); err != nil {
			return nil, err
		}
		frs, err := export.ReadParquet(file.Path)
		if err != nil {
			return nil, err
		}
		for _, r := range frs {
			h := r.Hour.UTC()
			key := r.DeviceID + "\x00" + h.Format(time.RFC3339)
			if seen[key] || (!f.From.IsZero() && h.Before(f.From)) || (!f.To.IsZero() && !h.Before(f.To)) {
				continue
			}
			seen[key] = true
			rows = append(rows, model.Row{DeviceID: r.DeviceID, Hour: h, DeviceType: r.DeviceType, Zone: r.Zone,
				HourOfDay: r.HourOfDay, DayOfWeek: r.DayOfWeek, Count: r.Count, Mean: r.Mean, Std: r.Std, Min: r.Min, Max: r.Max,
				Slope: r.Slope, AnomalyCount: r.AnomalyCount, MeanQuality: r.MeanQuality, PrevHourMean: r.PrevHourMean, RunID: file.RunID})
		}
	}
	return rows, nil
}

// checkInputs refuses a source without the columns (and types) the model
// reads, naming what differs.
func checkInputs(source string, cols []model.Column) error {
	want := model.Inputs()
	if model.SchemaHash(cols) == model.SchemaHash(want) {
		return nil
	}
	have := map[string]string{}
	for _, c := range cols {
		have[c.Name] = c.Type
	}
	var diffs []string
	for _, c := range want {
		switch t, ok := have[c.Name]; {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("column %q is missing", c.Name))
		case t != c.Type:
			diffs = append(diffs, fmt.Sprintf("column %q is %s, want %s", c.Name, t, c.Type))
		}
	}
	return fmt.Errorf("%s does not have the feature schema the model reads: %s", source, strings.Join(diffs, "; "))
}

func positives(rows []model.Row) int {
	n := 0
	for _, r := range rows {
		if r.Truth {
			n++
		}
	}
	return n
}

func lastHour(rows []model.Row) time.Time {
	last := rows[0].Hour
	for _, r := range rows {
		if r.Hour.After(last) {
			last = r.Hour
		}
	}
	return last
}

func rangeText(f warehouse.FeatureFilter) string {
	switch {
	case !f.From.IsZero() && !f.To.IsZero():
		return fmt.Sprintf(" in [%s, %s)", f.From.Format(time.DateOnly), f.To.Format(time.DateOnly))
	case !f.From.IsZero():
		return " from " + f.From.Format(time.DateOnly)
	case !f.To.IsZero():
		return " before " + f.To.Format(time.DateOnly)
	}
	return ""
}
