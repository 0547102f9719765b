package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RunStart is the first record of a batch run.
type RunStart struct {
	RunID, WorkflowID string
	From, To          time.Time
	TestMode          bool
	DeviceFilter      []string
	StartedAt         time.Time
}

// StartRun records a run as running. Retrying it is harmless.
func StartRun(ctx context.Context, ts *pgxpool.Pool, r RunStart) error {
	filter := r.DeviceFilter
	if filter == nil {
		filter = []string{}
	}
	_, err := ts.Exec(ctx, `
		INSERT INTO dwh.etl_runs (run_id, workflow_id, window_start, window_end, test_mode, device_filter, status, started_at)
		VALUES ($1, $2, $3, $4, $5, $6, 'running', $7)
		ON CONFLICT (run_id) DO NOTHING`,
		r.RunID, r.WorkflowID, r.From, r.To, r.TestMode, filter, r.StartedAt)
	return err
}

// MarkRun sets the status (and error) of a run.
func MarkRun(ctx context.Context, ts *pgxpool.Pool, runID, status, errMsg string) error {
	_, err := ts.Exec(ctx, `UPDATE dwh.etl_runs SET status = $2, error = NULLIF($3, '') WHERE run_id = $1`, runID, status, errMsg)
	return err
}

// WindowFigures describes the warehouse contents of a run's window, for the
// run's devices.
type WindowFigures struct {
	FactRows   int64
	Anomalies  int64
	DQScore    float64
	Checksum   string
	HourlyRows int64
}

// factChecksumColumns are the fact columns the checksum covers: all of them
// but run_id and loaded_at, which describe the load, not the data.
const factChecksumColumns = `f.device_id, f.time, f.value, f.battery, f.rssi, f.device_type, f.metric, f.unit,
	f.location_id, f.site, f.building, f.floor, f.zone, f.roll_count, f.roll_mean, f.roll_std, f.roll_min, f.roll_max,
	f.zscore, f.is_anomaly, f.anomaly_reasons, f.quality_score, f.quality_flags`

