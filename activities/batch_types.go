package activities

import (
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// RunRef identifies one batch run. RunID, the workflow run id, scopes its
// staging rows and is written to the warehouse for lineage.
// StagingGeneration is the generation of the run's staging the caller
// knows (1, then one more for every re-creation after it was lost): an
// activity that finds no staging marker of that generation fails with
// StagingLost. 0 (a workflow from before markers) skips the check.
type RunRef struct {
	RunID             string `json:"run_id"`
	WorkflowID        string `json:"workflow_id"`
	StagingGeneration int    `json:"staging_generation,omitempty"`
}

// ResetStagingInput re-creates a run's lost staging for a new generation.
type ResetStagingInput struct {
	Run RunRef `json:"run"`
}

// StartRunInput records a run in dwh.etl_runs.
type StartRunInput struct {
	Run          RunRef       `json:"run"`
	Window       batch.Window `json:"window"`
	TestMode     bool         `json:"test_mode"`
	DeviceFilter []string     `json:"device_filter,omitempty"`
	StartedAt    time.Time    `json:"started_at"`
}

// ExtractDevicesInput selects the devices of a run.
type ExtractDevicesInput struct {
	Run          RunRef   `json:"run"`
	DeviceFilter []string `json:"device_filter,omitempty"` // empty: all devices
	MaxDevices   int      `json:"max_devices,omitempty"`   // 0: no limit (first N by id)
	Shards       int      `json:"shards"`
}

// ExtractDevicesResult says what was staged.
type ExtractDevicesResult struct {
	Devices   int      `json:"devices"`
	Types     int      `json:"types"`
	DeviceIDs []string `json:"device_ids,omitempty"` // only when MaxDevices limited the set
}

// ExtractLocationsInput stages the locations.
type ExtractLocationsInput struct {
	Run RunRef `json:"run"`
}

// ExtractReadingsInput stages the raw readings of one chunk.
type ExtractReadingsInput struct {
	Run          RunRef      `json:"run"`
	Chunk        batch.Chunk `json:"chunk"`
	DeviceFilter []string    `json:"device_filter,omitempty"`
}

// ExtractReadingsProgress is the heartbeat of a chunk: the hours before
// NextFrom are staged and committed.
type ExtractReadingsProgress struct {
	NextFrom time.Time `json:"next_from"`
	Rows     int64     `json:"rows"`
}

// ExtractReadingsResult counts the staged rows of a chunk.
type ExtractReadingsResult struct {
	Rows int64 `json:"rows"`
}

// RejectsInput finds the staged readings the transform cannot enrich.
type RejectsInput struct {
	Run    RunRef       `json:"run"`
	Window batch.Window `json:"window"`
}

// RejectsResult counts them by reason.
type RejectsResult struct {
	Rejects  int64            `json:"rejects"`
	ByReason map[string]int64 `json:"by_reason,omitempty"`
}

// TransformInput transforms the readings of one device shard.
type TransformInput struct {
	Run      RunRef        `json:"run"`
	Shard    int           `json:"shard"`
	Window   batch.Window  `json:"window"`
	Lookback time.Duration `json:"lookback"`
	// Direct lets the transform write a first load's facts itself: when
	// the fact table holds no row of the window for the shard's devices,
	// the rows go straight into it instead of to staging.enriched
	// (TransformTotal.Direct). The workflow sets it when no data-quality
	// gate has to read the output before anything is loaded.
	Direct bool `json:"direct,omitempty"`
	// StageHours: the transform also stages the device-hours of its
	// output: the features' (staging.feature_hours), which the export
	// builds from when every load was a first load, and the hourly
	// buckets (staging.hourly), which a first load copies.
	StageHours bool `json:"stage_hours,omitempty"`
}

// TransformProgress is the heartbeat of a shard: every device up to and
// including LastDevice is transformed and committed (to staging, or to the
// fact table when Totals.Direct).
type TransformProgress struct {
	LastDevice string         `json:"last_device"`
	Totals     TransformTotal `json:"totals"`
}

// TransformTotal is what a shard produced.
type TransformTotal struct {
	Devices    int     `json:"devices"`
	Rows       int64   `json:"rows"`
	Anomalies  int64   `json:"anomalies"`
	QualitySum float64 `json:"quality_sum"`
	// Sums are the fact sums of the rows written (warehouse.FactSummer),
	// for a first load to take instead of reading its facts again. Nil
	// when they do not cover every row: a heartbeat from a worker before
	// them.
	Sums *batch.FactSums `json:"sums,omitempty"`
	// Detection scores the shard's detections against the ground truth
	// as the transform classified its rows, for a first load to take
	// instead of reading its flagged facts again. Nil when it does not
	// cover every device: a heartbeat from a worker before it, or a shard
	// without a device to transform.
	Detection *Detection `json:"detection,omitempty"`
	// Direct: the rows are in the fact table already, written by the
	// transform on a first load; the shard's LoadFacts does not insert
	// them. Decided before the first row is written, and kept by every
	// later attempt.
	Direct bool `json:"direct,omitempty"`
}

// LoadDimensionsInput loads dim_devices and dim_locations from staging.
type LoadDimensionsInput struct {
	Run RunRef `json:"run"`
}

// LoadDimensionsResult counts what changed.
type LoadDimensionsResult struct {
	NewDeviceVersions int `json:"new_device_versions"`
	DevicesUpdated    int `json:"devices_updated"`
	LocationsUpserted int `json:"locations_upserted"`
}

// LoadFactsInput loads one shard's enriched rows into the fact table and
// refreshes its hourly buckets, in one transaction.
type LoadFactsInput struct {
	Run          RunRef       `json:"run"`
	Shard        int          `json:"shard"`
	Window       batch.Window `json:"window"`
	ExpectedRows int64        `json:"expected_rows"`
	// Transformed are the sums of the shard's rows as its Transform wrote
	// them (TransformTotal.Sums), or nil.
	Transformed *batch.FactSums `json:"transformed,omitempty"`
	// Direct: the Transform wrote the shard's facts (TransformTotal.Direct).
	Direct bool `json:"direct,omitempty"`
	// Detection is TransformTotal.Detection, or nil.
	Detection *Detection `json:"detection,omitempty"`
	// StagedHours: the shard's transform staged its hourly buckets
	// (TransformInput.StageHours).
	StagedHours bool `json:"staged_hours,omitempty"`
}

// LoadFactsResult counts the upserted rows; Changed excludes rows that were
// already identical in the warehouse.
type LoadFactsResult struct {
	Rows    int64 `json:"rows"`
	Changed int64 `json:"changed"`
	Buckets int64 `json:"buckets"`
	// Sums are the figures of the shard's facts of the window after the
	// load, measured in its transaction.
	Sums *batch.FactSums `json:"sums,omitempty"`
	// Detection scores the shard's flagged facts against the ground truth.
	Detection *Detection `json:"detection,omitempty"`
	// FirstLoad: the shard's facts of the window are exactly its transform
	// output (written by the transform, or inserted where there were none).
	FirstLoad bool `json:"first_load,omitempty"`
}

// Detection is anomaly detection scored against the seeder's ground truth
// for some of a run's devices: Truth says whether they had injected
// events at all.
type Detection struct {
	Truth bool                             `json:"truth"`
	Kinds map[anomaly.Kind]anomaly.Metrics `json:"kinds,omitempty"`
}

// RefreshAggregatesInput refreshes the hourly continuous aggregate of a
// window (a no-op without TimescaleDB, where LoadFacts refreshed the table).
type RefreshAggregatesInput struct {
	Window batch.Window `json:"window"`
}

// ExportFeaturesInput builds the ML features of a window.
type ExportFeaturesInput struct {
	Run    RunRef       `json:"run"`
	Window batch.Window `json:"window"`
	CSV    bool         `json:"csv"`
	// AttemptOffset is added to the activity's attempt to number its
	// directory (attempt-<n>): an export run again after the run parked is
	// a new activity whose attempts start at 1 again, and must not write
	// where an earlier one did.
	AttemptOffset int32 `json:"attempt_offset,omitempty"`
	// FromTransform: the facts of the window are exactly the transforms'
	// output (every shard's load a first load, staging never lost since),
	// so the features of the window's hours are built from the device-hours
	// the transforms staged instead of from every fact read back.
	FromTransform bool `json:"from_transform,omitempty"`
}

// ExportedFile is one published data file with its checksum. Path is
// relative to the window directory (<run_id>/attempt-<n>/features.parquet);
// URL is where to read it (file:///... or s3://...).
type ExportedFile struct {
	Path   string `json:"path"`
	URL    string `json:"url"`
	Format string `json:"format"`
	Rows   int64  `json:"rows"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// ExportFeaturesResult says what was published and where: WindowURL is
// the window's directory, ManifestURL its manifest.json, which lists Files.
type ExportFeaturesResult struct {
	Rows        int64          `json:"rows"`
	Positive    int64          `json:"positive"` // rows whose label is true
	WindowURL   string         `json:"window_url"`
	ManifestURL string         `json:"manifest_url"`
	Files       []ExportedFile `json:"files"`
}

// FinishRunInput closes a run in dwh.etl_runs.
type FinishRunInput struct {
	Run          RunRef           `json:"run"`
	Window       batch.Window     `json:"window"`
	Status       batch.Status     `json:"status"`
	Devices      int              `json:"devices"`
	Extracted    int64            `json:"extracted"`
	Rejects      int64            `json:"rejects"`
	RowsLoaded   int64            `json:"rows_loaded"`
	Anomalies    int64            `json:"anomalies"`
	PhaseMillis  map[string]int64 `json:"phase_ms"`
	FeaturesPath string           `json:"features_path,omitempty"`
	Error        string           `json:"error,omitempty"`
	FinishedAt   time.Time        `json:"finished_at"`
	// StagingRecoveries counts the times the run re-created lost staging.
	StagingRecoveries int `json:"staging_recoveries,omitempty"`
	// LoadedSums, when set, are the window's fact figures added up from
	// every shard's LoadFactsResult.Sums; FinishRun then does not read the
	// facts again. Nil: it measures them.
	LoadedSums *batch.FactSums `json:"loaded_sums,omitempty"`
	// LoadedDetection, when set, is the run's detection scores added up
	// from every shard's LoadFactsResult.Detection.
	LoadedDetection *Detection `json:"loaded_detection,omitempty"`
}

// DetectionScore is precision and recall of one anomaly kind against the
// seeder's ground truth.
type DetectionScore struct {
	TruePositives  int64   `json:"tp"`
	FalsePositives int64   `json:"fp"`
	FalseNegatives int64   `json:"fn"`
	Precision      float64 `json:"precision"`
	Recall         float64 `json:"recall"`
}

// FinishRunResult is what the warehouse says about the finished run.
type FinishRunResult struct {
	FactRows     int64                     `json:"fact_rows"`
	FactChecksum string                    `json:"fact_checksum"`
	DQScore      float64                   `json:"dq_score"`
	Anomalies    int64                     `json:"anomalies"`
	HourlyRows   int64                     `json:"hourly_rows"`
	Detection    map[string]DetectionScore `json:"detection,omitempty"`
}

// CleanupInput drops a run's staging rows.
type CleanupInput struct {
	Run RunRef `json:"run"`
}

// MarkRunInput records an intermediate status of a run.
type MarkRunInput struct {
	Run    RunRef       `json:"run"`
	Status batch.Status `json:"status"`
	Error  string       `json:"error,omitempty"`
}

// DQGateInput asks for a run's data-quality report against its gate.
type DQGateInput struct {
	Run       RunRef     `json:"run"`
	Extracted int64      `json:"extracted"`
	Gate      batch.Gate `json:"gate"`
}

// DecisionInput is an operator's decision at the data-quality gate.
type DecisionInput struct {
	Run      RunRef    `json:"run"`
	Approved bool      `json:"approved"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}
