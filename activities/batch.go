package activities

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/anomaly"
	"github.com/iot-etl/iot-etl/internal/reading"
	"github.com/iot-etl/iot-etl/internal/store"
	"github.com/iot-etl/iot-etl/internal/transform"
)

// Batch holds the batch ETL activities and what they need.
type Batch struct {
	MySQL     *sql.DB
	Locations *pgxpool.Pool
	Timescale *pgxpool.Pool
	ExportDir string
	Params    transform.Params
	Log       *slog.Logger

	// FlushRows is how many transformed rows a shard buffers before it
	// copies them to staging; 0 means 20,000. Output is committed at the
	// first device boundary after that.
	FlushRows int
}

// classify turns a failure into what Temporal should do with it: data that
// PostgreSQL rejects, or lost staging, cannot succeed on retry.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrStagingLost):
		return temporal.NewNonRetryableApplicationError(err.Error(), "StagingLost", err)
	case store.IsDataError(err):
		return temporal.NewNonRetryableApplicationError(err.Error(), "InvalidData", err)
	}
	return err
}

// keepAlive heartbeats every interval until the returned stop is called, so
// that a long single statement (a load transaction) still shows the worker
// is alive and a dead worker is noticed within the heartbeat timeout.
func keepAlive(ctx context.Context, interval time.Duration, details ...any) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, details...)
			}
		}
	}()
	return func() { close(done) }
}

// StartRun records the run in dwh.etl_runs and creates its staging
// partitions.
func (b *Batch) StartRun(ctx context.Context, in StartRunInput) error {
	if err := store.CreateStaging(ctx, b.Timescale, in.Run.RunKey); err != nil {
		return classify(err)
	}
	return classify(store.StartRun(ctx, b.Timescale, store.RunStart{
		RunID: in.Run.RunID, WorkflowID: in.Run.WorkflowID, From: in.Window.Start, To: in.Window.End,
		TestMode: in.TestMode, DeviceFilter: in.DeviceFilter, StartedAt: in.StartedAt,
	}))
}

// MarkRun records an intermediate status such as load_failed.
func (b *Batch) MarkRun(ctx context.Context, in MarkRunInput) error {
	return classify(store.MarkRun(ctx, b.Timescale, in.Run.RunID, in.Status, in.Error))
}

// ExtractDevices stages the device registry (MySQL) for the run.
func (b *Batch) ExtractDevices(ctx context.Context, in ExtractDevicesInput) (ExtractDevicesResult, error) {
	s, err := store.StageDevices(ctx, b.MySQL, b.Timescale, in.Run.RunKey, in.DeviceFilter, in.MaxDevices, in.Shards)
	if err != nil {
		return ExtractDevicesResult{}, classify(err)
	}
	return ExtractDevicesResult{Devices: s.Devices, Types: s.Types, DeviceIDs: s.DeviceIDs}, nil
}

// ExtractLocations stages the locations (PostgreSQL) for the run.
func (b *Batch) ExtractLocations(ctx context.Context, in ExtractLocationsInput) (int, error) {
	n, err := store.StageLocations(ctx, b.Locations, b.Timescale, in.Run.RunKey)
	return n, classify(err)
}

// ExtractReadings stages the readings of one chunk, an hour per transaction,
// heartbeating after each hour; a retry resumes at the first hour not
// committed.
func (b *Batch) ExtractReadings(ctx context.Context, in ExtractReadingsInput) (ExtractReadingsResult, error) {
	p := ExtractReadingsProgress{NextFrom: in.Chunk.From}
	if activity.HasHeartbeatDetails(ctx) {
		var prev ExtractReadingsProgress
		if err := activity.GetHeartbeatDetails(ctx, &prev); err == nil && !prev.NextFrom.Before(in.Chunk.From) {
			p = prev
		}
	}
	if activity.HasHeartbeatDetails(ctx) || activity.GetInfo(ctx).Attempt > 1 {
		// A retry: an earlier attempt may have committed an hour it did not
		// live to heartbeat.
		if err := store.ClearStagedReadings(ctx, b.Timescale, in.Run.RunKey, p.NextFrom, in.Chunk.To); err != nil {
			return ExtractReadingsResult{Rows: p.Rows}, classify(err)
		}
	}
	for p.NextFrom.Before(in.Chunk.To) {
		to := p.NextFrom.Truncate(time.Hour).Add(time.Hour)
		if to.After(in.Chunk.To) {
			to = in.Chunk.To
		}
		n, err := store.StageReadingsHour(ctx, b.Timescale, in.Run.RunKey, p.NextFrom, to, in.DeviceFilter)
		if err != nil {
			return ExtractReadingsResult{Rows: p.Rows}, classify(fmt.Errorf("stage readings [%s, %s): %w", p.NextFrom.Format(time.RFC3339), to.Format(time.RFC3339), err))
		}
		p.NextFrom, p.Rows = to, p.Rows+n
		activity.RecordHeartbeat(ctx, p)
	}
	return ExtractReadingsResult{Rows: p.Rows}, nil
}

