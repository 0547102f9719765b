package warehouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RunStart is the first record of a batch run.
type RunStart struct {
	WorkflowID   string
	Window       batch.Window
	TestMode     bool
	DeviceFilter []string
	StartedAt    time.Time
}

// Start records the run as running. Retrying it is harmless.
func (r Run) Start(ctx context.Context, s RunStart) error {
	filter := s.DeviceFilter
	if filter == nil {
		filter = []string{}
	}
	_, err := r.TS.Exec(ctx, `
		INSERT INTO dwh.etl_runs (run_id, workflow_id, window_start, window_end, test_mode, device_filter, status, started_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (run_id) DO NOTHING`,
		r.ID, s.WorkflowID, s.Window.Start, s.Window.End, s.TestMode, filter, batch.StatusRunning, s.StartedAt)
	return err
}

// Mark sets the status (and error) of a run.
func (r Run) Mark(ctx context.Context, status batch.Status, errMsg string) error {
	_, err := r.TS.Exec(ctx, `UPDATE dwh.etl_runs SET status = $2, error = NULLIF($3, '') WHERE run_id = $1`, r.ID, status, errMsg)
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

// factSumsSelect aggregates the fact rows f into batch.FactSums: the
// count, the anomalies, the exact sum of the quality scores, and the
// order-independent checksum: the sum of the first 60 bits of the md5 of
// every row's text. The text depends on session settings: run it after
// checksumSettings. FactSummer computes the same in Go.
const factSumsSelect = `count(*), count(*) FILTER (WHERE f.is_anomaly), coalesce(sum(f.quality_score::numeric), 0)::text,
	coalesce(sum(` + factRowHash + `), 0)::text`

// factRowHash is a fact row's term of the checksum.
const factRowHash = `('x' || substr(md5(ROW(` + factChecksumColumns + `)::text), 1, 15))::bit(60)::bigint`

// SumFacts measures batch.FactSums of the fact rows (or rows of the same
// columns) that from, which names them f, and where select, with the
// session settings of the checksum pinned in tx, e.g.
// SumFacts(ctx, tx, "staging.enriched f", "run_key = $1", id).
func SumFacts(ctx context.Context, tx pgx.Tx, from, where string, args ...any) (batch.FactSums, error) {
	if _, err := tx.Exec(ctx, checksumSettings); err != nil {
		return batch.FactSums{}, err
	}
	return scanFactSums(tx.QueryRow(ctx, `SELECT `+factSumsSelect+` FROM `+from+` WHERE `+where, args...))
}

func scanFactSums(row pgx.Row) (batch.FactSums, error) {
	var s batch.FactSums
	err := row.Scan(&s.Rows, &s.Anomalies, &s.Quality, &s.Checksum)
	return s, err
}

// Measure returns the figures of the facts of w of the run's devices.
// loaded, when not nil, are the sums of every shard's facts the loads
// measured: the facts are not read again then. Without them Measure reads
// them.
func (r Run) Measure(ctx context.Context, w batch.Window, loaded *batch.FactSums) (WindowFigures, error) {
	var sums batch.FactSums
	if loaded != nil {
		sums = *loaded
	} else {
		err := pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
			var err error
			sums, err = SumFacts(ctx, tx, `dwh.fact_sensor_readings_enriched f JOIN staging.devices d ON d.run_key = $1 AND d.device_id = f.device_id`,
				`f.time >= $2 AND f.time < $3`, r.ID, w.Start, w.End)
			return err
		})
		if err != nil {
			return WindowFigures{}, fmt.Errorf("measure window: %w", err)
		}
	}
	fig := WindowFigures{FactRows: sums.Rows, Anomalies: sums.Anomalies, Checksum: sums.FactChecksum()}
	var err error
	if fig.DQScore, err = sums.DQScore(); err != nil {
		return fig, fmt.Errorf("measure window: %w", err)
	}
	err = r.TS.QueryRow(ctx, `
		SELECT count(*) FROM dwh.fact_hourly_agg h
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = h.device_id
		WHERE h.bucket >= $2 AND h.bucket < $3`, r.ID, w.Hours().Start, w.Hours().End).Scan(&fig.HourlyRows)
	if err != nil {
		return fig, fmt.Errorf("measure hourly buckets: %w", err)
	}
	return fig, nil
}

