package activities

import (
	"context"
	"fmt"
	"os"

	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/model"
)

// ScoreInput asks for the model's scores of a run's device-hours.
type ScoreInput struct {
	Run    RunRef       `json:"run"`
	Window batch.Window `json:"window"`
}

// ScoreResult says what ScoreAnomalies did. Model is empty when there was
// no model to score with; then nothing else is set.
type ScoreResult struct {
	Model string `json:"model,omitempty"`
	// Source is where the model came from: MODEL_PATH's file or
	// dwh.anomaly_models.
	Source string `json:"source,omitempty"`
	// Hours scored, those the model flagged, those the rules flagged
	// (an anomaly_count above 0), and those both flagged.
	Hours        int `json:"hours"`
	ModelFlagged int `json:"model_flagged"`
	RuleFlagged  int `json:"rule_flagged"`
	BothFlagged  int `json:"both_flagged"`
}

// ScoreAnomalies scores the device-hours of the run's window in
// dwh.ml_features (written by the export) with the anomaly model, and
// upserts dwh.anomaly_predictions beside the rules' count of the same
// hours. The model is MODEL_PATH's file when set, else the active model of
// dwh.anomaly_models; with neither it does nothing. A model whose feature
// schema does not match the table's is refused (ErrTypeModelRefused).
func (b *Batch) ScoreAnomalies(ctx context.Context, in ScoreInput) (ScoreResult, error) {
	m, source, err := b.model(ctx)
	if err != nil || m == nil {
		return ScoreResult{}, err
	}
	res := ScoreResult{Model: m.Version, Source: source}
	cols, err := warehouse.FeatureSchema(ctx, b.Timescale, m.Inputs)
	if err != nil {
		return res, err
	}
	if err := m.CheckSchema(cols); err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeModelRefused, err)
	}
	rows, err := warehouse.FeatureRows(ctx, b.Timescale, warehouse.FeatureFilter{From: in.Window.Start, To: in.Window.End, RunKey: in.Run.RunID})
	if err != nil {
		return res, err
	}
	preds := make([]warehouse.Prediction, len(rows))
	for i := range rows {
		r := &rows[i]
		p := warehouse.Prediction{DeviceID: r.DeviceID, Hour: r.Hour, Score: m.Score(r), RuleAnomalies: r.AnomalyCount}
		p.Flagged = p.Score >= m.Threshold
		rule := model.RuleScore(r) >= model.RuleThreshold
		res.Hours++
		if p.Flagged {
			res.ModelFlagged++
		}
		if rule {
			res.RuleFlagged++
		}
		if p.Flagged && rule {
			res.BothFlagged++
		}
		preds[i] = p
	}
	return res, warehouse.SavePredictions(ctx, b.Timescale, m.Version, in.Run.RunID, preds)
}

// model is the model to score with and where it came from: ModelPath's
// file, else the registered active model; nil when there is neither.
func (b *Batch) model(ctx context.Context) (*model.Model, string, error) {
	if b.ModelPath == "" {
		m, err := warehouse.ActiveModel(ctx, b.Timescale)
		if err != nil || m == nil {
			return nil, "", err
		}
		return m, "dwh.anomaly_models", nil
	}
	data, err := os.ReadFile(b.ModelPath)
	if err != nil {
		return nil, "", fmt.Errorf("MODEL_PATH: %w", err)
	}
	m, err := model.Decode(data)
	if err != nil {
		err = fmt.Errorf("MODEL_PATH=%s: %w", b.ModelPath, err)
		return nil, "", temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeModelRefused, err)
	}
	return m, b.ModelPath, nil
}