// RecordRejects records the staged readings that cannot be enriched.
func (b *Batch) RecordRejects(ctx context.Context, in RejectsInput) (RejectsResult, error) {
	stop := keepAlive(ctx, 5*time.Second)
	defer stop()
	by, err := store.RecordRejects(ctx, b.Timescale, in.Run.RunKey, in.Run.RunID, in.Window.Start, in.Window.End)
	if err != nil {
		return RejectsResult{}, classify(err)
	}
	var total int64
	for _, n := range by {
		total += n
	}
	return RejectsResult{Rejects: total, ByReason: by}, nil
}

// Transform runs the shared transform over every device of one shard: the
// readings of the lookback margin warm the rolling statistics, those of the
// window are written to staging.enriched. Output is committed at device
// boundaries every FlushRows rows and the last committed device is the
// heartbeat, so a retry skips what is done and redoes only the rest.
func (b *Batch) Transform(ctx context.Context, in TransformInput) (TransformTotal, error) {
	var p TransformProgress
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &p); err != nil {
			p = TransformProgress{}
		}
	}
	if err := store.ClearEnriched(ctx, b.Timescale, in.Run.RunKey, in.Shard, p.LastDevice); err != nil {
		return p.Totals, classify(err)
	}
	devices, err := store.ShardDevices(ctx, b.Timescale, in.Run.RunKey, in.Shard, p.LastDevice)
	if err != nil {
		return p.Totals, classify(err)
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
	)
	defer func() {
		if tx != nil {
			tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// copyBuf moves the buffered rows into the open transaction.
	copyBuf := func() error {
		if len(buf) == 0 {
			return nil
		}
		if tx == nil {
			var err error
			if tx, err = b.Timescale.Begin(ctx); err != nil {
				return err
			}
		}
		if _, err := store.CopyEnriched(ctx, tx, in.Run.RunKey, in.Shard, buf); err != nil {
			return err
		}
		buf = buf[:0]
		return nil
	}
	// commit makes everything up to lastDevice durable and heartbeats it.
	commit := func(lastDevice string) error {
		if err := copyBuf(); err != nil {
			return err
		}
		if tx != nil {
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
		pending = TransformTotal{}
		activity.RecordHeartbeat(ctx, p)
		return nil
	}
	for i, d := range devices {
		state := transform.NewDeviceState(d.Device, d.Type, d.Location, params)
		// A device is read a day at a time, and the buffer is copied only
		// between pages: a read never holds a connection while the copy
		// waits for another, however many shards share the pool.
		for pageFrom := from; pageFrom.Before(in.Window.End); pageFrom = pageFrom.Add(transformPage) {
			pageTo := pageFrom.Add(transformPage)
			if pageTo.After(in.Window.End) {
				pageTo = in.Window.End
			}
			err := store.EachStagedReading(ctx, b.Timescale, in.Run.RunKey, d.Device.ID, pageFrom, pageTo, func(r reading.Reading) error {
				e := state.Push(r)
				if r.Time.Before(in.Window.Start) {
					return nil
				}
				buf = append(buf, e)
				pending.Rows++
				pending.QualitySum += e.Quality
				if e.Anomaly {
					pending.Anomalies++
				}
				return nil
			})
			if err != nil {
				return p.Totals, classify(fmt.Errorf("transform %s: %w", d.Device.ID, err))
			}
			if len(buf) >= flushRows {
				if err := copyBuf(); err != nil {
					return p.Totals, classify(fmt.Errorf("write transform output: %w", err))
				}
			}
		}
		pending.Devices++
		if pending.Rows >= int64(flushRows) || i == len(devices)-1 {
			if err := commit(d.Device.ID); err != nil {
				return p.Totals, classify(fmt.Errorf("write transform output: %w", err))
			}
		}
	}
	return p.Totals, nil
}

// transformPage is how much of one device's history Transform reads per
// query.
const transformPage = 24 * time.Hour

// LoadDimensions applies staged devices (SCD2) and locations.
func (b *Batch) LoadDimensions(ctx context.Context, in LoadDimensionsInput) (LoadDimensionsResult, error) {
	stop := keepAlive(ctx, 5*time.Second)
	defer stop()
	c, err := store.LoadDimensions(ctx, b.Timescale, in.Run.RunKey, in.Run.RunID)
	if err != nil {
		return LoadDimensionsResult{}, classify(err)
	}
	return LoadDimensionsResult{NewDeviceVersions: int(c.NewDeviceVersions), DevicesUpdated: int(c.DevicesUpdated), LocationsUpserted: int(c.LocationsUpserted)}, nil
}

// LoadFacts upserts one shard into the fact table and refreshes its hourly
// buckets, in one transaction.
func (b *Batch) LoadFacts(ctx context.Context, in LoadFactsInput) (LoadFactsResult, error) {
	stop := keepAlive(ctx, 5*time.Second)
	defer stop()
	cagg, err := store.HasTimescale(ctx, b.Timescale)
	if err != nil {
		return LoadFactsResult{}, classify(err)
	}
	l, err := store.LoadFacts(ctx, b.Timescale, in.Run.RunKey, in.Run.RunID, in.Shard, in.Window.Start, in.Window.End, in.ExpectedRows, cagg)
	if err != nil {
		return LoadFactsResult{}, classify(err)
	}
	return LoadFactsResult{Rows: l.Rows, Changed: l.Changed, Buckets: l.Buckets}, nil
}

// RefreshAggregates refreshes the continuous aggregate over the window when
// TimescaleDB is installed; without it LoadFacts already rewrote the buckets.
func (b *Batch) RefreshAggregates(ctx context.Context, in RefreshAggregatesInput) error {
	cagg, err := store.HasTimescale(ctx, b.Timescale)
	if err != nil || !cagg {
		return classify(err)
	}
	stop := keepAlive(ctx, 5*time.Second)
	defer stop()
	return classify(store.RefreshContinuousAggregate(ctx, b.Timescale, in.Window.Start, in.Window.End))
}

// FinishRun measures the window in the warehouse, scores anomaly detection
// against the seeder's ground truth, and closes the run row.
func (b *Batch) FinishRun(ctx context.Context, in FinishRunInput) (FinishRunResult, error) {
	stop := keepAlive(ctx, 5*time.Second)
	defer stop()
	fig, err := store.MeasureWindow(ctx, b.Timescale, in.Run.RunKey, in.Window.Start, in.Window.End)
	if err != nil {
		return FinishRunResult{}, classify(err)
	}
	detection, err := b.scoreDetection(ctx, in)
	if err != nil {
		return FinishRunResult{}, classify(err)
	}
	err = store.FinishRun(ctx, b.Timescale, store.RunFinish{
		RunID: in.Run.RunID, Status: in.Status, Devices: in.Devices, Extracted: in.Extracted, Rejects: in.Rejects,
		Figures: fig, PhaseMillis: in.PhaseMillis, Detection: detection, FeaturesPath: in.FeaturesPath,
		Error: in.Error, FinishedAt: in.FinishedAt, WindowEnd: in.Window.End,
	})
	if err != nil {
		return FinishRunResult{}, classify(err)
	}
	return FinishRunResult{FactRows: fig.FactRows, FactChecksum: fig.Checksum, DQScore: fig.DQScore,
		Anomalies: fig.Anomalies, HourlyRows: fig.HourlyRows, Detection: detection}, nil
}

// scoreDetection compares the flagged facts of the window with the injected
// anomalies. Without ground truth (data not from the seeder) it returns nil.
func (b *Batch) scoreDetection(ctx context.Context, in FinishRunInput) (map[string]DetectionScore, error) {
	truth, err := store.GroundTruth(ctx, b.Timescale, in.Run.RunKey, in.Window.Start, in.Window.End)
	if err != nil || len(truth) == 0 {
		return nil, err
	}
	events := make([]anomaly.TruthEvent, len(truth))
	for i, t := range truth {
		events[i] = anomaly.TruthEvent{DeviceID: t.DeviceID, Kind: anomaly.Kind(t.Kind), Start: t.Start, End: t.End}
	}
	var detections []anomaly.Detection
	err = store.FlaggedReadings(ctx, b.Timescale, in.Run.RunKey, in.Window.Start, in.Window.End, func(r store.FlaggedReading) error {
		if kinds := anomaly.Classify(r.Reasons, r.Flags); len(kinds) > 0 {
			detections = append(detections, anomaly.Detection{DeviceID: r.DeviceID, Time: r.Time, Kinds: kinds})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	scores := anomaly.Score(events, detections, time.Minute)
	out := make(map[string]DetectionScore, len(scores))
	kinds := make([]string, 0, len(scores))
	for k := range scores {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		m := scores[anomaly.Kind(k)]
		out[k] = DetectionScore{TruePositives: int64(m.TP), FalsePositives: int64(m.FP), FalseNegatives: int64(m.FN), Precision: m.Precision, Recall: m.Recall}
	}
	return out, nil
}

// CleanupStaging drops the run's staging partitions.
func (b *Batch) CleanupStaging(ctx context.Context, in CleanupInput) error {
	return classify(store.DropStaging(ctx, b.Timescale, in.Run.RunKey))
}
