package main

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/workflows"
)

func init() {
	register(command{Name: "schedule create", Summary: "create the nightly batch schedule (cron in UTC, overlap Skip, explicit catch-up window)", Run: runScheduleCreate})
	register(command{Name: "schedule describe", Summary: "show the schedule, its next runs and its recent actions", Run: runScheduleDescribe})
	register(command{Name: "schedule pause", Summary: "pause the schedule", Run: runSchedulePause})
	register(command{Name: "schedule unpause", Summary: "unpause the schedule", Run: runScheduleUnpause})
	register(command{Name: "schedule trigger", Summary: "start a run now (window: the previous UTC day); after the running one, if any", Run: runScheduleTrigger})
	register(command{Name: "schedule backfill", Summary: "run the batch for every data day from --from to --to (inclusive), buffered one after another", Run: runScheduleBackfill})
	register(command{Name: "schedule delete", Summary: "delete the schedule (runs already started are kept)", Run: runScheduleDelete})
}

// scheduleFlags parses the flags every schedule command shares.
func scheduleFlags(app *App, name string, args []string) (string, error) {
	fs := newFlags(app, name, "[flags]")
	id := fs.String("id", app.Cfg.Batch.ScheduleID, "schedule id")
	if err := parse(fs, args); err != nil {
		return "", err
	}
	return *id, nil
}

func scheduleHandle(ctx context.Context, app *App, id string) (client.ScheduleHandle, error) {
	tc, err := app.Temporal(ctx)
	if err != nil {
		return nil, err
	}
	return tc.ScheduleClient().GetHandle(ctx, id), nil
}

func runScheduleCreate(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "schedule create", "[flags]")
	id := fs.String("id", app.Cfg.Batch.ScheduleID, "schedule id")
	cron := fs.String("cron", app.Cfg.Batch.ScheduleCron, "cron expression, UTC")
	catchup := fs.Duration("catchup-window", app.Cfg.Batch.CatchupWindow, "how late a missed run may still start after an outage")
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
			ID:       *id, // Temporal appends the scheduled time
			Workflow: workflows.BatchWorkflowName,
			// The lookback goes with the schedule: a ROLLING_WINDOW longer
			// than the workflow's default lookback needs the longer history.
			Args:      []any{workflows.BatchInput{Gate: app.Cfg.Batch.Gate(), Lookback: app.Cfg.Batch.Lookback}},
			TaskQueue: app.Cfg.Temporal.BatchTaskQueue,
		},
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: *catchup,
		Paused:        *paused,
		Note:          "nightly batch ETL of the previous UTC day",
	})
	if err != nil {
		return fmt.Errorf("create schedule %s: %w", *id, err)
	}
	fmt.Fprintf(app.Out, "schedule %s created: %q UTC, overlap skip, catch-up window %s%s\n", *id, *cron, *catchup, map[bool]string{true: ", paused"}[*paused])
	return nil
}

func runScheduleDescribe(ctx context.Context, app *App, args []string) error {
	id, err := scheduleFlags(app, "schedule describe", args)
	if err != nil {
		return err
	}
	h, err := scheduleHandle(ctx, app, id)
	if err != nil {
		return err
	}
	d, err := h.Describe(ctx)
	if err != nil {
		return fmt.Errorf("describe schedule %s: %w", id, err)
	}
	s := d.Schedule
	fmt.Fprintf(app.Out, "schedule %s\n", id)
	if s.Spec != nil {
		fmt.Fprintf(app.Out, "  spec:           %d calendar entries, time zone %q\n", len(s.Spec.Calendars), s.Spec.TimeZoneName)
	}
	if s.Policy != nil {
		fmt.Fprintf(app.Out, "  overlap:        %s\n  catch-up:       %s\n", s.Policy.Overlap, s.Policy.CatchupWindow)
	}
	if s.State != nil {
		note := ""
		if s.State.Note != "" {
			note = " (" + s.State.Note + ")"
		}
		fmt.Fprintf(app.Out, "  paused:         %v%s\n", s.State.Paused, note)
	}
	fmt.Fprintf(app.Out, "  actions taken:  %d (missed catch-up window: %d, skipped by overlap: %d)\n",
		d.Info.NumActions, d.Info.NumActionsMissedCatchupWindow, d.Info.NumActionsSkippedOverlap)
	for i, t := range d.Info.NextActionTimes {
		if i == 3 {
			break
		}
		fmt.Fprintf(app.Out, "  next run:       %s\n", t.UTC().Format(time.RFC3339))
	}
	for _, a := range d.Info.RecentActions {
		if a.StartWorkflowResult != nil {
			fmt.Fprintf(app.Out, "  recent:         scheduled %s, workflow %s\n", a.ScheduleTime.UTC().Format(time.RFC3339), a.StartWorkflowResult.WorkflowID)
		}
	}
	for _, r := range d.Info.RunningWorkflows {
		fmt.Fprintf(app.Out, "  running:        %s\n", r.WorkflowID)
	}
	return nil
}

