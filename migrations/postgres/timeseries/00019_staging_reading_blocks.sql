-- A run's staged readings become blocks: one row per device and staged
-- range (an hour at most, never across a clock hour), its readings in
-- arrays of the same order. The extract groups an hour's readings by
-- device instead of sorting them, writes about sixty times fewer rows and
-- keeps the primary key as it loads (there is no index to build after the
-- last chunk), and the transform reads a device-day as 24 rows. The key
-- still proves that no range was staged twice for a device.
--
-- Runs in flight lose their staged readings here; their markers go too,
-- so they see their staging as lost and stage again.

-- +goose Up
DELETE FROM staging.run_markers;
DROP TABLE staging.readings;
CREATE TABLE staging.readings (
    run_key     text               NOT NULL,
    device_id   text               NOT NULL,
    range_start timestamptz        NOT NULL,
    range_end   timestamptz        NOT NULL,
    times       timestamptz[]      NOT NULL,
    vals        double precision[] NOT NULL,
    batteries   double precision[] NOT NULL,
    rssis       integer[]          NOT NULL,
    PRIMARY KEY (run_key, device_id, range_start),
    CHECK (range_start < range_end)
) PARTITION BY LIST (run_key);

-- +goose Down
DELETE FROM staging.run_markers;
DROP TABLE staging.readings;
CREATE TABLE staging.readings (
    run_key   text             NOT NULL,
    device_id text             NOT NULL,
    time      timestamptz      NOT NULL,
    value     double precision,
    battery   double precision,
    rssi      integer
) PARTITION BY LIST (run_key);
