-- The anomaly model (docs/ML.md). `starter model train --register` keeps
-- the trained model here; at most one is active. When the worker has no
-- MODEL_PATH, the batch's ScoreAnomalies step scores each run's device-hours
-- (dwh.ml_features) with the active model and writes dwh.anomaly_predictions,
-- beside what the rules flagged in the same hours, so the two can be
-- compared.

-- +goose Up
CREATE TABLE dwh.anomaly_models (
    version       text        PRIMARY KEY,
    kind          text        NOT NULL,
    schema_hash   text        NOT NULL,
    model         jsonb       NOT NULL,
    active        boolean     NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX anomaly_models_one_active ON dwh.anomaly_models (active) WHERE active;

CREATE TABLE dwh.anomaly_predictions (
    device_id      text             NOT NULL,
    hour           timestamptz      NOT NULL,
    model_version  text             NOT NULL,
    score          double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    flagged        boolean          NOT NULL,
    rule_anomalies integer          NOT NULL,
    run_id         text             NOT NULL,
    scored_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, hour, model_version)
);
CREATE INDEX anomaly_predictions_hour_idx ON dwh.anomaly_predictions (hour);
CREATE INDEX anomaly_predictions_run_idx ON dwh.anomaly_predictions (run_id);

-- +goose Down
DROP TABLE dwh.anomaly_predictions;
DROP TABLE dwh.anomaly_models;
