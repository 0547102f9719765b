package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/workflows"
)

func init() {
	register(command{Name: "batch run", Summary: "run the batch ETL for a window (default: yesterday, UTC), showing live progress", Run: runBatchRun})
	register(command{Name: "batch status", Summary: "show the progress of a batch run", Run: runBatchStatus})
	register(command{Name: "batch retry-load", Summary: "a run parked in load_failed runs Load again from staging (an Update; refused unless parked there)", Run: runBatchRetryLoad})
	register(command{Name: "batch retry-export", Summary: "a run parked in export_failed runs the feature export again (an Update; refused unless parked there)", Run: runBatchRetryExport})
	register(command{Name: "batch approve", Summary: "approve a run awaiting approval at the data-quality gate: it loads (an Update; --reason is recorded)", Run: runBatchDecide(true)})
	register(command{Name: "batch reject", Summary: "reject a run awaiting approval at the data-quality gate: it ends as rejected, nothing loaded (an Update; --reason is recorded)", Run: runBatchDecide(false)})
	register(command{Name: "batch abandon", Summary: "a run parked in load_failed or export_failed gives up (an Update; --reason is recorded)", Run: runBatchAbandon})
}

// parseDay accepts 2006-01-02 or RFC 3339.
func parseDay(flagName, s string) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%w: --%s %q: want YYYY-MM-DD or RFC 3339", errUsage, flagName, s)
	}
	return t.UTC(), nil
}

// batchWorkflowID names a manual run after its window, so two runs of the
// same window cannot run at once.
func batchWorkflowID(in workflows.BatchInput) string {
	const layout = "20060102T1504Z"
	id := "iot-batch-" + in.WindowStart.Format(layout) + "-" + in.WindowEnd.Format(layout)
	if in.TestMode {
		id += "-test"
	}
	return id
}

// runURL is the Temporal UI page of a workflow run.
func runURL(app *App, workflowID, runID string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history", strings.TrimRight(app.Cfg.Temporal.UIURL, "/"),
		url.PathEscape(app.Cfg.Temporal.Namespace), url.PathEscape(workflowID), url.PathEscape(runID))
}

func runBatchRun(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "batch run", "[flags]")
	from := fs.String("from", "", "window start, YYYY-MM-DD or RFC 3339 (default: yesterday 00:00 UTC)")
	to := fs.String("to", "", "window end, exclusive (default: --from + 1 day)")
	testMode := fs.Bool("test-mode", false, "process 1 hour and at most 10 devices")
	validateOnly := fs.Bool("validate-only", false, "run the preflight checks of every component and stop")
	devices := fs.String("devices", "", "comma-separated device ids to restrict the run to")
	shards := fs.Int("shards", 0, "transform/load fan-out by device (default 8)")
	chunk := fs.Duration("chunk", app.Cfg.Batch.ChunkSize, "extract fan-out by time")
	csv := fs.Bool("csv", false, "also write features.csv")
	dqMin := fs.Float64("dq-min", app.Cfg.Batch.DQMin, "data-quality gate: least mean quality score (0..1) before Load; 0 is off")
	rejectMax := fs.Float64("reject-max", app.Cfg.Batch.RejectMax, "data-quality gate: largest share (0..1) of rejected readings; 0 is off")
	wait := fs.Bool("wait", true, "wait for the run, showing progress (false: start and print the id)")
	id := fs.String("id", "", "workflow id (default: iot-batch-<window>)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *validateOnly {
		return checkAll(ctx, app, 5*time.Second)
	}
	in := workflows.BatchInput{TestMode: *testMode, Shards: *shards, Chunk: *chunk, Lookback: app.Cfg.Batch.Lookback, CSV: *csv,
		Gate: batch.Gate{DQMin: *dqMin, RejectMax: *rejectMax}}
	if err := in.Gate.Validate(); err != nil {
		return fmt.Errorf("%w: --dq-min, --reject-max: %w", errUsage, err)
	}
	if in.Lookback == 0 {
		in.Lookback = -1 // explicitly no lookback
	}
	if *devices != "" {
		in.DeviceFilter = strings.Split(*devices, ",")
	}
	var w batch.Window
	switch {
	case *from != "":
		start, err := parseDay("from", *from)
		if err != nil {
			return err
		}
		w = batch.UTCDay(start)
		if *to != "" {
			if w.End, err = parseDay("to", *to); err != nil {
				return err
			}
		}
		if !w.Start.Before(w.End) {
			return fmt.Errorf("%w: --from must be before --to", errUsage)
		}
	case *to != "":
		return fmt.Errorf("%w: --to needs --from", errUsage)
	default:
		w = batch.DayBefore(time.Now())
	}
	if in.TestMode {
		w = w.ForTestMode()
	}
	in.WindowStart, in.WindowEnd = w.Start, w.End
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	if *id == "" {
		*id = batchWorkflowID(in)
	}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       *id,
		TaskQueue:                app.Cfg.Temporal.BatchTaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
	}, workflows.BatchWorkflowName, in)
	if err != nil {
		return fmt.Errorf("start batch run: %w", err)
	}
	fmt.Fprintf(app.Out, "batch run %s started: window [%s, %s)%s\n", run.GetID(), in.WindowStart.Format(time.RFC3339), in.WindowEnd.Format(time.RFC3339), map[bool]string{true: ", test mode"}[in.TestMode])
	fmt.Fprintf(app.Out, "Temporal UI: %s\n", runURL(app, run.GetID(), run.GetRunID()))
	if !*wait {
		return nil
	}
	res, err := watchBatch(ctx, app, tc, run)
	if err != nil {
		return err
	}
	printBatchSummary(app, res)
	if res.Status != batch.StatusSucceeded {
		return fmt.Errorf("run ended %s", res.Status)
	}
	return nil
}

