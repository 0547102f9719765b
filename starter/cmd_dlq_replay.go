package main

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/workflows"
)

func init() {
	register(command{Name: "dlq replay", Summary: "decode the stream's dead letters again with today's registry and rules; land those valid now, exactly once", Run: runDLQReplay})
}

// dlqReplayWorkflowID allows one replay (and one dry run) of a topic at a
// time.
func dlqReplayWorkflowID(topic string, dryRun bool) string {
	id := "iot-dlq-replay-" + topic
	if dryRun {
		id += "-dry-run"
	}
	return id
}

func runDLQReplay(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "dlq replay", "[--reason R] [--since T] [--until T] [--partition P] [--dry-run]")
	reason := fs.String("reason", "", "only dead letters of this reason: "+reasonList())
	since := fs.String("since", "", "only those quarantined at or after this time, YYYY-MM-DD or RFC 3339")
	until := fs.String("until", "", "only those quarantined before this time, YYYY-MM-DD or RFC 3339")
	partition := fs.Int("partition", -1, "only this partition (-1: all)")
	dryRun := fs.Bool("dry-run", false, "print what would land, by reason, and change nothing")
	topic := fs.String("topic", app.Cfg.Kafka.Topic, "Kafka topic of the stream")
	lateness := fs.Duration("allowed-lateness", app.Cfg.Stream.AllowedLateness, "how late a reading may be for its window, judged against the watermark when it was quarantined")
	win := fs.Duration("window", app.Cfg.Stream.Window, "length of the stream's windows the landed readings merge into (the stream's --window)")
	pageSize := fs.Int("page-size", activities.DefaultReplayPage, "dead letters per transaction")
	wait := fs.Bool("wait", true, "wait for the replay, showing progress (false: start and print the id)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *reason != "" && !slices.Contains(reading.Reasons(), reading.Reason(*reason)) {
		return fmt.Errorf("%w: --reason %q: want one of %s", errUsage, *reason, reasonList())
	}
	if *partition < -1 || *pageSize < 1 || *lateness < 0 {
		return fmt.Errorf("%w: --partition must be -1 or a partition, --page-size at least 1, --allowed-lateness not negative", errUsage)
	}
	if err := windowFlag(*win); err != nil {
		return err
	}
	in := workflows.DLQReplayInput{Topic: *topic, Reason: *reason, Partition: int32(*partition), AllowedLateness: *lateness, Window: *win,
		PageSize: *pageSize, DryRun: *dryRun}
	var err error
	if *since != "" {
		if in.Since, err = parseDay("since", *since); err != nil {
			return err
		}
	}
	if *until != "" {
		if in.Until, err = parseDay("until", *until); err != nil {
			return err
		}
	}
	if !in.Since.IsZero() && !in.Until.IsZero() && !in.Since.Before(in.Until) {
		return fmt.Errorf("%w: --since must be before --until", errUsage)
	}
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       dlqReplayWorkflowID(in.Topic, in.DryRun),
		TaskQueue:                app.Cfg.Temporal.StreamTaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
	}, workflows.DLQReplayWorkflowName, in)
	if err != nil {
		return fmt.Errorf("start dead-letter replay: %w", err)
	}
	what := "replay"
	if in.DryRun {
		what = "dry run"
	}
	fmt.Fprintf(app.Out, "dead-letter %s %s started on %s\n", what, run.GetID(), in.Topic)
	fmt.Fprintf(app.Out, "Temporal UI: %s\n", runURL(app, run.GetID(), run.GetRunID()))
	if !*wait {
		return nil
	}
	res, err := watchReplay(ctx, app, tc, run)
	if err != nil {
		return err
	}
	printReplay(app, res)
	return nil
}

// watchReplay waits for the replay, printing its progress when it changed,
// every 2 s.
func watchReplay(ctx context.Context, app *App, tc client.Client, run client.WorkflowRun) (workflows.DLQReplayProgress, error) {
	done := make(chan error, 1)
	var res workflows.DLQReplayProgress
	go func() { done <- run.Get(ctx, &res) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	last := -1
	for {
		select {
		case err := <-done:
			if err != nil {
				return res, fmt.Errorf("dead-letter replay %s: %w", run.GetID(), err)
			}
			return res, nil
		case <-tick.C:
			v, err := tc.QueryWorkflow(ctx, run.GetID(), "", workflows.QueryProgress)
			var p workflows.DLQReplayProgress
			if err != nil || v.Get(&p) != nil || p.Pages == last {
				continue
			}
			last = p.Pages
			fmt.Fprintf(app.Out, "  %d pages, %d dead letters: %d landed, %d duplicates, %d kept\n",
				p.Pages, p.Total.DeadLetters, p.Total.Landed, p.Total.Duplicates, p.Total.Kept)
		}
	}
}

func printReplay(app *App, p workflows.DLQReplayProgress) {
	if p.Total.DeadLetters == 0 {
		fmt.Fprintln(app.Out, "no open dead letters matched")
		return
	}
	if p.DryRun {
		fmt.Fprintln(app.Out, "dry run, nothing changed; a replay would do this, by stored reason:")
	} else {
		fmt.Fprintln(app.Out, "replayed, by stored reason:")
	}
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tDEAD LETTERS\tLANDED\tDUPLICATES\tANOMALIES\tKEPT\tNEW REASON")
	row := func(name string, c ingest.ReplayCounts) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", name, c.DeadLetters, c.Landed, c.Duplicates, c.Anomalies, c.Kept, c.Rereasoned)
	}
	for _, r := range ingest.SortedReasons(p.Counts) {
		row(r, p.Counts[r])
	}
	row("total", p.Total)
	tw.Flush()
}
