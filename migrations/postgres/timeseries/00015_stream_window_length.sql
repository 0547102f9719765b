-- Stream windows of any configured length (STREAM_WINDOW), not only one
-- minute: a window is a whole number of seconds that divides one hour and
-- starts on a multiple of its length from 2000-01-01 00:00 UTC (date_bin's
-- origin, and so on the hour), so windows never straddle an hour and the
-- reconciliation can roll them up per hour. Each row keeps the length it
-- was written with: rows of an earlier length stay as they are (see
-- docs/stream.md before changing the length of a table that holds rows).

-- +goose Up
ALTER TABLE public.sensor_readings_stream_agg DROP CONSTRAINT sensor_readings_stream_agg_window_chk;
ALTER TABLE public.sensor_readings_stream_agg ADD CONSTRAINT sensor_readings_stream_agg_window_chk CHECK (
    window_end > window_start
    AND window_end - window_start <= interval '1 hour'
    AND 3600 % extract(epoch FROM window_end - window_start) = 0
    AND extract(epoch FROM window_end - window_start) = trunc(extract(epoch FROM window_end - window_start))
    AND date_bin(window_end - window_start, window_start, timestamptz '2000-01-01 00:00:00+00') = window_start
);

-- +goose Down
-- Fails while rows of another length than one minute are stored: empty the
-- stream tables (docs/stream.md) first.
ALTER TABLE public.sensor_readings_stream_agg DROP CONSTRAINT sensor_readings_stream_agg_window_chk;
ALTER TABLE public.sensor_readings_stream_agg ADD CONSTRAINT sensor_readings_stream_agg_window_chk
    CHECK (window_end = window_start + interval '1 minute');
