-- Dead-letter replay (starter dlq replay, workflows.DLQReplayWorkflow).
--   watermark:     the partition's event-time watermark when the record was
--                  quarantined (NULL: the partition had none), so a replay
--                  judges lateness as the consumer did then, with today's
--                  allowed lateness;
--   replayed_at,
--   replay_run_id,
--   replay_outcome: set in the transaction that landed the record's reading
--                  ('landed') or found it stored already ('duplicate'), so
--                  no replay lands it twice.
-- The partial index serves the replay's scan of the open dead letters.

-- +goose Up
ALTER TABLE public.stream_dead_letters
    ADD COLUMN watermark     timestamptz,
    ADD COLUMN replayed_at   timestamptz,
    ADD COLUMN replay_run_id text,
    ADD COLUMN replay_outcome text,
    ADD CONSTRAINT stream_dead_letters_replay_chk CHECK (
        (replayed_at IS NULL) = (replay_run_id IS NULL) AND (replayed_at IS NULL) = (replay_outcome IS NULL)
        AND replay_outcome IN ('landed', 'duplicate'));

-- Late dead letters stored before this migration carry the watermark in
-- their error text ("... partition watermark <RFC 3339>, allowed lateness ...").
UPDATE public.stream_dead_letters
SET watermark = substring(error FROM 'partition watermark ([^ ,]+),')::timestamptz
WHERE reason = 'late' AND error ~ 'partition watermark [0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ,]+,';

CREATE INDEX stream_dead_letters_open_idx ON public.stream_dead_letters (topic, id) WHERE replayed_at IS NULL;

-- +goose Down
DROP INDEX public.stream_dead_letters_open_idx;
ALTER TABLE public.stream_dead_letters
    DROP CONSTRAINT stream_dead_letters_replay_chk,
    DROP COLUMN replay_outcome,
    DROP COLUMN replay_run_id,
    DROP COLUMN replayed_at,
    DROP COLUMN watermark;