// watchBatch prints the progress query whenever it changes until the run
// ends, then returns its result.
func watchBatch(ctx context.Context, app *App, tc client.Client, run client.WorkflowRun) (*workflows.BatchResult, error) {
	done := make(chan error, 1)
	var res workflows.BatchResult
	go func() { done <- run.Get(ctx, &res) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := ""
	for {
		select {
		case err := <-done:
			if err != nil {
				var appErr *temporal.ApplicationError
				if errors.As(err, &appErr) {
					err = errors.New(appErr.Message())
				}
				return nil, fmt.Errorf("batch run %s failed (details in the Temporal UI: %s): %w", run.GetID(), runURL(app, run.GetID(), run.GetRunID()), err)
			}
			return &res, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			p, err := queryProgress(ctx, tc, run.GetID(), run.GetRunID())
			if err != nil {
				continue // the first workflow task may not have run yet
			}
			line := progressLine(p)
			if line == last {
				continue
			}
			fmt.Fprintln(app.Out, line)
			last = line
			switch p.Phase {
			case workflows.PhaseAwaitingApproval:
				printDQReport(app, p)
				fmt.Fprintf(app.Out, "  The run's output breached the data-quality gate and waits before Load. Decide with:\n    starter batch approve %s --reason \"...\"\n  or:\n    starter batch reject %s --reason \"...\"\n", run.GetID(), run.GetID())
			case workflows.PhaseLoadFailed:
				fmt.Fprintf(app.Out, "  Load failed and the run is parked. Fix the cause, then:\n    starter batch retry-load %s\n  or give up with:\n    starter batch abandon %s\n", run.GetID(), run.GetID())
			case workflows.PhaseExportFailed:
				fmt.Fprintf(app.Out, "  The feature export failed and the run is parked (the warehouse is loaded). Fix the export store, then:\n    starter batch retry-export %s\n  or give up with:\n    starter batch abandon %s\n", run.GetID(), run.GetID())
			}
		}
	}
}

func queryProgress(ctx context.Context, tc client.Client, id, runID string) (workflows.Progress, error) {
	var p workflows.Progress
	v, err := tc.QueryWorkflow(ctx, id, runID, workflows.QueryProgress)
	if err != nil {
		return p, err
	}
	return p, v.Get(&p)
}

func progressLine(p workflows.Progress) string {
	s := fmt.Sprintf("  %-11s", p.Phase)
	if p.ChunksTotal > 0 {
		s += fmt.Sprintf(" %d/%d", p.ChunksDone, p.ChunksTotal)
	}
	if p.Rows > 0 {
		s += fmt.Sprintf("  %d rows", p.Rows)
	}
	if p.StagingRecoveries > 0 {
		s += fmt.Sprintf("  staging recovered %d time(s)", p.StagingRecoveries)
	}
	if p.LoadError != "" {
		s += "  error: " + p.LoadError
	}
	if p.ExportError != "" {
		s += "  error: " + p.ExportError
	}
	return s
}

func printBatchSummary(app *App, r *workflows.BatchResult) {
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nstatus\t"+r.Status)
	fmt.Fprintf(tw, "window\t[%s, %s)\n", r.Window.Start.Format(time.RFC3339), r.Window.End.Format(time.RFC3339))
	fmt.Fprintf(tw, "devices\t%d\n", r.Devices)
	fmt.Fprintf(tw, "readings extracted\t%d (window + lookback)\n", r.Extracted)
	fmt.Fprintf(tw, "rejected\t%d\n", r.Rejects)
	fmt.Fprintf(tw, "fact rows in window\t%d\n", r.RowsLoaded)
	fmt.Fprintf(tw, "anomalies\t%d\n", r.Anomalies)
	fmt.Fprintf(tw, "hourly buckets\t%d\n", r.HourlyRows)
	fmt.Fprintf(tw, "mean quality (DQ)\t%.4f\n", r.DQScore)
	fmt.Fprintf(tw, "fact checksum\t%s\n", r.FactChecksum)
	if r.Features.ManifestURL != "" {
		fmt.Fprintf(tw, "features\t%d rows (%d positive)\n", r.Features.Rows, r.Features.Positive)
		fmt.Fprintf(tw, "features manifest\t%s\n", r.Features.ManifestURL)
		for _, f := range r.Features.Files {
			fmt.Fprintf(tw, "features %s\t%s (%d bytes, sha256 %s)\n", f.Format, f.URL, f.Bytes, f.SHA256)
		}
	}
	switch sc := r.Scoring; {
	case r.ScoringError != "":
		fmt.Fprintf(tw, "anomaly model\tnot scored: %s\n", r.ScoringError)
	case sc.Model != "":
		fmt.Fprintf(tw, "anomaly model\t%s (%s): %d device-hours scored; flagged by the model %d, by the rules %d, by both %d\n",
			sc.Model, sc.Source, sc.Hours, sc.ModelFlagged, sc.RuleFlagged, sc.BothFlagged)
	}
	fmt.Fprintf(tw, "load attempts\t%d\n", r.LoadAttempts)
	if r.ExportAttempts > 1 {
		fmt.Fprintf(tw, "export attempts\t%d\n", r.ExportAttempts)
	}
	if r.StagingRecoveries > 0 {
		fmt.Fprintf(tw, "staging recoveries\t%d (PostgreSQL lost the staging; re-created and re-run)\n", r.StagingRecoveries)
	}
	phases := make([]string, 0, len(r.PhaseMillis))
	for p := range r.PhaseMillis {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	for _, p := range phases {
		fmt.Fprintf(tw, "time in %s\t%.1fs\n", p, float64(r.PhaseMillis[p])/1000)
	}
	tw.Flush()
	if len(r.Detection) > 0 {
		fmt.Fprintln(app.Out, "\nanomaly detection against the seeded ground truth:")
		tw = tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  kind\tTP\tFP\tFN\tprecision\trecall")
		kinds := make([]string, 0, len(r.Detection))
		for k := range r.Detection {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			d := r.Detection[k]
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%.3f\t%.3f\n", k, d.TruePositives, d.FalsePositives, d.FalseNegatives, d.Precision, d.Recall)
		}
		tw.Flush()
	}
}

// workflowIDArg parses a command that takes one workflow id; reason is set
// only when withReason.
func workflowIDArg(app *App, name string, args []string, withReason bool) (id, reason string, err error) {
	fs := newFlags(app, name, "<workflow-id>")
	var r *string
	if withReason {
		r = fs.String("reason", "", "why the run is abandoned (recorded in dwh.etl_runs)")
	}
	if err := parse(fs, args); err != nil {
		return "", "", err
	}
	if fs.NArg() != 1 {
		return "", "", fmt.Errorf("%w: want exactly one workflow id", errUsage)
	}
	if r != nil {
		reason = *r
	}
	return fs.Arg(0), reason, nil
}

func runBatchStatus(ctx context.Context, app *App, args []string) error {
	id, _, err := workflowIDArg(app, "batch status", args, false)
	if err != nil {
		return err
	}
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	desc, err := tc.DescribeWorkflow(ctx, id, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(app.Out, "workflow %s run %s: %s\n", id, desc.WorkflowExecution.RunID, desc.Status)
	fmt.Fprintf(app.Out, "Temporal UI: %s\n", runURL(app, id, desc.WorkflowExecution.RunID))
	p, err := queryProgress(ctx, tc, id, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(app.Out, "window [%s, %s)\n%s\n", p.Window.Start.Format(time.RFC3339), p.Window.End.Format(time.RFC3339), progressLine(p))
	printDQReport(app, p)
	printRunExport(ctx, app, tc, id, desc.WorkflowExecution.RunID, desc.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED)
	return nil
}

// printRunExport prints where the run published its features: from the
// result of a completed run, otherwise from dwh.etl_runs (a run that failed
// after its export still published it). It prints nothing when the run has
// not exported (yet) or the warehouse cannot be reached.
func printRunExport(ctx context.Context, app *App, tc client.Client, id, runID string, completed bool) {
	var manifest string
	var files []string
	if completed {
		var res workflows.BatchResult
		if err := tc.GetWorkflow(ctx, id, runID).Get(ctx, &res); err == nil {
			manifest = res.Features.ManifestURL
			for _, f := range res.Features.Files {
				files = append(files, f.URL)
			}
		}
	}
	if manifest == "" {
		ts, err := app.Timescale(ctx)
		if err != nil {
			return
		}
		e, ok, err := (warehouse.Run{TS: ts, ID: runID}).Export(ctx)
		if err != nil || !ok {
			return
		}
		manifest, files = e.ManifestURL, e.FileURLs
	}
	fmt.Fprintf(app.Out, "features manifest: %s\n", manifest)
	for _, f := range files {
		fmt.Fprintf(app.Out, "features file: %s\n", f)
	}
}

func runBatchRetryLoad(ctx context.Context, app *App, args []string) error {
	id, _, err := workflowIDArg(app, "batch retry-load", args, false)
	if err != nil {
		return err
	}
	return signalParked(ctx, app, id, workflows.UpdateRetryLoad)
}

func runBatchRetryExport(ctx context.Context, app *App, args []string) error {
	id, _, err := workflowIDArg(app, "batch retry-export", args, false)
	if err != nil {
		return err
	}
	return signalParked(ctx, app, id, workflows.UpdateRetryExport)
}

func runBatchAbandon(ctx context.Context, app *App, args []string) error {
	id, reason, err := workflowIDArg(app, "batch abandon", args, true)
	if err != nil {
		return err
	}
	return signalParked(ctx, app, id, workflows.UpdateAbandon, reason)
}

// signalParked sends a parked run the Update name (retry-load,
// retry-export or abandon), which the run refuses unless it is parked
// where name applies: retry-load needs load_failed, retry-export
// export_failed, abandon either. It prints what had failed and the run's
// reply. (The signals of the same names work too, from the Temporal CLI
// or UI, but nobody is told when one is sent too early.)
func signalParked(ctx context.Context, app *App, id, name string, args ...any) error {
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	what, failure, reply, err := sendParked(ctx, tc, id, name, args...)
	if err != nil {
		return err
	}
	fmt.Fprintf(app.Out, "sent %s to %s (%s failed with: %s)\n", name, id, what, failure)
	fmt.Fprintf(app.Out, "the run replied: %s\n", reply)
	return nil
}

// sendParked runs the Update name on the parked run id and returns what
// had failed (load or export), its error, and the run's reply.
func sendParked(ctx context.Context, tc client.Client, id, name string, args ...any) (what, failure, reply string, err error) {
	p, err := queryProgress(ctx, tc, id, "")
	if err != nil {
		return "", "", "", fmt.Errorf("query %s: %w", id, err)
	}
	switch p.Phase {
	case workflows.PhaseLoadFailed:
		what, failure = "load", p.LoadError
	case workflows.PhaseExportFailed:
		what, failure = "export", p.ExportError
	}
	reply, err = updateRun(ctx, tc, id, name, args...)
	if err != nil && what == "" && !strings.Contains(err.Error(), "is in phase") {
		// A run that ended refuses every Update without its validator.
		want := map[string]string{workflows.UpdateRetryLoad: workflows.PhaseLoadFailed, workflows.UpdateRetryExport: workflows.PhaseExportFailed}[name]
		if want == "" {
			want = workflows.PhaseLoadFailed + " or " + workflows.PhaseExportFailed
		}
		err = fmt.Errorf("run %s is in phase %s, not %s: nothing to %s (%w)", id, p.Phase, want, name, err)
	}
	return what, failure, reply, err
}

// updateRun runs the Update name on the workflow id with args, waits for
// the run's reply and returns it; a refusal by the run's validator is the
// error.
func updateRun(ctx context.Context, tc client.Client, id, name string, args ...any) (string, error) {
	h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	var reply string
	if err := h.Get(ctx, &reply); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return reply, nil
}

// runBatchDecide approves or rejects a run awaiting approval, with the
// approve or reject Update: the run refuses it unless it waits at the gate.
func runBatchDecide(approve bool) func(context.Context, *App, []string) error {
	name, update := "batch reject", workflows.UpdateReject
	if approve {
		name, update = "batch approve", workflows.UpdateApprove
	}
	return func(ctx context.Context, app *App, args []string) error {
		fs := newFlags(app, name, "<workflow-id> --reason \"...\"")
		reason := fs.String("reason", "", "why (required; recorded in dwh.etl_runs)")
		if err := parse(fs, args); err != nil {
			return err
		}
		ids := fs.Args()
		if len(ids) > 1 { // flags after the id
			id := ids[0]
			if err := parse(fs, ids[1:]); err != nil {
				return err
			}
			ids = append([]string{id}, fs.Args()...)
		}
		if len(ids) != 1 || strings.TrimSpace(*reason) == "" {
			return fmt.Errorf("%w: want exactly one workflow id and --reason", errUsage)
		}
		tc, err := app.Temporal(ctx)
		if err != nil {
			return err
		}
		reply, err := updateRun(ctx, tc, ids[0], update, *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(app.Out, "%s %s: %s\n", update, ids[0], reply)
		return nil
	}
}

// printDQReport prints the data-quality report of a run with a gate, and
// the decision taken on it.
func printDQReport(app *App, p workflows.Progress) {
	r := p.DQ
	if r == nil {
		return
	}
	fmt.Fprintf(app.Out, "data quality: %d readings, DQ score %.4f, %d of %d rejected (%.4f)\n", r.Rows, r.DQScore, r.Rejects, r.Extracted, r.RejectRate)
	for _, b := range r.Breaches {
		fmt.Fprintf(app.Out, "  gate breached: %s\n", b)
	}
	for _, m := range []struct {
		what   string
		counts map[string]int64
	}{{"anomaly rules", r.Rules}, {"quality flags", r.Flags}, {"reject reasons", r.RejectReasons}} {
		if len(m.counts) == 0 {
			continue
		}
		keys := make([]string, 0, len(m.counts))
		for k := range m.counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %d", k, m.counts[k])
		}
		fmt.Fprintf(app.Out, "  %s: %s\n", m.what, strings.Join(parts, ", "))
	}
	if len(r.WorstDevices) > 0 {
		parts := make([]string, len(r.WorstDevices))
		for i, d := range r.WorstDevices {
			parts[i] = fmt.Sprintf("%s %.3f (%d)", d.DeviceID, d.DQScore, d.Rows)
		}
		fmt.Fprintf(app.Out, "  worst devices (score, readings): %s\n", strings.Join(parts, ", "))
	}
	if p.Decision != "" {
		fmt.Fprintf(app.Out, "  decision: %s\n", p.Decision)
	} else if p.Phase == workflows.PhaseAwaitingApproval {
		fmt.Fprintln(app.Out, `  waiting for: starter batch approve|reject <workflow-id> --reason "..."`)
	}
}
