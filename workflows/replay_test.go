package workflows

import (
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (`temporal workflow show --output json`) against the current workflow
// code: a change that would break runs in flight fails here. Record new
// histories when a change is versioned with workflow.GetVersion.
//
// batch-*.json: a normal test-mode run and one parked in load_failed, then
// retried. stream-replay-e2e.json comes from the worker's
// TestStreamEndToEnd (IOT_RECORD_HISTORY=1): leases on two slots,
// lease-progress signals, pause, resume, stop and the drain.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, f := range files {
		seen[strings.SplitN(filepath.Base(f), "-", 2)[0]]++
	}
	if seen["batch"] == 0 || seen["stream"] == 0 {
		t.Fatalf("recorded histories in testdata/: %v; want batch-*.json and stream-*.json", seen)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(BatchETLWorkflow)
			r.RegisterWorkflow(StreamIngestWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