func runSchedulePause(ctx context.Context, app *App, args []string) error {
	return scheduleSimple(ctx, app, "schedule pause", args, func(ctx context.Context, h client.ScheduleHandle) error {
		return h.Pause(ctx, client.SchedulePauseOptions{Note: "paused with starter schedule pause"})
	}, "paused")
}

func runScheduleUnpause(ctx context.Context, app *App, args []string) error {
	return scheduleSimple(ctx, app, "schedule unpause", args, func(ctx context.Context, h client.ScheduleHandle) error {
		return h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: "unpaused with starter schedule unpause"})
	}, "unpaused")
}

func runScheduleTrigger(ctx context.Context, app *App, args []string) error {
	return scheduleSimple(ctx, app, "schedule trigger", args, func(ctx context.Context, h client.ScheduleHandle) error {
		// Buffer one: a trigger while a run is going starts right after it,
		// rather than being skipped without a word.
		return h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE})
	}, "triggered")
}

func runScheduleDelete(ctx context.Context, app *App, args []string) error {
	return scheduleSimple(ctx, app, "schedule delete", args, func(ctx context.Context, h client.ScheduleHandle) error {
		return h.Delete(ctx)
	}, "deleted")
}

func scheduleSimple(ctx context.Context, app *App, name string, args []string, do func(context.Context, client.ScheduleHandle) error, done string) error {
	id, err := scheduleFlags(app, name, args)
	if err != nil {
		return err
	}
	h, err := scheduleHandle(ctx, app, id)
	if err != nil {
		return err
	}
	if err := do(ctx, h); err != nil {
		return fmt.Errorf("%s %s: %w", name, id, err)
	}
	fmt.Fprintf(app.Out, "schedule %s %s\n", id, done)
	return nil
}

func runScheduleBackfill(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "schedule backfill", "--from YYYY-MM-DD --to YYYY-MM-DD")
	id := fs.String("id", app.Cfg.Batch.ScheduleID, "schedule id")
	fromS := fs.String("from", "", "first data day to process (UTC)")
	toS := fs.String("to", "", "last data day to process, inclusive (default: --from)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *fromS == "" {
		return fmt.Errorf("%w: --from is required", errUsage)
	}
	from, err := parseDay("from", *fromS)
	if err != nil {
		return err
	}
	to := from
	if *toS != "" {
		if to, err = parseDay("to", *toS); err != nil {
			return err
		}
	}
	if to.Before(from) {
		return fmt.Errorf("%w: --to is before --from", errUsage)
	}
	h, err := scheduleHandle(ctx, app, *id)
	if err != nil {
		return err
	}
	times := batch.ScheduleTimes(from, to)
	start, end := times.Start, times.End
	err = h.Backfill(ctx, client.ScheduleBackfillOptions{Backfill: []client.ScheduleBackfill{{
		Start: start, End: end, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL,
	}}})
	if err != nil {
		return fmt.Errorf("backfill %s: %w", *id, err)
	}
	days := int(to.Sub(from)/batch.Day) + 1
	fmt.Fprintf(app.Out, "backfill of %d day(s) %s..%s requested on %s (schedule times [%s, %s), buffered one after another)\n",
		days, from.Format("2006-01-02"), to.Format("2006-01-02"), *id, start.Format(time.RFC3339), end.Format(time.RFC3339))
	return nil
}
