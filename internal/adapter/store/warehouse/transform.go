package warehouse

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// ShardDevice is one staged device with its type and location.
type ShardDevice struct {
	Device   reading.Device
	Type     reading.DeviceType
	Location reading.Location
}

// ShardDevices returns the staged devices of one shard whose id sorts after
// after ("" for all), in id order, with their type and location. Devices
// whose type or location is unknown are left out: RecordRejects accounts
// for their readings.
func (r Run) ShardDevices(ctx context.Context, shard int, after string) ([]ShardDevice, error) {
	rows, err := r.TS.Query(ctx, `
		SELECT d.device_id, d.type_code, d.location_id, d.model, d.firmware, d.status, d.installed_at, d.updated_at,
		       t.metric, t.unit, t.valid_min, t.valid_max, t.max_rate_per_min, t.expected_interval_s,
		       l.site, l.building, l.floor, l.zone, l.latitude, l.longitude, l.timezone, l.updated_at
		FROM staging.devices d
		JOIN staging.device_types t ON t.run_key = d.run_key AND t.code = d.type_code
		JOIN staging.locations l ON l.run_key = d.run_key AND l.location_id = d.location_id
		WHERE d.run_key = $1 AND d.shard = $2 AND d.device_id > $3
		ORDER BY d.device_id`, r.ID, shard, after)
	if err != nil {
		return nil, fmt.Errorf("shard %d devices: %w", shard, err)
	}
	var out []ShardDevice
	var sd ShardDevice
	var intervalS int
	_, err = pgx.ForEachRow(rows, []any{
		&sd.Device.ID, &sd.Device.TypeCode, &sd.Device.LocationID, &sd.Device.Model, &sd.Device.Firmware, &sd.Device.Status, &sd.Device.InstalledAt, &sd.Device.UpdatedAt,
		&sd.Type.Metric, &sd.Type.Unit, &sd.Type.ValidMin, &sd.Type.ValidMax, &sd.Type.MaxRatePerMin, &intervalS,
		&sd.Location.Site, &sd.Location.Building, &sd.Location.Floor, &sd.Location.Zone, &sd.Location.Latitude, &sd.Location.Longitude, &sd.Location.Timezone, &sd.Location.UpdatedAt,
	}, func() error {
		sd.Type.Code = sd.Device.TypeCode
		sd.Type.ExpectedInterval = time.Duration(intervalS) * time.Second
		sd.Location.ID = sd.Device.LocationID
		out = append(out, sd)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d devices: %w", shard, err)
	}
	return out, nil
}

// EachStagedReading streams the staged readings of one device in w
// in time order.
func (r Run) EachStagedReading(ctx context.Context, deviceID string, w batch.Window, fn func(reading.Reading) error) error {
	// A block never crosses a clock hour (StageReadings), so the blocks
	// holding readings of w start in w or in the hour it starts in.
	rows, err := r.TS.Query(ctx, `
		SELECT times, vals, batteries, rssis FROM staging.readings
		WHERE run_key = $1 AND device_id = $2 AND range_start >= $3 AND range_start < $4
		ORDER BY range_start`, r.ID, deviceID, batch.HourFloor(w.Start), w.End)
	if err != nil {
		return fmt.Errorf("readings of %s: %w", deviceID, err)
	}
	defer rows.Close()
	for _, f := range rows.FieldDescriptions() {
		if f.Format != pgx.BinaryFormatCode {
			return fmt.Errorf("readings of %s: column %s in text format", deviceID, f.Name)
		}
	}
	rd := reading.Reading{DeviceID: deviceID}
	blk := blockPool.Get().(*readingBlock)
	defer blockPool.Put(blk)
	for rows.Next() {
		if err := blk.decode(rows.RawValues()); err != nil {
			return fmt.Errorf("readings of %s: %w: %w", deviceID, ErrInvalidStagedReadings, err)
		}
		for _, i := range blk.order {
			rd.Time = blk.time(i)
			if rd.Time.Before(w.Start) || !rd.Time.Before(w.End) {
				continue
			}
			rd.Value, rd.ValueValid = blk.value[i], blk.valueOK[i]
			rd.Battery, rd.RSSI = blk.battery[i], blk.rssi[i]
			if err := fn(rd); err != nil {
				return err
			}
		}
	}
	return rows.Err()
}

// EnrichedColumns are the columns of staging.enriched after run_key and
// shard, in the order CopyTransformed writes them; the fact table has the same.
var EnrichedColumns = []string{
	"time", "device_id", "value", "battery", "rssi",
	"device_type", "metric", "unit", "location_id", "site", "building", "floor", "zone",
	"roll_count", "roll_mean", "roll_std", "roll_min", "roll_max", "zscore",
	"is_anomaly", "anomaly_reasons", "quality_score", "quality_flags",
}

// ClearEnriched deletes the staged transform output of a shard for devices
// sorting after after: what an interrupted attempt wrote past its last
// heartbeat, and its staged device-hours (CopyFeatureHours). It returns
// ErrStagingLost when the run's marker is gone: the devices up to after
// are gone with it.
func (r Run) ClearEnriched(ctx context.Context, shard int, after string) error {
	return pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		if err := r.checkStaging(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM staging.enriched WHERE run_key = $1 AND shard = $2 AND device_id > $3`, r.ID, shard, after); err != nil {
			return err
		}
		return r.clearStagedHours(ctx, tx, shard, after)
	})
}

// clearStagedHours deletes the staged device-hours of a shard for devices
// sorting after after (CopyFeatureHours, CopyHourly), with the output they
// were accumulated from.
func (r Run) clearStagedHours(ctx context.Context, tx pgx.Tx, shard int, after string) error {
	for _, table := range []string{"staging.feature_hours", "staging.hourly"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE run_key = $1 AND shard = $2 AND device_id > $3`, r.ID, shard, after); err != nil {
			return err
		}
	}
	return nil
}

