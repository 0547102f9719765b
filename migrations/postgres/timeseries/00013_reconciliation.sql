-- Stream ↔ batch reconciliation (starter reconcile, workflows.ReconcileWorkflow):
-- each device-hour where the stream's 1-minute windows, rolled up, and the
-- batch facts of the same device and hour disagree, with both sides'
-- figures. kind: 'differs' (both have it), 'missing_stream' (only the batch
-- has it), 'missing_batch' (only the stream has it). repaired_at is set when
-- --repair rebuilt the stream windows of that device-hour from the raw
-- readings.

-- +goose Up
CREATE TABLE dwh.reconciliation (
    run_id             text             NOT NULL,  -- the ReconcileWorkflow run
    device_id          text             NOT NULL,
    hour               timestamptz      NOT NULL,
    kind               text             NOT NULL CHECK (kind IN ('differs', 'missing_stream', 'missing_batch')),
    stream_count       bigint,
    batch_count        bigint,
    stream_value_count bigint,
    batch_value_count  bigint,
    stream_sum         numeric,
    batch_sum          numeric,
    stream_min         double precision,
    batch_min          double precision,
    stream_max         double precision,
    batch_max          double precision,
    found_at           timestamptz      NOT NULL DEFAULT now(),
    repaired_at        timestamptz,
    PRIMARY KEY (run_id, device_id, hour)
);
CREATE INDEX reconciliation_hour_idx ON dwh.reconciliation (hour);

-- +goose Down
DROP TABLE dwh.reconciliation;
