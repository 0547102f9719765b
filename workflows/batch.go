package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
)

// Names operators and the starter use.
const (
	BatchWorkflowName = "BatchETLWorkflow"
	QueryProgress     = "progress"
	SignalRetryLoad   = "retry-load"
	SignalAbandon     = "abandon"
)

// Batch phases, as the progress query reports them.
const (
	PhaseStarting   = "starting"
	PhaseExtract    = "extract"
	PhaseTransform  = "transform"
	PhaseLoad       = "load"
	PhaseLoadFailed = "load_failed"
	PhaseExport     = "export"
	PhaseFinishing  = "finishing"
	PhaseDone       = "done"
	PhaseAbandoned  = "abandoned"
	PhaseFailed     = "failed"
)

// Defaults of BatchInput's zero values.
const (
	DefaultShards          = 8
	DefaultChunk           = 6 * time.Hour
	DefaultLookback        = time.Hour
	DefaultLoadMaxAttempts = 3
	DefaultHeartbeat       = 30 * time.Second
	TestModeMaxDevices     = 10
	TestModeWindow         = time.Hour
)

// BatchInput is the single input of BatchETLWorkflow. Zero values mean the
// defaults above.
type BatchInput struct {
	// WindowStart and WindowEnd bound the readings to process, [start, end).
	// Both zero: the previous UTC day of the schedule's start time
	// (TemporalScheduledStartTime), or of the workflow start time when not
	// started by a schedule. Never the wall clock.
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	// TestMode processes 1 hour (the first of the window) and at most 10 devices.
	TestMode bool `json:"test_mode"`
	// DeviceFilter restricts the run to these device ids.
	DeviceFilter []string `json:"device_filter,omitempty"`

	Shards          int           `json:"shards,omitempty"`   // transform/load fan-out by device
	Chunk           time.Duration `json:"chunk,omitempty"`    // extract fan-out by time
	Lookback        time.Duration `json:"lookback,omitempty"` // history before the window for rolling stats; <0 means none
	CSV             bool          `json:"csv,omitempty"`      // also write features.csv
	LoadMaxAttempts int32         `json:"load_max_attempts,omitempty"`
	// HeartbeatTimeout is how long a silent activity (a dead worker) is
	// given before Temporal retries it elsewhere.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// Progress is what the progress query returns.
type Progress struct {
	Phase        string            `json:"phase"`
	Window       activities.Window `json:"window"`
	ChunksDone   int               `json:"chunks_done"`
	ChunksTotal  int               `json:"chunks_total"`
	Rows         int64             `json:"rows"`
	LoadError    string            `json:"load_error,omitempty"`
	LoadAttempts int               `json:"load_attempts"`
}

// BatchResult summarises a finished run.
type BatchResult struct {
	WorkflowID   string                               `json:"workflow_id"`
	RunID        string                               `json:"run_id"`
	Window       activities.Window                    `json:"window"`
	Status       string                               `json:"status"`
	Devices      int                                  `json:"devices"`
	Extracted    int64                                `json:"extracted"`
	Rejects      int64                                `json:"rejects"`
	RowsLoaded   int64                                `json:"rows_loaded"`
	Anomalies    int64                                `json:"anomalies"`
	DQScore      float64                              `json:"dq_score"`
	FactChecksum string                               `json:"fact_checksum"`
	HourlyRows   int64                                `json:"hourly_rows"`
	Features     activities.ExportFeaturesResult      `json:"features"`
	Detection    map[string]activities.DetectionScore `json:"detection,omitempty"`
	PhaseMillis  map[string]int64                     `json:"phase_ms"`
	LoadAttempts int                                  `json:"load_attempts"`
}

// Search attributes the batch upserts, so runs can be filtered in the UI.
var (
	saPipeline    = temporal.NewSearchAttributeKeyKeyword("Pipeline")
	saWindowStart = temporal.NewSearchAttributeKeyTime("WindowStart")
	saRowsLoaded  = temporal.NewSearchAttributeKeyInt64("RowsLoaded")
	saDQScore     = temporal.NewSearchAttributeKeyFloat64("DQScore")
	saScheduled   = temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime")
)

// batchRun is the state of one BatchETLWorkflow execution.
type batchRun struct {
	in       BatchInput
	ref      activities.RunRef
	window   activities.Window
	progress Progress
	result   BatchResult
	loaded   map[int]bool // shards whose facts are loaded
	rows     map[int]int64
	phaseAt  time.Time
}

// BatchETLWorkflow extracts, transforms and loads one window of readings
// into the warehouse, then exports ML features. When Load exhausts its
// retries the run parks in load_failed and waits for a retry-load or an
// abandon signal instead of failing: staging is kept, so a retry never
// extracts again.
func BatchETLWorkflow(ctx workflow.Context, in BatchInput) (*BatchResult, error) {
	info := workflow.GetInfo(ctx)
	r := &batchRun{
		in:     in.withDefaults(),
		ref:    activities.RunRef{RunKey: info.WorkflowExecution.RunID, RunID: info.WorkflowExecution.RunID, WorkflowID: info.WorkflowExecution.ID},
		loaded: map[int]bool{},
		rows:   map[int]int64{},
	}
	r.progress.Phase = PhaseStarting
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return r.progress, nil }); err != nil {
		return nil, err
	}
	window, err := resolveWindow(ctx, r.in)
	if err != nil {
		return nil, err
	}
	r.window, r.progress.Window = window, window
	r.result = BatchResult{WorkflowID: r.ref.WorkflowID, RunID: r.ref.RunID, Window: window, PhaseMillis: map[string]int64{}}
	if err := workflow.UpsertTypedSearchAttributes(ctx, saPipeline.ValueSet("batch"), saWindowStart.ValueSet(window.Start)); err != nil {
		return nil, err
	}
	logger := workflow.GetLogger(ctx)
	logger.Info("batch run", "window_start", window.Start, "window_end", window.End, "test_mode", r.in.TestMode)

	var a *activities.Batch
	err = workflow.ExecuteActivity(shortActivity(ctx), a.StartRun, activities.StartRunInput{
		Run: r.ref, Window: window, TestMode: r.in.TestMode, DeviceFilter: r.in.DeviceFilter, StartedAt: workflow.Now(ctx),
	}).Get(ctx, nil)
	if err != nil {
		return nil, err
	}

	if err := r.extract(ctx); err != nil {
		return nil, r.fail(ctx, err)
	}
	if err := r.transform(ctx); err != nil {
		return nil, r.fail(ctx, err)
	}
	if abandoned, err := r.loadUntilDone(ctx); err != nil {
		return nil, r.fail(ctx, err)
	} else if abandoned {
		return &r.result, nil
	}
	if err := r.export(ctx); err != nil {
		return nil, r.fail(ctx, err)
	}
	if err := r.finish(ctx, PhaseDone, "succeeded", ""); err != nil {
		return nil, err
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, saRowsLoaded.ValueSet(r.result.RowsLoaded), saDQScore.ValueSet(r.result.DQScore))
	return &r.result, nil
}

