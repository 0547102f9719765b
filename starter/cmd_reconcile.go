package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/workflows"
)

func init() {
	register(command{Name: "reconcile", Summary: "compare the stream's windows with the batch facts per device and hour; --repair rebuilds the mismatching windows from raw", Run: runReconcile})
	register(command{Name: "reconcile schedule", Summary: "create the daily reconciliation's schedule (the previous UTC day, after the nightly batch); manage it with schedule describe|pause|unpause|trigger|delete -id " + workflows.DefaultReconcileScheduleID, Run: runReconcileSchedule})
}

func runReconcile(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "reconcile", "[--from T] [--to T] [--repair]")
	from := fs.String("from", "", "range start, YYYY-MM-DD or RFC 3339, a whole hour (default: yesterday 00:00 UTC)")
	to := fs.String("to", "", "range end, exclusive (default: --from + 1 day)")
	repair := fs.Bool("repair", false, "rebuild the stream windows of each mismatching device-hour from the raw readings")
	show := fs.Int("show", 20, "how many mismatches to list")
	if err := parse(fs, args); err != nil {
		return err
	}
	var w batch.Window
	switch {
	case *from != "":
		start, err := parseDay("from", *from)
		if err != nil {
			return err
		}
		w = batch.Window{Start: start, End: start.Add(24 * time.Hour)}
		if *to != "" {
			if w.End, err = parseDay("to", *to); err != nil {
				return err
			}
		}
	case *to != "":
		return fmt.Errorf("%w: --to needs --from", errUsage)
	default:
		w = batch.DayBefore(time.Now())
	}
	if !w.Start.Before(w.End) || w.Start.Truncate(time.Hour) != w.Start || w.End.Truncate(time.Hour) != w.End {
		return fmt.Errorf("%w: --from and --to must be whole hours, --from before --to", errUsage)
	}
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	const layout = "20060102T15Z"
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       "iot-reconcile-" + w.Start.Format(layout) + "-" + w.End.Format(layout),
		TaskQueue:                app.Cfg.Temporal.BatchTaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
	}, workflows.ReconcileWorkflowName, workflows.ReconcileInput{From: w.Start, To: w.End, Repair: *repair})
	if err != nil {
		return fmt.Errorf("start reconciliation: %w", err)
	}
	fmt.Fprintf(app.Out, "reconciliation %s started: [%s, %s)%s\n", run.GetID(), w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339),
		map[bool]string{true: ", repairing"}[*repair])
	fmt.Fprintf(app.Out, "Temporal UI: %s\n", runURL(app, run.GetID(), run.GetRunID()))
	var res workflows.ReconcileResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("reconciliation %s: %w", run.GetID(), err)
	}
	fmt.Fprintf(app.Out, "device-hours compared: %d; mismatches: %d (differs %d, missing_stream %d, missing_batch %d)\n", res.Compared, res.Total(),
		res.Mismatches["differs"], res.Mismatches["missing_stream"], res.Mismatches["missing_batch"])
	if res.Repair {
		fmt.Fprintf(app.Out, "repaired: %d device-hours rebuilt from raw; still mismatched after the repair: %d\n", res.Repaired, res.StillMismatched)
	}
	if res.Total() == 0 || *show <= 0 {
		return nil
	}
	pool, err := app.Timescale(ctx)
	if err != nil {
		return err
	}
	rows, err := pool.Query(ctx, `SELECT device_id, hour, kind, coalesce(stream_count::text, '-'), coalesce(batch_count::text, '-'),
		coalesce(stream_sum::text, '-'), coalesce(batch_sum::text, '-'), repaired_at IS NOT NULL
		FROM dwh.reconciliation WHERE run_id = $1 ORDER BY hour, device_id LIMIT $2`, res.RunID, *show)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintf(app.Out, "\nmismatches (dwh.reconciliation, run_id %s):\n", res.RunID)
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tHOUR\tKIND\tSTREAM COUNT\tBATCH COUNT\tSTREAM SUM\tBATCH SUM\tREPAIRED")
	for rows.Next() {
		var dev, kind, sc, bc, ss, bs string
		var hour time.Time
		var repaired bool
		if err := rows.Scan(&dev, &hour, &kind, &sc, &bc, &ss, &bs, &repaired); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\n", dev, hour.UTC().Format(time.RFC3339), kind, sc, bc, ss, bs, repaired)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return tw.Flush()
}

func runReconcileSchedule(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "reconcile schedule", "[flags]")
	id := fs.String("id", workflows.DefaultReconcileScheduleID, "schedule id")
	cron := fs.String("cron", workflows.DefaultReconcileCron, "cron expression, UTC (after the nightly batch)")
	repair := fs.Bool("repair", false, "rebuild the mismatching stream windows too")
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
			Workflow:  workflows.ReconcileWorkflowName,
			Args:      []any{workflows.ReconcileInput{Repair: *repair}},
			TaskQueue: app.Cfg.Temporal.BatchTaskQueue,
		},
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: 6 * time.Hour,
		Paused:        *paused,
		Note:          "stream/batch reconciliation of the previous UTC day",
	})
	if err != nil {
		return fmt.Errorf("create schedule %s: %w", *id, err)
	}
	fmt.Fprintf(app.Out, "schedule %s created: %q UTC, runs %s over the previous UTC day, overlap skip%s\n", *id, *cron, workflows.ReconcileWorkflowName,
		map[bool]string{true: ", paused"}[*paused])
	fmt.Fprintf(app.Out, "manage it with: starter schedule describe|pause|unpause|trigger|delete -id %s\n", *id)
	return nil
}
