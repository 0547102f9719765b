package warehouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/quality"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// EachDeviceFacts streams the facts of the run's devices in w, one
// device at a time in id order: fn gets a device's facts (in time order) as
// the enriched readings the feature builder consumes. Only one device is in
// memory at once.
func (r Run) EachDeviceFacts(ctx context.Context, w batch.Window, fn func(deviceID string, facts []transform.Enriched) error) error {
	rows, err := r.TS.Query(ctx, `
		SELECT f.device_id, f.time, f.value, f.device_type, f.zone, f.is_anomaly, f.quality_score, f.quality_flags
		FROM dwh.fact_sensor_readings_enriched f
		JOIN staging.devices d ON d.run_key = $1 AND d.device_id = f.device_id
		WHERE f.time >= $2 AND f.time < $3
		ORDER BY f.device_id, f.time`, r.ID, w.Start, w.End)
	if err != nil {
		return fmt.Errorf("read facts: %w", err)
	}
	defer rows.Close()
	var (
		cur   string
		batch []transform.Enriched
		value *float64
		flags []string
	)
	for rows.Next() {
		var e transform.Enriched
		if err := rows.Scan(&e.DeviceID, &e.Time, &value, &e.TypeCode, &e.Zone, &e.Anomaly, &e.Quality, &flags); err != nil {
			return fmt.Errorf("read facts: %w", err)
		}
		if value != nil {
			e.Value, e.ValueValid = *value, true
		}
		if e.FlagSet, err = quality.ParseFlags(flags); err != nil {
			return fmt.Errorf("fact %s %s: %w", e.DeviceID, e.Time, err)
		}
		if e.DeviceID != cur && len(batch) > 0 {
			if err := fn(cur, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		cur = e.DeviceID
		batch = append(batch, e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read facts: %w", err)
	}
	if len(batch) > 0 {
		return fn(cur, batch)
	}
	return nil
}

// EachDeviceHours calls fn with the device-hours of w of each of the run's
// devices that has readings in it, one device at a time in id order, as
// features.Aggregator accumulates them from the device's facts (the
// order and the device-hours of EachDeviceFacts): those before
// transformed.Start from the facts, those of transformed from the
// transform's staged output (staging.feature_hours). They are the same
// only when the facts of transformed are exactly that output.
func (r Run) EachDeviceHours(ctx context.Context, w, transformed batch.Window, fn func(deviceID string, hours []features.HourAgg) error) error {
	before := map[string][]features.HourAgg{}
	err := r.EachDeviceFacts(ctx, batch.Window{Start: w.Start, End: transformed.Start}, func(deviceID string, facts []transform.Enriched) error {
		agg := features.NewAggregator()
		for i := range facts {
			agg.Add(&facts[i])
		}
		before[deviceID] = agg.Hours()
		return nil
	})
	if err != nil {
		return err
	}
	var devices []string
	rows, err := r.TS.Query(ctx, `SELECT device_id FROM staging.devices WHERE run_key = $1 ORDER BY device_id`, r.ID)
	if err != nil {
		return fmt.Errorf("read staged devices: %w", err)
	}
	if devices, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return fmt.Errorf("read staged devices: %w", err)
	}
	// The staged hours come in the devices' order: both are sorted by
	// the server.
	rows, err = r.TS.Query(ctx, `
		SELECT `+strings.Join(featureHourColumns, ", ")+` FROM staging.feature_hours
		WHERE run_key = $1 AND hour >= $2 AND hour < $3 ORDER BY device_id, hour`, r.ID, transformed.Start, transformed.End)
	if err != nil {
		return fmt.Errorf("read staged device-hours: %w", err)
	}
	defer rows.Close()
	var (
		id, deviceType, zone string
		hour                 time.Time
		st                   features.HourState
		pending              bool // a row read and not yet taken
	)
	next := func() error {
		pending = rows.Next()
		if !pending {
			return rows.Err()
		}
		return rows.Scan(&id, &hour, &deviceType, &zone, &st.Count, &st.ValueCount, &st.AnomalyCount, &st.QualitySum,
			&st.ValueMean, &st.ValueM2, &st.ValueMin, &st.ValueMax, &st.MinuteMean, &st.MinuteM2, &st.MinuteValueCo)
	}
	if err := next(); err != nil {
		return fmt.Errorf("read staged device-hours: %w", err)
	}
	for _, d := range devices {
		hours := before[d]
		for pending && id == d {
			hours = append(hours, features.HourAggOf(id, deviceType, zone, hour, st))
			if err := next(); err != nil {
				return fmt.Errorf("read staged device-hours: %w", err)
			}
		}
		if len(hours) == 0 {
			continue
		}
		if err := fn(d, hours); err != nil {
			return err
		}
	}
	if pending {
		return fmt.Errorf("read staged device-hours: %s is not a staged device of the run, or out of order", id)
	}
	return nil
}

// FeatureSink upserts feature rows into dwh.ml_features within one
// transaction: rows are copied into a temporary table as they come and
// merged on Commit, so memory stays bounded and the table changes at once.
type FeatureSink struct {
	tx  pgx.Tx
	run Run
}

// NewFeatureSink begins the transaction.
func (r Run) NewFeatureSink(ctx context.Context) (*FeatureSink, error) {
	tx, err := r.TS.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE ml_features_in (LIKE dwh.ml_features) ON COMMIT DROP`); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return &FeatureSink{tx: tx, run: r}, nil
}

var featureColumns = []string{"device_id", "hour", "device_type", "zone", "hour_of_day", "day_of_week", "count",
	"mean", "std", "min", "max", "slope", "anomaly_count", "mean_quality", "prev_hour_mean", "label", "run_id"}

// Add copies rows into the transaction.
func (s *FeatureSink) Add(ctx context.Context, rows []features.Row) error {
	if len(rows) == 0 {
		return nil
	}
	data := make([][]any, len(rows))
	for i := range rows {
		r := &rows[i]
		data[i] = []any{r.DeviceID, r.Hour, r.DeviceType, r.Zone, int16(r.HourOfDay), int16(r.DayOfWeek), r.Count,
			r.Mean, r.Std, r.Min, r.Max, r.Slope, r.AnomalyCount, r.MeanQuality, r.PrevHourMean, r.Label, s.run.ID}
	}
	_, err := s.tx.CopyFrom(ctx, pgx.Identifier{"ml_features_in"}, featureColumns, pgx.CopyFromRows(data))
	return err
}

// Commit merges the rows into dwh.ml_features (rows already identical are
// left alone) and returns how many changed. The facts were read joined with
// the run's staged devices: nothing is merged unless the run's staging
// marker is still there, which proves those reads saw all of them.
func (s *FeatureSink) Commit(ctx context.Context) (int64, error) {
	defer s.tx.Rollback(ctx)
	if err := s.run.checkStaging(ctx, s.tx); err != nil {
		return 0, err
	}
	var set, oldCols, newCols []string
	for _, c := range featureColumns[2:] {
		if c == "run_id" {
			continue
		}
		set = append(set, c+" = EXCLUDED."+c)
		oldCols = append(oldCols, "m."+c)
		newCols = append(newCols, "EXCLUDED."+c)
	}
	tag, err := s.tx.Exec(ctx, `
		INSERT INTO dwh.ml_features AS m (`+strings.Join(featureColumns, ", ")+`)
		SELECT `+strings.Join(featureColumns, ", ")+` FROM ml_features_in
		ON CONFLICT (device_id, hour) DO UPDATE SET `+strings.Join(set, ", ")+`, run_id = EXCLUDED.run_id
		WHERE (`+strings.Join(oldCols, ", ")+`) IS DISTINCT FROM (`+strings.Join(newCols, ", ")+`)`)
	if err != nil {
		return 0, fmt.Errorf("merge ml_features: %w", err)
	}
	return tag.RowsAffected(), s.tx.Commit(ctx)
}

// Rollback abandons the transaction.
func (s *FeatureSink) Rollback(ctx context.Context) { s.tx.Rollback(ctx) }
