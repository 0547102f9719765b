package activities

import (
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
)

// SignalLeaseProgress is the signal a consumer lease sends to its own
// workflow every few seconds when its progress changed, so the workflow can
// answer the status query from its own state.
const SignalLeaseProgress = "lease-progress"

// How a lease ended (LeaseResult.End).
const (
	LeaseEndDuration   = "duration"    // its time was up
	LeaseEndCancelled  = "cancelled"   // the workflow cancelled it (pause, stop, continue-as-new)
	LeaseEndDrained    = "drained"     // a drain lease reached its target offsets
	LeaseEndWorkerStop = "worker_stop" // the worker is shutting down
	LeaseEndLost       = "lost"        // Temporal no longer knows the activity (timed out)
)

// PartitionProgress is what is known of one partition: its committed
// offset and watermark, the broker's high watermark, and cumulative counts.
type PartitionProgress struct {
	Partition int32 `json:"partition"`
	// Epoch is the lease epoch of the lease that reported this; reports of
	// an older epoch than the one already seen are stale.
	Epoch int64 `json:"epoch"`
	// Consumed is false while the partition has no committed state at all
	// (never claimed by a lease); NextOffset is then 0, the earliest.
	Consumed bool `json:"consumed"`
	// NextOffset is the committed next offset to read (in test mode: the
	// position the lease reached, never committed).
	NextOffset int64 `json:"next_offset"`
	// HighWatermark is the offset the next produced record will get, as
	// last seen; Lag is HighWatermark − NextOffset (never negative).
	HighWatermark int64 `json:"high_watermark"`
	Lag           int64 `json:"lag"`
	// Watermark is the partition's committed event-time watermark.
	Watermark time.Time `json:"watermark,omitzero"`
	// Counters are cumulative since the partition was first consumed.
	Counters ingest.Counters `json:"counters"`
	// Rate is records/s committed over the last report interval.
	Rate float64   `json:"rate"`
	At   time.Time `json:"at,omitzero"`
}

// ListPartitionsInput names the topic.
type ListPartitionsInput struct {
	Topic string `json:"topic"`
}

// ListPartitionsResult is every partition of the topic, ascending, with its
// high watermark and its committed state from stream_offsets.
type ListPartitionsResult struct {
	Partitions []PartitionProgress `json:"partitions"`
}

// LeaseInput is one consumer lease: a fixed set of partitions consumed for
// Duration (or, for a drain lease, up to DrainTo).
type LeaseInput struct {
	Topic      string  `json:"topic"`
	Slot       int     `json:"slot"`
	Partitions []int32 `json:"partitions"`
	// Duration is how long the lease consumes before it commits its open
	// batch and returns; the workflow then starts the next one.
	Duration time.Duration `json:"duration"`
	// MaxBatchRecords and MaxBatchWait bound a micro-batch; 0 means the
	// worker's configuration (STREAM_MAX_BATCH_RECORDS, STREAM_MAX_BATCH_WAIT).
	MaxBatchRecords int           `json:"max_batch_records,omitempty"`
	MaxBatchWait    time.Duration `json:"max_batch_wait,omitempty"`
	// AllowedLateness: a reading whose window ended this long before the
	// partition's watermark is late (dead letter, reason late).
	AllowedLateness time.Duration `json:"allowed_lateness"`
	// Window is the length of the stream's tumbling windows; 0 means the
	// worker's STREAM_WINDOW (a workflow started before the setting).
	Window time.Duration `json:"window,omitempty"`
	// Debug echoes every decoded record to the worker log; TestMode does
	// too and writes nothing (no readings, no offsets, no epochs).
	Debug    bool `json:"debug,omitempty"`
	TestMode bool `json:"test_mode,omitempty"`
	// DrainTo makes this a drain lease: it consumes each partition up to
	// (excluding) the given offset and returns once all are reached.
	DrainTo map[int32]int64 `json:"drain_to,omitempty"`
	// ProgressEvery is the interval of lease-progress signals; 0 means 5s.
	ProgressEvery time.Duration `json:"progress_every,omitempty"`
}

// LeaseHeartbeat is the heartbeat detail of a lease: its committed offsets
// per partition. It is a hint for people looking at the pending activity;
// the database holds the truth.
type LeaseHeartbeat struct {
	Offsets map[int32]int64 `json:"offsets"`
}

// LeaseProgress is the lease-progress signal.
type LeaseProgress struct {
	Slot       int                 `json:"slot"`
	Partitions []PartitionProgress `json:"partitions"`
	At         time.Time           `json:"at"`
	// Problem is what holds the lease up right now ("TimescaleDB: commit
	// pending for 12s", "Kafka: no answer for 9s: ..."); empty when it
	// makes progress. The status shows it while it lasts.
	Problem string `json:"problem,omitempty"`
}

// LeaseResult is what a lease reports when it ends normally.
type LeaseResult struct {
	Slot       int                 `json:"slot"`
	Partitions []PartitionProgress `json:"partitions"`
	End        string              `json:"end"`
	Batches    int64               `json:"batches"`
}
