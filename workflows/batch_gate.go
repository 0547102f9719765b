package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// saPhase is set while a run waits at the data-quality gate, so the UI
// lists the runs awaiting approval: Phase = "awaiting_approval".
var saPhase = temporal.NewSearchAttributeKeyKeyword("Phase")

// gateDecision is an approve or reject Update.
type gateDecision struct {
	approve bool
	reason  string
}

// parkAction is a retry or abandon Update of a parked run.
type parkAction struct {
	retry  bool
	reason string // abandon's
}

// gate checks the run's transformed output against the data-quality gate
// before Load. A breach parks the run in awaiting_approval, with the
// report in the progress query and the search attribute Phase set, until
// the approve or reject Update; rejected reports a run that ends there.
func (r *batchRun) gate(ctx workflow.Context) (rejected bool, err error) {
	var a *activities.Batch
	var rep batch.DQReport
	err = workflow.ExecuteActivity(longActivity(ctx, r.in.HeartbeatTimeout), a.CheckDQGate, activities.DQGateInput{
		Run: r.ref, Extracted: r.result.Extracted, Gate: r.in.Gate,
	}).Get(ctx, &rep)
	if err != nil {
		return false, fmt.Errorf("data-quality gate: %w", err)
	}
	r.progress.DQ = &rep
	if len(rep.Breaches) == 0 {
		r.gatePassed = true
		return false, nil
	}
	r.enter(ctx, PhaseAwaitingApproval, 0)
	r.decision = nil
	if err := workflow.UpsertTypedSearchAttributes(ctx, saPhase.ValueSet(PhaseAwaitingApproval)); err != nil {
		workflow.GetLogger(ctx).Warn("search attribute Phase not set", "error", err)
	}
	workflow.GetLogger(ctx).Warn("data-quality gate breached; waiting for approve or reject", "breaches", strings.Join(rep.Breaches, "; "))
	if err := workflow.Await(ctx, func() bool { return r.decision != nil }); err != nil {
		return false, err
	}
	d := *r.decision
	err = workflow.ExecuteActivity(shortActivity(ctx), a.RecordDecision, activities.DecisionInput{
		Run: r.ref, Approved: d.approve, Reason: d.reason, At: workflow.Now(ctx),
	}).Get(ctx, nil)
	if err != nil {
		return false, err
	}
	phase := PhaseLoad
	if !d.approve {
		phase = PhaseRejected
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, saPhase.ValueSet(phase)); err != nil {
		workflow.GetLogger(ctx).Warn("search attribute Phase not set", "error", err)
	}
	if d.approve {
		r.progress.Decision = "approved: " + d.reason
		r.gatePassed = true
		return false, nil
	}
	r.progress.Decision = "rejected: " + d.reason
	text := "rejected by operator (" + d.reason + ") at the data-quality gate: " + strings.Join(rep.Breaches, "; ")
	return true, r.finish(ctx, PhaseRejected, batch.StatusRejected, text)
}

// setUpdateHandlers registers the run's Updates. Each validator refuses,
// before anything is written to the history, an Update the run cannot
// take in its phase; the reply says what happens next.
func (r *batchRun) setUpdateHandlers(ctx workflow.Context) error {
	decide := func(approve bool) func(workflow.Context, string) (string, error) {
		return func(ctx workflow.Context, reason string) (string, error) {
			r.decision = &gateDecision{approve: approve, reason: reason}
			if approve {
				return "approved: the run loads now, then exports and finishes", nil
			}
			return "rejected: the run ends as rejected; nothing was loaded and its staging is dropped", nil
		}
	}
	atGate := func(_ string, reason string) error {
		if r.progress.Phase != PhaseAwaitingApproval || r.decision != nil {
			return fmt.Errorf("run %s is in phase %s, not awaiting approval: nothing to approve or reject", r.ref.WorkflowID, r.progress.Phase)
		}
		if strings.TrimSpace(reason) == "" {
			return fmt.Errorf("a reason is required")
		}
		return nil
	}
	for _, u := range []struct {
		name    string
		approve bool
	}{{UpdateApprove, true}, {UpdateReject, false}} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, decide(u.approve), workflow.UpdateHandlerOptions{
			Validator: func(_ workflow.Context, reason string) error { return atGate(u.name, reason) },
		})
		if err != nil {
			return err
		}
	}
	parked := func(phases ...string) error {
		if r.actionPending {
			return fmt.Errorf("run %s already took a retry or abandon that it has not acted on yet", r.ref.WorkflowID)
		}
		for _, p := range phases {
			if r.progress.Phase == p {
				return nil
			}
		}
		return fmt.Errorf("run %s is in phase %s, not %s", r.ref.WorkflowID, r.progress.Phase, strings.Join(phases, " or "))
	}
	retry := func(phase, what string, attempts func() int) error {
		return workflow.SetUpdateHandlerWithOptions(ctx, map[string]string{PhaseLoadFailed: UpdateRetryLoad, PhaseExportFailed: UpdateRetryExport}[phase],
			func(ctx workflow.Context) (string, error) {
				r.actionPending = true
				r.actions.SendAsync(parkAction{retry: true})
				return fmt.Sprintf("%s runs again (attempt %d)", what, attempts()+1), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(workflow.Context) error { return parked(phase) }})
	}
	if err := retry(PhaseLoadFailed, "load, from staging,", func() int { return r.progress.LoadAttempts }); err != nil {
		return err
	}
	if err := retry(PhaseExportFailed, "the feature export", func() int { return r.progress.ExportAttempts }); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateAbandon,
		func(ctx workflow.Context, reason string) (string, error) {
			r.actionPending = true
			r.actions.SendAsync(parkAction{reason: reason})
			return "abandoned: the run ends as abandoned; what it loaded stays", nil
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, _ string) error { return parked(PhaseLoadFailed, PhaseExportFailed) }})
}
