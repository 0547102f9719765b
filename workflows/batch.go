package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// Names operators and the starter use.
const (
	BatchWorkflowName = "BatchETLWorkflow"
	QueryProgress     = "progress"
	SignalRetryLoad   = "retry-load"
	SignalRetryExport = "retry-export"
	SignalAbandon     = "abandon"
	// The Updates of a run: approve and reject at the data-quality gate
	// (argument: the reason), and retry-load, retry-export and abandon
	// (the names of the signals, which keep working) of a parked run.
	UpdateApprove     = "approve"
	UpdateReject      = "reject"
	UpdateRetryLoad   = SignalRetryLoad
	UpdateRetryExport = SignalRetryExport
	UpdateAbandon     = SignalAbandon
)

// Batch phases, as the progress query reports them.
const (
	PhaseStarting   = "starting"
	PhaseExtract    = "extract"
	PhaseTransform  = "transform"
	PhaseLoad       = "load"
	PhaseLoadFailed = "load_failed"
	PhaseExport     = "export"
	// PhaseExportFailed: parked after the export failed its attempts.
	PhaseExportFailed = "export_failed"
	// PhaseRecovering: re-creating staging that PostgreSQL lost.
	PhaseRecovering = "recovering"
	PhaseFinishing  = "finishing"
	// PhaseAwaitingApproval: parked before Load, the output breached the
	// data-quality gate; PhaseRejected: an operator rejected it there.
	PhaseAwaitingApproval = "awaiting_approval"
	PhaseRejected         = "rejected"
	PhaseDone             = "done"
	PhaseAbandoned        = "abandoned"
	PhaseFailed           = "failed"
)

// Defaults of BatchInput's zero values that are about orchestration; the
// window's (shards, chunk, lookback, test mode) are in internal/domain/batch.
const (
	DefaultLoadMaxAttempts   = 3
	DefaultExportMaxAttempts = 3
	DefaultHeartbeat         = 30 * time.Second
	// MaxStagingRecoveries bounds how often a run re-creates lost staging
	// before it fails: a PostgreSQL that keeps crashing needs a person.
	MaxStagingRecoveries = 3
	// MaxUnheardReruns bounds how often in a row the run itself runs again
	// a load or an export whose attempts all timed out on their heartbeat
	// (the worker was not heard: dead, or cut off from Temporal), each
	// after UnheardPause, before it parks: a worker that dies in every
	// attempt needs a person too.
	MaxUnheardReruns = 3
	UnheardPause     = 30 * time.Second
)

// Changes versioned with workflow.GetVersion, so that runs started by the
// code before them (and the recorded histories in testdata/) replay.
const (
	// changeStagingRecovery: a staging generation with a marker; lost
	// staging is re-created and what it held re-run.
	changeStagingRecovery = "staging-recovery"
	// changeStagingSweep: the staging of runs not running in Temporal is
	// swept after StartRun.
	changeStagingSweep = "staging-sweep"
	// changeExportParks: the export has ExportMaxAttempts attempts, then
	// the run parks in export_failed.
	changeExportParks = "export-parks"
	// changeUnheardReruns: a load or export that only timed out on its
	// heartbeat runs again by itself before the run parks.
	changeUnheardReruns = "unheard-reruns"
	// changeScoreAnomalies: after the export, the anomaly model scores the
	// run's device-hours (ScoreAnomalies).
	changeScoreAnomalies = "score-anomalies"
	// changeDirectFacts: without a data-quality gate, a shard's transform
	// writes a first load's facts itself (TransformInput.Direct); every
	// transform stages its device-hours, and the export of a run whose
	// loads were all first loads builds from them.
	changeDirectFacts = "direct-facts"
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
	// ExportMaxAttempts is how many attempts ExportFeatures gets before the
	// run parks in export_failed.
	ExportMaxAttempts int32 `json:"export_max_attempts,omitempty"`
	// HeartbeatTimeout is how long a silent activity (a dead worker) is
	// given before Temporal retries it elsewhere.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Gate is the data-quality gate (BATCH_DQ_MIN, BATCH_REJECT_MAX): a
	// run whose transformed output breaches it parks before Load in
	// awaiting_approval until the approve or reject Update. Off when zero.
	Gate batch.Gate `json:"gate,omitzero"`
}

