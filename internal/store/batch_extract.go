package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// StagedDevices is what StageDevices wrote.
type StagedDevices struct {
	Devices   int
	Types     int
	DeviceIDs []string
}

// StageDevices copies device types and devices from the MySQL registry into
// staging for runKey, in one PostgreSQL transaction that first drops what an
// earlier attempt staged. Devices are ordered by id and dealt round-robin
// into shards. filter restricts the devices; max > 0 keeps the first max.
func StageDevices(ctx context.Context, my *sql.DB, ts *pgxpool.Pool, runKey string, filter []string, max, shards int) (StagedDevices, error) {
	var out StagedDevices
	if shards < 1 {
		return out, fmt.Errorf("stage devices: shards must be at least 1, got %d", shards)
	}
	tx, err := ts.Begin(ctx)
	if err != nil {
		return out, err
	}
	defer tx.Rollback(ctx)
	for _, t := range []string{"staging.device_types", "staging.devices"} {
		if _, err := tx.Exec(ctx, "DELETE FROM "+t+" WHERE run_key = $1", runKey); err != nil {
			return out, err
		}
	}

	typeRows, err := my.QueryContext(ctx, `SELECT code, metric, unit, valid_min, valid_max, max_rate_per_min, expected_interval_s FROM device_types ORDER BY code`)
	if err != nil {
		return out, fmt.Errorf("read device_types: %w", err)
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"staging", "device_types"},
		[]string{"run_key", "code", "metric", "unit", "valid_min", "valid_max", "max_rate_per_min", "expected_interval_s"},
		sqlRowsSource(typeRows, 7, func(vals []any) ([]any, error) { return append([]any{runKey}, vals...), nil }))
	typeRows.Close()
	if err != nil {
		return out, fmt.Errorf("stage device_types: %w", err)
	}
	out.Types = int(n)

	q := `SELECT device_id, type_code, location_id, model, firmware, status, installed_at, updated_at FROM devices`
	var args []any
	if len(filter) > 0 {
		q += " WHERE device_id IN (?" + strings.Repeat(",?", len(filter)-1) + ")"
		for _, id := range filter {
			args = append(args, id)
		}
	}
	q += " ORDER BY device_id"
	if max > 0 {
		q += fmt.Sprintf(" LIMIT %d", max)
	}
	devRows, err := my.QueryContext(ctx, q, args...)
	if err != nil {
		return out, fmt.Errorf("read devices: %w", err)
	}
	i := 0
	n, err = tx.CopyFrom(ctx, pgx.Identifier{"staging", "devices"},
		[]string{"run_key", "device_id", "type_code", "location_id", "model", "firmware", "status", "installed_at", "updated_at", "shard"},
		sqlRowsSource(devRows, 8, func(vals []any) ([]any, error) {
			shard := i % shards
			i++
			if max > 0 {
				out.DeviceIDs = append(out.DeviceIDs, vals[0].(string))
			}
			return append(append([]any{runKey}, vals...), shard), nil
		}))
	devRows.Close()
	if err != nil {
		return out, fmt.Errorf("stage devices: %w", err)
	}
	out.Devices = int(n)
	return out, tx.Commit(ctx)
}

// sqlRowsSource streams database/sql rows of cols columns into a COPY,
// converting each with conv. The MySQL driver returns text as []byte; it is
// turned into string first.
func sqlRowsSource(rows *sql.Rows, cols int, conv func([]any) ([]any, error)) pgx.CopyFromSource {
	return &sqlSource{rows: rows, cols: cols, conv: conv}
}

type sqlSource struct {
	rows *sql.Rows
	cols int
	conv func([]any) ([]any, error)
	cur  []any
	err  error
}

func (s *sqlSource) Next() bool {
	if !s.rows.Next() {
		s.err = s.rows.Err()
		return false
	}
	vals := make([]any, s.cols)
	ptrs := make([]any, s.cols)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := s.rows.Scan(ptrs...); err != nil {
		s.err = err
		return false
	}
	for i, v := range vals {
		if b, ok := v.([]byte); ok {
			vals[i] = string(b)
		}
	}
	s.cur, s.err = s.conv(vals)
	return s.err == nil
}

