-- Dead letters by reason for one topic (the dashboard every 2 s, each
-- metrics scrape) read this index only, instead of the whole table.

-- +goose Up
CREATE INDEX stream_dead_letters_topic_reason_idx ON public.stream_dead_letters (topic, reason);

-- +goose Down
DROP INDEX public.stream_dead_letters_topic_reason_idx;
