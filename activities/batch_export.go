package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// ExportFeatures builds the per device-hour features of the window from the
// warehouse, writes them to dwh.ml_features and publishes them to the
// export store: Parquet (and CSV on request) under
// features/<window>/<run_id>/attempt-<n>/ (n: in.AttemptOffset plus the
// activity's attempt), then the window's manifest.json,
// then the cleanup of what no manifest references (see export.Publish).
// The URLs go into the result and into dwh.etl_runs.
//
// Features are emitted for the hours [start − 1h, end − 1h): the label of an
// hour looks at the next hour, so the last hour of a window gets its row from
// the next run, and the first row of this run is the previous window's last
// hour, now that its next hour is loaded. Facts of [start − 2h, end) are
// read (one device at a time) for that; with in.FromTransform, only those
// of [start − 2h, start), and the window's device-hours are the ones the
// transforms staged. The export is redone whole on retry,
// into the new attempt's own directory; it is idempotent.
func (b *Batch) ExportFeatures(ctx context.Context, in ExportFeaturesInput) (ExportFeaturesResult, error) {
	if b.Export == nil {
		return ExportFeaturesResult{}, fmt.Errorf("export features: no export store configured")
	}
	hb := startHeartbeat(ctx, 0)
	defer hb.Stop()
	data, hours := in.Window.FeatureData(), in.Window.FeatureHours()
	run := b.run(in.Run)
	// The facts are read joined with the run's staged devices: with the
	// staging lost they would be none, and a manifest of nothing would be
	// published. The sink checks again before it commits, after the reads.
	if err := run.CheckStaging(ctx); err != nil {
		return ExportFeaturesResult{}, err
	}
	w, err := export.NewWriter("", in.CSV)
	if err != nil {
		return ExportFeaturesResult{}, err
	}
	defer w.Close()
	sink, err := run.NewFeatureSink(ctx)
	if err != nil {
		return ExportFeaturesResult{}, err
	}
	devices := 0
	build := func(_ string, hours []features.HourAgg) error {
		rows := features.Build(hours, data.Start, data.End)
		if err := w.Write(rows); err != nil {
			return err
		}
		if err := sink.Add(ctx, rows); err != nil {
			return err
		}
		devices++
		hb.Beat(devices)
		return nil
	}
	if in.FromTransform {
		err = run.EachDeviceHours(ctx, data, in.Window, build)
	} else {
		err = run.EachDeviceFacts(ctx, data, func(deviceID string, facts []transform.Enriched) error {
			agg := features.NewAggregator()
			for i := range facts {
				agg.Add(&facts[i])
			}
			return build(deviceID, agg.Hours())
		})
	}
	if err != nil {
		sink.Rollback(ctx)
		return ExportFeaturesResult{}, fmt.Errorf("build features: %w", err)
	}
	if _, err := sink.Commit(ctx); err != nil {
		return ExportFeaturesResult{}, err
	}

	info := activity.GetInfo(ctx)
	pub, err := w.Publish(ctx, b.Export, export.Target{From: in.Window.Start, To: in.Window.End, RunID: in.Run.RunID, Attempt: in.AttemptOffset + info.Attempt}, export.Manifest{
		Generator: "iot-etl batch ExportFeatures", WorkflowID: in.Run.WorkflowID, RunID: in.Run.RunID,
		WindowStart: in.Window.Start, WindowEnd: in.Window.End,
		HoursFrom: hours.Start, HoursTo: hours.End,
		Label:       "true when at least one reading of the device in the next hour is anomalous",
		SourceTable: "dwh.fact_sensor_readings_enriched", FeaturesTable: "dwh.ml_features",
	})
	if err != nil {
		return ExportFeaturesResult{}, err // export.Publish's errors say what failed: "export: put <url>: ..."
	}
	if pub.CleanupErr != nil {
		// The export is published; the next export of the window cleans up.
		activity.GetLogger(ctx).Warn("export cleanup incomplete", "window", pub.WindowURL, "error", pub.CleanupErr)
	}
	res := ExportFeaturesResult{Rows: pub.Manifest.Rows, Positive: pub.Manifest.PositiveRows, WindowURL: pub.WindowURL, ManifestURL: pub.ManifestURL}
	urls := make([]string, 0, len(pub.Manifest.Files))
	for _, f := range pub.Manifest.Files {
		res.Files = append(res.Files, ExportedFile{Path: f.Path, URL: f.URL, Format: f.Format, Rows: f.Rows, SHA256: f.SHA256, Bytes: f.Bytes})
		urls = append(urls, f.URL)
	}
	if err := run.RecordExport(ctx, warehouse.RunExport{ManifestURL: pub.ManifestURL, FileURLs: urls}); err != nil {
		return ExportFeaturesResult{}, err
	}
	return res, nil
}
