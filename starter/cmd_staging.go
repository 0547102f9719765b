package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/workflows"
)

func init() {
	register(command{Name: "staging sweep", Summary: "drop now the staging of batch runs not running in Temporal (terminated, timed out) and mark their open runs terminated", Run: runStagingSweep})
	register(command{Name: "staging schedule", Summary: "create the staging sweep's schedule (hourly, overlap Skip); manage it with schedule describe|pause|unpause|trigger|delete -id " + workflows.DefaultStagingSweepScheduleID, Run: runStagingSchedule})
}

// stagingSweepWorkflowID is the id of a sweep started by hand: one at a
// time, a second request waits for the running one.
const stagingSweepWorkflowID = "iot-staging-sweep-now"

func runStagingSweep(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "staging sweep", "[flags]")
	lockWait := fs.Duration("lock-wait", activities.DefaultSweepLockWait, "how long each run's drop waits for its locks before it is left to the next sweep")
	id := fs.String("id", stagingSweepWorkflowID, "workflow id of the sweep (a sweep of that id already running is waited for)")
	if err := parse(fs, args); err != nil {
		return err
	}
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       *id,
		TaskQueue:                app.Cfg.Temporal.BatchTaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionTimeout: 15 * time.Minute,
	}, workflows.StagingSweepWorkflowName, workflows.StagingSweepInput{LockWait: *lockWait})
	if err != nil {
		return fmt.Errorf("start the staging sweep: %w", err)
	}
	var res activities.SweepStagingResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("staging sweep %s (Temporal UI: %s): %w", run.GetID(), runURL(app, run.GetID(), run.GetRunID()), err)
	}
	printSweep(app, &res)
	if res.Failed > 0 {
		return fmt.Errorf("%d run(s) could not be swept; the next sweep tries again", res.Failed)
	}
	return nil
}

func printSweep(app *App, res *activities.SweepStagingResult) {
	fmt.Fprintf(app.Out, "staging sweep: %d run(s) dropped, %d terminated run(s) closed, %d running left alone, %d unknown left alone, %d failed\n",
		res.Dropped, res.Closed, res.Running, res.Unknown, res.Failed)
	if len(res.Runs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  run\tworkflow\tstatus\taction\tdetail")
	for _, r := range res.Runs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.RunID, r.WorkflowID, r.Status, r.Action, r.Detail)
	}
	tw.Flush()
}

func runStagingSchedule(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "staging schedule", "[flags]")
	id := fs.String("id", workflows.DefaultStagingSweepScheduleID, "schedule id")
	cron := fs.String("cron", workflows.DefaultStagingSweepCron, "cron expression, UTC")
	paused := fs.Bool("paused", false, "create it paused")
	if err := parse(fs, args); err != nil {
		return err
	}
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	_, err = tc.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   *id,
		Spec: client.ScheduleSpec{CronExpressions: []string{*cron}, TimeZoneName: "UTC"},
		Action: &client.ScheduleWorkflowAction{
			ID:        *id, // Temporal appends the scheduled time
			Workflow:  workflows.StagingSweepWorkflowName,
			Args:      []any{workflows.StagingSweepInput{}},
			TaskQueue: app.Cfg.Temporal.BatchTaskQueue,
		},
		// A sweep missed during an outage is made up once: the next one
		// does the same work.
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: time.Hour,
		Paused:        *paused,
		Note:          "staging sweep: drops the staging of batch runs that are not running",
	})
	if err != nil {
		return fmt.Errorf("create schedule %s: %w", *id, err)
	}
	fmt.Fprintf(app.Out, "schedule %s created: %q UTC, runs %s, overlap skip%s\n", *id, *cron, workflows.StagingSweepWorkflowName, map[bool]string{true: ", paused"}[*paused])
	fmt.Fprintf(app.Out, "manage it with: starter schedule describe|pause|unpause|trigger|delete -id %s\n", *id)
	return nil
}
