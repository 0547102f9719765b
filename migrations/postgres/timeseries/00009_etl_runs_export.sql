-- Where a run's feature export was published: the URL of the window's
-- manifest.json and the URLs of the data files it lists (file:// or s3://).

-- +goose Up
ALTER TABLE dwh.etl_runs
    ADD COLUMN export_manifest_url text,
    ADD COLUMN export_files        text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE dwh.etl_runs
    DROP COLUMN export_manifest_url,
    DROP COLUMN export_files;
