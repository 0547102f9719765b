package activities

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/activity"

	"github.com/iot-etl/iot-etl/internal/adapter/lineage"
)

// The OpenLineage jobs.
const (
	JobBatch     = "batch_etl"
	JobDLQReplay = "dlq_replay"
	JobReconcile = "reconcile"
)

// The run event types, for the workflows.
const (
	LineageStart    = lineage.Start
	LineageComplete = lineage.Complete
	LineageFail     = lineage.Fail
)

// Datasets of the jobs: "mysql:" tables are of the device registry,
// "locations:" of the locations database, the rest of TimescaleDB.
var jobDatasets = map[string]struct{ inputs, outputs []string }{
	JobBatch: {
		inputs: []string{"mysql:devices", "mysql:device_types", "locations:public.locations", "public.sensor_readings"},
		outputs: []string{"dwh.fact_sensor_readings_enriched", "dwh.fact_hourly_agg", "dwh.dim_devices", "dwh.dim_locations",
			"dwh.ml_features", "dwh.anomaly_predictions", "dwh.etl_runs"},
	},
	JobDLQReplay: {
		inputs:  []string{"public.stream_dead_letters", "mysql:devices"},
		outputs: []string{"public.sensor_readings", "public.sensor_readings_stream_agg", "public.stream_anomalies", "public.stream_dead_letters"},
	},
	JobReconcile: {
		inputs:  []string{"public.sensor_readings_stream_agg", "dwh.fact_sensor_readings_enriched", "public.sensor_readings"},
		outputs: []string{"dwh.reconciliation", "public.sensor_readings_stream_agg"},
	},
}

// Lineage sends the OpenLineage run events of the batch runs, dead-letter
// replays and reconciliations. A nil *Lineage, or one without an enabled
// emitter, sends nothing.
type Lineage struct {
	Emitter *lineage.Emitter
	// The databases, to read the datasets' schemas: MySQLAddr
	// (host:port) and MySQLDatabase name the registry.
	MySQL         *sql.DB
	MySQLAddr     string
	MySQLDatabase string
	Locations     *pgxpool.Pool
	Timescale     *pgxpool.Pool
}

// LineageInput is one run event of a job run (the activity's workflow run).
type LineageInput struct {
	Job       string `json:"job"`
	EventType string `json:"event_type"`
	// Rows are the row counts of the event's datasets, by table as
	// jobDatasets names them: read (inputs) and written (outputs).
	InputRows  map[string]int64 `json:"input_rows,omitempty"`
	OutputRows map[string]int64 `json:"output_rows,omitempty"`
	// Files are more output datasets: feature files, by URL.
	Files []string `json:"files,omitempty"`
	Error string   `json:"error,omitempty"`
}

// EmitLineage sends one run event of the workflow run that calls it. It
// never fails on the event: lineage is observability, and a receiver that
// is down must not stop a run (the failure is logged).
func (l *Lineage) EmitLineage(ctx context.Context, in LineageInput) error {
	l.emit(ctx, activity.GetInfo(ctx).WorkflowExecution.RunID, in)
	return nil
}

func (l *Lineage) emit(ctx context.Context, runID string, in LineageInput) {
	if l == nil || !l.Emitter.Enabled() {
		return
	}
	sets := jobDatasets[in.Job]
	inputs := l.datasets(ctx, sets.inputs, in.InputRows, true)
	outputs := l.datasets(ctx, sets.outputs, in.OutputRows, false)
	for _, f := range in.Files {
		outputs = append(outputs, fileDataset(f))
	}
	ev := l.Emitter.Event(in.EventType, in.Job, runID, time.Now(), inputs, outputs)
	if in.Error != "" {
		ev = lineage.WithError(ev, in.Error)
	}
	_ = l.Emitter.Emit(ctx, ev) // logged by Emit
}

func (l *Lineage) datasets(ctx context.Context, tables []string, rows map[string]int64, input bool) []lineage.Dataset {
	out := make([]lineage.Dataset, 0, len(tables))
	for _, t := range tables {
		var d lineage.Dataset
		var err error
		if table, ok := strings.CutPrefix(t, "mysql:"); ok {
			d, err = lineage.MySQLDataset(ctx, l.MySQL, l.MySQLAddr, l.MySQLDatabase, table)
		} else if table, ok := strings.CutPrefix(t, "locations:"); ok {
			d, err = lineage.PostgresDataset(ctx, l.Locations, table)
		} else {
			d, err = lineage.PostgresDataset(ctx, l.Timescale, t)
		}
		if err != nil {
			activity.GetLogger(ctx).Warn("lineage: dataset schema not read", "table", t, "error", err)
			continue
		}
		if n, ok := rows[t]; ok {
			d = d.WithRows(input, n)
		}
		out = append(out, d)
	}
	return out
}

// fileDataset is a feature file (or directory) by URL: s3://bucket/key or
// a local path.
func fileDataset(u string) lineage.Dataset {
	if rest, ok := strings.CutPrefix(u, "s3://"); ok {
		bucket, key, _ := strings.Cut(rest, "/")
		return lineage.Dataset{Namespace: "s3://" + bucket, Name: key}
	}
	return lineage.Dataset{Namespace: "file", Name: u}
}
