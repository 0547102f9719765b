package workflows

import (
	"time"

	"github.com/iot-etl/iot-etl/activities"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Error types the activities raise for data that retrying cannot fix.
// Activities return them as non-retryable application errors; listing them
// here as well keeps the policy explicit in one place.
var nonRetryable = []string{activities.ErrTypeInvalidData, activities.ErrTypeStagingLost, activities.ErrTypeInvalidInput, activities.ErrTypeSourceSchema}

func retry(maxAttempts int32, initial, maxInterval time.Duration) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        initial,
		BackoffCoefficient:     2,
		MaximumInterval:        maxInterval,
		MaximumAttempts:        maxAttempts,
		NonRetryableErrorTypes: nonRetryable,
	}
}

// shortActivity is for bookkeeping: run rows, cleanup, small extracts.
func shortActivity(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         retry(10, time.Second, 30*time.Second),
	})
}

// longActivity is for chunked work that heartbeats and resumes: readings
// extract, transform, and the rejects, the gate's report and the finish. A
// worker that dies is noticed within
// the heartbeat timeout, and the retry continues from the last heartbeat.
func longActivity(ctx workflow.Context, heartbeat time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy:         retry(10, time.Second, time.Minute),
	})
}

// loadActivity is for Load. Its retry policy is bounded: when it is
// exhausted the workflow parks in load_failed and waits for an operator.
func loadActivity(ctx workflow.Context, maxAttempts int32, heartbeat time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy:         retry(maxAttempts, time.Second, 30*time.Second),
	})
}

// exportActivity is for ExportFeatures: bounded like Load, so that an
// export store that keeps failing parks the run in export_failed.
func exportActivity(ctx workflow.Context, maxAttempts int32, heartbeat time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy:         retry(maxAttempts, time.Second, 30*time.Second),
	})
}

// sweepActivity is for the staging sweep: a few drops, each bounded by
// its lock wait, and one Temporal call per open run.
func sweepActivity(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy:         retry(3, time.Second, 30*time.Second),
	})
}
