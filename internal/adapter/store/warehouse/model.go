package warehouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/domain/model"
)

// FeatureSchema is the schema of dwh.ml_features as the model sees it: the
// columns of want that the table has, with their types, in want's order. A
// dropped or retyped column shows as a difference model.CheckSchema names.
func FeatureSchema(ctx context.Context, ts *pgxpool.Pool, want []model.Column) ([]model.Column, error) {
	rows, err := ts.Query(ctx, `
		SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = 'dwh' AND table_name = 'ml_features'`)
	if err != nil {
		return nil, fmt.Errorf("read the schema of dwh.ml_features: %w", err)
	}
	types := map[string]string{}
	var name, typ string
	if _, err := pgx.ForEachRow(rows, []any{&name, &typ}, func() error { types[name] = typ; return nil }); err != nil {
		return nil, fmt.Errorf("read the schema of dwh.ml_features: %w", err)
	}
	var out []model.Column
	for _, c := range want {
		if t, ok := types[c.Name]; ok {
			out = append(out, model.Column{Name: c.Name, Type: t})
		}
	}
	return out, nil
}

// FeatureFilter selects feature rows: hours in [From, To) (a zero bound is
// open) and, when RunKey is set, only the devices staged by that run.
type FeatureFilter struct {
	From, To time.Time
	RunKey   string
}

// FeatureRows reads device-hours of dwh.ml_features in (device, hour)
// order, each with its ground truth: whether an anomaly the seeder
// injected (public.anomaly_ground_truth) overlaps the hour.
func FeatureRows(ctx context.Context, ts *pgxpool.Pool, f FeatureFilter) ([]model.Row, error) {
	rows, err := ts.Query(ctx, `
		SELECT m.device_id, m.hour, m.device_type, m.zone, m.hour_of_day, m.day_of_week, m.count,
		       m.mean, m.std, m.min, m.max, m.slope, m.anomaly_count, m.mean_quality, m.prev_hour_mean, m.run_id,
		       EXISTS (SELECT 1 FROM public.anomaly_ground_truth g
		               WHERE g.device_id = m.device_id AND g.start_time < m.hour + interval '1 hour' AND g.end_time >= m.hour)
		FROM dwh.ml_features m
		WHERE ($1::timestamptz IS NULL OR m.hour >= $1) AND ($2::timestamptz IS NULL OR m.hour < $2)
		  AND ($3 = '' OR m.device_id IN (SELECT device_id FROM staging.devices WHERE run_key = $3))
		ORDER BY m.device_id, m.hour`, nullTime(f.From), nullTime(f.To), f.RunKey)
	if err != nil {
		return nil, fmt.Errorf("read dwh.ml_features: %w", err)
	}
	var out []model.Row
	var r model.Row
	var hod, dow int16
	_, err = pgx.ForEachRow(rows, []any{&r.DeviceID, &r.Hour, &r.DeviceType, &r.Zone, &hod, &dow, &r.Count,
		&r.Mean, &r.Std, &r.Min, &r.Max, &r.Slope, &r.AnomalyCount, &r.MeanQuality, &r.PrevHourMean, &r.RunID, &r.Truth},
		func() error {
			r.HourOfDay, r.DayOfWeek = int(hod), int(dow)
			r.Hour = r.Hour.UTC()
			out = append(out, r)
			r = model.Row{} // the pointers of the NULL-able columns are the row's own
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read dwh.ml_features: %w", err)
	}
	return out, nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// Prediction is the model's score of one device-hour.
type Prediction struct {
	DeviceID      string
	Hour          time.Time
	Score         float64
	Flagged       bool
	RuleAnomalies int
}

// SavePredictions upserts the predictions of one model version, made by
// run, in one statement.
func SavePredictions(ctx context.Context, ts *pgxpool.Pool, version, runID string, preds []Prediction) error {
	if len(preds) == 0 {
		return nil
	}
	devices := make([]string, len(preds))
	hours := make([]time.Time, len(preds))
	scores := make([]float64, len(preds))
	flagged := make([]bool, len(preds))
	rules := make([]int32, len(preds))
	for i, p := range preds {
		devices[i], hours[i], scores[i], flagged[i], rules[i] = p.DeviceID, p.Hour, p.Score, p.Flagged, int32(p.RuleAnomalies)
	}
	_, err := ts.Exec(ctx, `
		INSERT INTO dwh.anomaly_predictions (device_id, hour, model_version, score, flagged, rule_anomalies, run_id)
		SELECT d, h, $6, s, f, r, $7 FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::bool[], $5::int[]) AS u(d, h, s, f, r)
		ON CONFLICT (device_id, hour, model_version) DO UPDATE
		SET score = EXCLUDED.score, flagged = EXCLUDED.flagged, rule_anomalies = EXCLUDED.rule_anomalies,
		    run_id = EXCLUDED.run_id, scored_at = now()`,
		devices, hours, scores, flagged, rules, version, runID)
	if err != nil {
		return fmt.Errorf("write dwh.anomaly_predictions: %w", err)
	}
	return nil
}

// RegisterModel stores m (encoded as b) and makes it the active model,
// in one transaction: the batch scores with it from its next run.
func RegisterModel(ctx context.Context, ts *pgxpool.Pool, m *model.Model, b []byte) error {
	return pgx.BeginFunc(ctx, ts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE dwh.anomaly_models SET active = false WHERE active AND version <> $1`, m.Version); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO dwh.anomaly_models (version, kind, schema_hash, model, active) VALUES ($1, $2, $3, $4, true)
			ON CONFLICT (version) DO UPDATE SET model = EXCLUDED.model, active = true, registered_at = now()`,
			m.Version, m.Kind, m.SchemaHash, string(b))
		return err
	})
}

// ActiveModel is the registered active model, or nil when there is none.
func ActiveModel(ctx context.Context, ts *pgxpool.Pool) (*model.Model, error) {
	var b []byte
	err := ts.QueryRow(ctx, `SELECT model::text FROM dwh.anomaly_models WHERE active`).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the active model: %w", err)
	}
	m, err := model.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("the active model in dwh.anomaly_models: %w", err)
	}
	return m, nil
}

// MarkTruth sets Truth on the rows whose hour an anomaly the seeder
// injected overlaps (public.anomaly_ground_truth), for rows read from
// elsewhere than dwh.ml_features (a Parquet export).
func MarkTruth(ctx context.Context, ts *pgxpool.Pool, rows []model.Row) error {
	if len(rows) == 0 {
		return nil
	}
	from, to := rows[0].Hour, rows[0].Hour
	for _, r := range rows {
		from, to = minTime(from, r.Hour), maxTime(to, r.Hour)
	}
	q, err := ts.Query(ctx, `SELECT device_id, start_time, end_time FROM public.anomaly_ground_truth
		WHERE start_time < $2 AND end_time >= $1`, from, to.Add(time.Hour))
	if err != nil {
		return fmt.Errorf("read public.anomaly_ground_truth: %w", err)
	}
	type span struct{ start, end time.Time }
	events := map[string][]span{}
	var dev string
	var sp span
	if _, err := pgx.ForEachRow(q, []any{&dev, &sp.start, &sp.end}, func() error {
		events[dev] = append(events[dev], sp)
		return nil
	}); err != nil {
		return fmt.Errorf("read public.anomaly_ground_truth: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		r.Truth = false
		for _, e := range events[r.DeviceID] {
			if e.start.Before(r.Hour.Add(time.Hour)) && !e.end.Before(r.Hour) {
				r.Truth = true
				break
			}
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
