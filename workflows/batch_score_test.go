package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-etl/iot-etl/activities"
)

// TestScoringAfterExport: the model scores the run's window after the
// export, and its figures are in the result.
func TestScoringAfterExport(t *testing.T) {
	var got activities.ScoreInput
	var order []string
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExportFeatures, mock.Anything, mock.Anything).Return(
			func(context.Context, activities.ExportFeaturesInput) (activities.ExportFeaturesResult, error) {
				order = append(order, "export")
				return activities.ExportFeaturesResult{Rows: 7}, nil
			})
		env.OnActivity(a.ScoreAnomalies, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.ScoreInput) (activities.ScoreResult, error) {
				order = append(order, "score")
				got = in
				return activities.ScoreResult{Model: "logistic-0123456789ab", Source: "dwh.anomaly_models", Hours: 7, ModelFlagged: 2, RuleFlagged: 3, BothFlagged: 1}, nil
			})
		env.OnActivity(a.FinishRun, mock.Anything, mock.Anything).Return(
			func(context.Context, activities.FinishRunInput) (activities.FinishRunResult, error) {
				order = append(order, "finish")
				return activities.FinishRunResult{FactRows: 42}, nil
			})
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
	r := result(t, env)
	if want := (activities.ScoreResult{Model: "logistic-0123456789ab", Source: "dwh.anomaly_models", Hours: 7, ModelFlagged: 2, RuleFlagged: 3, BothFlagged: 1}); r.Scoring != want || r.ScoringError != "" {
		t.Errorf("scoring %+v, error %q; want %+v", r.Scoring, r.ScoringError, want)
	}
	if !got.Window.Start.Equal(nov20) || !got.Window.End.Equal(nov21) || got.Run.RunID == "" {
		t.Errorf("ScoreAnomalies input %+v", got)
	}
	if len(order) != 3 || order[0] != "export" || order[1] != "score" || order[2] != "finish" {
		t.Errorf("order %v, want export, score, finish", order)
	}
}

// TestRefusedModelDoesNotFailTheRun: a model the activity refuses (its
// schema differs) is recorded in the result; the run, loaded and exported,
// succeeds.
func TestRefusedModelDoesNotFailTheRun(t *testing.T) {
	var calls int
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ScoreAnomalies, mock.Anything, mock.Anything).Return(
			func(context.Context, activities.ScoreInput) (activities.ScoreResult, error) {
				calls++
				err := errors.New(`model logistic-0123456789ab: trained on feature schema 3f2a but dwh.ml_features has 9c1b: column "slope" is missing`)
				return activities.ScoreResult{}, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeModelRefused, err)
			})
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
	r := result(t, env)
	if r.Status != "succeeded" || r.RowsLoaded != 42 {
		t.Errorf("status %s, %d rows; want succeeded, 42", r.Status, r.RowsLoaded)
	}
	if calls != 1 {
		t.Errorf("ScoreAnomalies ran %d times, want 1 (refusal is not retried)", calls)
	}
	if want := `column "slope" is missing`; !strings.Contains(r.ScoringError, want) || r.Scoring.Model != "" {
		t.Errorf("scoring error %q (model %q), want it to name %s", r.ScoringError, r.Scoring.Model, want)
	}
}
