package migrations

import (
	"context"
	"database/sql"
)

// Version 4 creates dwh.fact_hourly_agg: a TimescaleDB continuous aggregate
// over the fact hypertable when the extension is installed, otherwise a
// plain table that Load refreshes for exactly the buckets it touched. The
// continuous aggregate cannot be created inside a transaction, hence a Go
// migration without one. Both shapes have the same columns.
func init() {
	register(Timeseries, 4, "timeseries_hourly_agg.go", upHourlyAgg, downHourlyAgg)
}

const hourlyAggContinuous = `
CREATE MATERIALIZED VIEW dwh.fact_hourly_agg
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT time_bucket(INTERVAL '1 hour', time)       AS bucket,
       device_id,
       count(*)                                    AS reading_count,
       count(value)                                AS value_count,
       avg(value)                                  AS mean,
       min(value)                                  AS min,
       max(value)                                  AS max,
       stddev_samp(value)                          AS std,
       count(*) FILTER (WHERE is_anomaly)          AS anomaly_count,
       avg(quality_score)                          AS mean_quality
FROM dwh.fact_sensor_readings_enriched
GROUP BY 1, 2
WITH NO DATA`

const hourlyAggTable = `
CREATE TABLE dwh.fact_hourly_agg (
    bucket        timestamptz      NOT NULL,
    device_id     text             NOT NULL,
    reading_count bigint           NOT NULL,
    value_count   bigint           NOT NULL,
    mean          double precision,
    min           double precision,
    max           double precision,
    std           double precision,
    anomaly_count bigint           NOT NULL,
    mean_quality  double precision,
    PRIMARY KEY (device_id, bucket)
);
CREATE INDEX fact_hourly_agg_bucket_idx ON dwh.fact_hourly_agg (bucket)`

func hasTimescale(ctx context.Context, db *sql.DB) (bool, error) {
	var ok bool
	err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')`).Scan(&ok)
	return ok, err
}

func upHourlyAgg(ctx context.Context, db *sql.DB) error {
	ts, err := hasTimescale(ctx, db)
	if err != nil {
		return err
	}
	stmt := hourlyAggTable
	if ts {
		stmt = hourlyAggContinuous
	}
	_, err = db.ExecContext(ctx, stmt)
	return err
}

func downHourlyAgg(ctx context.Context, db *sql.DB) error {
	ts, err := hasTimescale(ctx, db)
	if err != nil {
		return err
	}
	stmt := `DROP TABLE dwh.fact_hourly_agg`
	if ts {
		stmt = `DROP MATERIALIZED VIEW dwh.fact_hourly_agg`
	}
	_, err = db.ExecContext(ctx, stmt)
	return err
}