func (s *sqlSource) Values() ([]any, error) { return s.cur, s.err }
func (s *sqlSource) Err() error             { return s.err }

// StageLocations copies the locations into staging for runKey in one
// transaction.
func StageLocations(ctx context.Context, loc, ts *pgxpool.Pool, runKey string) (int, error) {
	rows, err := loc.Query(ctx, `SELECT location_id, site, building, floor, zone, latitude, longitude, timezone, updated_at FROM public.locations ORDER BY location_id`)
	if err != nil {
		return 0, fmt.Errorf("read locations: %w", err)
	}
	defer rows.Close()
	tx, err := ts.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `DELETE FROM staging.locations WHERE run_key = $1`, runKey); err != nil {
		return 0, err
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"staging", "locations"},
		[]string{"run_key", "location_id", "site", "building", "floor", "zone", "latitude", "longitude", "timezone", "updated_at"},
		&pgRowsSource{rows: rows, prefix: runKey})
	if err != nil {
		return 0, fmt.Errorf("stage locations: %w", err)
	}
	return int(n), tx.Commit(ctx)
}

// pgRowsSource streams pgx rows into a COPY on another connection, with
// prefix as the first column.
type pgRowsSource struct {
	rows   pgx.Rows
	prefix any
	err    error
}

func (s *pgRowsSource) Next() bool { return s.rows.Next() }
func (s *pgRowsSource) Values() ([]any, error) {
	v, err := s.rows.Values()
	if err != nil {
		s.err = err
		return nil, err
	}
	return append([]any{s.prefix}, v...), nil
}
func (s *pgRowsSource) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.rows.Err()
}

// ClearStagedReadings deletes what an interrupted extract staged in [from,
// to): a retry calls it once before it stages that range again. (The
// partition has no index while chunks load, so this is one scan.)
func ClearStagedReadings(ctx context.Context, ts *pgxpool.Pool, runKey string, from, to time.Time) error {
	_, err := ts.Exec(ctx, `DELETE FROM staging.readings WHERE run_key = $1 AND time >= $2 AND time < $3`, runKey, from, to)
	return err
}

// StageReadingsHour copies the readings of [from, to) into staging for
// runKey, in one transaction. The readings source and the staging area
// share the TimescaleDB database, so rows never leave the server.
func StageReadingsHour(ctx context.Context, ts *pgxpool.Pool, runKey string, from, to time.Time, filter []string) (int64, error) {
	tx, err := ts.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	q := `INSERT INTO staging.readings (run_key, device_id, time, value, battery, rssi)
		SELECT $1, device_id, time, value, battery, rssi FROM public.sensor_readings
		WHERE time >= $2 AND time < $3`
	args := []any{runKey, from, to}
	if len(filter) > 0 {
		q += ` AND device_id = ANY($4)`
		args = append(args, filter)
	}
	tag, err := tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), tx.Commit(ctx)
}

