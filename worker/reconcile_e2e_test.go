package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestReconcile streams readings, loads the same readings with the batch,
// and reconciles them: 0 mismatches. After one window row is corrupted by
// hand, exactly that device-hour is reported, and --repair rebuilds it
// from the raw readings: the windows equal a recomputation again and a
// new reconciliation finds nothing.
func TestReconcile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := e2e.NewStream(t, 2)
	if err := seeder.ReplaceLocations(ctx, s.Stack.Locations, s.Fleet.Locations); err != nil {
		t.Fatal(err)
	}
	s.Start(workflows.StreamInput{Leases: 1, LeaseDuration: time.Minute, MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	s.Produce(1200)
	s.WaitConsumed(time.Minute)

	// The hour before this one holds the readings (or their start).
	to := time.Now().UTC().Truncate(time.Hour)
	from := to.Add(-time.Hour)
	inRange := s.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, from, to)
	if inRange == 0 {
		t.Fatalf("no streamed reading in [%s, %s)", from, to)
	}
	s.Stack.Config.Temporal.BatchTaskQueue = "batch-" + strings.ToLower(t.Name())
	env := testenv.EnvMap(s.Stack.Config)
	testenv.Start(t, "batch-worker", testenv.Build(t, "./worker"), env, "-queues", "batch")
	run, err := s.TC.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: s.Stack.Config.Temporal.BatchTaskQueue, WorkflowExecutionTimeout: 5 * time.Minute},
		workflows.BatchWorkflowName, workflows.BatchInput{WindowStart: from, WindowEnd: to, HeartbeatTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.BatchResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Status != batch.StatusSucceeded || res.RowsLoaded != inRange {
		t.Fatalf("batch: %s, %d rows loaded, want succeeded and the %d readings of the hour", res.Status, res.RowsLoaded, inRange)
	}
	devices := s.Count(`SELECT count(DISTINCT device_id) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, from, to)

	starterBin := testenv.Build(t, "./starter")
	rangeArgs := []string{"reconcile", "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339)}
	out := e2e.RunStarter(t, starterBin, env, rangeArgs...)
	clean := fmt.Sprintf("device-hours compared: %d; mismatches: 0 (differs 0, missing_stream 0, missing_batch 0)", devices)
	if !strings.Contains(out, clean) {
		t.Fatalf("reconcile over the same readings: want %q in:\n%s", clean, out)
	}

	// One window changed by hand.
	var dev string
	var w time.Time
	if err := s.Stack.Timescale.QueryRow(ctx, `SELECT device_id, window_start FROM public.sensor_readings_stream_agg
		WHERE window_start >= $1 AND window_start < $2 AND value_count > 0 ORDER BY device_id, window_start LIMIT 1`, from, to).Scan(&dev, &w); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stack.Timescale.Exec(ctx, `UPDATE public.sensor_readings_stream_agg SET value_sum = value_sum + 1, reading_count = reading_count + 1
		WHERE device_id = $1 AND window_start = $2`, dev, w); err != nil {
		t.Fatal(err)
	}
	hour := w.UTC().Truncate(time.Hour).Format(time.RFC3339)
	out = e2e.RunStarter(t, starterBin, env, rangeArgs...)
	want := fmt.Sprintf("device-hours compared: %d; mismatches: 1 (differs 1, missing_stream 0, missing_batch 0)", devices)
	if !strings.Contains(out, want) || !tableLine(out, fmt.Sprintf("%s %s differs * * * * false", dev, hour)) {
		t.Fatalf("after corrupting %s %s: want %q and its row in:\n%s", dev, w, want, out)
	}
	if n := s.Count(`SELECT count(*) FROM dwh.reconciliation WHERE device_id = $1 AND hour = $2 AND kind = 'differs'
		AND stream_count = batch_count + 1 AND stream_sum = batch_sum + 1`, dev, w.Truncate(time.Hour)); n != 1 {
		t.Errorf("dwh.reconciliation rows for %s %s with the corruption's figures: %d, want 1", dev, hour, n)
	}

	out = e2e.RunStarter(t, starterBin, env, append(rangeArgs, "--repair")...)
	for _, want := range []string{want, "repaired: 1 device-hours rebuilt from raw; still mismatched after the repair: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("reconcile --repair: want %q in:\n%s", want, out)
		}
	}
	if !tableLine(out, fmt.Sprintf("%s %s differs * * * * true", dev, hour)) {
		t.Errorf("reconcile --repair: the mismatch is not marked repaired:\n%s", out)
	}
	out = e2e.RunStarter(t, starterBin, env, rangeArgs...)
	if !strings.Contains(out, clean) {
		t.Errorf("reconcile after the repair: want %q in:\n%s", clean, out)
	}
	produced, malformed := s.Counts()
	e2e.CheckStreamExact(t, s.Stack, s.Prod, s.Topic, e2e.StreamExpect{Produced: int64(produced), Quarantined: int64(malformed),
		ByReason: map[string]int64{"not_json": int64(malformed)}})
}
