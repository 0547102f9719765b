package logging

import (
	"bytes"
	"encoding/json"
	"testing"

	tlog "go.temporal.io/sdk/log"
)

// TestTemporalKeys: the context the Temporal SDK adds, through With or on
// the line, comes out under iot-etl's keys, in the JSON format.
func TestTemporalKeys(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := Temporal(New(&buf, "info", "json"))
	l = tlog.With(l, "WorkflowID", "iot-batch-1", "RunID", "r-1")
	l.Info("activity line", "ActivityType", "LoadFacts", "Attempt", 3, "rows", 7)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%s: %v", buf.String(), err)
	}
	want := map[string]any{"level": "INFO", "msg": "activity line", "workflow_id": "iot-batch-1", "run_id": "r-1",
		"activity_type": "LoadFacts", "attempt": float64(3), "rows": float64(7)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, buf.String())
		}
	}
	for _, k := range []string{"WorkflowID", "RunID", "ActivityType", "Attempt"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s not renamed: %s", k, buf.String())
		}
	}
	if _, ok := got["time"]; !ok {
		t.Errorf("no time: %s", buf.String())
	}
}