// Progress is what the progress query returns.
type Progress struct {
	Phase          string       `json:"phase"`
	Window         batch.Window `json:"window"`
	ChunksDone     int          `json:"chunks_done"`
	ChunksTotal    int          `json:"chunks_total"`
	Rows           int64        `json:"rows"`
	LoadError      string       `json:"load_error,omitempty"`
	LoadAttempts   int          `json:"load_attempts"`
	ExportError    string       `json:"export_error,omitempty"`
	ExportAttempts int          `json:"export_attempts,omitempty"`
	// StagingRecoveries counts the times the run re-created staging that
	// PostgreSQL lost.
	StagingRecoveries int `json:"staging_recoveries,omitempty"`
	// DQ is the data-quality report of the gate (when it is on), and
	// Decision the operator's at the gate: "approved: <reason>" or
	// "rejected: <reason>".
	DQ       *batch.DQReport `json:"dq,omitempty"`
	Decision string          `json:"decision,omitempty"`
}

// BatchResult summarises a finished run.
type BatchResult struct {
	WorkflowID   string                               `json:"workflow_id"`
	RunID        string                               `json:"run_id"`
	Window       batch.Window                         `json:"window"`
	Status       batch.Status                         `json:"status"`
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
	// Scoring is what the anomaly model did (docs/ML.md): empty Model
	// when there was none; ScoringError when it was refused or failed,
	// which does not fail the run.
	Scoring      activities.ScoreResult `json:"scoring"`
	ScoringError string                 `json:"scoring_error,omitempty"`
	PhaseMillis  map[string]int64       `json:"phase_ms"`
	LoadAttempts int                    `json:"load_attempts"`
	// ExportAttempts counts the export runs (each of up to
	// ExportMaxAttempts activity attempts): 1 unless it parked.
	ExportAttempts    int `json:"export_attempts,omitempty"`
	StagingRecoveries int `json:"staging_recoveries,omitempty"`
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
	window   batch.Window
	progress Progress
	result   BatchResult
	loaded   map[int]bool // shards whose facts are loaded
	// transformed is what each shard's last transform produced: its rows,
	// their sums and detection scores, and whether it wrote the facts.
	transformed map[int]activities.TransformTotal
	firstLoads  map[int]bool                  // loaded shards whose facts of the window are their transform's output
	sums        map[int]*batch.FactSums       // each loaded shard's facts of the window, as its load measured them
	detected    map[int]*activities.Detection // and its detection scores
	phaseAt     time.Time

	recovery      bool // lost staging is re-created (changeStagingRecovery)
	exportParks   bool // a failed export parks the run (changeExportParks)
	unheardReruns bool // heartbeat timeouts alone do not park (changeUnheardReruns)
	scores        bool // the model scores the run after the export (changeScoreAnomalies)
	directFacts   bool // transforms may write first loads' facts, and stage device-hours (changeDirectFacts)
	scored        bool
	loadDone      bool // dimensions, every shard's facts and the aggregates are loaded
	exported      bool

	gatePassed bool             // the data-quality gate passed or was approved
	decision   *gateDecision    // an approve or reject Update, until the gate takes it
	actions    workflow.Channel // the retry and abandon Updates of a parked run
	// actionPending: an Update in actions that park has not taken yet.
	actionPending bool
}

