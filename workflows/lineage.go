package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
)

// emitLineage sends one OpenLineage run event of this run through the
// EmitLineage activity (workflow code sends nothing itself). It runs on a
// disconnected context, so the FAIL event of a cancelled run goes out too,
// and an event that cannot be sent never fails the run.
func emitLineage(ctx workflow.Context, in activities.LineageInput) {
	var l *activities.Lineage
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         retry(3, time.Second, 10*time.Second),
	})
	if err := workflow.ExecuteActivity(dctx, l.EmitLineage, in).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("lineage event not sent", "job", in.Job, "event_type", in.EventType, "error", err)
	}
}
