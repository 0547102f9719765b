package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
)

// Names of the staging sweep, for the starter and its schedule.
const (
	StagingSweepWorkflowName = "StagingSweepWorkflow"
	// DefaultStagingSweepScheduleID and DefaultStagingSweepCron are the
	// sweep's schedule: hourly, at half past.
	DefaultStagingSweepScheduleID = "iot-staging-sweep"
	DefaultStagingSweepCron       = "30 * * * *"
)

// StagingSweepInput is the input of StagingSweepWorkflow.
type StagingSweepInput struct {
	// LockWait bounds the wait for the locks of each run's drop; 0 means
	// activities.DefaultSweepLockWait.
	LockWait time.Duration `json:"lock_wait,omitempty"`
}

// StagingSweepWorkflow drops the staging of every batch run that is not
// running in Temporal and marks the rows that terminated runs left open as
// terminated (activities.Batch.SweepStaging). Every batch run sweeps at its
// start too; this workflow, on a schedule, covers the days without runs.
// It is one activity: a run it cannot sweep now is reported, and the next
// sweep tries again.
func StagingSweepWorkflow(ctx workflow.Context, in StagingSweepInput) (*activities.SweepStagingResult, error) {
	var a *activities.Batch
	var res activities.SweepStagingResult
	err := workflow.ExecuteActivity(sweepActivity(ctx), a.SweepStaging, activities.SweepStagingInput{LockWait: in.LockWait}).Get(ctx, &res)
	if err != nil {
		return nil, err
	}
	workflow.GetLogger(ctx).Info("staging sweep", "dropped", res.Dropped, "terminated", res.Closed, "running", res.Running, "unknown", res.Unknown, "failed", res.Failed)
	return &res, nil
}
