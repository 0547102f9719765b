package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// extract stages devices, locations and readings chunks in parallel. In test
// mode the devices are chosen first so the readings extract can be limited
// to them. With dimensionsOnly (every shard loaded, staging lost) it stages
// the devices and locations only.
func (r *batchRun) extract(ctx workflow.Context, dimensionsOnly bool) error {
	var a *activities.Batch
	if dimensionsOnly {
		return r.extractDimensions(ctx)
	}
	chunks := r.window.Chunks(r.in.Lookback, r.in.Chunk)
	r.enter(ctx, PhaseExtract, len(chunks)+2)
	r.result.Extracted = 0
	devicesIn := activities.ExtractDevicesInput{Run: r.ref, DeviceFilter: r.in.DeviceFilter, Shards: r.in.Shards}
	filter := r.in.DeviceFilter
	var devices activities.ExtractDevicesResult
	if r.in.TestMode {
		devicesIn.MaxDevices = batch.TestModeMaxDevices
	}
	devicesFuture := workflow.ExecuteActivity(shortActivity(ctx), a.ExtractDevices, devicesIn)
	if r.in.TestMode {
		if err := devicesFuture.Get(ctx, &devices); err != nil {
			return fmt.Errorf("extract devices: %w", err)
		}
		r.progress.ChunksDone++
		filter = devices.DeviceIDs
	}
	locationsFuture := workflow.ExecuteActivity(shortActivity(ctx), a.ExtractLocations, activities.ExtractLocationsInput{Run: r.ref})
	readingFutures := make([]workflow.Future, len(chunks))
	for i, c := range chunks {
		readingFutures[i] = workflow.ExecuteActivity(longActivity(ctx, r.in.HeartbeatTimeout), a.ExtractReadings, activities.ExtractReadingsInput{Run: r.ref, Chunk: c, DeviceFilter: filter})
	}
	var errs []error
	if !r.in.TestMode {
		if err := devicesFuture.Get(ctx, &devices); err != nil {
			errs = append(errs, fmt.Errorf("extract devices: %w", err))
		}
		r.progress.ChunksDone++
	}
	r.result.Devices = devices.Devices
	if err := locationsFuture.Get(ctx, nil); err != nil {
		errs = append(errs, fmt.Errorf("extract locations: %w", err))
	}
	r.progress.ChunksDone++
	for i, f := range readingFutures {
		var res activities.ExtractReadingsResult
		if err := f.Get(ctx, &res); err != nil {
			errs = append(errs, fmt.Errorf("extract readings chunk %d: %w", chunks[i].ID, err))
			continue
		}
		r.progress.ChunksDone++
		r.progress.Rows += res.Rows
		r.result.Extracted += res.Rows
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	var rejects activities.RejectsResult
	if err := workflow.ExecuteActivity(longActivity(ctx, r.in.HeartbeatTimeout), a.RecordRejects, activities.RejectsInput{Run: r.ref, Window: r.window}).Get(ctx, &rejects); err != nil {
		return fmt.Errorf("record rejects: %w", err)
	}
	r.result.Rejects = rejects.Rejects
	return nil
}

// extractDimensions stages the devices and the locations again, in
// parallel, after every shard was loaded and the staging was lost.
func (r *batchRun) extractDimensions(ctx workflow.Context) error {
	var a *activities.Batch
	r.enter(ctx, PhaseExtract, 2)
	devicesIn := activities.ExtractDevicesInput{Run: r.ref, DeviceFilter: r.in.DeviceFilter, Shards: r.in.Shards}
	if r.in.TestMode {
		devicesIn.MaxDevices = batch.TestModeMaxDevices
	}
	devicesFuture := workflow.ExecuteActivity(shortActivity(ctx), a.ExtractDevices, devicesIn)
	locationsFuture := workflow.ExecuteActivity(shortActivity(ctx), a.ExtractLocations, activities.ExtractLocationsInput{Run: r.ref})
	var errs []error
	var devices activities.ExtractDevicesResult
	if err := devicesFuture.Get(ctx, &devices); err != nil {
		errs = append(errs, fmt.Errorf("extract devices: %w", err))
	} else {
		r.result.Devices = devices.Devices
		r.progress.ChunksDone++
	}
	if err := locationsFuture.Get(ctx, nil); err != nil {
		errs = append(errs, fmt.Errorf("extract locations: %w", err))
	} else {
		r.progress.ChunksDone++
	}
	return errors.Join(errs...)
}

// pendingShards are the shards whose facts are not loaded yet, in order.
func (r *batchRun) pendingShards() []int {
	var out []int
	for shard := 0; shard < r.in.Shards; shard++ {
		if !r.loaded[shard] {
			out = append(out, shard)
		}
	}
	return out
}

// transform runs one activity per device shard not loaded yet. Without a
// data-quality gate, which reads the output in staging before anything is
// loaded, a shard's transform may write a first load's facts itself.
func (r *batchRun) transform(ctx workflow.Context) error {
	var a *activities.Batch
	shards := r.pendingShards()
	r.enter(ctx, PhaseTransform, len(shards))
	futures := make([]workflow.Future, len(shards))
	for i, shard := range shards {
		futures[i] = workflow.ExecuteActivity(longActivity(ctx, r.in.HeartbeatTimeout), a.Transform, activities.TransformInput{
			Run: r.ref, Shard: shard, Window: r.window, Lookback: r.in.Lookback,
			Direct: r.directFacts && !r.in.Gate.On(), StageHours: r.directFacts,
		})
	}
	var errs []error
	for i, f := range futures {
		shard := shards[i]
		var total activities.TransformTotal
		if err := f.Get(ctx, &total); err != nil {
			errs = append(errs, fmt.Errorf("transform shard %d: %w", shard, err))
			continue
		}
		r.transformed[shard] = total
		r.progress.ChunksDone++
		r.progress.Rows += total.Rows
	}
	return errors.Join(errs...)
}

// load loads dimensions, then every shard not loaded yet, then refreshes the
// continuous aggregate.
func (r *batchRun) load(ctx workflow.Context) error {
	var a *activities.Batch
	lctx := loadActivity(ctx, r.in.LoadMaxAttempts, r.in.HeartbeatTimeout)
	r.enter(ctx, PhaseLoad, r.in.Shards+2)
	if err := workflow.ExecuteActivity(lctx, a.LoadDimensions, activities.LoadDimensionsInput{Run: r.ref}).Get(ctx, nil); err != nil {
		return fmt.Errorf("load dimensions: %w", err)
	}
	r.progress.ChunksDone++
	futures := map[int]workflow.Future{}
	for shard := 0; shard < r.in.Shards; shard++ {
		if r.loaded[shard] {
			r.progress.ChunksDone++
			continue
		}
		t := r.transformed[shard]
		futures[shard] = workflow.ExecuteActivity(lctx, a.LoadFacts, activities.LoadFactsInput{
			Run: r.ref, Shard: shard, Window: r.window, ExpectedRows: t.Rows, Transformed: t.Sums,
			Direct: t.Direct, Detection: t.Detection, StagedHours: r.directFacts,
		})
	}
	var errs []error
	for _, shard := range sortedKeys(futures) {
		var res activities.LoadFactsResult
		if err := futures[shard].Get(ctx, &res); err != nil {
			errs = append(errs, fmt.Errorf("load facts shard %d: %w", shard, err))
			continue
		}
		r.loaded[shard] = true
		r.sums[shard], r.detected[shard], r.firstLoads[shard] = res.Sums, res.Detection, res.FirstLoad
		r.progress.ChunksDone++
		r.progress.Rows += res.Rows
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := workflow.ExecuteActivity(lctx, a.RefreshAggregates, activities.RefreshAggregatesInput{Window: r.window}).Get(ctx, nil); err != nil {
		return fmt.Errorf("refresh aggregates: %w", err)
	}
	r.progress.ChunksDone++
	return nil
}

func (r *batchRun) export(ctx workflow.Context) error {
	var a *activities.Batch
	r.enter(ctx, PhaseExport, 1)
	actx := longActivity(ctx, r.in.HeartbeatTimeout)
	in := activities.ExportFeaturesInput{Run: r.ref, Window: r.window, CSV: r.in.CSV, FromTransform: r.fromTransform()}
	if r.exportParks {
		actx = exportActivity(ctx, r.in.ExportMaxAttempts, r.in.HeartbeatTimeout)
		// Each export run after the first numbers its attempts after those
		// the earlier runs could have used, so none writes where another did.
		in.AttemptOffset = int32(max(r.progress.ExportAttempts-1, 0)) * r.in.ExportMaxAttempts
	}
	var res activities.ExportFeaturesResult
	if err := workflow.ExecuteActivity(actx, a.ExportFeatures, in).Get(ctx, &res); err != nil {
		return fmt.Errorf("export features: %w", err)
	}
	r.progress.ChunksDone, r.progress.Rows = 1, res.Rows
	r.result.Features = res
	return nil
}

// fromTransform says whether the facts of the window are exactly what the
// transforms staged device-hours of: every shard's load was a first load,
// and the staging, with those device-hours, was never lost.
func (r *batchRun) fromTransform() bool {
	if !r.directFacts || r.result.StagingRecoveries > 0 {
		return false
	}
	for shard := 0; shard < r.in.Shards; shard++ {
		if !r.firstLoads[shard] {
			return false
		}
	}
	return true
}
