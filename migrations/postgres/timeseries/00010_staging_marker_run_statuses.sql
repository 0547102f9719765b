-- A run's staging partitions are UNLOGGED: PostgreSQL's crash recovery (and
-- a failover to a replica) empties them. staging.run_markers holds one row
-- per run, in an UNLOGGED partition of the run like the others, written
-- when the staging is created: crash recovery empties it together with the
-- data, so "the marker is gone" is how every activity that reads or resumes
-- from staging knows, whatever the row counts say, that it must start over.
-- generation counts the times the run re-created its staging; an activity
-- of an older generation finds no marker of its own.
--
-- Runs get two statuses: export_failed (parked: the export failed after its
-- attempts; waiting for retry-export or abandon) and terminated (the
-- workflow closed in Temporal without closing its run row, as `temporal
-- workflow terminate` does; set by the staging sweep). staging_recoveries
-- counts the times a run re-created lost staging.

-- +goose Up
CREATE TABLE staging.run_markers (
    run_key    text        NOT NULL,
    generation integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key)
) PARTITION BY LIST (run_key);

ALTER TABLE dwh.etl_runs DROP CONSTRAINT etl_runs_status_check;
ALTER TABLE dwh.etl_runs ADD CONSTRAINT etl_runs_status_check
    CHECK (status IN ('running', 'load_failed', 'export_failed', 'succeeded', 'abandoned', 'failed', 'terminated'));
ALTER TABLE dwh.etl_runs ADD COLUMN staging_recoveries integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE dwh.etl_runs DROP COLUMN staging_recoveries;
UPDATE dwh.etl_runs SET status = 'failed' WHERE status IN ('terminated', 'export_failed');
ALTER TABLE dwh.etl_runs DROP CONSTRAINT etl_runs_status_check;
ALTER TABLE dwh.etl_runs ADD CONSTRAINT etl_runs_status_check
    CHECK (status IN ('running', 'load_failed', 'succeeded', 'abandoned', 'failed'));

DROP TABLE staging.run_markers;
