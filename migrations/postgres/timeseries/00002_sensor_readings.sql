-- Raw readings: written by the seeder (source 'seed') and the stream
-- consumers (source 'stream'); read by batch extract.

-- +goose Up
CREATE TABLE public.sensor_readings (
    time        timestamptz      NOT NULL,
    device_id   text             NOT NULL,
    value       double precision,
    battery     double precision,
    rssi        integer,
    source      text             NOT NULL DEFAULT 'seed',
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT sensor_readings_device_time_key UNIQUE (device_id, time)
);
CREATE INDEX sensor_readings_time_idx ON public.sensor_readings (time);

-- Every anomaly the seeder injected, so detection can be scored.
CREATE TABLE public.anomaly_ground_truth (
    device_id  text             NOT NULL,
    kind       text             NOT NULL CHECK (kind IN ('spike', 'stuck', 'drift', 'out_of_range', 'null', 'gap')),
    start_time timestamptz      NOT NULL,
    end_time   timestamptz      NOT NULL,
    magnitude  double precision,
    PRIMARY KEY (device_id, kind, start_time),
    CHECK (end_time >= start_time)
);
CREATE INDEX anomaly_ground_truth_time_idx ON public.anomaly_ground_truth (start_time);

-- One row per seed: its parameters and what it wrote.
CREATE TABLE public.seed_runs (
    id          bigserial   PRIMARY KEY,
    seed        bigint      NOT NULL,
    devices     integer     NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    interval_s  integer     NOT NULL,
    slots       bigint      NOT NULL,
    readings    bigint      NOT NULL,
    gaps        bigint      NOT NULL,
    anomalies   bigint      NOT NULL,
    checksum    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('public.sensor_readings', 'time',
            chunk_time_interval => interval '1 day', if_not_exists => true, migrate_data => true);
        ALTER TABLE public.sensor_readings SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id',
            timescaledb.compress_orderby = 'time');
        PERFORM add_compression_policy('public.sensor_readings', interval '30 days', if_not_exists => true);
        PERFORM add_retention_policy('public.sensor_readings', interval '365 days', if_not_exists => true);
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE public.seed_runs;
DROP TABLE public.anomaly_ground_truth;
DROP TABLE public.sensor_readings;
