-- Staging becomes one UNLOGGED partition per run (LIST on run_key): a run's
-- staging is created by StartRun and dropped whole by CleanupStaging, which
-- is instant where deleting millions of rows was not, and each run's
-- partitions carry their own statistics. The parents are empty.

-- +goose Up
DROP TABLE staging.enriched, staging.readings, staging.locations, staging.devices, staging.device_types;

CREATE TABLE staging.device_types (
    run_key             text             NOT NULL,
    code                text             NOT NULL,
    metric              text             NOT NULL,
    unit                text             NOT NULL,
    valid_min           double precision NOT NULL,
    valid_max           double precision NOT NULL,
    max_rate_per_min    double precision NOT NULL,
    expected_interval_s integer          NOT NULL,
    PRIMARY KEY (run_key, code)
) PARTITION BY LIST (run_key);

CREATE TABLE staging.devices (
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
) PARTITION BY LIST (run_key);

CREATE TABLE staging.locations (
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
) PARTITION BY LIST (run_key);

CREATE TABLE staging.readings (
    run_key   text             NOT NULL,
    device_id text             NOT NULL,
    time      timestamptz      NOT NULL,
    value     double precision,
    battery   double precision,
    rssi      integer,
    PRIMARY KEY (run_key, device_id, time)
) PARTITION BY LIST (run_key);

CREATE TABLE staging.enriched (
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
) PARTITION BY LIST (run_key);
CREATE INDEX enriched_run_shard_device_idx ON staging.enriched (run_key, shard, device_id);

-- +goose Down
DROP TABLE staging.enriched, staging.readings, staging.locations, staging.devices, staging.device_types;

CREATE UNLOGGED TABLE staging.device_types (
    run_key text NOT NULL, code text NOT NULL, metric text NOT NULL, unit text NOT NULL,
    valid_min double precision NOT NULL, valid_max double precision NOT NULL,
    max_rate_per_min double precision NOT NULL, expected_interval_s integer NOT NULL,
    PRIMARY KEY (run_key, code)
);
CREATE UNLOGGED TABLE staging.devices (
    run_key text NOT NULL, device_id text NOT NULL, type_code text NOT NULL, location_id text NOT NULL,
    model text NOT NULL, firmware text NOT NULL, status text NOT NULL,
    installed_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, shard integer NOT NULL,
    PRIMARY KEY (run_key, device_id)
);
CREATE UNLOGGED TABLE staging.locations (
    run_key text NOT NULL, location_id text NOT NULL, site text NOT NULL, building text NOT NULL,
    floor integer NOT NULL, zone text NOT NULL, latitude double precision NOT NULL,
    longitude double precision NOT NULL, timezone text NOT NULL, updated_at timestamptz NOT NULL,
    PRIMARY KEY (run_key, location_id)
);
CREATE UNLOGGED TABLE staging.readings (
    run_key text NOT NULL, device_id text NOT NULL, time timestamptz NOT NULL,
    value double precision, battery double precision, rssi integer,
    PRIMARY KEY (run_key, device_id, time)
);
CREATE UNLOGGED TABLE staging.enriched (
    run_key text NOT NULL, shard integer NOT NULL, time timestamptz NOT NULL, device_id text NOT NULL,
    value double precision, battery double precision, rssi integer,
    device_type text NOT NULL, metric text NOT NULL, unit text NOT NULL, location_id text NOT NULL,
    site text NOT NULL, building text NOT NULL, floor integer NOT NULL, zone text NOT NULL,
    roll_count integer NOT NULL, roll_mean double precision, roll_std double precision,
    roll_min double precision, roll_max double precision, zscore double precision,
    is_anomaly boolean NOT NULL, anomaly_reasons text[] NOT NULL,
    quality_score double precision NOT NULL, quality_flags text[] NOT NULL
);
CREATE INDEX enriched_run_shard_idx ON staging.enriched (run_key, shard);
