-- The dimensional warehouse (dwh) and the batch staging area (staging).
-- Staging tables are UNLOGGED: they are rebuilt from the sources by Extract,
-- and Load checks their row counts before it reads them, so a PostgreSQL
-- crash (which empties unlogged tables) is detected, never silently loaded.

-- +goose Up
CREATE SCHEMA staging;
CREATE SCHEMA dwh;

-- Staging: one run_key (the batch workflow id) per run, so concurrent runs
-- over different windows never see each other's rows.
CREATE UNLOGGED TABLE staging.device_types (
    run_key             text             NOT NULL,
    code                text             NOT NULL,
    metric              text             NOT NULL,
    unit                text             NOT NULL,
    valid_min           double precision NOT NULL,
    valid_max           double precision NOT NULL,
    max_rate_per_min    double precision NOT NULL,
    expected_interval_s integer          NOT NULL,
    PRIMARY KEY (run_key, code)
);

CREATE UNLOGGED TABLE staging.devices (
    run_key      text        NOT NULL,
    device_id    text        NOT NULL,
    type_code    text        NOT NULL,
    location_id  text        NOT NULL,
    model        text        NOT NULL,
    firmware     text        NOT NULL,
    status       text        NOT NULL,
    installed_at timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    shard        integer     NOT NULL,
    PRIMARY KEY (run_key, device_id)
);

CREATE UNLOGGED TABLE staging.locations (
    run_key     text             NOT NULL,
    location_id text             NOT NULL,
    site        text             NOT NULL,
    building    text             NOT NULL,
    floor       integer          NOT NULL,
    zone        text             NOT NULL,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    timezone    text             NOT NULL,
    updated_at  timestamptz      NOT NULL,
    PRIMARY KEY (run_key, location_id)
);

-- Raw readings of the window plus the lookback margin.
CREATE UNLOGGED TABLE staging.readings (
    run_key   text             NOT NULL,
    device_id text             NOT NULL,
    time      timestamptz      NOT NULL,
    value     double precision,
    battery   double precision,
    rssi      integer,
    PRIMARY KEY (run_key, device_id, time)
);

-- Transform output: one row per reading of the window, shaped like the fact.
CREATE UNLOGGED TABLE staging.enriched (
    run_key         text             NOT NULL,
    shard           integer          NOT NULL,
    time            timestamptz      NOT NULL,
    device_id       text             NOT NULL,
    value           double precision,
    battery         double precision,
    rssi            integer,
    device_type     text             NOT NULL,
    metric          text             NOT NULL,
    unit            text             NOT NULL,
    location_id     text             NOT NULL,
    site            text             NOT NULL,
    building        text             NOT NULL,
    floor           integer          NOT NULL,
    zone            text             NOT NULL,
    roll_count      integer          NOT NULL,
    roll_mean       double precision,
    roll_std        double precision,
    roll_min        double precision,
    roll_max        double precision,
    zscore          double precision,
    is_anomaly      boolean          NOT NULL,
    anomaly_reasons text[]           NOT NULL,
    quality_score   double precision NOT NULL,
    quality_flags   text[]           NOT NULL
);
CREATE INDEX enriched_run_shard_idx ON staging.enriched (run_key, shard);

-- Readings the batch could not enrich (for example a device missing from
-- the registry). They stay in the source; this records why they were left out.
CREATE TABLE dwh.etl_rejects (
    run_id    text        NOT NULL,
    device_id text        NOT NULL,
    time      timestamptz NOT NULL,
    reason    text        NOT NULL,
    PRIMARY KEY (run_id, device_id, time)
);

