//go:build faults

package faults_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// The network faults of the batch: a 30 s partition, 500 ms each way, and
// 64 KB/s each way.
const (
	batchCut       = 30 * time.Second
	batchLatency   = 500 * time.Millisecond
	batchBandwidth = 64 // KB/s
	// batchNetDevices keeps the runs over slow links short (a 64 KB/s link
	// carries every reading to Transform and every fact to the export)
	// while each phase still lasts long enough to be cut in.
	batchNetDevices = 8
)

// TestBatchPostgresCrash crashes the PostgreSQL server of TimescaleDB and
// the locations database (pg_ctl stop -m immediate) once in each of the
// extract, transform and load phases of one batch run, starting it again
// after 2 s each time. Crash recovery empties the unlogged staging each
// time: the run must notice, re-create it and run again what it held, by
// itself, and complete with exactly the results of an uninterrupted run of
// the same window.
func TestBatchPostgresCrash(t *testing.T) {
	pg := testenv.StartPGCluster(t, testenv.PGOptions{})
	stack := testenv.DatabasesWith(t, func(c *config.Config) {
		c.Postgres = pg.Config(pg.Superuser, "", "")
		c.Timescale = pg.Config(pg.Superuser, "", "")
	})
	b := e2e.NewBatchWith(t, e2e.BatchOptions{Stack: stack, Devices: crashBatchDevices})
	reference := uninterruptedBatch(b)

	run := b.Start(workflows.BatchInput{})
	phases := []string{workflows.PhaseExtract, workflows.PhaseTransform, workflows.PhaseLoad}
	var worst time.Duration
	var up time.Time
	for i, phase := range phases {
		// In the phase again after the recoveries from the earlier crashes.
		p := b.ProgressUntil(run, func(p workflows.Progress) bool {
			return p.StagingRecoveries == i && batchPhaseOrder(p.Phase) >= batchPhaseOrder(phase)
		})
		if p.Phase != phase {
			t.Fatalf("crash %d: the run is in phase %s, past %s (a larger seed makes the phases longer)", i+1, p.Phase, phase)
		}
		if err := pg.Crash(); err != nil {
			t.Fatal(err)
		}
		t.Logf("crash %d: PostgreSQL stopped -m immediate in phase %s at %d/%d", i+1, p.Phase, p.ChunksDone, p.ChunksTotal)
		time.Sleep(2 * time.Second)
		if err := pg.Start(); err != nil {
			t.Fatal(err)
		}
		up = time.Now()
		if i+1 < len(phases) && phases[i+1] == workflows.PhaseLoad {
			// Load is too short now to be caught by polling: a lock on
			// the table LoadFacts rewrites (phaseGates) holds it open
			// until the crash, which ends the lock with its session.
			b.HoldTable(t, phaseGates[workflows.PhaseLoad])
		}
		// Recovered: the run re-created its staging and, having run again
		// what the crash lost, enters the next phase (or completes, after
		// the last crash).
		if i+1 < len(phases) {
			next := batchProgressUntil(b, run, func(p workflows.Progress) bool {
				return p.StagingRecoveries == i+1 && p.Phase == phases[i+1]
			})
			worst = max(worst, time.Since(up))
			t.Logf("crash %d: staging re-created (recovery %d), phase %s %s after the restart", i+1, next.StagingRecoveries, next.Phase,
				time.Since(up).Round(100*time.Millisecond))
		}
	}
	res := b.Wait(run)
	worst = max(worst, time.Since(up))
	t.Logf("completed %s after the last restart: %d rows, %d hourly rows, %d staging recoveries, phases %v ms",
		time.Since(up).Round(100*time.Millisecond), res.RowsLoaded, res.HourlyRows, res.StagingRecoveries, res.PhaseMillis)
	if res.StagingRecoveries != len(phases) {
		t.Errorf("staging recoveries: %d, want %d (one per crash)", res.StagingRecoveries, len(phases))
	}
	if n := b.Count(`SELECT staging_recoveries FROM dwh.etl_runs WHERE run_id = $1`, run.GetRunID()); n != int64(len(phases)) {
		t.Errorf("dwh.etl_runs.staging_recoveries: %d, want %d", n, len(phases))
	}
	lost, dup := sameAsUninterrupted(b, reference, res)
	faultenv.Record(t, faultenv.Figures{Scenario: "postgres crash: batch", Faults: len(phases), Messages: res.RowsLoaded, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: fmt.Sprintf("%d staging recoveries, no manual step; recovery: restart until the run, its staging re-created and re-run, enters the next phase (completes, after the crash in load)", res.StagingRecoveries)})
}

