package main

import (
	"go.temporal.io/sdk/worker"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/transform"
	"github.com/iot-etl/iot-etl/workflows"
)

func registerBatch(w worker.Worker, d deps) {
	w.RegisterWorkflow(workflows.BatchETLWorkflow)
	w.RegisterActivity(&activities.Batch{
		MySQL:     d.mysql,
		Locations: d.locations,
		Timescale: d.timescale,
		ExportDir: d.cfg.ExportDir,
		Params:    transform.DefaultParams(),
		Log:       d.log,
	})
}
