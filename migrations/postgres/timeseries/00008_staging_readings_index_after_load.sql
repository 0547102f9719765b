-- A run's staged readings are loaded without an index and indexed once,
-- after the last extract chunk (RecordRejects builds a unique index on the
-- run's partition): bulk loading into an indexed table is several times
-- slower, and the late unique index still proves no reading was staged
-- twice.

-- +goose Up
ALTER TABLE staging.readings DROP CONSTRAINT readings_pkey;

-- +goose Down
ALTER TABLE staging.readings ADD PRIMARY KEY (run_key, device_id, time);
