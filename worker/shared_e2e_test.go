package main

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestWorkersShareTheBatch runs two worker processes on one task queue: the
// shards of a run are spread over both, and the warehouse is the same as
// when one worker does everything.
func TestWorkersShareTheBatch(t *testing.T) {
	b := e2e.NewBatch(t, 24)
	b.Worker.Kill()
	bin := testenv.Build(t, "./worker")
	w1 := testenv.Start(t, "worker-1", bin, b.Env, "-queues", "batch", "-batch-activities", "2")
	w2 := testenv.Start(t, "worker-2", bin, b.Env, "-queues", "batch", "-batch-activities", "2")

	run := b.Start(workflows.BatchInput{Shards: 8})
	shared := b.Wait(run)

	// Which worker ran each activity.
	ctx := context.Background()
	iter := b.TC.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	byWorker := map[string]int{}
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			byWorker[a.GetIdentity()]++
		}
	}
	if len(byWorker) != 2 {
		t.Errorf("activities ran on %d workers (%v), want 2", len(byWorker), byWorker)
	}

	// The same window by one worker alone gives the same warehouse.
	w2.Kill()
	for _, table := range []string{"dwh.fact_sensor_readings_enriched", "dwh.fact_hourly_agg", "dwh.ml_features"} {
		if _, err := b.Stack.Timescale.Exec(ctx, "TRUNCATE "+table); err != nil {
			t.Fatal(err)
		}
	}
	alone := b.Wait(b.Start(workflows.BatchInput{Shards: 8}))
	if alone.FactChecksum != shared.FactChecksum || alone.RowsLoaded != shared.RowsLoaded || alone.Features.Rows != shared.Features.Rows {
		t.Errorf("one worker: %s %d rows %d features; two workers: %s %d rows %d features",
			alone.FactChecksum, alone.RowsLoaded, alone.Features.Rows, shared.FactChecksum, shared.RowsLoaded, shared.Features.Rows)
	}
	_ = w1
}

// TestScheduleLifecycle drives the schedule commands of the starter against
// the dev server: create, describe, pause and unpause, backfill of a seeded
// day (which must process that day, derived from the scheduled time), and
// delete.
func TestScheduleLifecycle(t *testing.T) {
	b := e2e.NewBatch(t, 6)
	starterBin := testenv.Build(t, "./starter")
	id := "sched-" + b.Stack.Config.Temporal.BatchTaskQueue
	out := e2e.RunStarter(t, starterBin, b.Env, "schedule", "create", "-id", id, "-catchup-window", "1h")
	if want := "schedule " + id + ` created: "0 2 * * *" UTC, overlap skip, catch-up window 1h0m0s`; !containsLine(out, want) {
		t.Errorf("create: %q, want %q", out, want)
	}
	out = e2e.RunStarter(t, starterBin, b.Env, "schedule", "describe", "-id", id)
	for _, want := range []string{"overlap:        Skip", "catch-up:       1h0m0s", "paused:         false (nightly batch ETL of the previous UTC day)"} {
		if !containsLine(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	next := time.Now().UTC().Truncate(24 * time.Hour).Add(2 * time.Hour)
	if next.Before(time.Now()) {
		next = next.Add(24 * time.Hour)
	}
	if !containsLine(out, "next run:       "+next.Format(time.RFC3339)) {
		t.Errorf("describe does not show the next run at %s:\n%s", next.Format(time.RFC3339), out)
	}
	e2e.RunStarter(t, starterBin, b.Env, "schedule", "pause", "-id", id)
	if out = e2e.RunStarter(t, starterBin, b.Env, "schedule", "describe", "-id", id); !containsLine(out, "paused:         true (paused with starter schedule pause)") {
		t.Errorf("describe after pause:\n%s", out)
	}
	e2e.RunStarter(t, starterBin, b.Env, "schedule", "unpause", "-id", id)

	out = e2e.RunStarter(t, starterBin, b.Env, "schedule", "backfill", "-id", id, "-from", "2026-11-02", "-to", "2026-11-02")
	if want := "backfill of 1 day(s) 2026-11-02..2026-11-02 requested on " + id + " (schedule times [2026-11-03T00:00:00Z, 2026-11-04T00:00:00Z), buffered one after another)"; !containsLine(out, want) {
		t.Errorf("backfill: %q", out)
	}
	// The backfilled run processes 2026-11-02, the day before its scheduled time.
	deadline := time.Now().Add(2 * time.Minute)
	var rows int64
	for time.Now().Before(deadline) {
		rows = b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE status = 'succeeded' AND window_start = $1 AND window_end = $2`, e2e.Window.Start, e2e.Window.End)
		if rows > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rows != 1 {
		t.Fatalf("backfill: %d succeeded runs of [%s, %s), want 1", rows, e2e.Window.Start, e2e.Window.End)
	}
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if n := b.Count(`SELECT rows_loaded FROM dwh.etl_runs WHERE window_start = $1`, e2e.Window.Start); n != readings {
		t.Errorf("backfilled run loaded %d rows, want %d", n, readings)
	}
	// A manual trigger processes the day before now, like the nightly slot.
	e2e.RunStarter(t, starterBin, b.Env, "schedule", "trigger", "-id", id)
	yesterday := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	deadline = time.Now().Add(2 * time.Minute)
	for rows = 0; rows == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		rows = b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE status = 'succeeded' AND window_start = $1`, yesterday)
	}
	if rows != 1 {
		t.Errorf("trigger: %d succeeded runs of %s, want 1", rows, yesterday.Format(time.DateOnly))
	}
	e2e.RunStarter(t, starterBin, b.Env, "schedule", "delete", "-id", id)
	if _, err := e2e.RunStarterErr(starterBin, b.Env, "schedule", "describe", "-id", id); err == nil {
		t.Error("describe after delete succeeded")
	}
}

func containsLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}
