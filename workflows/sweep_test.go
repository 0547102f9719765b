package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-etl/iot-etl/activities"
)

func TestStagingSweepWorkflow(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(a)
	want := activities.SweepStagingResult{Dropped: 1, Closed: 1, Running: 2, Runs: []activities.SweptRun{
		{RunID: "r1", WorkflowID: "w1", Status: "succeeded", Action: activities.SweepDropped},
		{RunID: "r2", WorkflowID: "w2", Status: "running", Action: activities.SweepClosed, Detail: "workflow terminated in Temporal"},
	}}
	var got activities.SweepStagingInput
	env.OnActivity(a.SweepStaging, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SweepStagingInput) (activities.SweepStagingResult, error) {
		got = in
		return want, nil
	})
	env.ExecuteWorkflow(StagingSweepWorkflow, StagingSweepInput{LockWait: 2 * time.Second})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res activities.SweepStagingResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if got.LockWait != 2*time.Second || got.Except != "" {
		t.Errorf("activity input %+v; want the lock wait and no exception", got)
	}
}

// TestStagingSweepWorkflowRetries: a sweep that cannot reach the warehouse
// is retried, then fails.
func TestStagingSweepWorkflowRetries(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(a)
	attempts := 0
	env.OnActivity(a.SweepStaging, mock.Anything, mock.Anything).Return(func(context.Context, activities.SweepStagingInput) (activities.SweepStagingResult, error) {
		attempts++
		return activities.SweepStagingResult{}, errors.New("connection refused")
	})
	env.ExecuteWorkflow(StagingSweepWorkflow, StagingSweepInput{})
	if env.GetWorkflowError() == nil {
		t.Fatal("sweep succeeded")
	}
	if attempts != 3 {
		t.Errorf("%d attempts, want 3", attempts)
	}
}
