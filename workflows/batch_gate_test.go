package workflows

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// updateCallbacks collects the outcome of one Update in the test
// environment: the validator's refusal, or the handler's reply.
type updateCallbacks struct {
	rejected error
	reply    string
	err      error
	done     bool
}

func (u *updateCallbacks) Accept()                 {}
func (u *updateCallbacks) Reject(err error)        { u.rejected, u.done = err, true }
func (u *updateCallbacks) Complete(v any, e error) { u.reply, _ = v.(string); u.err, u.done = e, true }

// gateEnv is a batch environment whose gate check reports a DQ score of
// 0.9 (the gate asks for 0.95) and records the decision.
func gateEnv(t *testing.T, decided *activities.DecisionInput, loads *atomic.Int64) *testsuite.TestWorkflowEnvironment {
	return newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.CheckDQGate, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DQGateInput) (batch.DQReport, error) {
			rep := batch.DQReport{Rows: 100, DQScore: 0.9, Extracted: 100, Rules: map[string]int64{"zscore": 3},
				WorstDevices: []batch.DeviceDQ{{DeviceID: "TEMP-001", Rows: 10, DQScore: 0.5}}}
			in.Gate.Check(&rep)
			return rep, nil
		})
		env.OnActivity(a.RecordDecision, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DecisionInput) error {
			*decided = in
			return nil
		})
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
				loads.Add(1) // shards load in parallel
				return activities.LoadFactsResult{Rows: in.ExpectedRows}, nil
			})
	})
}

// TestGateApprove: a run breaching the gate parks before Load with the
// report in its progress; an approve before that is refused, one without a
// reason too; the approve at the gate loads it.
func TestGateApprove(t *testing.T) {
	var decided activities.DecisionInput
	var loads atomic.Int64
	env := gateEnv(t, &decided, &loads)
	var early, noReason, ok, again updateCallbacks
	var parked Progress
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateApprove, "early", &early, "looks fine") }, time.Nanosecond)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		if err == nil {
			_ = v.Get(&parked)
		}
		env.UpdateWorkflow(UpdateApprove, "no-reason", &noReason, " ")
		env.UpdateWorkflow(UpdateApprove, "ok", &ok, "sensor recalibrated, known")
		env.UpdateWorkflow(UpdateReject, "again", &again, "too late")
	}, time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2, Gate: batch.Gate{DQMin: 0.95}})
	got := result(t, env)
	if early.rejected == nil || !strings.Contains(early.rejected.Error(), "not awaiting approval") {
		t.Errorf("approve before the gate: %v, want refused as not awaiting approval", early.rejected)
	}
	if noReason.rejected == nil || !strings.Contains(noReason.rejected.Error(), "reason is required") {
		t.Errorf("approve without a reason: %v", noReason.rejected)
	}
	if ok.rejected != nil || ok.err != nil || ok.reply != "approved: the run loads now, then exports and finishes" {
		t.Errorf("approve: refused %v, err %v, reply %q", ok.rejected, ok.err, ok.reply)
	}
	if again.rejected == nil {
		t.Error("a second decision was accepted")
	}
	if parked.Phase != PhaseAwaitingApproval || parked.DQ == nil || parked.DQ.DQScore != 0.9 || len(parked.DQ.Breaches) != 1 ||
		parked.DQ.WorstDevices[0].DeviceID != "TEMP-001" || parked.DQ.Rules["zscore"] != 3 {
		t.Errorf("progress while parked: %+v (dq %+v)", parked, parked.DQ)
	}
	if got.Status != batch.StatusSucceeded || loads.Load() != 2 || !decided.Approved || decided.Reason != "sensor recalibrated, known" {
		t.Errorf("after approve: %s, %d shard loads, decision %+v", got.Status, loads.Load(), decided)
	}
}

// TestGateReject: a rejected run ends rejected without loading anything;
// a run within the gate never parks.
func TestGateReject(t *testing.T) {
	var decided activities.DecisionInput
	var loads atomic.Int64
	env := gateEnv(t, &decided, &loads)
	var rej updateCallbacks
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateReject, "rej", &rej, "upstream outage") }, time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2, Gate: batch.Gate{DQMin: 0.95}})
	got := result(t, env)
	if rej.rejected != nil || !strings.HasPrefix(rej.reply, "rejected:") {
		t.Errorf("reject: refused %v, reply %q", rej.rejected, rej.reply)
	}
	if got.Status != batch.StatusRejected || loads.Load() != 0 || decided.Approved || decided.Reason != "upstream outage" {
		t.Errorf("after reject: %s, %d loads, decision %+v", got.Status, loads.Load(), decided)
	}

	decided = activities.DecisionInput{}
	loads.Store(0)
	env = gateEnv(t, &decided, &loads)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2, Gate: batch.Gate{DQMin: 0.8}})
	if got := result(t, env); got.Status != batch.StatusSucceeded || loads.Load() != 2 || decided.Reason != "" {
		t.Errorf("within the gate: %s, %d loads, decision %+v", got.Status, loads.Load(), decided)
	}
}

// TestRetryLoadUpdate: the retry-load Update is refused while the run is
// not parked and runs Load again when it is, with a reply saying so.
func TestRetryLoadUpdate(t *testing.T) {
	var failures atomic.Int64
	failures.Store(1)
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
				if in.Shard == 0 && failures.Add(-1) >= 0 {
					return activities.LoadFactsResult{}, temporal.NewNonRetryableApplicationError("check constraint violated", "InvalidData", nil)
				}
				return activities.LoadFactsResult{Rows: in.ExpectedRows}, nil
			})
	})
	var early, retry, abandonLate updateCallbacks
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateRetryLoad, "early", &early) }, time.Nanosecond)
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateRetryLoad, "retry", &retry) }, time.Hour)
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateAbandon, "late", &abandonLate, "x") }, 2*time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
	got := result(t, env)
	if early.rejected == nil || !strings.Contains(early.rejected.Error(), "not load_failed") {
		t.Errorf("retry-load before parking: %v", early.rejected)
	}
	if retry.rejected != nil || retry.reply != "load, from staging, runs again (attempt 2)" {
		t.Errorf("retry-load: refused %v, reply %q", retry.rejected, retry.reply)
	}
	if got.Status != batch.StatusSucceeded || got.LoadAttempts != 2 {
		t.Errorf("%s after %d load attempts", got.Status, got.LoadAttempts)
	}
	if abandonLate.done && abandonLate.rejected == nil {
		t.Error("abandon of a finished run was accepted")
	}
}
