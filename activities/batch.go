package activities

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/adapter/lineage"
	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// Batch holds the batch ETL activities and what they need.
type Batch struct {
	MySQL     *sql.DB
	Locations *pgxpool.Pool
	Timescale *pgxpool.Pool
	Export    export.Store // where ExportFeatures publishes: export.Open of EXPORT_URL
	Params    transform.Params
	// StreamWindow is the length of the stream's windows a reconciliation
	// repair rebuilds (STREAM_WINDOW); 0 means window.Default.
	StreamWindow time.Duration
	// Temporal tells SweepStaging whether a run's workflow is still
	// running (a client.Client does); nil: the sweep leaves every run
	// whose row is open alone.
	Temporal WorkflowLookup
	// Lineage sends the runs' OpenLineage events; nil sends none.
	Lineage *Lineage
	// ModelPath is the anomaly model file ScoreAnomalies scores with
	// (MODEL_PATH); empty means the active model of dwh.anomaly_models.
	ModelPath string

	// FlushRows is how many transformed rows a shard buffers before it
	// copies them to staging; 0 means 20,000. Output is committed at the
	// first device boundary after that.
	FlushRows int
}

// run is the warehouse side of the run ref names.
func (b *Batch) run(ref RunRef) warehouse.Run {
	return warehouse.Run{TS: b.Timescale, ID: ref.RunID, Generation: ref.StagingGeneration}
}

// StartRun records the run in dwh.etl_runs, then creates its staging
// partitions and its staging marker: the row comes first, so the staging
// sweep can always tell whose staging it finds.
func (b *Batch) StartRun(ctx context.Context, in StartRunInput) error {
	run := b.run(in.Run)
	err := run.Start(ctx, warehouse.RunStart{
		WorkflowID: in.Run.WorkflowID, Window: in.Window,
		TestMode: in.TestMode, DeviceFilter: in.DeviceFilter, StartedAt: in.StartedAt,
	})
	if err != nil {
		return err
	}
	if err := run.CreateStaging(ctx); err != nil {
		return err
	}
	b.Lineage.emit(ctx, in.Run.RunID, LineageInput{Job: JobBatch, EventType: lineage.Start})
	return nil
}

// ResetStaging re-creates the run's staging, empty, for the generation
// of in.Run after it was lost (see warehouse.Run.ResetStaging).
func (b *Batch) ResetStaging(ctx context.Context, in ResetStagingInput) error {
	return b.run(in.Run).ResetStaging(ctx)
}

// MarkRun records an intermediate status such as load_failed.
func (b *Batch) MarkRun(ctx context.Context, in MarkRunInput) error {
	return b.run(in.Run).Mark(ctx, in.Status, in.Error)
}

// ExtractDevices stages the device registry (MySQL) for the run.
func (b *Batch) ExtractDevices(ctx context.Context, in ExtractDevicesInput) (ExtractDevicesResult, error) {
	s, err := b.run(in.Run).StageDevices(ctx, b.MySQL, in.DeviceFilter, in.MaxDevices, in.Shards)
	if err != nil {
		return ExtractDevicesResult{}, err
	}
	return ExtractDevicesResult{Devices: s.Devices, Types: s.Types, DeviceIDs: s.DeviceIDs}, nil
}

// ExtractLocations stages the locations (PostgreSQL) for the run.
func (b *Batch) ExtractLocations(ctx context.Context, in ExtractLocationsInput) (int, error) {
	return b.run(in.Run).StageLocations(ctx, b.Locations)
}