func (in BatchInput) withDefaults() BatchInput {
	if in.Shards <= 0 {
		in.Shards = DefaultShards
	}
	if in.Chunk <= 0 {
		in.Chunk = DefaultChunk
	}
	switch {
	case in.Lookback == 0:
		in.Lookback = DefaultLookback
	case in.Lookback < 0:
		in.Lookback = 0
	}
	if in.LoadMaxAttempts <= 0 {
		in.LoadMaxAttempts = DefaultLoadMaxAttempts
	}
	if in.HeartbeatTimeout <= 0 {
		in.HeartbeatTimeout = DefaultHeartbeat
	}
	if in.TestMode && in.Shards > 2 {
		in.Shards = 2
	}
	return in
}

// resolveWindow applies the window rules of BatchInput.
func resolveWindow(ctx workflow.Context, in BatchInput) (activities.Window, error) {
	w := activities.Window{Start: in.WindowStart.UTC(), End: in.WindowEnd.UTC()}
	switch {
	case w.Start.IsZero() && w.End.IsZero():
		ref := workflow.GetInfo(ctx).WorkflowStartTime
		if scheduled, ok := workflow.GetTypedSearchAttributes(ctx).GetTime(saScheduled); ok {
			ref = scheduled
		}
		day := ref.UTC().Truncate(24 * time.Hour)
		w = activities.Window{Start: day.Add(-24 * time.Hour), End: day}
	case w.Start.IsZero() || w.End.IsZero():
		return w, temporal.NewNonRetryableApplicationError("window_start and window_end must be given together", "InvalidInput", nil)
	case !w.Start.Before(w.End):
		return w, temporal.NewNonRetryableApplicationError(fmt.Sprintf("window start %s is not before end %s", w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339)), "InvalidInput", nil)
	}
	if in.TestMode && w.Duration() > TestModeWindow {
		w.End = w.Start.Add(TestModeWindow)
	}
	return w, nil
}

