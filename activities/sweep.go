package activities

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// WorkflowLookup is what the staging sweep asks Temporal about a run's
// workflow; a client.Client is one.
type WorkflowLookup interface {
	DescribeWorkflow(ctx context.Context, workflowID, runID string) (*client.WorkflowExecutionDescription, error)
	GetWorkflowHistory(ctx context.Context, workflowID string, runID string, isLongPoll bool, filterType enumspb.HistoryEventFilterType) client.HistoryEventIterator
}

// DefaultSweepLockWait bounds how long the sweep waits for the locks of
// one run's drop.
const DefaultSweepLockWait = 5 * time.Second

// SweepStagingInput is the input of SweepStaging.
type SweepStagingInput struct {
	// Except is a run the sweep leaves alone without asking: the batch run
	// that sweeps at its start.
	Except string `json:"except,omitempty"`
	// LockWait bounds the wait for the locks of each run's drop; 0 means
	// DefaultSweepLockWait.
	LockWait time.Duration `json:"lock_wait,omitempty"`
}

// What the sweep did with a run.
const (
	SweepDropped = "dropped"    // its staging was dropped (its row was closed already)
	SweepClosed  = "terminated" // its workflow is closed but its row was open: marked terminated, staging dropped
	SweepUnknown = "unknown"    // left alone: whether its workflow runs cannot be told
	SweepFailed  = "failed"     // could not be swept now; the next sweep tries again
)

// SweptRun is one run the sweep acted on, or had to leave alone.
type SweptRun struct {
	RunID      string       `json:"run_id"`
	WorkflowID string       `json:"workflow_id,omitempty"`
	Status     batch.Status `json:"status,omitempty"` // its dwh.etl_runs status before the sweep
	Action     string       `json:"action"`
	Detail     string       `json:"detail,omitempty"`
}

// SweepStagingResult is what SweepStaging did. Runs lists every run but the
// running ones, which are only counted.
type SweepStagingResult struct {
	Dropped int        `json:"dropped"` // closed runs whose staging was dropped
	Closed  int        `json:"closed"`  // open rows of closed workflows marked terminated (their staging dropped)
	Running int        `json:"running"` // runs left alone: their workflow is running
	Unknown int        `json:"unknown"`
	Failed  int        `json:"failed"`
	Runs    []SweptRun `json:"runs,omitempty"`
}

// SweepStaging drops the staging of every run that is not running in
// Temporal and closes the dwh.etl_runs rows that their workflows left open,
// as `temporal workflow terminate` does (a terminated workflow runs no
// cleanup). A run is swept only on proof that it is over: its row is
// closed (FinishRun is the last thing a run does before it drops its own
// staging), or Temporal describes its workflow execution (by the workflow
// and run id of its row) as closed. A run Temporal does not know (another
// namespace, or history past its retention) and staging without a run row
// are left alone and reported. One run failing to be swept (a lock held
// for longer than LockWait) does not stop the others.
func (b *Batch) SweepStaging(ctx context.Context, in SweepStagingInput) (SweepStagingResult, error) {
	var res SweepStagingResult
	lockWait := in.LockWait
	if lockWait <= 0 {
		lockWait = DefaultSweepLockWait
	}
	staged, err := warehouse.StagedRuns(ctx, b.Timescale)
	if err != nil {
		return res, err
	}
	keys := make([]string, 0, len(staged))
	for k := range staged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows, err := warehouse.RunsToSweep(ctx, b.Timescale, keys)
	if err != nil {
		return res, err
	}
	log := activity.GetLogger(ctx)
	known := map[string]bool{}
	for _, row := range rows {
		known[row.RunID] = true
		if row.RunID == in.Except {
			continue
		}
		activity.RecordHeartbeat(ctx, row.RunID)
		swept := SweptRun{RunID: row.RunID, WorkflowID: row.WorkflowID, Status: row.Status}
		run := warehouse.Run{TS: b.Timescale, ID: row.RunID}
		if !row.Status.Open() {
			swept.Action, swept.Detail = SweepDropped, "run "+string(row.Status)
			if err := run.SweepStaging(ctx, lockWait); err != nil {
				swept.Action, swept.Detail = SweepFailed, err.Error()
			}
			res.add(swept)
			continue
		}
		state, err := b.workflowState(ctx, row)
		switch {
		case err != nil:
			swept.Action, swept.Detail = SweepFailed, err.Error()
			res.add(swept)
			continue
		case state.unknown != "":
			swept.Action, swept.Detail = SweepUnknown, state.unknown
			res.add(swept)
			continue
		case state.running:
			res.Running++
			continue
		}
		// The row first: should the drop have to wait for the next sweep,
		// the run is closed already and its staging goes without asking.
		swept.Action, swept.Detail = SweepClosed, state.reason
		if _, err := run.MarkClosed(ctx, batch.StatusTerminated, state.reason, state.closedAt); err != nil {
			swept.Action, swept.Detail = SweepFailed, err.Error()
		} else if staged[row.RunID] > 0 {
			if err := run.SweepStaging(ctx, lockWait); err != nil {
				res.Closed++
				swept.Action, swept.Detail = SweepFailed, "marked terminated, but its staging is not dropped yet: "+err.Error()
			}
		}
		res.add(swept)
	}
	for _, k := range keys {
		if !known[k] && k != in.Except {
			res.add(SweptRun{RunID: k, Action: SweepUnknown, Detail: "staging without a dwh.etl_runs row: left alone"})
		}
	}
	for _, r := range res.Runs {
		log.Info("staging sweep", "run_id", r.RunID, "workflow_id", r.WorkflowID, "status", r.Status, "action", r.Action, "detail", r.Detail)
	}
	return res, nil
}

