package warehouse

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Kinds of a reconciliation mismatch (dwh.reconciliation.kind).
const (
	MismatchDiffers       = "differs"        // both pipelines have the device-hour, with other figures
	MismatchMissingStream = "missing_stream" // only the batch facts have it
	MismatchMissingBatch  = "missing_batch"  // only the stream windows have it
)

// reconcileCTEs roll the stream's windows (of any length that divides an
// hour, so each lies in one hour) and the batch facts of [$1, $2) up per
// device and hour, and join them: each side's readings, readings with a
// value, exact sum (numeric, as the windows keep it), min and max. $1 and
// $2 are whole hours.
const reconcileCTEs = `
WITH s AS (
	SELECT device_id, date_bin(interval '1 hour', window_start, timestamptz '2000-01-01 00:00:00+00') AS hour,
	       sum(reading_count)::bigint AS n, sum(value_count)::bigint AS nv, sum(value_sum) AS sm, min(value_min) AS mn, max(value_max) AS mx
	FROM public.sensor_readings_stream_agg
	WHERE window_start >= $1 AND window_start < $2
	GROUP BY 1, 2
), b AS (
	SELECT device_id, date_bin(interval '1 hour', time, timestamptz '2000-01-01 00:00:00+00') AS hour,
	       count(*) AS n, count(value) AS nv, coalesce(sum(value::numeric), 0) AS sm, min(value) AS mn, max(value) AS mx
	FROM dwh.fact_sensor_readings_enriched
	WHERE time >= $1 AND time < $2
	GROUP BY 1, 2
), j AS (
	SELECT coalesce(s.device_id, b.device_id) AS device_id, coalesce(s.hour, b.hour) AS hour,
	       CASE WHEN s.device_id IS NULL THEN 'missing_stream' WHEN b.device_id IS NULL THEN 'missing_batch' ELSE 'differs' END AS kind,
	       s.n AS sn, b.n AS bn, s.nv AS snv, b.nv AS bnv, s.sm AS ssm, b.sm AS bsm, s.mn AS smn, b.mn AS bmn, s.mx AS smx, b.mx AS bmx,
	       s.device_id IS NULL OR b.device_id IS NULL OR s.n <> b.n OR s.nv <> b.nv OR s.sm <> b.sm
	         OR s.mn IS DISTINCT FROM b.mn OR s.mx IS DISTINCT FROM b.mx AS mismatch
	FROM s FULL JOIN b ON s.device_id = b.device_id AND s.hour = b.hour
)`

// DeviceHour is one device in one hour.
type DeviceHour struct {
	DeviceID string    `json:"device_id"`
	Hour     time.Time `json:"hour"`
}

// Comparison is what Reconcile found over a range.
type Comparison struct {
	// Compared are the device-hours either side has.
	Compared int64 `json:"compared"`
	// Mismatches are the device-hours recorded, by kind; Keys are they.
	Mismatches map[string]int64 `json:"mismatches"`
	Keys       []DeviceHour     `json:"-"`
}

// Reconcile compares the stream windows and the batch facts of [from, to)
// (whole hours) per device and hour, and records every device-hour where
// they differ in dwh.reconciliation under runID, with both sides' figures.
// Run again for the same runID and range (a retry), it records the same
// rows once.
func Reconcile(ctx context.Context, ts *pgxpool.Pool, runID string, from, to time.Time) (Comparison, error) {
	c := Comparison{Mismatches: map[string]int64{}}
	err := pgx.BeginFunc(ctx, ts, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, reconcileCTEs+` SELECT count(*) FROM j`, from, to).Scan(&c.Compared); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, reconcileCTEs+`
			INSERT INTO dwh.reconciliation AS r (run_id, device_id, hour, kind, stream_count, batch_count, stream_value_count, batch_value_count,
			       stream_sum, batch_sum, stream_min, batch_min, stream_max, batch_max)
			SELECT $3, device_id, hour, kind, sn, bn, snv, bnv, ssm, bsm, smn, bmn, smx, bmx FROM j WHERE mismatch
			ON CONFLICT (run_id, device_id, hour) DO UPDATE SET kind = excluded.kind,
			       stream_count = excluded.stream_count, batch_count = excluded.batch_count,
			       stream_value_count = excluded.stream_value_count, batch_value_count = excluded.batch_value_count,
			       stream_sum = excluded.stream_sum, batch_sum = excluded.batch_sum, stream_min = excluded.stream_min,
			       batch_min = excluded.batch_min, stream_max = excluded.stream_max, batch_max = excluded.batch_max
			RETURNING device_id, hour, kind`, from, to, runID)
		if err != nil {
			return err
		}
		var k DeviceHour
		var kind string
		_, err = pgx.ForEachRow(rows, []any{&k.DeviceID, &k.Hour, &kind}, func() error {
			k.Hour = k.Hour.UTC()
			c.Keys = append(c.Keys, k)
			c.Mismatches[kind]++
			return nil
		})
		return err
	})
	if err != nil {
		return Comparison{}, fmt.Errorf("reconcile [%s, %s): %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return c, nil
}

// StillMismatched counts the device-hours of keys whose stream windows and
// batch facts differ now.
func StillMismatched(ctx context.Context, ts *pgxpool.Pool, keys []DeviceHour) (int64, error) {
	var n int64
	for _, k := range keys {
		var mismatch bool
		err := ts.QueryRow(ctx, reconcileCTEs+` SELECT coalesce(bool_or(mismatch), false) FROM j WHERE device_id = $3`,
			k.Hour, k.Hour.Add(time.Hour), k.DeviceID).Scan(&mismatch)
		if err != nil {
			return 0, fmt.Errorf("reconcile %s %s: %w", k.DeviceID, k.Hour.Format(time.RFC3339), err)
		}
		if mismatch {
			n++
		}
	}
	return n, nil
}

// MarkRepaired records in tx that the stream windows of k were rebuilt by
// the reconciliation runID.
func MarkRepaired(ctx context.Context, tx pgx.Tx, runID string, k DeviceHour) error {
	_, err := tx.Exec(ctx, `UPDATE dwh.reconciliation SET repaired_at = now() WHERE run_id = $1 AND device_id = $2 AND hour = $3`,
		runID, k.DeviceID, k.Hour)
	return err
}