// BatchETLWorkflow extracts, transforms and loads one window of readings
// into the warehouse, then exports ML features. When Load exhausts its
// retries the run parks in load_failed and waits for a retry-load or an
// abandon signal instead of failing: staging is kept, so a retry never
// extracts again. An export that fails its attempts parks the run in
// export_failed the same way (retry-export or abandon). When PostgreSQL
// loses the run's staging (crash recovery empties unlogged tables), the run
// re-creates it and runs again what it held, at most MaxStagingRecoveries
// times.
func BatchETLWorkflow(ctx workflow.Context, in BatchInput) (*BatchResult, error) {
	info := workflow.GetInfo(ctx)
	r := &batchRun{
		in:          in.withDefaults(),
		ref:         activities.RunRef{RunID: info.WorkflowExecution.RunID, WorkflowID: info.WorkflowExecution.ID},
		loaded:      map[int]bool{},
		transformed: map[int]activities.TransformTotal{},
		firstLoads:  map[int]bool{},
		sums:        map[int]*batch.FactSums{},
		detected:    map[int]*activities.Detection{},
	}
	r.progress.Phase = PhaseStarting
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return r.progress, nil }); err != nil {
		return nil, err
	}
	r.actions = workflow.NewBufferedChannel(ctx, 1)
	if err := r.setUpdateHandlers(ctx); err != nil {
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

	r.recovery = workflow.GetVersion(ctx, changeStagingRecovery, workflow.DefaultVersion, 1) >= 1
	sweep := workflow.GetVersion(ctx, changeStagingSweep, workflow.DefaultVersion, 1) >= 1
	r.exportParks = workflow.GetVersion(ctx, changeExportParks, workflow.DefaultVersion, 1) >= 1
	r.unheardReruns = workflow.GetVersion(ctx, changeUnheardReruns, workflow.DefaultVersion, 1) >= 1
	r.scores = workflow.GetVersion(ctx, changeScoreAnomalies, workflow.DefaultVersion, 1) >= 1
	r.directFacts = workflow.GetVersion(ctx, changeDirectFacts, workflow.DefaultVersion, 1) >= 1
	if r.recovery {
		r.ref.StagingGeneration = 1
	}

	var a *activities.Batch
	err = workflow.ExecuteActivity(shortActivity(ctx), a.StartRun, activities.StartRunInput{
		Run: r.ref, Window: window, TestMode: r.in.TestMode, DeviceFilter: r.in.DeviceFilter, StartedAt: workflow.Now(ctx),
	}).Get(ctx, nil)
	if err != nil {
		return nil, err
	}
	if sweep {
		r.sweep(ctx)
	}

	abandoned, err := r.process(ctx)
	var finishErr *finishError
	switch {
	case errors.As(err, &finishErr):
		// The run's work is done; only its row could not be closed.
		return nil, finishErr.err
	case err != nil:
		return nil, r.fail(ctx, err)
	case abandoned:
		return &r.result, nil
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, saRowsLoaded.ValueSet(r.result.RowsLoaded), saDQScore.ValueSet(r.result.DQScore)); err != nil {
		// The run succeeded; only the UI filters miss its figures.
		workflow.GetLogger(ctx).Warn("search attributes not set", "error", err)
	}
	return &r.result, nil
}

func (in BatchInput) withDefaults() BatchInput {
	in.Shards = cmp.Or(max(in.Shards, 0), batch.DefaultShards)
	in.Chunk = cmp.Or(max(in.Chunk, 0), batch.DefaultChunk)
	switch {
	case in.Lookback == 0:
		in.Lookback = batch.DefaultLookback
	case in.Lookback < 0:
		in.Lookback = 0
	}
	in.LoadMaxAttempts = cmp.Or(max(in.LoadMaxAttempts, 0), DefaultLoadMaxAttempts)
	in.ExportMaxAttempts = cmp.Or(max(in.ExportMaxAttempts, 0), DefaultExportMaxAttempts)
	in.HeartbeatTimeout = cmp.Or(max(in.HeartbeatTimeout, 0), DefaultHeartbeat)
	if in.TestMode {
		in.Shards = min(in.Shards, batch.TestModeMaxShards)
	}
	return in
}

