package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

// warehouseDigest is the md5 of every fact row (run_id and loaded_at
// included: a rewrite shows) and of every device version, with the counts.
func warehouseDigest(t *testing.T, b *e2e.Batch) string {
	t.Helper()
	var facts, devices int64
	var factSum, deviceSum string
	err := b.Stack.Timescale.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM dwh.fact_sensor_readings_enriched),
		       (SELECT md5(coalesce(string_agg(f::text, E'\n' ORDER BY device_id, time), '')) FROM dwh.fact_sensor_readings_enriched f),
		       (SELECT count(*) FROM dwh.dim_devices),
		       (SELECT md5(coalesce(string_agg(d::text, E'\n' ORDER BY device_id, valid_from), '')) FROM dwh.dim_devices d)`).
		Scan(&facts, &factSum, &devices, &deviceSum)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d facts md5 %s, %d device versions md5 %s", facts, factSum, devices, deviceSum)
}

// TestSourceSchemaDrift: a column added to the MySQL registry between runs
// changes nothing (the batch reads its columns by name): same checksum. A
// column the batch reads dropped fails the next run at once, without a
// retry, with an error that names the table and the column, and leaves the
// warehouse exactly as it was.
func TestSourceSchemaDrift(t *testing.T) {
	b := e2e.NewBatch(t, 6)
	first := b.Wait(b.Start(workflows.BatchInput{}))
	if first.Status != "succeeded" {
		t.Fatalf("first run: %s", first.Status)
	}

	for _, stmt := range []string{
		`ALTER TABLE devices ADD COLUMN notes VARCHAR(200) NULL DEFAULT 'added between runs' FIRST`,
		`ALTER TABLE device_types ADD COLUMN vendor VARCHAR(64) NULL AFTER code`,
	} {
		if _, err := b.Stack.MySQL.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	added := b.Wait(b.Start(workflows.BatchInput{}))
	if added.Status != "succeeded" || added.FactChecksum != first.FactChecksum || added.RowsLoaded != first.RowsLoaded || added.Devices != first.Devices {
		t.Errorf("with added columns: %s, checksum %s, %d rows, %d devices; first run %s, %d, %d",
			added.Status, added.FactChecksum, added.RowsLoaded, added.Devices, first.FactChecksum, first.RowsLoaded, first.Devices)
	}
	before := warehouseDigest(t, b)

	if _, err := b.Stack.MySQL.Exec(`ALTER TABLE devices DROP COLUMN firmware`); err != nil {
		t.Fatal(err)
	}
	run := b.Start(workflows.BatchInput{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	err := run.Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("run with a dropped column: %v; want it to fail", err)
	}
	t.Logf("run with a dropped column failed: %s", appErr.Message())
	for _, want := range []string{"extract devices: ", "MySQL table devices", "Unknown column 'firmware'"} {
		if !strings.Contains(appErr.Message(), want) {
			t.Errorf("failure %q does not say %q", appErr.Message(), want)
		}
	}
	// Not retried: the extract failed on its first attempt.
	iter := b.TC.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskFailedEventAttributes(); a != nil {
			if f := a.GetFailure().GetApplicationFailureInfo(); f.GetType() != "SourceSchema" || !f.GetNonRetryable() {
				t.Errorf("activity failure %q of type %s, non-retryable %v; want SourceSchema, non-retryable", a.GetFailure().GetMessage(), f.GetType(), f.GetNonRetryable())
			}
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.GetAttempt() != 1 {
			t.Errorf("an activity ran %d attempts; the schema error must not be retried", a.GetAttempt())
		}
	}
	if after := warehouseDigest(t, b); after != before {
		t.Errorf("the failed run changed the warehouse: %s, before %s", after, before)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'failed' AND error LIKE '%Unknown column ''firmware''%'`, run.GetRunID()); n != 1 {
		t.Error("dwh.etl_runs does not record the failure with the column")
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_watermarks WHERE last_run_id = $1`, run.GetRunID()); n != 0 {
		t.Error("the failed run moved the watermark")
	}
}
