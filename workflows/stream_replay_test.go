package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplayStreamHistories replays stream histories recorded from real
// runs against the current workflow code. stream-replay-e2e.json comes from
// the worker's TestStreamEndToEnd (IOT_RECORD_HISTORY=1): leases on two
// slots, lease-progress signals, pause, resume, stop and the drain.
func TestReplayStreamHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/stream-*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded stream histories in testdata/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(StreamIngestWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