// ClearFacts is ClearEnriched for a transform that writes the facts
// itself (CopyTransformed with direct): it deletes the facts of w that
// this run wrote for the devices of shard sorting after after, and their
// staged device-hours.
func (r Run) ClearFacts(ctx context.Context, shard int, after string, w batch.Window) error {
	return pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		if err := r.checkStaging(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			DELETE FROM dwh.fact_sensor_readings_enriched f USING staging.devices d
			WHERE d.run_key = $1 AND d.shard = $2 AND d.device_id > $3 AND f.device_id = d.device_id
			  AND f.time >= $4 AND f.time < $5 AND f.run_id = $1`, r.ID, shard, after, w.Start, w.End); err != nil {
			return err
		}
		return r.clearStagedHours(ctx, tx, shard, after)
	})
}

// ShardHasFacts reports whether the fact table holds a row of w for a
// staged device of shard. Without one, loading the shard is a first load:
// every row it writes is new.
func (r Run) ShardHasFacts(ctx context.Context, q querier, shard int, w batch.Window) (bool, error) {
	var has bool
	err := q.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM dwh.fact_sensor_readings_enriched f
		JOIN staging.devices d ON d.run_key = $1 AND d.shard = $2 AND d.device_id = f.device_id
		WHERE f.time >= $3 AND f.time < $4)`, r.ID, shard, w.Start, w.End).Scan(&has)
	if err != nil {
		return false, fmt.Errorf("facts of shard %d: %w", shard, err)
	}
	return has, nil
}

// featureHourColumns are the columns of staging.feature_hours after
// run_key and shard.
var featureHourColumns = []string{"device_id", "hour", "device_type", "zone", "count", "value_count", "anomaly_count", "quality_sum",
	"value_mean", "value_m2", "value_min", "value_max", "minute_mean", "minute_m2", "minute_value_co"}

// CopyFeatureHours stages the device-hours of one shard's transform output
// (features.Aggregator over the rows CopyTransformed wrote) within tx.
func (r Run) CopyFeatureHours(ctx context.Context, tx pgx.Tx, shard int, hours []features.HourAgg) (int64, error) {
	cols := append([]string{"run_key", "shard"}, featureHourColumns...)
	vals := make([]any, 0, len(cols))
	return tx.CopyFrom(ctx, pgx.Identifier{"staging", "feature_hours"}, cols, pgx.CopyFromSlice(len(hours), func(i int) ([]any, error) {
		h := &hours[i]
		s := h.State()
		return append(vals[:0], r.ID, shard, h.DeviceID, h.Hour, h.DeviceType, h.Zone, s.Count, s.ValueCount, s.AnomalyCount, s.QualitySum,
			s.ValueMean, s.ValueM2, s.ValueMin, s.ValueMax, s.MinuteMean, s.MinuteM2, s.MinuteValueCo), nil
	}))
}
