package kafka

import (
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// DefaultFetchMaxWait bounds how long the broker holds a fetch open when no
// data is there. It is short so a consumer that is asked to stop notices
// within a fraction of a second even on an idle topic.
const DefaultFetchMaxWait = 250 * time.Millisecond

// PartitionConsumerOptions read the given partitions of topic from explicit
// offsets: manual assignment, no consumer group, nothing committed to
// Kafka. The offsets come from the database, which is the only record of
// what was consumed. maxWait <= 0 means DefaultFetchMaxWait.
//
// An offset below the partition's log start (the records were deleted by
// retention) restarts at the log start; the skipped range is then lost,
// as it would be for any consumer. An offset past the partition's end (the
// topic was deleted and created again, as a fresh dev broker does) also
// restarts at the log start: the new topic's records are new data.
func PartitionConsumerOptions(topic string, offsets map[int32]int64, maxWait time.Duration) []kgo.Opt {
	if maxWait <= 0 {
		maxWait = DefaultFetchMaxWait
	}
	at := make(map[int32]kgo.Offset, len(offsets))
	for p, o := range offsets {
		at[p] = kgo.NewOffset().At(o)
	}
	return []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(maxWait),
		kgo.FetchMaxBytes(32 << 20),
		kgo.FetchMaxPartitionBytes(8 << 20),
	}
}

// NewPartitionConsumer returns a client consuming partitions of topic from
// offsets (see PartitionConsumerOptions).
// extra options are appended (a ConnWatch, say).
func NewPartitionConsumer(cfg config.Kafka, log *slog.Logger, topic string, offsets map[int32]int64, maxWait time.Duration, extra ...kgo.Opt) (*kgo.Client, error) {
	return NewClient(cfg, log, append(PartitionConsumerOptions(topic, offsets, maxWait), extra...)...)
}
