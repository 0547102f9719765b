package warehouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// DimensionChanges counts what LoadDimensions changed.
type DimensionChanges struct {
	NewDeviceVersions int64
	DevicesUpdated    int64
	LocationsUpserted int64
}

// LoadDimensions applies the staged devices and locations to the warehouse
// in one transaction.
//
// dim_devices is SCD type 2 on firmware and location: a staged device whose
// firmware or location differs from its current version closes that version
// at the registry's updated_at and opens a new one from it. Type, model and
// status are corrected in place on the current version (type 1). An
// unchanged device writes nothing, so a rerun changes nothing. Nothing is
// applied unless the run's staging marker is there (see CheckStaging).
func (r Run) LoadDimensions(ctx context.Context) (DimensionChanges, error) {
	var c DimensionChanges
	err := pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		if err := r.checkStaging(ctx, tx); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO dwh.dim_locations AS l (location_id, site, building, floor, zone, latitude, longitude, timezone, updated_at, run_id)
			SELECT location_id, site, building, floor, zone, latitude, longitude, timezone, updated_at, $2
			FROM staging.locations WHERE run_key = $1
			ON CONFLICT (location_id) DO UPDATE SET
			    site = EXCLUDED.site, building = EXCLUDED.building, floor = EXCLUDED.floor, zone = EXCLUDED.zone,
			    latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, timezone = EXCLUDED.timezone,
			    updated_at = EXCLUDED.updated_at, run_id = EXCLUDED.run_id
			WHERE (l.site, l.building, l.floor, l.zone, l.latitude, l.longitude, l.timezone, l.updated_at)
			      IS DISTINCT FROM
			      (EXCLUDED.site, EXCLUDED.building, EXCLUDED.floor, EXCLUDED.zone, EXCLUDED.latitude, EXCLUDED.longitude, EXCLUDED.timezone, EXCLUDED.updated_at)`,
			r.ID, r.ID)
		if err != nil {
			return fmt.Errorf("load dim_locations: %w", err)
		}
		c.LocationsUpserted = tag.RowsAffected()

		// The staged devices, joined with their type.
		const staged = `
			SELECT d.device_id, d.type_code, t.metric, t.unit, t.valid_min, t.valid_max, d.location_id,
			       d.model, d.firmware, d.status, d.installed_at, d.updated_at
			FROM staging.devices d
			JOIN staging.device_types t ON t.run_key = d.run_key AND t.code = d.type_code
			WHERE d.run_key = $1`

		// Close the current versions whose tracked attributes changed.
		_, err = tx.Exec(ctx, `
			UPDATE dwh.dim_devices cur SET valid_to = s.updated_at, is_current = false
			FROM (`+staged+`) s
			WHERE cur.device_id = s.device_id AND cur.is_current
			  AND (cur.firmware, cur.location_id) IS DISTINCT FROM (s.firmware, s.location_id)
			  AND s.updated_at > cur.valid_from`, r.ID)
		if err != nil {
			return fmt.Errorf("close dim_devices versions: %w", err)
		}

		// Correct type-1 attributes on the current versions.
		tag, err = tx.Exec(ctx, `
			UPDATE dwh.dim_devices cur SET device_type = s.type_code, metric = s.metric, unit = s.unit,
			       valid_min = s.valid_min, valid_max = s.valid_max, model = s.model, status = s.status, run_id = $2
			FROM (`+staged+`) s
			WHERE cur.device_id = s.device_id AND cur.is_current
			  AND (cur.device_type, cur.metric, cur.unit, cur.valid_min, cur.valid_max, cur.model, cur.status)
			      IS DISTINCT FROM (s.type_code, s.metric, s.unit, s.valid_min, s.valid_max, s.model, s.status)`, r.ID, r.ID)
		if err != nil {
			return fmt.Errorf("update dim_devices: %w", err)
		}
		c.DevicesUpdated = tag.RowsAffected()

		// Open a version for every device without a current one: new
		// devices and those closed above. A first version starts at the
		// installation, a later one at the registry's updated_at.
		tag, err = tx.Exec(ctx, `
			INSERT INTO dwh.dim_devices (device_id, device_type, metric, unit, valid_min, valid_max, location_id,
			       model, firmware, status, installed_at, valid_from, valid_to, is_current, run_id)
			SELECT s.device_id, s.type_code, s.metric, s.unit, s.valid_min, s.valid_max, s.location_id,
			       s.model, s.firmware, s.status, s.installed_at,
			       CASE WHEN EXISTS (SELECT 1 FROM dwh.dim_devices o WHERE o.device_id = s.device_id)
			            THEN s.updated_at ELSE LEAST(s.installed_at, s.updated_at) END,
			       NULL, true, $2
			FROM (`+staged+`) s
			WHERE NOT EXISTS (SELECT 1 FROM dwh.dim_devices cur WHERE cur.device_id = s.device_id AND cur.is_current)`, r.ID, r.ID)
		if err != nil {
			return fmt.Errorf("open dim_devices versions: %w", err)
		}
		c.NewDeviceVersions = tag.RowsAffected()
		return nil
	})
	return c, err
}

// FactLoad counts what LoadFacts did.
type FactLoad struct {
	Rows    int64 // staged rows of the shard
	Changed int64 // rows inserted or updated (identical rows are left alone)
	Buckets int64 // hourly buckets rewritten (0 with TimescaleDB)
	// Sums are the figures of the shard's facts of the window after the
	// load (batch.FactSums), measured in its transaction.
	Sums *batch.FactSums
	// FirstLoad: the shard's facts of the window are exactly the rows
	// transformed (written by the transform, or inserted where there were
	// none), so what the transform computed over its rows holds for them.
	FirstLoad bool
}

// ShardLoad is what LoadFacts loads: one shard's transform output.
type ShardLoad struct {
	Shard  int
	Window batch.Window
	// Rows is how many rows the transform wrote.
	Rows int64
	// Transformed, when not nil, are the sums of those rows as the
	// transform wrote them (FactSummer).
	Transformed *batch.FactSums
	// Direct: the transform wrote the rows into the fact table itself,
	// on a first load (CopyTransformed with direct); nothing is staged.
	Direct bool
	// StagedHours: the transform staged the rows' hourly buckets
	// (CopyHourly); a first load of a window of whole hours copies them.
	StagedHours bool
	// ContinuousAgg: TimescaleDB keeps the hourly buckets.
	ContinuousAgg bool
}

// LoadFacts upserts one shard's staged rows into the fact table and, without
// TimescaleDB, rewrites that shard's hourly buckets touched by the window,
// all in one transaction. It first checks the run's staging marker and
// that staging still holds the rows the transform wrote (see
// ErrStagingLost). Rows already identical in the fact table are not
// rewritten, so run_id names the run that last changed a row and a rerun
// of a window changes nothing. A shard the transform wrote directly is
// not inserted again: only its buckets are rewritten.
//
// A first load (direct, or the plain insert below), whose facts of the
// window are exactly the rows transformed, reports the transform's sums
// instead of reading its facts again; any other load measures its facts.
func (r Run) LoadFacts(ctx context.Context, in ShardLoad) (FactLoad, error) {
	var out FactLoad
	shard, w := in.Shard, in.Window
	if !in.Direct {
		if err := r.summarizeEnriched(ctx); err != nil {
			return out, err
		}
	}
	err := pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		if err := r.checkStaging(ctx, tx); err != nil {
			return err
		}
		// The checksum's text, and the hours of the buckets, in UTC.
		if _, err := tx.Exec(ctx, checksumSettings); err != nil {
			return err
		}
		firstLoad := in.Direct
		if in.Direct {
			out.Rows, out.Changed = in.Rows, in.Rows
		} else {
			var err error
			if firstLoad, err = r.insertFacts(ctx, tx, in, &out); err != nil {
				return err
			}
		}
		// The shard's facts of the window: the run's finish adds these up
		// instead of reading every fact again. After a first load they are
		// the staged rows, whose sums the transform computed as it wrote
		// them; otherwise they are measured here, while they are in the
		// cache and while the other shards load on the other cores.
		out.FirstLoad = firstLoad
		if firstLoad && in.Transformed != nil && in.Transformed.Rows == out.Rows {
			sums := *in.Transformed
			out.Sums = &sums
		} else {
			sums, err := SumFacts(ctx, tx, `dwh.fact_sensor_readings_enriched f JOIN staging.devices d ON d.run_key = $1 AND d.shard = $2 AND d.device_id = f.device_id`,
				`f.time >= $3 AND f.time < $4`, r.ID, shard, w.Start, w.End)
			if err != nil {
				return fmt.Errorf("measure facts: %w", err)
			}
			out.Sums = &sums
		}
		if in.ContinuousAgg {
			return nil
		}
		h := w.Hours()
		bFrom, bTo := h.Start, h.End
		if _, err := tx.Exec(ctx, `
			DELETE FROM dwh.fact_hourly_agg h USING staging.devices d
			WHERE d.run_key = $1 AND d.shard = $2 AND h.device_id = d.device_id AND h.bucket >= $3 AND h.bucket < $4`,
			r.ID, shard, bFrom, bTo); err != nil {
			return fmt.Errorf("refresh hourly buckets: %w", err)
		}
		// The buckets of a first load are the transform's rows', which it
		// staged as these aggregates compute them (HourlyBuckets) when the
		// window is whole hours: no fact of another run is in them.
		aggregate := `
			SELECT date_trunc('hour', f.time), f.device_id, count(*), count(f.value), avg(f.value), min(f.value), max(f.value),
			       stddev_samp(f.value), count(*) FILTER (WHERE f.is_anomaly), avg(f.quality_score)
			FROM dwh.fact_sensor_readings_enriched f
			JOIN staging.devices d ON d.device_id = f.device_id AND d.run_key = $1 AND d.shard = $2
			WHERE f.time >= $3 AND f.time < $4
			GROUP BY 1, 2`
		if firstLoad && in.StagedHours && h.Start.Equal(w.Start) && h.End.Equal(w.End) {
			aggregate = `
			SELECT bucket, device_id, reading_count, value_count, mean, min, max, std, anomaly_count, mean_quality
			FROM staging.hourly WHERE run_key = $1 AND shard = $2 AND bucket >= $3 AND bucket < $4`
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO dwh.fact_hourly_agg (bucket, device_id, reading_count, value_count, mean, min, max, std, anomaly_count, mean_quality)`+
			aggregate, r.ID, shard, bFrom, bTo)
		if err != nil {
			return fmt.Errorf("refresh hourly buckets: %w", err)
		}
		out.Buckets = tag.RowsAffected()
		return nil
	})
	return out, err
}

