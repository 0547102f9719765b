package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestDQGateApproveReject runs the batch with a data-quality gate its data
// cannot pass (DQ score at least 1): the run parks before Load in
// awaiting_approval with its DQ report in the progress query and Phase set
// for the UI's list; a retry-load and an approve without a reason are
// refused at once; `starter batch approve` loads it, and the Update is in
// the history; a second run is rejected and loads nothing.
func TestDQGateApproveReject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := e2e.NewBatch(t, 4)
	starterBin := testenv.Build(t, "./starter")
	gate := workflows.BatchInput{Gate: batch.Gate{DQMin: 1}}
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)

	run := b.Start(gate)
	parked := b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseAwaitingApproval })
	dq := parked.DQ
	if dq == nil || dq.Rows != readings || dq.DQScore >= 1 || len(dq.Breaches) != 1 || len(dq.WorstDevices) != 4 || len(dq.Rules) == 0 {
		t.Fatalf("DQ report while parked: %+v; want %d rows, a score below 1, one breach, 4 devices, rule counts", dq, readings)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != 0 {
		t.Errorf("%d facts loaded before the approval", n)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'awaiting_approval' AND dq_report IS NOT NULL`, run.GetRunID()); n != 1 {
		t.Error("dwh.etl_runs does not show the run awaiting approval with its report")
	}
	listed := false
	for deadline := time.Now().Add(20 * time.Second); !listed && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := b.TC.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf(`Phase = "awaiting_approval" AND WorkflowId = "%s"`, run.GetID()),
		})
		listed = err == nil && len(resp.Executions) == 1
	}
	if !listed {
		t.Error(`the run is not listed by Phase = "awaiting_approval"`)
	}

	if out, err := e2e.RunStarterErr(starterBin, b.Env, "batch", "retry-load", run.GetID()); err == nil || !strings.Contains(out, "is in phase awaiting_approval, not load_failed") {
		t.Errorf("retry-load at the gate: err %v, output %s", err, out)
	}
	if out, err := e2e.RunStarterErr(starterBin, b.Env, "batch", "approve", run.GetID()); err == nil || !strings.Contains(out, "--reason") {
		t.Errorf("approve without a reason: err %v, output %s", err, out)
	}
	status := e2e.RunStarter(t, starterBin, b.Env, "batch", "status", run.GetID())
	for _, want := range []string{"gate breached: DQ score", "worst devices (score, readings):", "waiting for: starter batch approve|reject"} {
		if !strings.Contains(status, want) {
			t.Errorf("batch status: no %q in:\n%s", want, status)
		}
	}
	out := e2e.RunStarter(t, starterBin, b.Env, "batch", "approve", run.GetID(), "--reason", "drift on two sensors is known")
	if want := "approve " + run.GetID() + ": approved: the run loads now, then exports and finishes"; !strings.Contains(out, want) {
		t.Errorf("approve: want %q in %q", want, out)
	}
	res := b.Wait(run)
	if res.Status != batch.StatusSucceeded || res.RowsLoaded != readings {
		t.Errorf("approved run: %s, %d rows; want succeeded, %d", res.Status, res.RowsLoaded, readings)
	}
	var avg float64
	if err := b.Stack.Timescale.QueryRow(ctx, `SELECT avg(quality_score) FROM dwh.fact_sensor_readings_enriched`).Scan(&avg); err != nil || math.Abs(avg-dq.DQScore) > 1e-9 {
		t.Errorf("mean quality score of the loaded facts %v (%v), the report said %v", avg, err, dq.DQScore)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'succeeded' AND decision = 'approved'
		AND decision_reason = 'drift on two sensors is known' AND decided_at IS NOT NULL`, run.GetRunID()); n != 1 {
		t.Error("dwh.etl_runs does not record the approval with its reason")
	}
	var updates []string
	iter := b.TC.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); a != nil {
			updates = append(updates, "accepted "+a.GetAcceptedRequest().GetInput().GetName())
		}
		if ev.GetWorkflowExecutionUpdateCompletedEventAttributes() != nil {
			updates = append(updates, "completed")
		}
	}
	if got := strings.Join(updates, ", "); got != "accepted approve, completed" {
		t.Errorf("Updates in the history: %q, want the approve accepted and completed (the refused ones are not written)", got)
	}

	b.ClearWarehouse()
	run2 := b.Start(gate)
	b.ProgressUntil(run2, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseAwaitingApproval })
	out = e2e.RunStarter(t, starterBin, b.Env, "batch", "reject", run2.GetID(), "--reason", "upstream outage")
	if !strings.Contains(out, "rejected: the run ends as rejected") {
		t.Errorf("reject: %q", out)
	}
	var res2 workflows.BatchResult
	if err := run2.Get(ctx, &res2); err != nil {
		t.Fatal(err)
	}
	if res2.Status != batch.StatusRejected {
		t.Errorf("rejected run: %s", res2.Status)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != 0 {
		t.Errorf("the rejected run loaded %d facts", n)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'rejected' AND decision = 'rejected'
		AND decision_reason = 'upstream outage' AND error LIKE 'rejected by operator (upstream outage)%'`, run2.GetRunID()); n != 1 {
		t.Error("dwh.etl_runs does not record the rejection")
	}
}