-- Devices, slowly changing type 2: a new firmware or location opens a new
-- version; model, status and type are corrected in place on the current one.
-- valid_from is the registry's updated_at of the change, so reruns of the
-- same snapshot produce the same rows.
CREATE TABLE dwh.dim_devices (
    device_key   bigserial        PRIMARY KEY,
    device_id    text             NOT NULL,
    device_type  text             NOT NULL,
    metric       text             NOT NULL,
    unit         text             NOT NULL,
    valid_min    double precision NOT NULL,
    valid_max    double precision NOT NULL,
    location_id  text             NOT NULL,
    model        text             NOT NULL,
    firmware     text             NOT NULL,
    status       text             NOT NULL,
    installed_at timestamptz      NOT NULL,
    valid_from   timestamptz      NOT NULL,
    valid_to     timestamptz,
    is_current   boolean          NOT NULL,
    run_id       text             NOT NULL,
    UNIQUE (device_id, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    CHECK (is_current = (valid_to IS NULL))
);
CREATE UNIQUE INDEX dim_devices_current_idx ON dwh.dim_devices (device_id) WHERE is_current;

CREATE TABLE dwh.dim_locations (
    location_id text             PRIMARY KEY,
    site        text             NOT NULL,
    building    text             NOT NULL,
    floor       integer          NOT NULL,
    zone        text             NOT NULL,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    timezone    text             NOT NULL,
    updated_at  timestamptz      NOT NULL,
    run_id      text             NOT NULL
);

CREATE TABLE dwh.fact_sensor_readings_enriched (
    time            timestamptz      NOT NULL,
    device_id       text             NOT NULL,
    value           double precision,
    battery         double precision,
    rssi            integer,
    device_type     text             NOT NULL,
    metric          text             NOT NULL,
    unit            text             NOT NULL,
    location_id     text             NOT NULL,
    site            text             NOT NULL,
    building        text             NOT NULL,
    floor           integer          NOT NULL,
    zone            text             NOT NULL,
    roll_count      integer          NOT NULL,
    roll_mean       double precision,
    roll_std        double precision,
    roll_min        double precision,
    roll_max        double precision,
    zscore          double precision,
    is_anomaly      boolean          NOT NULL,
    anomaly_reasons text[]           NOT NULL,
    quality_score   double precision NOT NULL CHECK (quality_score BETWEEN 0 AND 1),
    quality_flags   text[]           NOT NULL,
    run_id          text             NOT NULL,
    loaded_at       timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT fact_sensor_readings_enriched_key UNIQUE (device_id, time)
);
CREATE INDEX fact_enriched_time_idx ON dwh.fact_sensor_readings_enriched (time);
CREATE INDEX fact_enriched_anomaly_idx ON dwh.fact_sensor_readings_enriched (time) WHERE is_anomaly;

CREATE TABLE dwh.etl_runs (
    run_id             text        PRIMARY KEY,
    workflow_id        text        NOT NULL,
    window_start       timestamptz NOT NULL,
    window_end         timestamptz NOT NULL,
    test_mode          boolean     NOT NULL DEFAULT false,
    device_filter      text[]      NOT NULL DEFAULT '{}',
    status             text        NOT NULL CHECK (status IN ('running', 'load_failed', 'succeeded', 'abandoned', 'failed')),
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz,
    devices            integer     NOT NULL DEFAULT 0,
    readings_extracted bigint      NOT NULL DEFAULT 0,
    rows_loaded        bigint      NOT NULL DEFAULT 0,
    rejects            bigint      NOT NULL DEFAULT 0,
    anomalies          bigint      NOT NULL DEFAULT 0,
    dq_score           double precision,
    fact_checksum      text,
    phase_ms           jsonb       NOT NULL DEFAULT '{}',
    detection          jsonb       NOT NULL DEFAULT '{}',
    features_path      text,
    error              text
);
CREATE INDEX etl_runs_window_idx ON dwh.etl_runs (window_start);

CREATE TABLE dwh.etl_watermarks (
    pipeline       text        PRIMARY KEY,
    high_watermark timestamptz NOT NULL,
    last_run_id    text        NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Per device-hour features for ML, with the leak-free label "anomaly in the
-- next hour".
CREATE TABLE dwh.ml_features (
    device_id      text             NOT NULL,
    hour           timestamptz      NOT NULL,
    device_type    text             NOT NULL,
    zone           text             NOT NULL,
    hour_of_day    smallint         NOT NULL,
    day_of_week    smallint         NOT NULL,
    count          integer          NOT NULL,
    mean           double precision,
    std            double precision,
    min            double precision,
    max            double precision,
    slope          double precision,
    anomaly_count  integer          NOT NULL,
    mean_quality   double precision NOT NULL,
    prev_hour_mean double precision,
    label          boolean          NOT NULL,
    run_id         text             NOT NULL,
    PRIMARY KEY (device_id, hour)
);

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('dwh.fact_sensor_readings_enriched', 'time',
            chunk_time_interval => interval '1 day', if_not_exists => true, migrate_data => true);
        ALTER TABLE dwh.fact_sensor_readings_enriched SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id',
            timescaledb.compress_orderby = 'time');
        PERFORM add_compression_policy('dwh.fact_sensor_readings_enriched', interval '30 days', if_not_exists => true);
        PERFORM add_retention_policy('dwh.fact_sensor_readings_enriched', interval '730 days', if_not_exists => true);
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE dwh.ml_features;
DROP TABLE dwh.etl_watermarks;
DROP TABLE dwh.etl_runs;
DROP TABLE dwh.fact_sensor_readings_enriched;
DROP TABLE dwh.dim_locations;
DROP TABLE dwh.dim_devices;
DROP TABLE dwh.etl_rejects;
DROP SCHEMA dwh;
DROP SCHEMA staging CASCADE;
