package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/lineage"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

// lineageReceiver is a Marquez-like endpoint: it keeps every event POSTed
// to /api/v1/lineage, in arrival order.
type lineageReceiver struct {
	mu     sync.Mutex
	events []lineage.RunEvent
	raw    []map[string]any
	bad    []string
}

func (rc *lineageReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/lineage" || r.Header.Get("Content-Type") != "application/json" {
		rc.bad = append(rc.bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var ev lineage.RunEvent
	var raw map[string]any
	if err := json.Unmarshal(body, &ev); err != nil || json.Unmarshal(body, &raw) != nil {
		rc.bad = append(rc.bad, "not JSON: "+string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.events, rc.raw = append(rc.events, ev), append(rc.raw, raw)
	w.WriteHeader(http.StatusCreated)
}

// of returns the events of one run, in arrival order.
func (rc *lineageReceiver) of(runID string) []lineage.RunEvent {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []lineage.RunEvent
	for _, ev := range rc.events {
		if ev.Run.RunID == runID {
			out = append(out, ev)
		}
	}
	return out
}

func eventTypes(evs []lineage.RunEvent) string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.EventType)
	}
	return strings.Join(out, ",")
}

func findDataset(sets []lineage.Dataset, suffix string) (lineage.Dataset, bool) {
	for _, d := range sets {
		if strings.HasSuffix(d.Name, suffix) {
			return d, true
		}
	}
	return lineage.Dataset{}, false
}

func rowCount(facets map[string]any, facet string) int64 {
	f, _ := facets[facet].(map[string]any)
	n, _ := f["rowCount"].(float64)
	return int64(n)
}

func schemaFields(d lineage.Dataset) []string {
	s, _ := d.Facets["schema"].(map[string]any)
	fields, _ := s["fields"].([]any)
	var out []string
	for _, f := range fields {
		m, _ := f.(map[string]any)
		name, _ := m["name"].(string)
		out = append(out, name)
	}
	return out
}

