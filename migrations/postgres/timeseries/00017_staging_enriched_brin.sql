-- A run's transform output (staging.enriched) is written in COPY batches of
-- one shard each, so every heap page holds the rows of a single shard and
-- devices in order. A BRIN index of one page per range finds a shard's
-- pages for its load as exactly as the B-tree did, at a fraction of the
-- write cost: the B-tree on (run_key, shard, device_id) doubled the time of
-- the transform's COPY. Pages written since the last summary are always
-- returned by a BRIN scan, so the first LoadFacts of a run summarizes them
-- and sets enriched_summarized on the run's staging marker; the others wait
-- for it on that row and find it done (a summary reads the whole index,
-- however little is new).

-- +goose Up
DROP INDEX staging.enriched_run_shard_device_idx;
CREATE INDEX enriched_shard_device_brin ON staging.enriched USING brin (shard, device_id) WITH (pages_per_range = 1);
ALTER TABLE staging.run_markers ADD COLUMN enriched_summarized boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE staging.run_markers DROP COLUMN enriched_summarized;
DROP INDEX staging.enriched_shard_device_brin;
CREATE INDEX enriched_run_shard_device_idx ON staging.enriched (run_key, shard, device_id);