// RunFinish is the closing record of a run.
type RunFinish struct {
	Status            batch.Status
	Devices           int
	Extracted         int64
	Rejects           int64
	Figures           WindowFigures
	PhaseMillis       map[string]int64
	Detection         any
	FeaturesPath      string
	Error             string
	FinishedAt        time.Time
	WindowEnd         time.Time
	StagingRecoveries int
}

// Finish closes the run row and, for a successful run, advances the
// batch watermark to the window end (never backwards: a backfill of an old
// window leaves it alone).
func (r Run) Finish(ctx context.Context, f RunFinish) error {
	phases, err := json.Marshal(f.PhaseMillis)
	if err != nil {
		return err
	}
	detection, err := json.Marshal(f.Detection)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			UPDATE dwh.etl_runs SET status = $2, finished_at = $3, devices = $4, readings_extracted = $5,
			       rows_loaded = $6, rejects = $7, anomalies = $8, dq_score = $9, fact_checksum = $10,
			       phase_ms = $11, detection = $12, features_path = NULLIF($13, ''), error = NULLIF($14, ''),
			       staging_recoveries = $15
			WHERE run_id = $1`,
			r.ID, f.Status, f.FinishedAt, f.Devices, f.Extracted, f.Figures.FactRows, f.Rejects, f.Figures.Anomalies,
			f.Figures.DQScore, f.Figures.Checksum, phases, detection, f.FeaturesPath, f.Error, f.StagingRecoveries)
		if err != nil || f.Status != batch.StatusSucceeded {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO dwh.etl_watermarks (pipeline, high_watermark, last_run_id, updated_at)
			VALUES ('batch', $1, $2, $3)
			ON CONFLICT (pipeline) DO UPDATE SET high_watermark = EXCLUDED.high_watermark,
			       last_run_id = EXCLUDED.last_run_id, updated_at = EXCLUDED.updated_at
			WHERE dwh.etl_watermarks.high_watermark < EXCLUDED.high_watermark`,
			f.WindowEnd, r.ID, f.FinishedAt)
		return err
	})
}

// RunRow is a run as dwh.etl_runs records it, for the staging sweep.
type RunRow struct {
	RunID      string
	WorkflowID string
	Status     batch.Status
	StartedAt  time.Time
}

