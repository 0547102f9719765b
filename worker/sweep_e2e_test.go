package main

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// stagedPartitions counts a run's staging partitions.
func stagedPartitions(t *testing.T, b *e2e.Batch, runID string) int {
	t.Helper()
	staged, err := warehouse.StagedRuns(context.Background(), b.Stack.Timescale)
	if err != nil {
		t.Fatal(err)
	}
	return staged[runID]
}

// runRow is a run's status and error in dwh.etl_runs.
func runRow(t *testing.T, b *e2e.Batch, runID string) (status, errMsg string) {
	t.Helper()
	var e *string
	if err := b.Stack.Timescale.QueryRow(context.Background(), `SELECT status, error FROM dwh.etl_runs WHERE run_id = $1`, runID).Scan(&status, &e); err != nil {
		t.Fatalf("run %s: %v", runID, err)
	}
	if e != nil {
		errMsg = *e
	}
	return status, errMsg
}

// terminate terminates run in Temporal, as `temporal workflow terminate`
// does, and waits until Temporal reports it terminated.
func terminate(t *testing.T, b *e2e.Batch, run client.WorkflowRun, reason string) {
	t.Helper()
	ctx := context.Background()
	if err := b.TC.TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), reason); err != nil {
		t.Fatal(err)
	}
	desc, err := b.TC.DescribeWorkflow(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		t.Fatalf("after terminate the workflow is %s", desc.Status)
	}
}

