-- Enables TimescaleDB when the server offers it and preloads it. Later
-- migrations test pg_extension and fall back to plain PostgreSQL otherwise.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
SELECT 1;