// insertFacts inserts the shard's staged rows into the fact table within
// tx, checking first that staging holds the rows the transform wrote. A
// first load of the window (the nightly case) has nothing to conflict
// with: a plain insert skips ON CONFLICT's speculative insertion, and the
// rows it inserted are the rows staged. If a row turns out to exist after
// all, the savepoint takes the upsert instead. It reports whether it was
// a first load.
func (r Run) insertFacts(ctx context.Context, tx pgx.Tx, in ShardLoad, out *FactLoad) (firstLoad bool, err error) {
	// staged checks that staging holds what the transform wrote (n rows):
	// less is lost staging, and the transaction rolls back.
	staged := func(n int64) error {
		out.Rows = n
		if n != in.Rows {
			return fmt.Errorf("%w: shard %d has %d staged rows, transform wrote %d", ErrStagingLost, in.Shard, n, in.Rows)
		}
		return nil
	}
	cols := strings.Join(EnrichedColumns, ", ")
	var set, cmpOld, cmpNew []string
	for _, c := range EnrichedColumns {
		if c == "time" || c == "device_id" {
			continue
		}
		set = append(set, c+" = EXCLUDED."+c)
		cmpOld = append(cmpOld, "f."+c)
		cmpNew = append(cmpNew, "EXCLUDED."+c)
	}
	insert := `INSERT INTO dwh.fact_sensor_readings_enriched AS f (` + cols + `, run_id)
		SELECT ` + cols + `, $3 FROM staging.enriched WHERE run_key = $1 AND shard = $2`
	loaded, err := r.ShardHasFacts(ctx, tx, in.Shard, in.Window)
	if err != nil {
		return false, err
	}
	if !loaded {
		if _, err := tx.Exec(ctx, `SAVEPOINT first_load`); err != nil {
			return false, err
		}
		tag, err := tx.Exec(ctx, insert, r.ID, in.Shard, r.ID)
		switch {
		case err == nil:
			out.Changed = tag.RowsAffected()
			return true, staged(out.Changed)
		case store.IsUniqueViolation(err):
			if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT first_load`); err != nil {
				return false, err
			}
		default:
			return false, fmt.Errorf("insert facts: %w", err)
		}
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM staging.enriched WHERE run_key = $1 AND shard = $2`, r.ID, in.Shard).Scan(&n); err != nil {
		return false, err
	}
	if err := staged(n); err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, insert+`
		ON CONFLICT (device_id, time) DO UPDATE SET `+strings.Join(set, ", ")+`, run_id = EXCLUDED.run_id, loaded_at = now()
		WHERE (`+strings.Join(cmpOld, ", ")+`) IS DISTINCT FROM (`+strings.Join(cmpNew, ", ")+`)`,
		r.ID, in.Shard, r.ID)
	if err != nil {
		return false, fmt.Errorf("upsert facts: %w", err)
	}
	out.Changed = tag.RowsAffected()
	return false, nil
}

