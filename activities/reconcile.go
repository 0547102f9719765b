package activities

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/activity"

	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// ReconcileInput is one range of a reconciliation: whole hours.
type ReconcileInput struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Repair rebuilds the stream windows of each mismatching device-hour
	// from the raw readings.
	Repair bool `json:"repair,omitempty"`
}

// ReconcileResult is what a range's reconciliation found and repaired.
type ReconcileResult struct {
	warehouse.Comparison
	// Repaired device-hours, and how many of them still differ from the
	// batch facts after the repair (the batch is what is stale there).
	Repaired        int64 `json:"repaired"`
	StillMismatched int64 `json:"still_mismatched"`
}

// Reconcile compares the stream's windows with the batch facts of the
// range per device and hour and records the mismatches in
// dwh.reconciliation under the workflow's run id
// (warehouse.Reconcile). With Repair, the stream windows of each
// mismatching device-hour are rebuilt from the raw readings, one
// transaction per device-hour that also marks the mismatch repaired, as
// windows of the length b.StreamWindow (the worker's STREAM_WINDOW).
func (b *Batch) Reconcile(ctx context.Context, in ReconcileInput) (ReconcileResult, error) {
	hb := startHeartbeat(ctx, 0)
	defer hb.Stop()
	runID := activity.GetInfo(ctx).WorkflowExecution.RunID
	cmp, err := warehouse.Reconcile(ctx, b.Timescale, runID, in.From, in.To)
	if err != nil {
		return ReconcileResult{}, err
	}
	res := ReconcileResult{Comparison: cmp}
	if !in.Repair || len(cmp.Keys) == 0 {
		return res, nil
	}
	for i, k := range cmp.Keys {
		err := pgx.BeginFunc(ctx, b.Timescale, func(tx pgx.Tx) error {
			if _, err := sink.RebuildWindows(ctx, tx, k.DeviceID, k.Hour, k.Hour.Add(time.Hour), window.Length(b.StreamWindow)); err != nil {
				return err
			}
			return warehouse.MarkRepaired(ctx, tx, runID, k)
		})
		if err != nil {
			return ReconcileResult{}, err
		}
		res.Repaired++
		hb.Beat(i + 1)
	}
	if res.StillMismatched, err = warehouse.StillMismatched(ctx, b.Timescale, cmp.Keys); err != nil {
		return ReconcileResult{}, err
	}
	return res, nil
}
