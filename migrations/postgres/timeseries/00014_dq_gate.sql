-- The data-quality gate (BATCH_DQ_MIN, BATCH_REJECT_MAX): a run whose staged
-- output breaches it parks before Load as awaiting_approval, until an
-- operator approves it (it loads) or rejects it (status rejected, nothing
-- loaded). The decision, its reason and its time are kept with the run;
-- dq_report is the report the operator decided on.

-- +goose Up
ALTER TABLE dwh.etl_runs DROP CONSTRAINT etl_runs_status_check;
ALTER TABLE dwh.etl_runs ADD CONSTRAINT etl_runs_status_check
    CHECK (status IN ('running', 'load_failed', 'export_failed', 'awaiting_approval', 'succeeded', 'abandoned', 'rejected', 'failed', 'terminated'));
ALTER TABLE dwh.etl_runs
    ADD COLUMN dq_report       jsonb,
    ADD COLUMN decision        text CHECK (decision IN ('approved', 'rejected')),
    ADD COLUMN decision_reason text,
    ADD COLUMN decided_at      timestamptz;

-- +goose Down
ALTER TABLE dwh.etl_runs
    DROP COLUMN decided_at,
    DROP COLUMN decision_reason,
    DROP COLUMN decision,
    DROP COLUMN dq_report;
UPDATE dwh.etl_runs SET status = 'failed' WHERE status IN ('awaiting_approval', 'rejected');
ALTER TABLE dwh.etl_runs DROP CONSTRAINT etl_runs_status_check;
ALTER TABLE dwh.etl_runs ADD CONSTRAINT etl_runs_status_check
    CHECK (status IN ('running', 'load_failed', 'export_failed', 'succeeded', 'abandoned', 'failed', 'terminated'));