// waitStagingIdle waits until no transaction has held a lock on the run's
// staging for a second: the activities a terminated run had in flight
// learn of it at their next heartbeat.
func waitStagingIdle(t *testing.T, b *e2e.Batch, runID string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	idleSince := time.Now()
	for time.Now().Before(deadline) {
		if b.Count(`SELECT count(*) FROM pg_locks WHERE relation IN (SELECT to_regclass(p) FROM unnest($1::text[]) p)`, warehouse.StagingPartitions(runID)) > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > time.Second {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the staging of run %s is still in use a minute after its workflow was terminated", runID)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2 minutes", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNextRunSweepsTerminatedRun: a run terminated in Temporal during its
// extract runs no cleanup, so its staging stays and its row says running;
// the next batch run sweeps it at its start: the partitions are dropped
// and the row is marked terminated with the termination's reason.
func TestNextRunSweepsTerminatedRun(t *testing.T) {
	b := e2e.NewBatch(t, 12)
	old := b.Start(workflows.BatchInput{})
	b.ProgressUntil(old, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseExtract })
	const reason = "test: terminated mid-run"
	terminate(t, b, old, reason)
	waitStagingIdle(t, b, old.GetRunID())
	six := len(warehouse.StagingPartitions(old.GetRunID()))
	if n := stagedPartitions(t, b, old.GetRunID()); n != six {
		t.Fatalf("the terminated run has %d staging partitions, want its %d", n, six)
	}
	if status, _ := runRow(t, b, old.GetRunID()); status != "running" {
		t.Fatalf("the terminated run's row is %s before the sweep, want running", status)
	}

	next := b.Wait(b.Start(workflows.BatchInput{}))
	if next.Status != "succeeded" {
		t.Fatalf("next run: %s", next.Status)
	}
	if n := stagedPartitions(t, b, old.GetRunID()); n != 0 {
		t.Errorf("the terminated run still has %d staging partitions after the next run", n)
	}
	status, msg := runRow(t, b, old.GetRunID())
	if status != "terminated" || !strings.Contains(msg, `workflow terminated in Temporal (reason "`+reason+`"`) {
		t.Errorf("the terminated run's row: %s %q; want terminated with the reason", status, msg)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND finished_at IS NOT NULL`, old.GetRunID()); n != 1 {
		t.Error("the terminated run's row has no finished_at")
	}
	if n := stagedPartitions(t, b, next.RunID); n != 0 {
		t.Errorf("the next run left %d staging partitions", n)
	}
}

// TestStagingSweeper: the sweeper workflow, triggered through its schedule
// and run by `starter staging sweep`, drops the staging of runs terminated
// in Temporal and marks their rows, and never the staging of a run that is
// still running: a run parked in load_failed keeps its staging through
// every sweep and, retried, loads from it.
func TestStagingSweeper(t *testing.T) {
	b := e2e.NewBatch(t, 6)
	ctx := context.Background()
	starterBin := testenv.Build(t, "./starter")
	// Every run parks in load_failed, its staging kept, until the
	// constraint goes.
	if _, err := b.Stack.Timescale.Exec(ctx, `ALTER TABLE dwh.fact_sensor_readings_enriched ADD CONSTRAINT no_temp_001 CHECK (device_id <> 'TEMP-001')`); err != nil {
		t.Fatal(err)
	}
	parked := func() client.WorkflowRun {
		run := b.Start(workflows.BatchInput{})
		b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseLoadFailed })
		return run
	}
	six := len(warehouse.StagingPartitions("x"))
	alive := parked()
	checkAlive := func(when string) {
		t.Helper()
		if n := stagedPartitions(t, b, alive.GetRunID()); n != six {
			t.Errorf("%s: the running (parked) run has %d staging partitions, want %d", when, n, six)
		}
		if status, _ := runRow(t, b, alive.GetRunID()); status != "load_failed" {
			t.Errorf("%s: the running run's row is %s, want load_failed", when, status)
		}
	}

	// Through the schedule.
	viaSchedule := parked()
	terminate(t, b, viaSchedule, "test: via the schedule")
	scheduleID := "sweep-" + b.Stack.Config.Temporal.BatchTaskQueue
	out := e2e.RunStarter(t, starterBin, b.Env, "staging", "schedule", "-id", scheduleID)
	t.Cleanup(func() { _, _ = e2e.RunStarterErr(starterBin, b.Env, "schedule", "delete", "-id", scheduleID) })
	if want := "schedule " + scheduleID + ` created: "30 * * * *" UTC, runs StagingSweepWorkflow, overlap skip`; !containsLine(out, want) {
		t.Errorf("staging schedule: %q, want %q", out, want)
	}
	e2e.RunStarter(t, starterBin, b.Env, "schedule", "trigger", "-id", scheduleID)
	waitFor(t, "the scheduled sweep", func() bool {
		status, _ := runRow(t, b, viaSchedule.GetRunID())
		return status == "terminated" && stagedPartitions(t, b, viaSchedule.GetRunID()) == 0
	})
	if _, msg := runRow(t, b, viaSchedule.GetRunID()); !strings.Contains(msg, `reason "test: via the schedule"`) {
		t.Errorf("row of the run swept by the schedule: %q", msg)
	}
	checkAlive("after the scheduled sweep")

	// Through the starter.
	viaStarter := parked()
	terminate(t, b, viaStarter, "test: via the starter")
	out = e2e.RunStarter(t, starterBin, b.Env, "staging", "sweep", "-id", "sweep-now-"+b.Stack.Config.Temporal.BatchTaskQueue)
	t.Logf("starter staging sweep:\n%s", out)
	if !strings.Contains(out, "staging sweep: 0 run(s) dropped, 1 terminated run(s) closed, 1 running left alone") {
		t.Errorf("staging sweep output lacks the counts:\n%s", out)
	}
	if !strings.Contains(out, viaStarter.GetRunID()) || !strings.Contains(out, "load_failed  terminated") {
		t.Errorf("staging sweep output does not list run %s as terminated:\n%s", viaStarter.GetRunID(), out)
	}
	if status, msg := runRow(t, b, viaStarter.GetRunID()); status != "terminated" || !strings.Contains(msg, `reason "test: via the starter"`) {
		t.Errorf("row of the run swept by the starter: %s %q", status, msg)
	}
	if n := stagedPartitions(t, b, viaStarter.GetRunID()); n != 0 {
		t.Errorf("the run swept by the starter has %d staging partitions", n)
	}
	checkAlive("after the starter's sweep")

	// The run that was running all along loads from its staging.
	if _, err := b.Stack.Timescale.Exec(ctx, `ALTER TABLE dwh.fact_sensor_readings_enriched DROP CONSTRAINT no_temp_001`); err != nil {
		t.Fatal(err)
	}
	e2e.RunStarter(t, starterBin, b.Env, "batch", "retry-load", alive.GetID())
	res := b.Wait(alive)
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if res.Status != "succeeded" || res.RowsLoaded != readings || res.StagingRecoveries != 0 {
		t.Errorf("the retried run: %s, %d rows, %d staging recoveries; want succeeded, %d, 0", res.Status, res.RowsLoaded, res.StagingRecoveries, readings)
	}
}
