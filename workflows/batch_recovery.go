package workflows

import (
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// untilDone runs phase p (load or export) until it succeeds. When it
// fails for good, the run parks until an operator signals p.retry (the
// phase runs again: a load from staging) or abandon; untilDone reports
// whether the run was abandoned. What p.failsNow picks is returned
// without parking: lost staging, for process to recover, and any export
// failure of a run from before changeExportParks (which had long retries
// instead). Attempts that all timed out on their heartbeat do not park it
// at first either (see rerunUnheard).
func (r *batchRun) untilDone(ctx workflow.Context, p parking) (abandoned bool, err error) {
	unheard := 0
	for {
		attempts, total, lastErr := p.state(r)
		*attempts++
		*total = *attempts
		runErr := p.run(r, ctx)
		if runErr == nil {
			*lastErr = ""
			return false, nil
		}
		if p.failsNow(r, runErr) {
			return false, runErr
		}
		if rerun, err := r.rerunUnheard(ctx, p, runErr, &unheard); err != nil {
			return false, err
		} else if rerun {
			continue
		}
		if abandoned, err := r.park(ctx, p, runErr); err != nil || abandoned {
			return abandoned, err
		}
		unheard = 0
		workflow.GetLogger(ctx).Info(p.retry+" received", "attempt", *attempts+1)
	}
}

// A phase that parks the run when it fails for good.
type parking struct {
	what   string // "load", "export"
	phase  string
	status batch.Status
	retry  string // the signal that runs it again
	run    func(r *batchRun, ctx workflow.Context) error
	// failsNow picks the failures returned at once, without parking.
	failsNow func(r *batchRun, err error) bool
	// state is where the phase's attempts are counted (progress and
	// result) and its last error shown.
	state func(r *batchRun) (attempts, total *int, lastErr *string)
}

var (
	parkLoad = parking{what: "load", phase: PhaseLoadFailed, status: batch.StatusLoadFailed, retry: SignalRetryLoad,
		run:      (*batchRun).load,
		failsNow: func(r *batchRun, err error) bool { return r.recovery && isStagingLost(err) },
		state: func(r *batchRun) (*int, *int, *string) {
			return &r.progress.LoadAttempts, &r.result.LoadAttempts, &r.progress.LoadError
		},
	}
	parkExport = parking{what: "export", phase: PhaseExportFailed, status: batch.StatusExportFailed, retry: SignalRetryExport,
		run:      (*batchRun).export,
		failsNow: func(r *batchRun, err error) bool { return !r.exportParks || r.recovery && isStagingLost(err) },
		state: func(r *batchRun) (*int, *int, *string) {
			return &r.progress.ExportAttempts, &r.result.ExportAttempts, &r.progress.ExportError
		},
	}
)

// rerunUnheard decides what to do with a phase p whose activity attempts
// all timed out on their heartbeat: the worker running them was not heard,
// which is no failure of the phase. A worker cut off from Temporal, or
// killed, has its attempts time out one after the other (Temporal even
// hands new attempts to the worker's polls still open from before a
// partition, whose answers are lost), so a partition of a minute would
// park a run whose phase had nothing wrong. Such a phase runs again by
// itself after UnheardPause, MaxUnheardReruns times in a row at most
// (counted in unheard); it reports whether it does.
func (r *batchRun) rerunUnheard(ctx workflow.Context, p parking, cause error, unheard *int) (bool, error) {
	if !r.unheardReruns || *unheard >= MaxUnheardReruns || !onlyHeartbeatTimeouts(cause) {
		return false, nil
	}
	*unheard++
	workflow.GetLogger(ctx).Warn(p.what+" not heard from (heartbeat timeouts only); running it again",
		"rerun", *unheard, "max_reruns", MaxUnheardReruns, "pause", UnheardPause, "error", Brief(cause))
	return true, workflow.Sleep(ctx, UnheardPause)
}

// onlyHeartbeatTimeouts reports whether every error in err is an activity's
// heartbeat timeout.
func onlyHeartbeatTimeouts(err error) bool {
	for _, e := range flatten(err) {
		var timeoutErr *temporal.TimeoutError
		if !errors.As(e, &timeoutErr) || timeoutErr.TimeoutType() != enumspb.TIMEOUT_TYPE_HEARTBEAT {
			return false
		}
	}
	return true
}

// park records the failure in dwh.etl_runs, then exposes it in the
// progress query (record first: whoever sees the parked phase also finds
// the row), and waits for p's retry or abandon, as a signal or an Update. On abandon it
// finishes the run as abandoned and reports it.
func (r *batchRun) park(ctx workflow.Context, p parking, cause error) (abandoned bool, err error) {
	msg := Brief(cause)
	if err := r.mark(ctx, p.status, msg); err != nil {
		return false, err
	}
	r.enter(ctx, p.phase, 0)
	_, _, lastErr := p.state(r)
	*lastErr = msg
	workflow.GetLogger(ctx).Error(p.what+" failed; waiting for "+p.retry+" or abandon", "error", cause)
	var reason string
	retry := false
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(workflow.GetSignalChannel(ctx, p.retry), func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); retry = true })
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalAbandon), func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &reason) })
	sel.AddReceive(r.actions, func(c workflow.ReceiveChannel, _ bool) {
		var a parkAction
		c.Receive(ctx, &a)
		retry, reason, r.actionPending = a.retry, a.reason, false
	})
	sel.Select(ctx)
	if retry {
		return false, nil
	}
	text := "abandoned by operator after " + p.what + " failure: " + msg
	if reason != "" {
		text = "abandoned by operator (" + reason + ") after " + p.what + " failure: " + msg
	}
	if err := r.finish(ctx, PhaseAbandoned, batch.StatusAbandoned, text); err != nil {
		return true, err
	}
	return true, nil
}

// recoverStaging re-creates the run's staging, empty, for its next
// generation: the activities still holding the old generation (none
// should be left) find no marker of theirs.
func (r *batchRun) recoverStaging(ctx workflow.Context, cause error) error {
	if r.result.StagingRecoveries >= MaxStagingRecoveries {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"staging lost again after %d recoveries, giving up (is PostgreSQL restarting? see its log): %s",
			r.result.StagingRecoveries, Brief(cause)), activities.ErrTypeStagingLost, nil)
	}
	r.result.StagingRecoveries++
	r.progress.StagingRecoveries = r.result.StagingRecoveries
	r.ref.StagingGeneration++
	workflow.GetLogger(ctx).Warn("staging lost; re-creating it and running again what it held",
		"recovery", r.result.StagingRecoveries, "max_recoveries", MaxStagingRecoveries, "generation", r.ref.StagingGeneration,
		"phase", r.progress.Phase, "shards_loaded", sortedKeys(r.loaded), "exported", r.exported, "error", Brief(cause))
	r.enter(ctx, PhaseRecovering, 1)
	var a *activities.Batch
	if err := workflow.ExecuteActivity(shortActivity(ctx), a.ResetStaging, activities.ResetStagingInput{Run: r.ref}).Get(ctx, nil); err != nil {
		return fmt.Errorf("reset staging: %w", err)
	}
	r.progress.ChunksDone = 1
	return nil
}
