package workflows

import (
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// Names of the reconciliation, for the starter and its schedule.
const (
	ReconcileWorkflowName = "ReconcileWorkflow"
	// DefaultReconcileScheduleID and DefaultReconcileCron are its daily
	// schedule: an hour after the nightly batch's default time.
	DefaultReconcileScheduleID = "iot-reconcile-daily"
	DefaultReconcileCron       = "0 3 * * *"
)

// ReconcileInput is the range to reconcile, whole hours; an empty range
// is the day before the schedule's start time (or the workflow's).
type ReconcileInput struct {
	From   time.Time `json:"from,omitzero"`
	To     time.Time `json:"to,omitzero"`
	Repair bool      `json:"repair,omitempty"`
}

// ReconcileResult sums the days of a reconciliation; RunID names its rows
// in dwh.reconciliation. It is the progress query's answer as well.
type ReconcileResult struct {
	RunID           string           `json:"run_id"`
	From            time.Time        `json:"from"`
	To              time.Time        `json:"to"`
	Repair          bool             `json:"repair"`
	DaysDone        int              `json:"days_done"`
	Days            int              `json:"days"`
	Compared        int64            `json:"compared"`
	Mismatches      map[string]int64 `json:"mismatches"`
	Repaired        int64            `json:"repaired"`
	StillMismatched int64            `json:"still_mismatched"`
}

// Total is the number of mismatching device-hours found.
func (r ReconcileResult) Total() int64 {
	var n int64
	for _, c := range r.Mismatches {
		n += c
	}
	return n
}

// ReconcileWorkflow compares the stream's windows (STREAM_WINDOW), rolled up per
// device and hour, with the batch facts of the same devices and hours,
// one Reconcile activity per day of the range, and records the mismatches
// in dwh.reconciliation; with Repair it rebuilds the mismatching stream
// windows from the raw readings.
func ReconcileWorkflow(ctx workflow.Context, in ReconcileInput) (*ReconcileResult, error) {
	ref := workflow.GetInfo(ctx).WorkflowStartTime
	if scheduled, ok := workflow.GetTypedSearchAttributes(ctx).GetTime(saScheduled); ok {
		ref = scheduled
	}
	w, err := batch.Resolve(in.From, in.To, ref, false)
	if err == nil && (w.Start.Truncate(time.Hour) != w.Start || w.End.Truncate(time.Hour) != w.End) {
		err = batch.ErrInvalidWindow
	}
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("reconcile: "+strings.TrimPrefix(err.Error(), batch.ErrInvalidWindow.Error()+": ")+
			" (whole hours)", activities.ErrTypeInvalidInput, nil)
	}
	res := &ReconcileResult{RunID: workflow.GetInfo(ctx).WorkflowExecution.RunID, From: w.Start, To: w.End, Repair: in.Repair,
		Mismatches: map[string]int64{}}
	var days []batch.Window
	for from := w.Start; from.Before(w.End); from = from.Add(24 * time.Hour) {
		days = append(days, batch.Window{Start: from, End: minTime(from.Add(24*time.Hour), w.End)})
	}
	res.Days = len(days)
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (ReconcileResult, error) { return *res, nil }); err != nil {
		return nil, err
	}
	emitLineage(ctx, activities.LineageInput{Job: activities.JobReconcile, EventType: activities.LineageStart})
	var a *activities.Batch
	actx := longActivity(ctx, DefaultHeartbeat)
	for _, d := range days {
		var day activities.ReconcileResult
		if err := workflow.ExecuteActivity(actx, a.Reconcile, activities.ReconcileInput{From: d.Start, To: d.End, Repair: in.Repair}).Get(ctx, &day); err != nil {
			emitLineage(ctx, activities.LineageInput{Job: activities.JobReconcile, EventType: activities.LineageFail, Error: err.Error()})
			return nil, err
		}
		res.DaysDone++
		res.Compared += day.Compared
		for kind, n := range day.Mismatches {
			res.Mismatches[kind] += n
		}
		res.Repaired += day.Repaired
		res.StillMismatched += day.StillMismatched
	}
	emitLineage(ctx, activities.LineageInput{Job: activities.JobReconcile, EventType: activities.LineageComplete,
		OutputRows: map[string]int64{"dwh.reconciliation": res.Total(), "public.sensor_readings_stream_agg": res.Repaired}})
	return res, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
