-- Stream ETL sink: 1-minute window aggregates, per-partition offsets with
-- lease fencing, dead letters and the anomalies the shared transform flagged.
-- Every micro-batch of a consumer lease writes all four in ONE transaction
-- (see docs/stream.md), so the tables are always consistent with each other.

-- +goose Up
-- One row per device and 1-minute event-time window (tumbling, UTC,
-- [window_start, window_end)). The aggregates are mergeable: each batch adds
-- its newly inserted readings, so late events within the allowed lateness
-- merge exactly. Sums are numeric over value::numeric (PostgreSQL's
-- 15-significant-digit float8 cast), so the result does not depend on how
-- the readings were split into batches (internal/window models this).
CREATE TABLE public.sensor_readings_stream_agg (
    window_start  timestamptz      NOT NULL,
    window_end    timestamptz      NOT NULL,
    device_id     text             NOT NULL,
    reading_count bigint           NOT NULL,            -- readings, null values included
    value_count   bigint           NOT NULL,            -- readings with a value
    value_sum     numeric          NOT NULL DEFAULT 0,  -- sum(value::numeric)
    value_sum_sq  numeric          NOT NULL DEFAULT 0,  -- sum(value::numeric * value::numeric)
    value_min     double precision,
    value_max     double precision,
    anomaly_count bigint           NOT NULL DEFAULT 0,  -- readings the transform flagged
    updated_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, window_start),
    CONSTRAINT sensor_readings_stream_agg_window_chk CHECK (window_end = window_start + interval '1 minute'),
    CONSTRAINT sensor_readings_stream_agg_count_chk CHECK (value_count <= reading_count AND anomaly_count <= reading_count)
);
-- Windows arrive in event-time order, so a BRIN index serves time-range
-- scans over all devices at almost no cost per inserted window; the primary
-- key serves a device's windows.
CREATE INDEX sensor_readings_stream_agg_window_idx ON public.sensor_readings_stream_agg USING brin (window_start);

-- Mean and sample standard deviation derived from the mergeable columns:
-- NULL without values (stddev: below two values), as avg and stddev_samp.
CREATE VIEW public.v_sensor_readings_stream_agg AS
SELECT window_start,
       window_end,
       device_id,
       reading_count,
       value_count,
       value_sum,
       value_sum_sq,
       value_min,
       value_max,
       CASE WHEN value_count > 0 THEN (value_sum / value_count)::double precision END AS value_avg,
       CASE WHEN value_count > 1 THEN
           sqrt(greatest((value_sum_sq - value_sum * value_sum / value_count) / (value_count - 1), 0))::double precision
       END AS value_stddev,
       anomaly_count,
       updated_at
FROM public.sensor_readings_stream_agg;

-- Per-partition consumer state. next_offset is the next Kafka offset to
-- read (0 = the earliest); watermark is the partition's event-time
-- watermark (NULL before the first accepted reading). A lease increments
-- lease_epoch when it starts, and every commit is conditional on its epoch
-- and on the next_offset it read, so a superseded (zombie) lease cannot
-- write. The counters are cumulative and advance in the same transaction.
CREATE TABLE public.stream_offsets (
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    next_offset  bigint      NOT NULL DEFAULT 0,
    watermark    timestamptz,
    lease_epoch  bigint      NOT NULL DEFAULT 0,
    lease_owner  text,
    records      bigint      NOT NULL DEFAULT 0,  -- Kafka records consumed
    inserted     bigint      NOT NULL DEFAULT 0,  -- new rows in sensor_readings
    duplicates   bigint      NOT NULL DEFAULT 0,  -- valid readings whose (device_id, time) was already stored
    dead_letters bigint      NOT NULL DEFAULT 0,  -- rows added to stream_dead_letters
    anomalies    bigint      NOT NULL DEFAULT 0,  -- rows added to stream_anomalies
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition),
    CONSTRAINT stream_offsets_offset_chk CHECK (next_offset >= 0 AND partition >= 0)
);

-- Quarantined messages: whatever cannot be a reading, with the reason
-- (reading.Reason or 'late'), a human-readable error and the raw bytes.
-- Unique per Kafka record, so a replayed batch cannot add a row twice.
CREATE TABLE public.stream_dead_letters (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         bytea,
    raw         bytea       NOT NULL,
    reason      text        NOT NULL,
    error       text        NOT NULL,
    record_time timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stream_dead_letters_record_key UNIQUE (topic, partition, "offset")
);
CREATE INDEX stream_dead_letters_reason_idx ON public.stream_dead_letters (reason, id);

-- The stream readings the shared transform flagged as anomalous (only
-- readings newly inserted by the stream), with the record they came from.
CREATE TABLE public.stream_anomalies (
    device_id   text             NOT NULL,
    time        timestamptz      NOT NULL,
    value       double precision,
    reasons     text[]           NOT NULL,
    topic       text             NOT NULL,
    partition   integer          NOT NULL,
    "offset"    bigint           NOT NULL,
    detected_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, time)
);
CREATE INDEX stream_anomalies_time_idx ON public.stream_anomalies (time);

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('public.sensor_readings_stream_agg', 'window_start',
            chunk_time_interval => interval '7 days', if_not_exists => true, migrate_data => true);
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE public.stream_anomalies;
DROP TABLE public.stream_dead_letters;
DROP TABLE public.stream_offsets;
DROP VIEW public.v_sensor_readings_stream_agg;
DROP TABLE public.sensor_readings_stream_agg;
