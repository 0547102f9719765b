package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/iot-etl/iot-etl/internal/export"
	"github.com/iot-etl/iot-etl/internal/features"
	"github.com/iot-etl/iot-etl/internal/store"
	"github.com/iot-etl/iot-etl/internal/transform"
)

// ExportFeatures builds the per device-hour features of the window from the
// warehouse and writes them to Parquet (and CSV on request) with a manifest,
// and to dwh.ml_features.
//
// Features are emitted for the hours [start − 1h, end − 1h): the label of an
// hour looks at the next hour, so the last hour of a window gets its row from
// the next run, and the first row of this run is the previous window's last
// hour, now that its next hour is loaded. Facts of [start − 2h, end) are
// read (one device at a time) for that. The export is redone whole on retry;
// it is idempotent.
func (b *Batch) ExportFeatures(ctx context.Context, in ExportFeaturesInput) (ExportFeaturesResult, error) {
	dataFrom, dataTo := in.Window.Start.Add(-2*time.Hour), in.Window.End
	dir := export.Dir(b.ExportDir, in.Window.Start, in.Window.End)
	w, err := export.NewWriter(dir, in.CSV)
	if err != nil {
		return ExportFeaturesResult{}, err
	}
	sink, err := store.NewFeatureSink(ctx, b.Timescale, in.Run.RunID)
	if err != nil {
		w.Abort()
		return ExportFeaturesResult{}, classify(err)
	}
	devices := 0
	err = store.EachDeviceFacts(ctx, b.Timescale, in.Run.RunKey, dataFrom, dataTo, func(deviceID string, facts []transform.Enriched) error {
		agg := features.NewAggregator()
		for i := range facts {
			agg.Add(&facts[i])
		}
		rows := features.Build(agg.Hours(), dataFrom, dataTo)
		if err := w.Write(rows); err != nil {
			return err
		}
		if err := sink.Add(ctx, rows); err != nil {
			return err
		}
		devices++
		activity.RecordHeartbeat(ctx, devices)
		return nil
	})
	if err != nil {
		w.Abort()
		sink.Rollback(ctx)
		return ExportFeaturesResult{}, classify(fmt.Errorf("export features: %w", err))
	}
	if _, err := sink.Commit(ctx); err != nil {
		w.Abort()
		return ExportFeaturesResult{}, classify(err)
	}
	manifestPath, m, err := w.Commit(export.Manifest{
		Generator: "iot-etl batch ExportFeatures", WorkflowID: in.Run.WorkflowID, RunID: in.Run.RunID,
		WindowStart: in.Window.Start, WindowEnd: in.Window.End,
		HoursFrom: dataFrom.Add(time.Hour), HoursTo: dataTo.Add(-time.Hour),
		Label:       "true when at least one reading of the device in the next hour is anomalous",
		SourceTable: "dwh.fact_sensor_readings_enriched", FeaturesTable: "dwh.ml_features",
	})
	if err != nil {
		return ExportFeaturesResult{}, err
	}
	res := ExportFeaturesResult{Rows: m.Rows, Positive: m.PositiveRows, Dir: dir, Manifest: manifestPath}
	for _, f := range m.Files {
		res.Files = append(res.Files, ExportedFile{Path: f.Path, Format: f.Format, Rows: f.Rows, SHA256: f.SHA256, Bytes: f.Bytes})
	}
	return res, nil
}