// TestBatchNetworkFaults runs a batch whose worker reaches MySQL, the
// locations database, TimescaleDB and Temporal through Toxiproxy links,
// three times after an uninterrupted run of the same window:
//   - MySQL and locations are cut for 30 s as extract starts, TimescaleDB
//     in transform, Temporal in load, each restored after 30 s;
//   - 500 ms of latency each way on all four links throughout;
//   - 64 KB/s each way on all four links throughout.
//
// Each run completes by itself with the uninterrupted run's results.
func TestBatchNetworkFaults(t *testing.T) {
	t.Parallel()
	px := faultenv.NewProxies(t)
	b := e2e.NewBatchWith(t, e2e.BatchOptions{Devices: batchNetDevices, NoWorker: true})
	links := px.Wire(b.Stack.Config, b.Env)
	b.StartWorker()
	reference := uninterruptedBatch(b)

	var worst time.Duration
	var rows, lost, dup int64

	// The cuts, each held for 30 s while the run needs the link.
	began := time.Now()
	// No phase before extract reads MySQL or the locations database, so
	// cutting them with the start cuts them as extract starts.
	links.MySQL.Cut()
	links.Locations.Cut()
	run := b.Start(workflows.BatchInput{})
	cuts := []struct {
		phase string
		links []*faultenv.Link
		// activities are those the phase runs: what may be waiting on the
		// cut link when it is restored.
		activities []string
	}{
		{workflows.PhaseExtract, []*faultenv.Link{links.MySQL, links.Locations}, []string{"ExtractDevices", "ExtractLocations", "ExtractReadings", "RecordRejects"}},
		{workflows.PhaseTransform, []*faultenv.Link{links.Timescale}, []string{"Transform"}},
		{workflows.PhaseLoad, []*faultenv.Link{links.Temporal}, []string{"LoadDimensions", "LoadFacts", "RefreshAggregates"}},
	}
	var restored time.Time
	// The next phase is held open (phaseGates) from before the restore
	// until its links are cut, so the cut falls inside it on any machine.
	release := func() {}
	for i, cut := range cuts {
		cutAt := time.Now()
		if i > 0 {
			p := b.ProgressUntil(run, func(p workflows.Progress) bool { return batchPhaseOrder(p.Phase) >= batchPhaseOrder(cut.phase) })
			if p.Phase != cut.phase {
				t.Fatalf("cut %d: the run is in phase %s, past %s: the lock on %s did not hold it", i+1, p.Phase, cut.phase, phaseGates[cut.phase])
			}
			worst = max(worst, time.Since(restored))
			t.Logf("phase %s %s after the restore", p.Phase, time.Since(restored).Round(100*time.Millisecond))
			cutAt = time.Now()
			for _, l := range cut.links {
				l.Cut()
			}
			release()
		}
		t.Logf("cut %d: %s cut in phase %s", i+1, linkNames(cut.links), cut.phase)
		time.Sleep(time.Until(cutAt.Add(batchCut)))
		// The run is held in the phase: the server has only its
		// activities pending (or none, waiting for a workflow task).
		pending := pendingActivities(t, b.TC, run)
		for _, a := range pending {
			if !slices.Contains(cut.activities, a.name) {
				t.Fatalf("cut %d in %s: activity %s pending, the run went past the phase", i+1, cut.phase, a.name)
			}
		}
		if i+1 < len(cuts) {
			release = b.HoldTable(t, phaseGates[cuts[i+1].phase])
		}
		for _, l := range cut.links {
			l.Restore()
		}
		restored = time.Now()
		t.Logf("cut %d: %s restored after %s; pending then: %s", i+1, linkNames(cut.links), time.Since(cutAt).Round(100*time.Millisecond), describePending(pending))
	}
	res := batchWaitSucceeded(b, run, 3*time.Minute)
	worst = max(worst, time.Since(restored))
	t.Logf("cuts: completed %s after the last restore, %s in all; load attempts %d, activity retries %s, phases %v ms",
		time.Since(restored).Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond), res.LoadAttempts, activityRetries(t, b.TC, run), res.PhaseMillis)
	l, d := sameAsUninterrupted(b, reference, res)
	rows, lost, dup = rows+res.RowsLoaded, lost+l, dup+d

	// The slow links, on all four throughout a run.
	for _, slow := range []struct {
		name  string
		apply func(*faultenv.Link)
		// heartbeat is the run's heartbeat timeout. Over 500 ms each way
		// a heartbeat is answered a second after it is sent, and the SDK
		// sends the next one 80% of the timeout after that answer: a 5 s
		// timeout (the harness's, for quick kill detection) expires
		// between two heartbeats however often the worker beats, so that
		// run has the product's default, 30 s.
		heartbeat time.Duration
	}{
		{"latency 500ms each way", func(l *faultenv.Link) { l.Latency(batchLatency) }, workflows.DefaultHeartbeat},
		{fmt.Sprintf("bandwidth %d KB/s each way", batchBandwidth), func(l *faultenv.Link) { l.Bandwidth(batchBandwidth) }, 5 * time.Second},
	} {
		b.ClearWarehouse()
		for _, l := range links.All() {
			slow.apply(l)
		}
		began := time.Now()
		run := batchStart(b, workflows.BatchInput{HeartbeatTimeout: slow.heartbeat}, 10*time.Minute)
		res := batchWaitSucceeded(b, run, 8*time.Minute)
		for _, l := range links.All() {
			l.Clear()
		}
		t.Logf("%s, heartbeat timeout %s: completed in %s (uninterrupted %v ms); load attempts %d, activity retries %s, phases %v ms", slow.name, slow.heartbeat,
			time.Since(began).Round(100*time.Millisecond), sumMillis(reference.PhaseMillis), res.LoadAttempts, activityRetries(t, b.TC, run), res.PhaseMillis)
		l, d := sameAsUninterrupted(b, reference, res)
		rows, lost, dup = rows+res.RowsLoaded, lost+l, dup+d
	}
	faultenv.Record(t, faultenv.Figures{Scenario: "network: batch", Faults: 12, Messages: rows, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: "three runs: 30 s cuts of MySQL and locations (extract), TimescaleDB (transform), Temporal (load); 500 ms each way on all four links; 64 KB/s on all four; recovery: restore until the run enters the next phase (completes, after the cut in load)"})
}