// chunks splits the window plus its lookback into extract chunks.
func (r *batchRun) chunks() []activities.Chunk {
	var out []activities.Chunk
	from := r.window.Start.Add(-r.in.Lookback)
	for id := 0; from.Before(r.window.End); id++ {
		to := from.Add(r.in.Chunk)
		if to.After(r.window.End) {
			to = r.window.End
		}
		out = append(out, activities.Chunk{ID: id, From: from, To: to})
		from = to
	}
	return out
}

func (r *batchRun) enter(ctx workflow.Context, phase string, total int) {
	now := workflow.Now(ctx)
	if !r.phaseAt.IsZero() && r.progress.Phase != PhaseLoadFailed {
		r.result.PhaseMillis[r.progress.Phase] += now.Sub(r.phaseAt).Milliseconds()
	}
	r.phaseAt = now
	r.progress.Phase, r.progress.ChunksDone, r.progress.ChunksTotal, r.progress.Rows = phase, 0, total, 0
}

// extract stages devices, locations and readings chunks in parallel. In test
// mode the devices are chosen first so the readings extract can be limited
// to them.
func (r *batchRun) extract(ctx workflow.Context) error {
	var a *activities.Batch
	chunks := r.chunks()
	r.enter(ctx, PhaseExtract, len(chunks)+2)
	devicesIn := activities.ExtractDevicesInput{Run: r.ref, DeviceFilter: r.in.DeviceFilter, Shards: r.in.Shards}
	filter := r.in.DeviceFilter
	var devices activities.ExtractDevicesResult
	if r.in.TestMode {
		devicesIn.MaxDevices = TestModeMaxDevices
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

// transform runs one activity per device shard.
func (r *batchRun) transform(ctx workflow.Context) error {
	var a *activities.Batch
	r.enter(ctx, PhaseTransform, r.in.Shards)
	futures := make([]workflow.Future, r.in.Shards)
	for shard := range futures {
		futures[shard] = workflow.ExecuteActivity(longActivity(ctx, r.in.HeartbeatTimeout), a.Transform, activities.TransformInput{
			Run: r.ref, Shard: shard, Window: r.window, Lookback: r.in.Lookback,
		})
	}
	var errs []error
	for shard, f := range futures {
		var total activities.TransformTotal
		if err := f.Get(ctx, &total); err != nil {
			errs = append(errs, fmt.Errorf("transform shard %d: %w", shard, err))
			continue
		}
		r.rows[shard] = total.Rows
		r.progress.ChunksDone++
		r.progress.Rows += total.Rows
	}
	return errors.Join(errs...)
}

// loadUntilDone runs Load; when it fails after its retries, the run parks
// until an operator signals retry-load (Load runs again from staging) or
// abandon. It reports whether the run was abandoned.
func (r *batchRun) loadUntilDone(ctx workflow.Context) (abandoned bool, err error) {
	retryCh := workflow.GetSignalChannel(ctx, SignalRetryLoad)
	abandonCh := workflow.GetSignalChannel(ctx, SignalAbandon)
	for {
		r.progress.LoadAttempts++
		r.result.LoadAttempts = r.progress.LoadAttempts
		loadErr := r.load(ctx)
		if loadErr == nil {
			r.progress.LoadError = ""
			return false, nil
		}
		r.enter(ctx, PhaseLoadFailed, 0)
		r.progress.LoadError = Brief(loadErr)
		workflow.GetLogger(ctx).Error("load failed; waiting for retry-load or abandon", "error", loadErr)
		if err := r.mark(ctx, "load_failed", r.progress.LoadError); err != nil {
			return false, err
		}
		var reason string
		retry := false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(retryCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); retry = true })
		sel.AddReceive(abandonCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &reason) })
		sel.Select(ctx)
		if !retry {
			msg := "abandoned by operator after load failure: " + r.progress.LoadError
			if reason != "" {
				msg = "abandoned by operator (" + reason + ") after load failure: " + r.progress.LoadError
			}
			if err := r.finish(ctx, PhaseAbandoned, "abandoned", msg); err != nil {
				return true, err
			}
			return true, nil
		}
		workflow.GetLogger(ctx).Info("retry-load received", "attempt", r.progress.LoadAttempts+1)
	}
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
		futures[shard] = workflow.ExecuteActivity(lctx, a.LoadFacts, activities.LoadFactsInput{
			Run: r.ref, Shard: shard, Window: r.window, ExpectedRows: r.rows[shard],
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
	var res activities.ExportFeaturesResult
	if err := workflow.ExecuteActivity(longActivity(ctx, r.in.HeartbeatTimeout), a.ExportFeatures, activities.ExportFeaturesInput{Run: r.ref, Window: r.window, CSV: r.in.CSV}).Get(ctx, &res); err != nil {
		return fmt.Errorf("export features: %w", err)
	}
	r.progress.ChunksDone, r.progress.Rows = 1, res.Rows
	r.result.Features = res
	return nil
}

// mark records an intermediate status (load_failed) in dwh.etl_runs.
func (r *batchRun) mark(ctx workflow.Context, status, errMsg string) error {
	var a *activities.Batch
	return workflow.ExecuteActivity(shortActivity(ctx), a.MarkRun, activities.MarkRunInput{Run: r.ref, Status: status, Error: errMsg}).Get(ctx, nil)
}

// finish closes the run row, reads the warehouse figures into the result and
// drops the run's staging rows.
func (r *batchRun) finish(ctx workflow.Context, phase, status, errMsg string) error {
	var a *activities.Batch
	r.enter(ctx, PhaseFinishing, 1)
	r.result.Status = status
	in := activities.FinishRunInput{
		Run: r.ref, Window: r.window, Status: status, Devices: r.result.Devices, Extracted: r.result.Extracted,
		Rejects: r.result.Rejects, PhaseMillis: r.result.PhaseMillis, FeaturesPath: r.result.Features.Dir,
		Error: errMsg, FinishedAt: workflow.Now(ctx),
	}
	var fin activities.FinishRunResult
	if err := workflow.ExecuteActivity(longActivity(ctx, r.in.HeartbeatTimeout), a.FinishRun, in).Get(ctx, &fin); err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	r.result.RowsLoaded, r.result.Anomalies, r.result.DQScore = fin.FactRows, fin.Anomalies, fin.DQScore
	r.result.FactChecksum, r.result.HourlyRows, r.result.Detection = fin.FactChecksum, fin.HourlyRows, fin.Detection
	if err := workflow.ExecuteActivity(shortActivity(ctx), a.CleanupStaging, activities.CleanupInput{Run: r.ref}).Get(ctx, nil); err != nil {
		return fmt.Errorf("cleanup staging: %w", err)
	}
	r.enter(ctx, phase, 0)
	return nil
}

// fail records a failed run (on a disconnected context, so a cancelled
// workflow still closes its run row and drops its staging) and returns err.
func (r *batchRun) fail(ctx workflow.Context, err error) error {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	status := "failed"
	if temporal.IsCanceledError(err) {
		status = "abandoned"
	}
	if ferr := r.finish(dctx, PhaseFailed, status, Brief(err)); ferr != nil {
		workflow.GetLogger(ctx).Error("could not record the failure", "error", ferr)
	}
	if temporal.IsCanceledError(err) {
		return err
	}
	// The failure's message is the short account operators read first; the
	// full chain stays attached as its cause.
	return temporal.NewApplicationErrorWithCause(Brief(err), "BatchFailed", err)
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// Brief renders err for operators: the message of the activity's own error
// (such as the PostgreSQL error of a load) with the workflow's context, not
// the whole chain of Temporal wrappers around it.
func Brief(err error) string {
	var parts []string
	for _, e := range flatten(err) {
		var appErr *temporal.ApplicationError
		var timeoutErr *temporal.TimeoutError
		switch {
		case errors.As(e, &appErr):
			parts = append(parts, prefixOf(e)+appErr.Message())
		case errors.As(e, &timeoutErr):
			parts = append(parts, prefixOf(e)+"timed out ("+timeoutErr.TimeoutType().String()+")")
		default:
			parts = append(parts, e.Error())
		}
	}
	return strings.Join(parts, "; ")
}

// flatten splits errors.Join results.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// prefixOf returns the context the workflow added in front of an activity
// error ("load facts shard 3: "), or "".
func prefixOf(err error) string {
	var actErr *temporal.ActivityError
	if !errors.As(err, &actErr) {
		return ""
	}
	msg, inner := err.Error(), actErr.Error()
	if i := strings.Index(msg, inner); i > 0 {
		return msg[:i]
	}
	return ""
}
