package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/reading"
	"github.com/iot-etl/iot-etl/internal/transform"
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
func ShardDevices(ctx context.Context, ts *pgxpool.Pool, runKey string, shard int, after string) ([]ShardDevice, error) {
	rows, err := ts.Query(ctx, `
		SELECT d.device_id, d.type_code, d.location_id, d.model, d.firmware, d.status, d.installed_at, d.updated_at,
		       t.metric, t.unit, t.valid_min, t.valid_max, t.max_rate_per_min, t.expected_interval_s,
		       l.site, l.building, l.floor, l.zone, l.latitude, l.longitude, l.timezone, l.updated_at
		FROM staging.devices d
		JOIN staging.device_types t ON t.run_key = d.run_key AND t.code = d.type_code
		JOIN staging.locations l ON l.run_key = d.run_key AND l.location_id = d.location_id
		WHERE d.run_key = $1 AND d.shard = $2 AND d.device_id > $3
		ORDER BY d.device_id`, runKey, shard, after)
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

// EachStagedReading streams the staged readings of one device in [from, to)
// in time order.
func EachStagedReading(ctx context.Context, ts *pgxpool.Pool, runKey, deviceID string, from, to time.Time, fn func(reading.Reading) error) error {
	rows, err := ts.Query(ctx, `
		SELECT time, value, battery, rssi FROM staging.readings
		WHERE run_key = $1 AND device_id = $2 AND time >= $3 AND time < $4
		ORDER BY time`, runKey, deviceID, from, to)
	if err != nil {
		return fmt.Errorf("readings of %s: %w", deviceID, err)
	}
	defer rows.Close()
	r := reading.Reading{DeviceID: deviceID}
	var value, battery *float64
	var rssi *int32
	for rows.Next() {
		if err := rows.Scan(&r.Time, &value, &battery, &rssi); err != nil {
			return fmt.Errorf("readings of %s: %w", deviceID, err)
		}
		r.Value, r.ValueValid = 0, value != nil
		if value != nil {
			r.Value = *value
		}
		r.Battery, r.RSSI = 0, 0
		if battery != nil {
			r.Battery = *battery
		}
		if rssi != nil {
			r.RSSI = *rssi
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// EnrichedColumns are the columns of staging.enriched after run_key and
// shard, in the order CopyEnriched writes them; the fact table has the same.
var EnrichedColumns = []string{
	"time", "device_id", "value", "battery", "rssi",
	"device_type", "metric", "unit", "location_id", "site", "building", "floor", "zone",
	"roll_count", "roll_mean", "roll_std", "roll_min", "roll_max", "zscore",
	"is_anomaly", "anomaly_reasons", "quality_score", "quality_flags",
}

// enrichedSource streams transform output into a COPY, rendering one row
// at a time into a reused slice (pgx encodes each row before asking for the
// next), so a batch costs its structs and nothing more.
type enrichedSource struct {
	runKey string
	shard  int
	rows   []transform.Enriched
	i      int
	vals   []any
}

func (s *enrichedSource) Next() bool { s.i++; return s.i <= len(s.rows) }
func (s *enrichedSource) Err() error { return nil }

func (s *enrichedSource) Values() ([]any, error) {
	e := &s.rows[s.i-1]
	var value, rollMean, rollStd, rollMin, rollMax, z any
	if e.ValueValid {
		value = e.Value
	}
	if st := e.Rolling; st.Count > 0 {
		rollMean, rollMin, rollMax = st.Mean, st.Min, st.Max
		if st.HasStd {
			rollStd = st.Std
		}
		if st.HasZ {
			z = st.Z
		}
	}
	s.vals = append(s.vals[:0], s.runKey, s.shard,
		e.Time, e.DeviceID, value, e.Battery, e.RSSI,
		e.TypeCode, e.Metric, e.Unit, e.LocationID, e.Site, e.Building, e.Floor, e.Zone,
		e.Rolling.Count, rollMean, rollStd, rollMin, rollMax, z,
		e.Anomaly, e.Reasons, e.Quality, e.QualityFlags)
	return s.vals, nil
}

// ClearEnriched deletes the staged transform output of a shard for devices
// sorting after after: what an interrupted attempt wrote past its last
// heartbeat.
func ClearEnriched(ctx context.Context, ts *pgxpool.Pool, runKey string, shard int, after string) error {
	_, err := ts.Exec(ctx, `DELETE FROM staging.enriched WHERE run_key = $1 AND shard = $2 AND device_id > $3`, runKey, shard, after)
	return err
}

// CopyEnriched writes one shard's transform output to staging.enriched
// within tx.
func CopyEnriched(ctx context.Context, tx pgx.Tx, runKey string, shard int, rows []transform.Enriched) (int64, error) {
	cols := append([]string{"run_key", "shard"}, EnrichedColumns...)
	return tx.CopyFrom(ctx, pgx.Identifier{"staging", "enriched"}, cols, &enrichedSource{runKey: runKey, shard: shard, rows: rows})
}
