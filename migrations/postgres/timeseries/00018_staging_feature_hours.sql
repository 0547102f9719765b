-- The device-hours of a run's transform output, as the feature builder
-- accumulates them (features.HourState): the transform writes a device's
-- hours in the transaction that commits its rows, and the export builds
-- the ML features from them instead of reading every fact of the window
-- back, when every shard's facts of the window are exactly its transform
-- output (each load a first load). Partitioned by run like the other
-- staging tables; each run's partition is UNLOGGED.

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

-- +goose Down
DROP TABLE staging.feature_hours;