// ExtractReadings stages the readings of one chunk, an hour per transaction,
// heartbeating after each hour; a retry resumes at the first hour not
// committed. Every hour commits only while the run's staging marker is
// there, and a chunk starts (or resumes) only then: lost staging is
// StagingLost, never a chunk with a hole.
func (b *Batch) ExtractReadings(ctx context.Context, in ExtractReadingsInput) (ExtractReadingsResult, error) {
	p := ExtractReadingsProgress{NextFrom: in.Chunk.From}
	if activity.HasHeartbeatDetails(ctx) {
		var prev ExtractReadingsProgress
		if err := activity.GetHeartbeatDetails(ctx, &prev); err == nil && !prev.NextFrom.Before(in.Chunk.From) {
			p = prev
		}
	}
	hb := startHeartbeat(ctx, p)
	defer hb.Stop()
	run := b.run(in.Run)
	if err := run.CheckStaging(ctx); err != nil {
		return ExtractReadingsResult{}, err
	}
	if activity.HasHeartbeatDetails(ctx) || activity.GetInfo(ctx).Attempt > 1 {
		// A retry: an earlier attempt may have committed an hour it did not
		// live to heartbeat.
		if err := run.ClearStagedReadings(ctx, batch.Window{Start: p.NextFrom, End: in.Chunk.To}); err != nil {
			return ExtractReadingsResult{Rows: p.Rows}, err
		}
	}
	for p.NextFrom.Before(in.Chunk.To) {
		to := batch.HourFloor(p.NextFrom).Add(time.Hour)
		if to.After(in.Chunk.To) {
			to = in.Chunk.To
		}
		n, err := run.StageReadings(ctx, batch.Window{Start: p.NextFrom, End: to}, in.DeviceFilter)
		if err != nil {
			return ExtractReadingsResult{Rows: p.Rows}, fmt.Errorf("stage readings [%s, %s): %w", p.NextFrom.Format(time.RFC3339), to.Format(time.RFC3339), err)
		}
		p.NextFrom, p.Rows = to, p.Rows+n
		hb.Beat(p)
	}
	return ExtractReadingsResult{Rows: p.Rows}, nil
}

// RecordRejects records the staged readings that cannot be enriched.
func (b *Batch) RecordRejects(ctx context.Context, in RejectsInput) (RejectsResult, error) {
	defer startHeartbeat(ctx).Stop()
	by, err := b.run(in.Run).RecordRejects(ctx, in.Window)
	if err != nil {
		return RejectsResult{}, err
	}
	var total int64
	for _, n := range by {
		total += n
	}
	return RejectsResult{Rejects: total, ByReason: by}, nil
}