// RefreshContinuousAggregate refreshes dwh.fact_hourly_agg over the hourly
// buckets that intersect w. It must run outside a transaction.
func RefreshContinuousAggregate(ctx context.Context, ts *pgxpool.Pool, w batch.Window) error {
	h := w.Hours()
	_, err := ts.Exec(ctx, `CALL refresh_continuous_aggregate('dwh.fact_hourly_agg', $1::timestamptz, $2::timestamptz)`, h.Start, h.End)
	return err
}

// summarizeEnriched summarizes the BRIN index of the run's transform output
// over the pages written since the last summary, so that a shard's load
// reads its own pages only (a BRIN scan returns every page not summarized
// yet). A summary reads the whole index however little is new, so the
// first load of the run's staging generation does it and marks it on the
// staging marker; the other loads wait for that on the marker's row, then
// skip it. It runs outside the load's transaction: the summary's lock is
// held until its transaction commits. Without a marker (a run from before
// markers, or lost staging, which the load then reports) it summarizes.
func (r Run) summarizeEnriched(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		var done bool
		err := tx.QueryRow(ctx, `SELECT enriched_summarized FROM staging.run_markers WHERE run_key = $1 AND generation = $2 FOR UPDATE`,
			r.ID, r.Generation).Scan(&done)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case done:
			return nil
		}
		if _, err := tx.Exec(ctx, `
			SELECT brin_summarize_new_values(i.indexrelid)
			FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
			WHERE i.indrelid = to_regclass($1) AND a.amname = 'brin'`, stagingPartition("enriched", r.ID)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE staging.run_markers SET enriched_summarized = true WHERE run_key = $1 AND generation = $2`, r.ID, r.Generation)
		return err
	})
	if err != nil {
		return fmt.Errorf("summarize staged transform output: %w", err)
	}
	return nil
}