// MeasureWindow counts the facts of [from, to) of the devices staged for
// runKey, with an order-independent checksum: the sum of the first 60 bits
// of the md5 of every row's text, with the row count.
func MeasureWindow(ctx context.Context, ts *pgxpool.Pool, runKey string, from, to time.Time) (WindowFigures, error) {
	var w WindowFigures
	var dq *float64
	var sum string
	err := ts.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE f.is_anomaly), avg(f.quality_score),
		       coalesce(sum(('x' || substr(md5(ROW(`+factChecksumColumns+`)::text), 1, 15))::bit(60)::bigint), 0)::text
		FROM dwh.fact_sensor_readings_enriched f
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = f.device_id
		WHERE f.time >= $2 AND f.time < $3`, runKey, from, to).Scan(&w.FactRows, &w.Anomalies, &dq, &sum)
	if err != nil {
		return w, fmt.Errorf("measure window: %w", err)
	}
	if dq != nil {
		w.DQScore = *dq
	}
	w.Checksum = fmt.Sprintf("%d:%s", w.FactRows, sum)
	err = ts.QueryRow(ctx, `
		SELECT count(*) FROM dwh.fact_hourly_agg h
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = h.device_id
		WHERE h.bucket >= $2 AND h.bucket < $3`, runKey, from.Truncate(time.Hour), ceilHour(to)).Scan(&w.HourlyRows)
	if err != nil {
		return w, fmt.Errorf("measure hourly buckets: %w", err)
	}
	return w, nil
}

// RunFinish is the closing record of a run.
type RunFinish struct {
	RunID        string
	Status       string
	Devices      int
	Extracted    int64
	Rejects      int64
	Figures      WindowFigures
	PhaseMillis  map[string]int64
	Detection    any
	FeaturesPath string
	Error        string
	FinishedAt   time.Time
	WindowEnd    time.Time
}

// FinishRun closes the run row and, for a successful run, advances the
// batch watermark to the window end (never backwards: a backfill of an old
// window leaves it alone).
func FinishRun(ctx context.Context, ts *pgxpool.Pool, f RunFinish) error {
	phases, err := json.Marshal(f.PhaseMillis)
	if err != nil {
		return err
	}
	detection, err := json.Marshal(f.Detection)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, ts, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			UPDATE dwh.etl_runs SET status = $2, finished_at = $3, devices = $4, readings_extracted = $5,
			       rows_loaded = $6, rejects = $7, anomalies = $8, dq_score = $9, fact_checksum = $10,
			       phase_ms = $11, detection = $12, features_path = NULLIF($13, ''), error = NULLIF($14, '')
			WHERE run_id = $1`,
			f.RunID, f.Status, f.FinishedAt, f.Devices, f.Extracted, f.Figures.FactRows, f.Rejects, f.Figures.Anomalies,
			f.Figures.DQScore, f.Figures.Checksum, phases, detection, f.FeaturesPath, f.Error)
		if err != nil || f.Status != "succeeded" {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO dwh.etl_watermarks (pipeline, high_watermark, last_run_id, updated_at)
			VALUES ('batch', $1, $2, $3)
			ON CONFLICT (pipeline) DO UPDATE SET high_watermark = EXCLUDED.high_watermark,
			       last_run_id = EXCLUDED.last_run_id, updated_at = EXCLUDED.updated_at
			WHERE dwh.etl_watermarks.high_watermark < EXCLUDED.high_watermark`,
			f.WindowEnd, f.RunID, f.FinishedAt)
		return err
	})
}

// BatchWatermark returns the end of the latest window loaded, if any.
func BatchWatermark(ctx context.Context, ts *pgxpool.Pool) (time.Time, bool, error) {
	var t time.Time
	err := ts.QueryRow(ctx, `SELECT high_watermark FROM dwh.etl_watermarks WHERE pipeline = 'batch'`).Scan(&t)
	if err == pgx.ErrNoRows {
		return t, false, nil
	}
	return t, err == nil, err
}

// TruthEvent is a ground-truth anomaly as stored by the seeder.
type TruthEvent struct {
	DeviceID   string
	Kind       string
	Start, End time.Time
}

// GroundTruth returns the injected anomalies of the run's devices that lie
// inside [from, to). Events that straddle the window edges are left out:
// the run saw only part of them.
func GroundTruth(ctx context.Context, ts *pgxpool.Pool, runKey string, from, to time.Time) ([]TruthEvent, error) {
	rows, err := ts.Query(ctx, `
		SELECT g.device_id, g.kind, g.start_time, g.end_time FROM public.anomaly_ground_truth g
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = g.device_id
		WHERE g.start_time >= $2 AND g.end_time < $3
		ORDER BY g.device_id, g.start_time`, runKey, from, to)
	if err != nil {
		return nil, err
	}
	var out []TruthEvent
	var e TruthEvent
	_, err = pgx.ForEachRow(rows, []any{&e.DeviceID, &e.Kind, &e.Start, &e.End}, func() error { out = append(out, e); return nil })
	return out, err
}

// FlaggedReading is a fact row with an anomaly reason or a quality flag.
type FlaggedReading struct {
	DeviceID string
	Time     time.Time
	Reasons  []string
	Flags    []string
}

// FlaggedReadings streams the facts of the run's devices in [from, to) that
// carry an anomaly reason or a null flag: the detections to score.
func FlaggedReadings(ctx context.Context, ts *pgxpool.Pool, runKey string, from, to time.Time, fn func(FlaggedReading) error) error {
	rows, err := ts.Query(ctx, `
		SELECT f.device_id, f.time, f.anomaly_reasons, f.quality_flags FROM dwh.fact_sensor_readings_enriched f
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = f.device_id
		WHERE f.time >= $2 AND f.time < $3 AND (f.is_anomaly OR 'null' = ANY (f.quality_flags))
		ORDER BY f.device_id, f.time`, runKey, from, to)
	if err != nil {
		return err
	}
	var r FlaggedReading
	_, err = pgx.ForEachRow(rows, []any{&r.DeviceID, &r.Time, &r.Reasons, &r.Flags}, func() error { return fn(r) })
	return err
}
