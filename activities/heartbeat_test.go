package activities

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// TestHeartbeatOutlastsSlowWork runs an activity whose work between two
// beats lasts three heartbeat timeouts (a slow statement): the heartbeat
// repeats the last progress meanwhile, so the activity is not timed out,
// and the progress the server sees never goes back.
func TestHeartbeatOutlastsSlowWork(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		hb := startHeartbeat(ctx, 0)
		defer hb.Stop()
		hb.Beat(1)
		time.Sleep(3 * timeout)
		hb.Beat(2)
		time.Sleep(timeout)
		return nil
	}, activity.RegisterOptions{Name: "Slow"})
	var mu sync.Mutex
	var beats []int
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var n int
		if err := details.Get(&n); err != nil {
			t.Errorf("heartbeat details: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		beats = append(beats, n)
	})
	env.ExecuteWorkflow(func(ctx workflow.Context) error {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute, HeartbeatTimeout: timeout, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
		})
		return workflow.ExecuteActivity(ctx, "Slow").Get(ctx, nil)
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("an activity that heartbeats while it works: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.IsSorted(beats) || len(beats) == 0 || beats[len(beats)-1] != 2 {
		t.Errorf("heartbeats %v: want progress that never goes back, 2 last", beats)
	}
}

func TestHeartbeatInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ timeout, want time.Duration }{
		{0, 5 * time.Second},
		{3 * time.Second, time.Second},
		{5 * time.Second, 5 * time.Second / 3},
		{30 * time.Second, 5 * time.Second},
	} {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		var got time.Duration
		env.RegisterActivityWithOptions(func(ctx context.Context) error {
			got = heartbeatInterval(ctx)
			return nil
		}, activity.RegisterOptions{Name: "Interval"})
		env.ExecuteWorkflow(func(ctx workflow.Context) error {
			ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, HeartbeatTimeout: tc.timeout})
			return workflow.ExecuteActivity(ctx, "Interval").Get(ctx, nil)
		})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("heartbeat timeout %s: interval %s, want %s", tc.timeout, got, tc.want)
		}
	}
}
