package activities

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/adapter/health"
	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/metrics"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/domain/window"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// Stream holds the stream ETL activities and what they need.
type Stream struct {
	Timescale *pgxpool.Pool
	MySQL     *sql.DB
	Kafka     config.Kafka
	// Temporal is used for a lease's heartbeats and its lease-progress
	// signals; nil means the worker's own client (activity.GetClient).
	Temporal client.Client
	// Config gives the micro-batch bounds and the window length a
	// LeaseInput leaves at zero.
	Config config.Stream
	// Params are the transform parameters; zero means the defaults, the
	// same as the batch transform's.
	Params transform.Params
	Log    *slog.Logger

	// RegistryRefresh is the least time between two reloads of the device
	// registry caused by an unknown device id; 0 means 30s.
	RegistryRefresh time.Duration
	// HeartbeatEvery is the lease heartbeat interval; 0 means 1s.
	HeartbeatEvery time.Duration
	// Metrics records commits and lease ends; nil records nothing.
	Metrics *metrics.Stream
}

// windowLength is the window length of an activity input: its own, else
// the worker's STREAM_WINDOW, else window.Default.
func (s *Stream) windowLength(in time.Duration) window.Length {
	return window.Length(cmp.Or(in, s.Config.Window))
}

// ListPartitions returns the partitions of the topic with their high
// watermarks and their committed state, for the workflow to deal them out
// to leases and to seed its status.
func (s *Stream) ListPartitions(ctx context.Context, in ListPartitionsInput) (ListPartitionsResult, error) {
	cl, err := kafka.NewClient(s.Kafka, s.Log)
	if err != nil {
		return ListPartitionsResult{}, err
	}
	defer cl.Close()
	ids, err := kafka.Partitions(ctx, cl, in.Topic)
	if err != nil {
		return ListPartitionsResult{}, health.Diagnose(err, health.KafkaSettings)
	}
	hwms, err := kafka.HighWatermarks(ctx, cl, in.Topic)
	if err != nil {
		return ListPartitionsResult{}, health.Diagnose(err, health.KafkaSettings)
	}
	committed, err := sink.ReadOffsets(ctx, s.Timescale, in.Topic)
	if err != nil {
		return ListPartitionsResult{}, err
	}
	out := ListPartitionsResult{Partitions: make([]PartitionProgress, 0, len(ids))}
	for _, p := range ids {
		pp := PartitionProgress{Partition: p, HighWatermark: hwms[p]}
		if o, ok := committed[p]; ok {
			pp.Consumed, pp.NextOffset, pp.Watermark, pp.Epoch, pp.Counters, pp.At = true, o.NextOffset, o.Watermark, o.Epoch, o.Counters, o.UpdatedAt
		}
		pp.Lag = max(pp.HighWatermark-pp.NextOffset, 0)
		out.Partitions = append(out.Partitions, pp)
	}
	return out, nil
}

// ConsumeLease consumes its partitions exactly once into TimescaleDB until
// its duration is up, the workflow cancels it, the worker stops or (drain
// lease) its target offsets are reached; then it commits its open batch and
// returns. See docs/stream.md for the protocol.
//
// Heartbeats go straight to the server every second through the client
// rather than through activity.RecordHeartbeat, which the SDK throttles to
// 80% of the heartbeat timeout: a cancellation (pause) reaches an activity
// only in a heartbeat response, and fetching must stop within 2 seconds.
func (s *Stream) ConsumeLease(ctx context.Context, in LeaseInput) (LeaseResult, error) {
	info := activity.GetInfo(ctx)
	tc := s.Temporal
	if tc == nil {
		tc = activity.GetClient(ctx)
	}
	log := s.logger().With("workflow_id", info.WorkflowExecution.ID, "run_id", info.WorkflowExecution.RunID,
		"activity_type", info.ActivityType.Name, "activity_id", info.ActivityID, "attempt", info.Attempt,
		"slot", in.Slot, "partitions", in.Partitions)
	hooks := leaseHooks{
		owner: fmt.Sprintf("%s/%s/%s#%d", info.WorkflowExecution.ID, shortID(info.WorkflowExecution.RunID), info.ActivityID, info.Attempt),
		heartbeat: func(ctx context.Context, hb LeaseHeartbeat) error {
			return tc.RecordActivityHeartbeat(ctx, info.TaskToken, hb)
		},
		progress: func(ctx context.Context, p LeaseProgress) error {
			return tc.SignalWorkflow(ctx, info.WorkflowExecution.ID, "", SignalLeaseProgress, p)
		},
		workerStop: activity.GetWorkerStopChannel(ctx),
		log:        log,
	}
	res, err := s.runLease(ctx, in, hooks)
	cause := res.End
	switch {
	case errors.Is(err, sink.ErrLeaseFenced):
		cause = "fenced"
	case err != nil:
		cause = "failed"
	}
	s.Metrics.LeaseEnded(in.Topic, cause)
	if err != nil {
		log.Error("stream lease failed", "error", err)
	}
	return res, err
}

func (s *Stream) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// leaseStopReason maps a heartbeat error to why the lease must stop, or ""
// when the error is transient and the lease goes on.
func leaseStopReason(err error) string {
	var notFound *serviceerror.NotFound
	switch {
	case err == nil:
		return ""
	case temporal.IsCanceledError(err):
		return LeaseEndCancelled
	case errors.As(err, &notFound):
		return LeaseEndLost
	}
	return ""
}