// resolveWindow applies the window rules of BatchInput (batch.Resolve):
// an empty window is the day before the schedule's start time
// (TemporalScheduledStartTime), or the workflow's when not scheduled.
func resolveWindow(ctx workflow.Context, in BatchInput) (batch.Window, error) {
	ref := workflow.GetInfo(ctx).WorkflowStartTime
	if scheduled, ok := workflow.GetTypedSearchAttributes(ctx).GetTime(saScheduled); ok {
		ref = scheduled
	}
	w, err := batch.Resolve(in.WindowStart, in.WindowEnd, ref, in.TestMode)
	if err != nil {
		return w, temporal.NewNonRetryableApplicationError(strings.TrimPrefix(err.Error(), batch.ErrInvalidWindow.Error()+": "), activities.ErrTypeInvalidInput, nil)
	}
	return w, nil
}

func (r *batchRun) enter(ctx workflow.Context, phase string, total int) {
	now := workflow.Now(ctx)
	if !r.phaseAt.IsZero() && r.progress.Phase != PhaseLoadFailed && r.progress.Phase != PhaseExportFailed {
		r.result.PhaseMillis[r.progress.Phase] += now.Sub(r.phaseAt).Milliseconds()
	}
	r.phaseAt = now
	r.progress.Phase, r.progress.ChunksDone, r.progress.ChunksTotal, r.progress.Rows = phase, 0, total, 0
}

// sweep drops the staging of the runs that are not running any more, and
// closes the rows their terminated workflows left open (see
// activities.Batch.SweepStaging). It is housekeeping: when it fails, the
// run goes on and the next sweep does it.
func (r *batchRun) sweep(ctx workflow.Context) {
	var a *activities.Batch
	var res activities.SweepStagingResult
	logger := workflow.GetLogger(ctx)
	err := workflow.ExecuteActivity(sweepActivity(ctx), a.SweepStaging, activities.SweepStagingInput{Except: r.ref.RunID}).Get(ctx, &res)
	if err != nil {
		logger.Warn("staging sweep failed; the run goes on", "error", err)
		return
	}
	if len(res.Runs) > 0 {
		logger.Info("staging sweep", "dropped", res.Dropped, "terminated", res.Closed, "running", res.Running, "unknown", res.Unknown, "failed", res.Failed)
	}
}

// process runs the phases the run still needs, in order, and finishes it
// as succeeded. When an activity finds the run's staging lost (PostgreSQL's
// crash recovery empties unlogged tables, the marker with them), process
// re-creates the staging and runs again what it held: the extract, then
// the transform and load of the shards not loaded yet (loaded facts are in
// logged tables and upserts are idempotent), the export if it is not done,
// and the finish. It gives up after MaxStagingRecoveries recoveries.
func (r *batchRun) process(ctx workflow.Context) (abandoned bool, err error) {
	for {
		abandoned, err = r.phases(ctx)
		if err == nil || !r.recovery || !isStagingLost(err) {
			return abandoned, err
		}
		if err := r.recoverStaging(ctx, err); err != nil {
			return false, err
		}
	}
}

// phases runs extract, transform, load, export and finish, skipping what
// is done: after a recovery, the transform of the shards already loaded,
// the load when every shard is loaded (then the extract stages only the
// devices and locations, which the export and the finish read) and the
// export when it published.
func (r *batchRun) phases(ctx workflow.Context) (abandoned bool, err error) {
	allLoaded := len(r.loaded) == r.in.Shards
	if err := r.extract(ctx, allLoaded); err != nil {
		return false, err
	}
	if !allLoaded {
		if err := r.transform(ctx); err != nil {
			return false, err
		}
	}
	if !r.loadDone && r.in.Gate.On() && !r.gatePassed {
		if rejected, err := r.gate(ctx); err != nil || rejected {
			return rejected, err
		}
	}
	if !r.loadDone {
		if abandoned, err := r.untilDone(ctx, parkLoad); err != nil || abandoned {
			return abandoned, err
		}
		r.loadDone = true
	}
	if !r.exported {
		if abandoned, err := r.untilDone(ctx, parkExport); err != nil || abandoned {
			return abandoned, err
		}
		r.exported = true
	}
	if r.scores && !r.scored {
		r.score(ctx)
		r.scored = true
	}
	if err := r.finish(ctx, PhaseDone, batch.StatusSucceeded, ""); err != nil {
		if r.recovery && isStagingLost(err) {
			return false, err
		}
		return false, &finishError{err: err}
	}
	return false, nil
}