// TestLineageEvents points OPENLINEAGE_URL at a receiver in the test and
// checks the OpenLineage run events of a batch run (START then COMPLETE,
// with its inputs and outputs, their schemas and row counts), of a
// reconciliation, and of a run that fails (FAIL, with the error).
func TestLineageEvents(t *testing.T) {
	t.Parallel()
	rc := &lineageReceiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	b := e2e.NewBatchWith(t, e2e.BatchOptions{Devices: 3, NoWorker: true})
	b.Env["OPENLINEAGE_URL"] = srv.URL
	b.StartWorker()

	run := b.Start(workflows.BatchInput{})
	res := b.Wait(run)
	evs := rc.of(run.GetRunID())
	if got := eventTypes(evs); got != "START,COMPLETE" {
		t.Fatalf("batch run events: %s, want START,COMPLETE", got)
	}
	for _, ev := range evs {
		if ev.Job.Namespace != "iot-etl" || ev.Job.Name != "batch_etl" || ev.Producer == "" ||
			ev.SchemaURL != "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent" {
			t.Errorf("%s: job %+v, producer %q, schemaURL %q", ev.EventType, ev.Job, ev.Producer, ev.SchemaURL)
		}
	}
	if !evs[0].EventTime.Before(evs[1].EventTime) {
		t.Errorf("START at %s, COMPLETE at %s", evs[0].EventTime, evs[1].EventTime)
	}
	done := evs[1]
	readings, ok := findDataset(done.Inputs, ".public.sensor_readings")
	if !ok || !strings.HasPrefix(readings.Namespace, "postgres://") || !slices.Contains(schemaFields(readings), "device_id") ||
		rowCount(readings.InputFacets, "dataQualityMetrics") != res.Extracted {
		t.Errorf("input sensor_readings: %+v, fields %v; want postgres://, device_id among the fields and rowCount %d", readings, schemaFields(readings), res.Extracted)
	}
	devices, ok := findDataset(done.Inputs, ".devices")
	if !ok || !strings.HasPrefix(devices.Namespace, "mysql://") || !slices.Contains(schemaFields(devices), "firmware") ||
		rowCount(devices.InputFacets, "dataQualityMetrics") != int64(res.Devices) {
		t.Errorf("input devices: %+v; want mysql://, firmware among the fields and rowCount %d", devices, res.Devices)
	}
	if _, ok := findDataset(done.Inputs, ".public.locations"); !ok {
		t.Error("no input locations")
	}
	facts, ok := findDataset(done.Outputs, ".dwh.fact_sensor_readings_enriched")
	if !ok || rowCount(facts.OutputFacets, "outputStatistics") != res.RowsLoaded || !slices.Contains(schemaFields(facts), "anomaly_reasons") {
		t.Errorf("output facts: %+v; want rowCount %d and anomaly_reasons among the fields", facts, res.RowsLoaded)
	}
	if hourly, ok := findDataset(done.Outputs, ".dwh.fact_hourly_agg"); !ok || rowCount(hourly.OutputFacets, "outputStatistics") != res.HourlyRows {
		t.Errorf("output hourly: %+v; want rowCount %d", hourly, res.HourlyRows)
	}
	if _, ok := findDataset(done.Outputs, res.Features.WindowURL); !ok || res.Features.WindowURL == "" {
		t.Errorf("no output dataset for the feature files %q: %+v", res.Features.WindowURL, done.Outputs)
	}
	if start := evs[0]; len(start.Inputs) != 4 || len(start.Outputs) != 7 {
		t.Errorf("START: %d inputs, %d outputs; want 4 and 7", len(start.Inputs), len(start.Outputs))
	}

	// A reconciliation.
	ctx := context.Background()
	rrun, err := b.TC.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: b.Stack.Config.Temporal.BatchTaskQueue},
		workflows.ReconcileWorkflowName, workflows.ReconcileInput{From: e2e.Window.Start, To: e2e.Window.End})
	if err != nil {
		t.Fatal(err)
	}
	var rres workflows.ReconcileResult
	if err := rrun.Get(ctx, &rres); err != nil {
		t.Fatal(err)
	}
	revs := rc.of(rrun.GetRunID())
	if got := eventTypes(revs); got != "START,COMPLETE" || revs[1].Job.Name != "reconcile" {
		t.Fatalf("reconcile events: %s (job %+v), want START,COMPLETE of reconcile", got, revs)
	}
	if out, ok := findDataset(revs[1].Outputs, ".dwh.reconciliation"); !ok || rowCount(out.OutputFacets, "outputStatistics") != rres.Total() || rres.Total() == 0 {
		t.Errorf("reconcile output: %+v; want rowCount %d (no stream: every device-hour missing_stream)", out, rres.Total())
	}

	// A run that fails: a column the batch reads is dropped.
	if _, err := b.Stack.MySQL.Exec(`ALTER TABLE devices DROP COLUMN firmware`); err != nil {
		t.Fatal(err)
	}
	frun := b.Start(workflows.BatchInput{})
	if err := frun.Get(ctx, nil); err == nil {
		t.Fatal("the run without devices.firmware succeeded")
	}
	deadline := time.Now().Add(30 * time.Second)
	for eventTypes(rc.of(frun.GetRunID())) != "START,FAIL" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	fevs := rc.of(frun.GetRunID())
	if got := eventTypes(fevs); got != "START,FAIL" {
		t.Fatalf("failed run events: %s, want START,FAIL", got)
	}
	msg, _ := fevs[1].Run.Facets["errorMessage"].(map[string]any)
	if m, _ := msg["message"].(string); !strings.Contains(m, "firmware") {
		t.Errorf("FAIL errorMessage facet: %v; want the error naming firmware", fevs[1].Run.Facets)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Errorf("bad requests: %v", rc.bad)
	}
}