func (r *SweepStagingResult) add(s SweptRun) {
	switch s.Action {
	case SweepDropped:
		r.Dropped++
	case SweepClosed:
		r.Closed++
	case SweepUnknown:
		r.Unknown++
	case SweepFailed:
		r.Failed++
	}
	r.Runs = append(r.Runs, s)
}

// workflowState is what Temporal says about a run's workflow execution.
type workflowState struct {
	running  bool
	unknown  string    // why it cannot be told
	reason   string    // closed: how, for the run row
	closedAt time.Time // closed: when
}

func (b *Batch) workflowState(ctx context.Context, row warehouse.RunRow) (workflowState, error) {
	if b.Temporal == nil {
		return workflowState{unknown: "no Temporal client to ask whether its workflow runs"}, nil
	}
	desc, err := b.Temporal.DescribeWorkflow(ctx, row.WorkflowID, row.RunID)
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return workflowState{unknown: "Temporal does not know workflow " + row.WorkflowID + " run " + row.RunID + " (another namespace, or past its retention)"}, nil
	case err != nil:
		return workflowState{}, fmt.Errorf("describe workflow %s run %s: %w", row.WorkflowID, row.RunID, err)
	}
	status := desc.Status
	if status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || status == enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED {
		return workflowState{running: true}, nil
	}
	st := workflowState{closedAt: time.Now()}
	if desc.WorkflowCloseTime != nil {
		st.closedAt = *desc.WorkflowCloseTime
	}
	st.reason = "workflow " + closedAs(status) + " in Temporal before it finished the run; its staging was swept"
	if status == enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		if why := terminateReason(ctx, b.Temporal, row); why != "" {
			st.reason = "workflow terminated in Temporal (" + why + ") before it finished the run; its staging was swept"
		}
	}
	return st, nil
}

// closedAs says how a workflow execution closed, in words.
func closedAs(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return "completed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return "failed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return "was canceled"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return "terminated"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "continued as new"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "timed out"
	}
	return "closed (" + s.String() + ")"
}

// terminateReason reads the reason and the identity of a termination from
// the close event of the workflow's history; "" when it cannot.
func terminateReason(ctx context.Context, tc WorkflowLookup, row warehouse.RunRow) string {
	it := tc.GetWorkflowHistory(ctx, row.WorkflowID, row.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return ""
		}
		if a := ev.GetWorkflowExecutionTerminatedEventAttributes(); a != nil {
			var parts []string
			if a.GetReason() != "" {
				parts = append(parts, fmt.Sprintf("reason %q", a.GetReason()))
			}
			if a.GetIdentity() != "" {
				parts = append(parts, "by "+a.GetIdentity())
			}
			return strings.Join(parts, ", ")
		}
	}
	return ""
}