// Transform runs the shared transform over every device of one shard: the
// readings of the lookback margin warm the rolling statistics, those of the
// window are written to staging.enriched, or straight into the fact table
// (in.Direct, on a first load of the shard's devices in the window).
// Output is committed at device boundaries every FlushRows rows and the
// last committed device is the heartbeat, so a retry skips what is done
// and redoes only the rest.
// It reads and resumes only while the run's staging marker is there: each
// commit checks it, and so does the end, so a shard whose staging was lost
// (the readings it read, or the output it committed) is StagingLost.
func (b *Batch) Transform(ctx context.Context, in TransformInput) (TransformTotal, error) {
	var p TransformProgress
	resumed := activity.HasHeartbeatDetails(ctx)
	if resumed {
		if err := activity.GetHeartbeatDetails(ctx, &p); err != nil {
			p, resumed = TransformProgress{}, false
		}
	}
	if p.Totals.Rows == 0 && p.Totals.Sums == nil {
		p.Totals.Sums = &batch.FactSums{}
	}
	if p.Totals.Devices == 0 && p.Totals.Detection == nil {
		p.Totals.Detection = &Detection{}
	}
	hb := startHeartbeat(ctx, p)
	defer hb.Stop()
	run := b.run(in.Run)
	switch {
	case (resumed || activity.GetInfo(ctx).Attempt > 1) && p.Totals.Direct:
		// A retry: an earlier attempt may have committed devices it did
		// not live to heartbeat. Clearing checks the marker: what is kept
		// from earlier attempts is there.
		if err := run.ClearFacts(ctx, in.Shard, p.LastDevice, in.Window); err != nil {
			return p.Totals, err
		}
	case resumed || activity.GetInfo(ctx).Attempt > 1:
		if err := run.ClearEnriched(ctx, in.Shard, p.LastDevice); err != nil {
			return p.Totals, err
		}
	default:
		// A first attempt has written nothing; the delete would only read
		// the other shards' output.
		if err := run.CheckStaging(ctx); err != nil {
			return p.Totals, err
		}
	}
	if in.Direct && !resumed {
		// Where the rows go is decided once, before the first is written:
		// into the facts only if none of the shard's is there. An attempt
		// that wrote facts without heartbeating the decision leaves facts
		// behind, so the next one stages, and the load upserts over them.
		has, err := run.ShardHasFacts(ctx, b.Timescale, in.Shard, in.Window)
		if err != nil {
			return p.Totals, err
		}
		p.Totals.Direct = !has
		hb.Beat(p)
	}
	all, err := run.ShardDevices(ctx, in.Shard, "")
	if err != nil {
		return p.Totals, err
	}
	// The devices after the last one committed.
	devices := all
	if p.LastDevice != "" {
		i := slices.IndexFunc(all, func(d warehouse.ShardDevice) bool { return d.Device.ID == p.LastDevice })
		if i < 0 {
			return p.Totals, fmt.Errorf("shard %d: the heartbeat's last device %s is not one of its devices", in.Shard, p.LastDevice)
		}
		devices = all[i+1:]
	}
	var det *shardDetections
	if p.Totals.Detection != nil {
		if det, err = newShardDetections(ctx, run, in.Window, in.Shard, all); err != nil {
			return p.Totals, fmt.Errorf("ground truth: %w", err)
		}
		if len(all) == 0 {
			// No output, no commit: the shard's events are all missed.
			p.Totals.Detection = det.commit(p.Totals.Detection, true)
		}
	}
	params := b.Params
	if params == (transform.Params{}) {
		params = transform.DefaultParams()
	}
	flushRows := b.FlushRows
	if flushRows <= 0 {
		flushRows = 20_000
	}
	from := in.Window.Start.Add(-in.Lookback)
	var (
		buf     = make([]transform.Enriched, 0, flushRows)
		tx      pgx.Tx
		pending TransformTotal // since the last commit
		summer  warehouse.FactSummer
		hours   *features.Aggregator     // the features' device-hours since the last commit, when staged
		hourly  *warehouse.HourlyBuckets // and the hourly buckets
	)
	if in.StageHours {
		hours, hourly = features.NewAggregator(), warehouse.NewHourlyBuckets()
	}
	defer func() {
		if tx != nil {
			tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// stageInstead answers the fact table refusing rows the transform
	// writes itself: a constraint, or a row another run wrote since the
	// decision. The shard's facts this run wrote go, and the next attempt
	// starts the shard again through staging, where its load upserts, and
	// where a refusal parks the run in load_failed for an operator to
	// retry, as any load's does.
	stageInstead := func(cause error) error {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		tx = nil
		if err := run.ClearFacts(ctx, in.Shard, "", in.Window); err != nil {
			return err
		}
		hb.Beat(TransformProgress{Totals: TransformTotal{Sums: &batch.FactSums{}, Detection: &Detection{}}})
		return temporal.NewApplicationError(fmt.Sprintf("shard %d: the fact table refused the transform's rows (%v); the shard runs again through staging", in.Shard, cause), ErrTypeFactsRefused)
	}
	// begin opens the transaction the output goes into, unless it is open.
	begin := func() error {
		var err error
		if tx == nil {
			tx, err = b.Timescale.Begin(ctx)
		}
		return err
	}
	// copyBuf moves the buffered rows into the open transaction.
	copyBuf := func() error {
		if len(buf) == 0 {
			return nil
		}
		if err := begin(); err != nil {
			return err
		}
		if _, err := run.CopyTransformed(ctx, tx, in.Shard, buf, p.Totals.Direct); err != nil {
			if p.Totals.Direct && store.IsDataError(err) {
				return stageInstead(err)
			}
			return err
		}
		buf = buf[:0]
		return nil
	}
	// commit makes everything up to lastDevice durable and heartbeats it.
	commit := func(lastDevice string, last bool) error {
		if err := copyBuf(); err != nil {
			return err
		}
		if hours != nil {
			if h := hours.Hours(); len(h) > 0 {
				if err := begin(); err != nil {
					return err
				}
				if _, err := run.CopyFeatureHours(ctx, tx, in.Shard, h); err != nil {
					return err
				}
				if _, err := run.CopyHourly(ctx, tx, in.Shard, hourly.Buckets()); err != nil {
					return err
				}
			}
			hours, hourly = features.NewAggregator(), warehouse.NewHourlyBuckets()
		}
		if tx != nil {
			if err := run.CheckStagingTx(ctx, tx); err != nil {
				return err
			}
			if err := tx.Commit(ctx); err != nil {
				return err
			}
			tx = nil
		}
		p.LastDevice = lastDevice
		p.Totals.Devices += pending.Devices
		p.Totals.Rows += pending.Rows
		p.Totals.Anomalies += pending.Anomalies
		p.Totals.QualitySum += pending.QualitySum
		if p.Totals.Sums != nil {
			sums, err := p.Totals.Sums.Add(summer.Sums())
			if err != nil {
				return err
			}
			p.Totals.Sums = &sums
		}
		if det != nil {
			p.Totals.Detection = det.commit(p.Totals.Detection, last)
		}
		pending, summer = TransformTotal{}, warehouse.FactSummer{}
		hb.Beat(p)
		return nil
	}
	for i, d := range devices {
		state := transform.NewDeviceState(d.Device, d.Type, d.Location, params)
		if det != nil {
			det.device(d.Device.ID)
		}
		// A device is read a day at a time, and the buffer is copied only
		// between pages: a read never holds a connection while the copy
		// waits for another, however many shards share the pool.
		for _, page := range in.Window.Pages(from) {
			err := run.EachStagedReading(ctx, d.Device.ID, page, func(r reading.Reading) error {
				e := state.Push(r)
				if r.Time.Before(in.Window.Start) {
					return nil
				}
				buf = append(buf, e)
				summer.Add(&e)
				if det != nil {
					det.add(&e)
				}
				if hours != nil {
					hours.Add(&e)
					hourly.Add(&e)
				}
				pending.Rows++
				pending.QualitySum += e.Quality
				if e.Anomaly {
					pending.Anomalies++
				}
				return nil
			})
			if err != nil {
				return p.Totals, fmt.Errorf("transform %s: %w", d.Device.ID, err)
			}
			if len(buf) >= flushRows {
				if err := copyBuf(); err != nil {
					return p.Totals, writeFailed(err)
				}
			}
		}
		pending.Devices++
		if last := i == len(devices)-1; pending.Rows >= int64(flushRows) || last {
			if err := commit(d.Device.ID, last); err != nil {
				return p.Totals, writeFailed(err)
			}
		}
	}
	// Everything read since the last commit (the device list, at least)
	// was read from intact staging.
	if err := run.CheckStaging(ctx); err != nil {
		return p.Totals, err
	}
	return p.Totals, nil
}

// writeFailed is a failed write of transform output: an application error
// as it is (Temporal reads its type only unwrapped), anything else with
// what failed.
func writeFailed(err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr
	}
	return fmt.Errorf("write transform output: %w", err)
}

// LoadDimensions applies staged devices (SCD2) and locations.
func (b *Batch) LoadDimensions(ctx context.Context, in LoadDimensionsInput) (LoadDimensionsResult, error) {
	defer startHeartbeat(ctx).Stop()
	c, err := b.run(in.Run).LoadDimensions(ctx)
	if err != nil {
		return LoadDimensionsResult{}, err
	}
	return LoadDimensionsResult{NewDeviceVersions: int(c.NewDeviceVersions), DevicesUpdated: int(c.DevicesUpdated), LocationsUpserted: int(c.LocationsUpserted)}, nil
}

// LoadFacts upserts one shard into the fact table and refreshes its hourly
// buckets, in one transaction.
func (b *Batch) LoadFacts(ctx context.Context, in LoadFactsInput) (LoadFactsResult, error) {
	defer startHeartbeat(ctx).Stop()
	cagg, err := store.HasTimescale(ctx, b.Timescale)
	if err != nil {
		return LoadFactsResult{}, err
	}
	l, err := b.run(in.Run).LoadFacts(ctx, warehouse.ShardLoad{Shard: in.Shard, Window: in.Window, Rows: in.ExpectedRows,
		Transformed: in.Transformed, Direct: in.Direct, StagedHours: in.StagedHours, ContinuousAgg: cagg})
	if err != nil {
		return LoadFactsResult{}, err
	}
	// A first load's facts are the rows the transform scored.
	det := in.Detection
	if !l.FirstLoad || det == nil {
		if det, err = b.detect(ctx, in.Run, in.Window, in.Shard); err != nil {
			return LoadFactsResult{}, fmt.Errorf("score detection: %w", err)
		}
	}
	return LoadFactsResult{Rows: l.Rows, Changed: l.Changed, Buckets: l.Buckets, Sums: l.Sums, Detection: det, FirstLoad: l.FirstLoad}, nil
}

// RefreshAggregates refreshes the continuous aggregate over the window when
// TimescaleDB is installed; without it LoadFacts already rewrote the buckets.
func (b *Batch) RefreshAggregates(ctx context.Context, in RefreshAggregatesInput) error {
	defer startHeartbeat(ctx).Stop()
	cagg, err := store.HasTimescale(ctx, b.Timescale)
	if err != nil || !cagg {
		return err
	}
	return warehouse.RefreshContinuousAggregate(ctx, b.Timescale, in.Window)
}

// FinishRun measures the window in the warehouse and scores anomaly
// detection against the seeder's ground truth (or adds up what the shards'
// loads measured and scored, when every load reported it), and closes the
// run row.
func (b *Batch) FinishRun(ctx context.Context, in FinishRunInput) (FinishRunResult, error) {
	defer startHeartbeat(ctx).Stop()
	run := b.run(in.Run)
	fig, err := run.Measure(ctx, in.Window, in.LoadedSums)
	if err != nil {
		return FinishRunResult{}, err
	}
	detection, err := b.scoreDetection(ctx, in)
	if err != nil {
		return FinishRunResult{}, err
	}
	if in.Status == batch.StatusSucceeded {
		// The figures are of the run's staged devices: a success is
		// recorded only with figures read from intact staging.
		if err := run.CheckStaging(ctx); err != nil {
			return FinishRunResult{}, err
		}
	}
	err = run.Finish(ctx, warehouse.RunFinish{
		Status: in.Status, Devices: in.Devices, Extracted: in.Extracted, Rejects: in.Rejects,
		Figures: fig, PhaseMillis: in.PhaseMillis, Detection: detection, FeaturesPath: in.FeaturesPath,
		Error: in.Error, FinishedAt: in.FinishedAt, WindowEnd: in.Window.End, StagingRecoveries: in.StagingRecoveries,
	})
	if err != nil {
		return FinishRunResult{}, err
	}
	b.Lineage.emit(ctx, in.Run.RunID, batchLineage(in, fig))
	return FinishRunResult{FactRows: fig.FactRows, FactChecksum: fig.Checksum, DQScore: fig.DQScore,
		Anomalies: fig.Anomalies, HourlyRows: fig.HourlyRows, Detection: detection}, nil
}

// scoreDetection is the run's detection scores: in.LoadedDetection, or
// scored over the whole window when the loads did not report it. Without
// ground truth (data not from the seeder) it returns nil.
func (b *Batch) scoreDetection(ctx context.Context, in FinishRunInput) (map[string]DetectionScore, error) {
	d := in.LoadedDetection
	if d == nil {
		var err error
		if d, err = b.detect(ctx, in.Run, in.Window, -1); err != nil {
			return nil, err
		}
	}
	if !d.Truth {
		return nil, nil
	}
	out := make(map[string]DetectionScore, len(d.Kinds))
	for k, m := range d.Kinds {
		out[string(k)] = DetectionScore{TruePositives: int64(m.TP), FalsePositives: int64(m.FP), FalseNegatives: int64(m.FN), Precision: m.Precision, Recall: m.Recall}
	}
	return out, nil
}

// detect compares the flagged facts of the run's devices of shard (all of
// them when shard is negative) in w with the injected anomalies. Scores
// are per device, so the shards' add up (anomaly.Combine); a shard without
// events still counts its detections as false positives, but the whole
// run without any is not scored.
func (b *Batch) detect(ctx context.Context, ref RunRef, w batch.Window, shard int) (*Detection, error) {
	run := b.run(ref)
	truth, err := run.GroundTruth(ctx, w, shard)
	if err != nil {
		return nil, err
	}
	if len(truth) == 0 && shard < 0 {
		return &Detection{}, nil
	}
	events := truthEvents(truth)
	var detections []anomaly.Detection
	err = run.FlaggedReadings(ctx, w, shard, func(r warehouse.FlaggedReading) error {
		if kinds := anomaly.Classify(r.Reasons, r.Flags); len(kinds) > 0 {
			detections = append(detections, anomaly.Detection{DeviceID: r.DeviceID, Time: r.Time, Kinds: kinds})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Detection{Truth: len(truth) > 0, Kinds: anomaly.Score(events, detections, time.Minute)}, nil
}

// CleanupStaging drops the run's staging partitions.
func (b *Batch) CleanupStaging(ctx context.Context, in CleanupInput) error {
	return b.run(in.Run).DropStaging(ctx)
}

// batchLineage is the run event of a finished run: COMPLETE, FAIL or ABORT
// (abandoned), with what it read and wrote.
func batchLineage(in FinishRunInput, fig warehouse.WindowFigures) LineageInput {
	ev := LineageInput{Job: JobBatch, EventType: lineage.Complete, Error: in.Error,
		InputRows:  map[string]int64{"mysql:devices": int64(in.Devices), "public.sensor_readings": in.Extracted},
		OutputRows: map[string]int64{"dwh.fact_sensor_readings_enriched": fig.FactRows, "dwh.fact_hourly_agg": fig.HourlyRows}}
	switch in.Status {
	case batch.StatusSucceeded:
	case batch.StatusAbandoned:
		ev.EventType = lineage.Abort
	default:
		ev.EventType = lineage.Fail
	}
	if in.FeaturesPath != "" {
		ev.Files = []string{in.FeaturesPath}
	}
	return ev
}

// CheckDQGate reads the data quality of the run's transformed output from
// staging and checks it against the gate (batch.Gate.Check); a run that
// breaches it is recorded as awaiting_approval with the report.
func (b *Batch) CheckDQGate(ctx context.Context, in DQGateInput) (batch.DQReport, error) {
	run := b.run(in.Run)
	rep, err := run.DQReport(ctx, in.Extracted)
	if err != nil {
		return rep, err
	}
	if !in.Gate.Check(&rep) {
		if err := run.Park(ctx, rep, "data-quality gate: "+strings.Join(rep.Breaches, "; ")); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// RecordDecision records an operator's decision at the gate in
// dwh.etl_runs.
func (b *Batch) RecordDecision(ctx context.Context, in DecisionInput) error {
	return b.run(in.Run).Decide(ctx, in.Approved, in.Reason, in.At)
}