// uninterruptedBatch runs the window without faults, checks that it loaded
// every reading of the window, and empties the warehouse for the run under
// faults.
func uninterruptedBatch(b *e2e.Batch) workflows.BatchResult {
	b.T.Helper()
	reference := b.Wait(b.Start(workflows.BatchInput{}))
	b.T.Logf("uninterrupted run: %d rows, %d hourly rows, %d feature rows, phases %v ms", reference.RowsLoaded, reference.HourlyRows, reference.Features.Rows, reference.PhaseMillis)
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if reference.Status != batch.StatusSucceeded || reference.RowsLoaded != readings || readings == 0 {
		b.T.Fatalf("uninterrupted run: %s, %d rows loaded; want succeeded, the window's %d readings", reference.Status, reference.RowsLoaded, readings)
	}
	b.ClearWarehouse()
	return reference
}

// sameAsUninterrupted checks that res, the result of a run under faults,
// and the warehouse it left are those of the uninterrupted run; it returns
// the fact rows lost and duplicated for the figures.
func sameAsUninterrupted(b *e2e.Batch, reference, res workflows.BatchResult) (lost, duplicated int64) {
	b.T.Helper()
	if res.Status != batch.StatusSucceeded || res.FactChecksum != reference.FactChecksum || res.RowsLoaded != reference.RowsLoaded || res.HourlyRows != reference.HourlyRows {
		b.T.Errorf("under faults: %s, checksum %s rows %d hourly %d; uninterrupted %s, %s %d %d", res.Status,
			res.FactChecksum, res.RowsLoaded, res.HourlyRows, reference.Status, reference.FactChecksum, reference.RowsLoaded, reference.HourlyRows)
	}
	if res.Features.Rows != reference.Features.Rows {
		b.T.Errorf("features: %d rows, uninterrupted %d", res.Features.Rows, reference.Features.Rows)
	}
	rows := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`)
	distinct := b.Count(`SELECT count(DISTINCT (device_id, time)) FROM dwh.fact_sensor_readings_enriched`)
	if rows != reference.RowsLoaded || distinct != rows {
		b.T.Errorf("the warehouse holds %d fact rows (%d distinct), the uninterrupted run loaded %d", rows, distinct, reference.RowsLoaded)
	}
	return max(0, reference.RowsLoaded-distinct), rows - distinct + max(0, distinct-reference.RowsLoaded)
}

// batchProgressUntil is ProgressUntil that fails at once when the run
// parks or ends before cond holds: it would wait in vain.
func batchProgressUntil(b *e2e.Batch, run client.WorkflowRun, cond func(workflows.Progress) bool) workflows.Progress {
	b.T.Helper()
	var stuck workflows.Progress
	p := b.ProgressUntil(run, func(p workflows.Progress) bool {
		if cond(p) {
			return true
		}
		switch p.Phase {
		case workflows.PhaseLoadFailed, workflows.PhaseExportFailed, workflows.PhaseFailed, workflows.PhaseAbandoned, workflows.PhaseDone:
			stuck = p
			return true
		}
		return false
	})
	if stuck.Phase != "" {
		b.T.Fatalf("the run is %s (load error %q, export error %q)", stuck.Phase, stuck.LoadError, stuck.ExportError)
	}
	return p
}

// batchWaitSucceeded waits up to timeout for run to complete, failing at
// once if it parks.
func batchWaitSucceeded(b *e2e.Batch, run client.WorkflowRun, timeout time.Duration) workflows.BatchResult {
	b.T.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d, err := b.TC.DescribeWorkflow(ctx, run.GetID(), run.GetRunID())
		cancel()
		if err != nil {
			b.T.Fatal(err)
		}
		if d.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return b.Wait(run)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		v, err := b.TC.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), workflows.QueryProgress)
		cancel()
		var p workflows.Progress
		if err == nil && v.Get(&p) == nil && (p.Phase == workflows.PhaseLoadFailed || p.Phase == workflows.PhaseExportFailed) {
			b.T.Fatalf("the run is %s (load error %q, export error %q)", p.Phase, p.LoadError, p.ExportError)
		}
		time.Sleep(time.Second)
	}
	b.T.Fatalf("the run did not complete in %s; pending: %s", timeout, describePending(pendingActivities(b.T, b.TC, run)))
	return workflows.BatchResult{}
}

// batchStart is b.Start with an execution timeout of its own, for runs
// over slow links.
func batchStart(b *e2e.Batch, in workflows.BatchInput, timeout time.Duration) client.WorkflowRun {
	b.T.Helper()
	in.WindowStart, in.WindowEnd = e2e.Window.Start, e2e.Window.End
	run, err := b.TC.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		TaskQueue:                b.Stack.Config.Temporal.BatchTaskQueue,
		WorkflowExecutionTimeout: timeout,
	}, workflows.BatchWorkflowName, in)
	if err != nil {
		b.T.Fatal(err)
	}
	return run
}

// activityRetries tallies, from the run's history, the attempts after the
// first of every activity that completed, by activity type.
func activityRetries(t *testing.T, tc client.Client, run client.WorkflowRun) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	types := map[int64]string{} // scheduled event id -> activity type
	retries := map[string]int32{}
	iter := tc.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			types[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.GetAttempt() > 1 {
			retries[types[a.GetScheduledEventId()]] += a.GetAttempt() - 1
		}
	}
	if len(retries) == 0 {
		return "none"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(retries)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, retries[name]))
	}
	return strings.Join(parts, ", ")
}

// pendingActivity is an activity the server holds for a run.
type pendingActivity struct {
	name        string
	attempt     int32
	lastFailure string
}

// pendingActivities asks the server (not the worker, whose link may be
// cut) for the run's pending activities.
func pendingActivities(t *testing.T, tc client.Client, run client.WorkflowRun) []pendingActivity {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := tc.DescribeWorkflow(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	var out []pendingActivity
	for _, a := range d.RawResponse.GetPendingActivities() {
		out = append(out, pendingActivity{name: a.GetActivityType().GetName(), attempt: a.GetAttempt(), lastFailure: a.GetLastFailure().GetMessage()})
	}
	return out
}

func describePending(pending []pendingActivity) string {
	if len(pending) == 0 {
		return "none"
	}
	var parts []string
	for _, a := range pending {
		s := fmt.Sprintf("%s attempt %d", a.name, a.attempt)
		if a.lastFailure != "" {
			s += " (last failure: " + a.lastFailure + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func linkNames(links []*faultenv.Link) string {
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	return strings.Join(names, " and ")
}

func sumMillis(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
