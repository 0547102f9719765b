package main

import (
	"fmt"

	"go.temporal.io/sdk/worker"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/workflows"
)

func registerBatch(w worker.Worker, d deps) error {
	exportStore, err := export.Open(d.cfg.Export, d.cfg.AWS)
	if err != nil {
		return fmt.Errorf("EXPORT_URL=%s: %w", d.cfg.Export.URL, err)
	}
	w.RegisterWorkflow(workflows.BatchETLWorkflow)
	w.RegisterWorkflow(workflows.StagingSweepWorkflow)
	w.RegisterWorkflow(workflows.ReconcileWorkflow)
	w.RegisterActivity(&activities.Batch{
		MySQL:        d.MySQL,
		Locations:    d.Locations,
		Timescale:    d.Timescale,
		Export:       exportStore,
		Params:       d.cfg.TransformParams(),
		StreamWindow: d.cfg.Stream.Window,
		Temporal:     d.tc,
		Lineage:      d.lineage,
		ModelPath:    d.cfg.ModelPath,
	})
	w.RegisterActivity(d.lineage)
	d.log.Info("feature exports", "url", d.cfg.Export.URL)
	return nil
}
