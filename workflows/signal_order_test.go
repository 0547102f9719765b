package workflows

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
)

// TestReplayArrivalOrderWithInterceptor replays the recorded runs whose
// control signals arrived in one workflow task (worker's
// TestStreamControlSignalsInArrivalOrder) on a replayer with
// SignalOrderInterceptor, as the worker runs them;
// TestReplayRecordedHistories replays them without it. Both apply the
// order recorded in the history.
func TestReplayArrivalOrderWithInterceptor(t *testing.T) {
	files, err := filepath.Glob("testdata/stream-replay-arrivalorder-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("recorded histories: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
				Interceptors: []interceptor.WorkerInterceptor{SignalOrderInterceptor()},
			})
			if err != nil {
				t.Fatal(err)
			}
			r.RegisterWorkflow(StreamIngestWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}

func TestArrivalOrder(t *testing.T) {
	t.Parallel()
	const stop, pause, resume = SignalStop, SignalPause, SignalResume
	tests := []struct {
		name    string
		arrived []string
		pending [3]int // stop, pause, resume
		want    []string
	}{
		{"nothing", nil, [3]int{}, nil},
		{"as they arrived", []string{resume, pause, stop, pause}, [3]int{1, 2, 1}, []string{resume, pause, stop, pause}},
		{"no record: stop, pause, resume", nil, [3]int{1, 2, 1}, []string{stop, pause, pause, resume}},
		{"what the record misses goes last, in the fixed order", []string{resume}, [3]int{1, 1, 2}, []string{resume, stop, pause, resume}},
		{"recorded but not pending is left out", []string{pause, resume, pause}, [3]int{0, 1, 1}, []string{pause, resume}},
		{"other names are left out", []string{"lease-progress", pause}, [3]int{0, 1, 0}, []string{pause}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, arrivalOrder(tt.arrived, tt.pending), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSignalArrivalsTake(t *testing.T) {
	t.Parallel()
	var none *signalArrivals
	if got := none.take(); got != nil {
		t.Errorf("nil record took %v", got)
	}
	a := &signalArrivals{names: []string{SignalPause, SignalResume}}
	if diff := cmp.Diff([]string{SignalPause, SignalResume}, a.take()); diff != "" {
		t.Errorf("take (-want +got):\n%s", diff)
	}
	if got := a.take(); got != nil {
		t.Errorf("second take = %v, want nothing", got)
	}
}
