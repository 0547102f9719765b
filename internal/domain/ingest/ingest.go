// Package ingest is the pure core of the stream ETL: it turns Kafka records
// into exactly-once micro-batches. A Batcher decodes each record,
// quarantines what cannot be a reading (malformed, unknown device, later
// than the allowed lateness), drops repeats within the batch, runs the
// shared transform for the anomaly flags and keeps, per partition, the
// offsets, watermark and counters a batch commits.
//
// It does no I/O and reads no clock of its own: a Sink stores batches and
// gives the history that warms a device's transform state, a Registry
// lists the devices, and the time comes from Options.Now.
package ingest

import (
	"context"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// Defaults of a micro-batch and of the lease that assembles it. The
// configuration (STREAM_*), the workflow's input and the lease start from
// these.
const (
	DefaultMaxRecords       = 5000
	DefaultMaxWait          = 200 * time.Millisecond
	DefaultAllowedLateness  = 10 * time.Minute
	DefaultLeases           = 3
	DefaultLeaseDuration    = 5 * time.Minute
	DefaultHeartbeatTimeout = 10 * time.Second
	DefaultRegistryRefresh  = 30 * time.Second
)

// Record is a Kafka record as the Batcher needs it.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Timestamp time.Time
}

// Counters are the cumulative counters of a partition, kept with its
// offset and advanced with it.
type Counters struct {
	Records     int64 `json:"records"`      // Kafka records consumed
	Inserted    int64 `json:"inserted"`     // new rows in sensor_readings
	Duplicates  int64 `json:"duplicates"`   // valid readings already stored (same device_id and time)
	DeadLetters int64 `json:"dead_letters"` // rows added to stream_dead_letters
	Anomalies   int64 `json:"anomalies"`    // rows added to stream_anomalies
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.Records += o.Records
	c.Inserted += o.Inserted
	c.Duplicates += o.Duplicates
	c.DeadLetters += o.DeadLetters
	c.Anomalies += o.Anomalies
}

// Reading is a decoded, accepted reading of a batch with the record it came
// from and the anomaly reasons the transform gave it (nil when none fired).
type Reading struct {
	Partition int32
	Offset    int64
	reading.Reading
	Reasons []string
}

// DeadLetter is one quarantined record.
type DeadLetter struct {
	Partition  int32
	Offset     int64
	Key        []byte
	Raw        []byte
	Reason     string
	Error      string
	RecordTime time.Time
	// Watermark is the partition's watermark when the record was
	// quarantined (zero: none yet); a replay judges lateness against it.
	Watermark time.Time
}

// OffsetAdvance is what a batch commits for one partition: the offset after
// its last record, the partition's watermark after it, and the counters it
// adds.
type OffsetAdvance struct {
	Partition int32
	Epoch     int64 // the lease's epoch: the commit is fenced on it
	Expected  int64 // the next offset as the lease last committed or claimed it
	Next      int64
	Watermark time.Time
	// Records and in-batch Duplicates (readings repeated within the batch,
	// never sent to the sink) as the Batcher counted them; the sink sets the
	// rest from what it actually stored.
	Counters Counters
}

// Batch is one micro-batch. Readings are unique on (DeviceID, Time).
type Batch struct {
	Readings    []Reading
	DeadLetters []DeadLetter
	Offsets     []OffsetAdvance
}

// Offset is the committed state of one partition.
type Offset struct {
	Partition  int32
	NextOffset int64
	Watermark  time.Time // zero when never committed
	Epoch      int64
	Owner      string
	Counters   Counters
	UpdatedAt  time.Time
}

// Device is a registered device with its type: what the Batcher needs to
// validate a device id and to run the anomaly rules.
type Device struct {
	Device reading.Device
	Type   reading.DeviceType
}

// Sink is where batches go, in one transaction each.
type Sink interface {
	// Commit stores b and returns, per partition, the counters it added
	// (inserted, found already stored, flagged, quarantined). It fails
	// without writing anything when an offset advance is fenced.
	Commit(ctx context.Context, b *Batch) (map[int32]Counters, error)
	// RecentReadings returns the stored readings of devices in
	// (until − window, until], by device and time.
	RecentReadings(ctx context.Context, devices []string, until time.Time, window time.Duration) ([]reading.Reading, error)
}

// Registry lists every registered device, by id.
type Registry func(ctx context.Context) (map[string]Device, error)
