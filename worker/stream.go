package main

import (
	"go.temporal.io/sdk/worker"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/workflows"
)

// registerStream registers the stream ETL on w and reports whether there is
// anything to serve. The leases heartbeat and signal through the worker's
// own Temporal client (activity.GetClient).
func registerStream(w worker.Worker, d deps) bool {
	w.RegisterWorkflow(workflows.StreamIngestWorkflow)
	w.RegisterWorkflow(workflows.DLQReplayWorkflow)
	w.RegisterActivity(&activities.Stream{
		Timescale: d.Timescale,
		MySQL:     d.MySQL,
		Kafka:     d.cfg.Kafka,
		Config:    d.cfg.Stream,
		Params:    d.cfg.TransformParams(),
		Log:       d.log,
		Metrics:   d.metrics.Stream,
	})
	w.RegisterActivity(d.lineage)
	return true
}