// RecordRejects writes to dwh.etl_rejects every staged reading of the window
// that cannot be enriched (device, type or location unknown) and counts them
// by reason. Rerunning it writes nothing new. The unresolvable devices are
// found first, from the staged devices, so the readings are only touched
// for those.
func RecordRejects(ctx context.Context, ts *pgxpool.Pool, runKey, runID string, from, to time.Time) (map[string]int64, error) {
	if err := IndexStagedReadings(ctx, ts, runKey); err != nil {
		return nil, err
	}
	if err := AnalyzeStaging(ctx, ts, runKey, stagingTables[:4]...); err != nil {
		return nil, err
	}
	_, err := ts.Exec(ctx, `
		WITH staged AS (
		    SELECT DISTINCT device_id FROM staging.readings WHERE run_key = $1 AND time >= $2 AND time < $3
		), bad AS (
		    SELECT s.device_id,
		           CASE WHEN d.device_id IS NULL THEN 'unknown_device'
		                WHEN t.code IS NULL THEN 'unknown_device_type'
		                ELSE 'unknown_location' END AS reason
		    FROM staged s
		    LEFT JOIN staging.devices d ON d.run_key = $1 AND d.device_id = s.device_id
		    LEFT JOIN staging.device_types t ON t.run_key = $1 AND t.code = d.type_code
		    LEFT JOIN staging.locations l ON l.run_key = $1 AND l.location_id = d.location_id
		    WHERE d.device_id IS NULL OR t.code IS NULL OR l.location_id IS NULL
		)
		INSERT INTO dwh.etl_rejects (run_id, device_id, time, reason)
		SELECT $4, r.device_id, r.time, bad.reason
		FROM bad JOIN staging.readings r ON r.run_key = $1 AND r.device_id = bad.device_id
		WHERE r.time >= $2 AND r.time < $3
		ON CONFLICT DO NOTHING`, runKey, from, to, runID)
	if err != nil {
		return nil, fmt.Errorf("record rejects: %w", err)
	}
	rows, err := ts.Query(ctx, `SELECT reason, count(*) FROM dwh.etl_rejects WHERE run_id = $1 GROUP BY reason`, runID)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var reason string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&reason, &n}, func() error { out[reason] = n; return nil })
	return out, err
}

// stagingTables are the staging tables, each partitioned by run_key.
var stagingTables = []string{"device_types", "devices", "locations", "readings", "enriched"}

// stagingPartition names the partition of table for runKey: a hash keeps
// the name a valid identifier of bounded length whatever the key.
func stagingPartition(table, runKey string) string {
	sum := sha256.Sum256([]byte(runKey))
	return pgx.Identifier{"staging", table + "_r" + hex.EncodeToString(sum[:8])}.Sanitize()
}

// CreateStaging creates the UNLOGGED staging partitions of runKey. It is
// idempotent.
func CreateStaging(ctx context.Context, ts *pgxpool.Pool, runKey string) error {
	for _, t := range stagingTables {
		_, err := ts.Exec(ctx, fmt.Sprintf("CREATE UNLOGGED TABLE IF NOT EXISTS %s PARTITION OF staging.%s FOR VALUES IN (%s)",
			stagingPartition(t, runKey), t, quoteLiteral(runKey)))
		if err != nil {
			return fmt.Errorf("create staging %s: %w", t, err)
		}
	}
	return nil
}

// IndexStagedReadings builds the unique (device_id, time) index of a run's
// staged readings, once every chunk is loaded. A reading staged twice makes
// it fail: a data error, never retried.
func IndexStagedReadings(ctx context.Context, ts *pgxpool.Pool, runKey string) error {
	part := stagingPartition("readings", runKey)
	sum := sha256.Sum256([]byte(runKey))
	name := pgx.Identifier{"readings_r" + hex.EncodeToString(sum[:8]) + "_key"}.Sanitize()
	if _, err := ts.Exec(ctx, "CREATE UNIQUE INDEX IF NOT EXISTS "+name+" ON "+part+" (device_id, time)"); err != nil {
		return fmt.Errorf("index staged readings: %w", err)
	}
	return nil
}

// AnalyzeStaging refreshes the planner statistics of a run's staging
// partitions after a bulk load.
func AnalyzeStaging(ctx context.Context, ts *pgxpool.Pool, runKey string, tables ...string) error {
	for _, t := range tables {
		if _, err := ts.Exec(ctx, "ANALYZE "+stagingPartition(t, runKey)); err != nil {
			return fmt.Errorf("analyze staging %s: %w", t, err)
		}
	}
	return nil
}

// DropStaging drops a run's staging partitions: instant, whatever they hold.
func DropStaging(ctx context.Context, ts *pgxpool.Pool, runKey string) error {
	for _, t := range stagingTables {
		if _, err := ts.Exec(ctx, "DROP TABLE IF EXISTS "+stagingPartition(t, runKey)); err != nil {
			return fmt.Errorf("drop staging %s: %w", t, err)
		}
	}
	return nil
}

// quoteLiteral renders s as an SQL string literal (partition bounds cannot
// be bind parameters).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