// score runs ScoreAnomalies. The run's data is loaded and exported by
// then, so a model that is refused or a scoring that fails after its
// retries is recorded in the result and the log, not a failed run.
func (r *batchRun) score(ctx workflow.Context) {
	var a *activities.Batch
	err := workflow.ExecuteActivity(shortActivity(ctx), a.ScoreAnomalies,
		activities.ScoreInput{Run: r.ref, Window: r.window}).Get(ctx, &r.result.Scoring)
	if err != nil {
		r.result.ScoringError = Brief(err)
		workflow.GetLogger(ctx).Warn("anomaly scoring failed; the run goes on", "error", err)
	}
}

// mark records an intermediate status (load_failed, export_failed) in
// dwh.etl_runs.
func (r *batchRun) mark(ctx workflow.Context, status batch.Status, errMsg string) error {
	var a *activities.Batch
	return workflow.ExecuteActivity(shortActivity(ctx), a.MarkRun, activities.MarkRunInput{Run: r.ref, Status: status, Error: errMsg}).Get(ctx, nil)
}

// finish closes the run row, reads the warehouse figures into the result and
// drops the run's staging rows.
func (r *batchRun) finish(ctx workflow.Context, phase string, status batch.Status, errMsg string) error {
	var a *activities.Batch
	r.enter(ctx, PhaseFinishing, 1)
	r.result.Status = status
	in := activities.FinishRunInput{
		Run: r.ref, Window: r.window, Status: status, Devices: r.result.Devices, Extracted: r.result.Extracted,
		Rejects: r.result.Rejects, PhaseMillis: r.result.PhaseMillis, FeaturesPath: r.result.Features.WindowURL,
		Error: errMsg, FinishedAt: workflow.Now(ctx), StagingRecoveries: r.result.StagingRecoveries,
	}
	if status == batch.StatusSucceeded {
		in.LoadedSums, in.LoadedDetection = r.loadedSums(ctx), r.loadedDetection()
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

// loadedSums adds up the sums every shard's load reported, or returns nil
// when a shard has none (loaded by a worker from before the sums).
func (r *batchRun) loadedSums(ctx workflow.Context) *batch.FactSums {
	var total batch.FactSums
	for shard := 0; shard < r.in.Shards; shard++ {
		s := r.sums[shard]
		if s == nil {
			return nil
		}
		var err error
		if total, err = total.Add(*s); err != nil {
			workflow.GetLogger(ctx).Warn("load sums not added up; the finish measures the facts", "error", err)
			return nil
		}
	}
	return &total
}

// loadedDetection adds up the detection scores every shard's load
// reported, or returns nil when a shard has none.
func (r *batchRun) loadedDetection() *activities.Detection {
	var total activities.Detection
	parts := make([]map[anomaly.Kind]anomaly.Metrics, 0, r.in.Shards)
	for shard := 0; shard < r.in.Shards; shard++ {
		d := r.detected[shard]
		if d == nil {
			return nil
		}
		total.Truth = total.Truth || d.Truth
		parts = append(parts, d.Kinds)
	}
	total.Kinds = anomaly.Combine(parts...)
	return &total
}

// fail records a failed run (on a disconnected context, so a cancelled
// workflow still closes its run row and drops its staging) and returns err.
func (r *batchRun) fail(ctx workflow.Context, err error) error {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	status := batch.StatusFailed
	if temporal.IsCanceledError(err) {
		status = batch.StatusAbandoned
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
