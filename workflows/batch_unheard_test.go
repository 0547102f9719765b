package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-etl/iot-etl/activities"
)

// unheardLoad mocks LoadFacts: shard 0's first timeouts calls time out on
// their heartbeat (the worker was not heard), every other call loads. It
// returns the calls per shard and the run marks.
func unheardLoad(t *testing.T, timeouts int) (env *testsuite.TestWorkflowEnvironment, calls map[int]int, marked *[]string) {
	t.Helper()
	calls, marked = map[int]int{}, &[]string{}
	var mu sync.Mutex // the mocked activities run concurrently
	env = newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
				mu.Lock()
				defer mu.Unlock()
				calls[in.Shard]++
				if in.Shard == 0 && calls[0] <= timeouts {
					return activities.LoadFactsResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_HEARTBEAT, nil)
				}
				return activities.LoadFactsResult{Rows: in.ExpectedRows}, nil
			})
		env.OnActivity(a.MarkRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.MarkRunInput) error {
			mu.Lock()
			defer mu.Unlock()
			*marked = append(*marked, string(in.Status))
			return nil
		}).Maybe()
	})
	return env, calls, marked
}

// TestUnheardLoadRunsAgain: every attempt of a shard's load times out on
// its heartbeat (a worker cut off from Temporal): the run does not park,
// it runs the load again after a pause, and succeeds.
func TestUnheardLoadRunsAgain(t *testing.T) {
	env, calls, marked := unheardLoad(t, DefaultLoadMaxAttempts)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
	got := result(t, env)
	if got.Status != "succeeded" || got.LoadAttempts != 2 {
		t.Errorf("status %q after %d load attempts, want succeeded after 2", got.Status, got.LoadAttempts)
	}
	// Shard 1 loaded the first time and is not loaded again.
	if diff := cmp.Diff(map[int]int{0: DefaultLoadMaxAttempts + 1, 1: 1}, calls); diff != "" {
		t.Errorf("LoadFacts calls per shard (-want +got):\n%s", diff)
	}
	if len(*marked) != 0 {
		t.Errorf("run marked %v, want no mark", *marked)
	}
}

// TestUnheardLoadParksAtLast: a load that is never heard from runs again
// MaxUnheardReruns times, then the run parks in load_failed as for any
// failure.
func TestUnheardLoadParksAtLast(t *testing.T) {
	env, calls, marked := unheardLoad(t, 1000)
	var parked Progress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		_ = v.Get(&parked)
		env.SignalWorkflow(SignalAbandon, "worker keeps dying")
	}, 2*time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
	got := result(t, env)
	if parked.Phase != PhaseLoadFailed || parked.LoadError != "load facts shard 0: timed out (Heartbeat)" || parked.LoadAttempts != 1+MaxUnheardReruns {
		t.Errorf("progress while parked = %+v, want load_failed with the timeout after %d load attempts", parked, 1+MaxUnheardReruns)
	}
	if got.Status != "abandoned" {
		t.Errorf("status %q, want abandoned", got.Status)
	}
	if want := (1 + MaxUnheardReruns) * DefaultLoadMaxAttempts; calls[0] != want {
		t.Errorf("shard 0 loaded %d times, want %d", calls[0], want)
	}
	if diff := cmp.Diff([]string{"load_failed"}, *marked); diff != "" {
		t.Errorf("run marks (-want +got):\n%s", diff)
	}
}