// RunsToSweep returns the runs the staging sweep has to look at: those
// whose row is still open (running or parked: only Temporal can tell
// whether their workflow is alive) and those among staged (run keys with
// staging partitions) whatever their status, in start order.
func RunsToSweep(ctx context.Context, ts *pgxpool.Pool, staged []string) ([]RunRow, error) {
	if staged == nil {
		staged = []string{}
	}
	rows, err := ts.Query(ctx, `
		SELECT run_id, workflow_id, status, started_at FROM dwh.etl_runs
		WHERE status = ANY($1) OR run_id = ANY($2)
		ORDER BY started_at, run_id`, openStatuses(), staged)
	if err != nil {
		return nil, fmt.Errorf("runs to sweep: %w", err)
	}
	var out []RunRow
	var row RunRow
	_, err = pgx.ForEachRow(rows, []any{&row.RunID, &row.WorkflowID, &row.Status, &row.StartedAt}, func() error {
		out = append(out, row)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("runs to sweep: %w", err)
	}
	return out, nil
}

func openStatuses() []string {
	out := make([]string, len(batch.OpenStatuses))
	for i, s := range batch.OpenStatuses {
		out[i] = string(s)
	}
	return out
}

// MarkClosed records that the run's workflow closed without closing its
// row: status (terminated) with the reason and when, unless the row was
// closed meanwhile (only open rows change). It reports whether it did.
func (r Run) MarkClosed(ctx context.Context, status batch.Status, reason string, at time.Time) (bool, error) {
	tag, err := r.TS.Exec(ctx, `UPDATE dwh.etl_runs SET status = $2, error = $3, finished_at = coalesce(finished_at, $4)
		WHERE run_id = $1 AND status = ANY($5)`, r.ID, status, reason, at, openStatuses())
	if err != nil {
		return false, fmt.Errorf("mark run %s %s: %w", r.ID, status, err)
	}
	return tag.RowsAffected() == 1, nil
}

// RunExport is where a run's feature export was published.
type RunExport struct {
	ManifestURL string
	FileURLs    []string
}

// RecordExport records where the run's features were published (on the
// run's row, which Start created). A retried export overwrites what an
// earlier attempt recorded.
func (r Run) RecordExport(ctx context.Context, e RunExport) error {
	files := e.FileURLs
	if files == nil {
		files = []string{}
	}
	_, err := r.TS.Exec(ctx, `UPDATE dwh.etl_runs SET export_manifest_url = NULLIF($2, ''), export_files = $3 WHERE run_id = $1`,
		r.ID, e.ManifestURL, files)
	if err != nil {
		return fmt.Errorf("record export: %w", err)
	}
	return nil
}

// Export returns where the run's features were published; ok is
// false when the run is unknown or exported nothing.
func (r Run) Export(ctx context.Context) (e RunExport, ok bool, err error) {
	var manifest *string
	err = r.TS.QueryRow(ctx, `SELECT export_manifest_url, export_files FROM dwh.etl_runs WHERE run_id = $1`, r.ID).Scan(&manifest, &e.FileURLs)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("look up the export of run %s: %w", r.ID, err)
	}
	if manifest == nil {
		return e, false, nil
	}
	e.ManifestURL = *manifest
	return e, true, nil
}

// TruthEvent is a ground-truth anomaly as stored by the seeder.
type TruthEvent struct {
	DeviceID   string
	Kind       string
	Start, End time.Time
}

// GroundTruth returns the injected anomalies of the run's devices of shard
// (every shard when it is negative) that lie inside w. Events that
// straddle the window edges are left out: the run saw only part of them.
func (r Run) GroundTruth(ctx context.Context, w batch.Window, shard int) ([]TruthEvent, error) {
	rows, err := r.TS.Query(ctx, `
		SELECT g.device_id, g.kind, g.start_time, g.end_time FROM public.anomaly_ground_truth g
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = g.device_id AND ($4 < 0 OR d.shard = $4)
		WHERE g.start_time >= $2 AND g.end_time < $3
		ORDER BY g.device_id, g.start_time`, r.ID, w.Start, w.End, shard)
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

// FlaggedReadings streams the facts of the run's devices of shard (every
// shard when it is negative) in w that carry an anomaly reason or a null
// flag: the detections to score.
func (r Run) FlaggedReadings(ctx context.Context, w batch.Window, shard int, fn func(FlaggedReading) error) error {
	rows, err := r.TS.Query(ctx, `
		SELECT f.device_id, f.time, f.anomaly_reasons, f.quality_flags FROM dwh.fact_sensor_readings_enriched f
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = f.device_id AND ($4 < 0 OR d.shard = $4)
		WHERE f.time >= $2 AND f.time < $3 AND (f.is_anomaly OR 'null' = ANY (f.quality_flags))
		ORDER BY f.device_id, f.time`, r.ID, w.Start, w.End, shard)
	if err != nil {
		return err
	}
	var f FlaggedReading
	_, err = pgx.ForEachRow(rows, []any{&f.DeviceID, &f.Time, &f.Reasons, &f.Flags}, func() error { return fn(f) })
	return err
}
