-- The device-hours of a run's transform output, written by the transform
-- in the transaction that commits a device's rows, so that nothing reads
-- the facts of the window back when they are exactly that output (each
-- load a first load):
--   feature_hours: as the feature builder accumulates them
--     (features.HourState); the export builds the ML features from them;
--   hourly: the rows of dwh.fact_hourly_agg, computed as PostgreSQL's
--     aggregates compute them (warehouse.HourlyBuckets); LoadFacts copies
--     them instead of aggregating the facts.
-- Partitioned by run like the other staging tables; each run's partitions
-- are UNLOGGED.

-- +goose Up
CREATE TABLE staging.feature_hours (
    run_key         text             NOT NULL,
    shard           integer          NOT NULL,
    device_id       text             NOT NULL,
    hour            timestamptz      NOT NULL,
    device_type     text             NOT NULL,
    zone            text             NOT NULL,
    count           integer          NOT NULL,
    value_count     integer          NOT NULL,
    anomaly_count   integer          NOT NULL,
    quality_sum     double precision NOT NULL,
    value_mean      double precision NOT NULL,
    value_m2        double precision NOT NULL,
    value_min       double precision NOT NULL,
    value_max       double precision NOT NULL,
    minute_mean     double precision NOT NULL,
    minute_m2       double precision NOT NULL,
    minute_value_co double precision NOT NULL
) PARTITION BY LIST (run_key);
CREATE INDEX feature_hours_shard_device_idx ON staging.feature_hours (run_key, shard, device_id);

CREATE TABLE staging.hourly (
    run_key       text             NOT NULL,
    shard         integer          NOT NULL,
    bucket        timestamptz      NOT NULL,
    device_id     text             NOT NULL,
    reading_count bigint           NOT NULL,
    value_count   bigint           NOT NULL,
    mean          double precision,
    min           double precision,
    max           double precision,
    std           double precision,
    anomaly_count bigint           NOT NULL,
    mean_quality  double precision
) PARTITION BY LIST (run_key);
CREATE INDEX hourly_shard_device_idx ON staging.hourly (run_key, shard, device_id);

-- +goose Down
DROP TABLE staging.hourly, staging.feature_hours;
