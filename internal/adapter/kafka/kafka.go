// Package kafka builds franz-go clients from the configuration: a producer
// tuned for throughput and idempotence, plain clients for manual partition
// assignment, and admin look-ups (partitions, high watermarks).
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/platform/logging"
)

// NewClient returns a client for the configured brokers, with TLS and SASL
// when configured. extra options are appended, so callers add consumption
// or production settings.
func NewClient(cfg config.Kafka, log *slog.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := SecurityOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.SeedBrokers(cfg.BootstrapServers...),
		kgo.ClientID("iot-etl"),
		kgo.DialTimeout(5*time.Second),
		kgo.RetryTimeout(30*time.Second),
	)
	if log != nil {
		opts = append(opts, kgo.WithLogger(logging.Kafka(log)))
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", cfg.BootstrapServers, err)
	}
	return cl, nil
}

// SecurityOptions are the TLS and SASL options of cfg. TLS verifies the
// broker's certificate against KAFKA_TLS_CA (or the system roots) and the
// host of each broker address (or KAFKA_TLS_SERVER_NAME).
func SecurityOptions(cfg config.Kafka) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if cfg.TLSEnabled() {
		tc, err := cfg.TLS.ClientConfig("")
		if err != nil {
			return nil, fmt.Errorf("kafka TLS: %w", err)
		}
		// An empty ServerName makes franz-go use each broker's host.
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	user, pass := cfg.SASLUsername, cfg.SASLPassword.Reveal()
	switch cfg.SASLMechanism {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("kafka: unknown SASL mechanism %q", cfg.SASLMechanism)
	}
	return opts, nil
}

// ProducerOptions batch with a linger, compress with zstd (falling back to
// lz4) and keep the default idempotent producer, so retries never duplicate
// a record within a partition.
func ProducerOptions(topic string) []kgo.Opt {
	return []kgo.Opt{
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(20 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.Lz4Compression()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.MaxBufferedRecords(100_000),
	}
}

// Partitions lists the partition ids of topic in ascending order.
func Partitions(ctx context.Context, cl *kgo.Client, topic string) ([]int32, error) {
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: list topic %s: %w", topic, err)
	}
	td, ok := details[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("kafka: topic %s does not exist", topic)
	}
	if td.Err != nil {
		return nil, fmt.Errorf("kafka: topic %s: %w", topic, td.Err)
	}
	ids := make([]int32, 0, len(td.Partitions))
	for p := range td.Partitions {
		ids = append(ids, p)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// HighWatermarks returns the end offset (the offset the next record will
// get) of every partition of topic.
func HighWatermarks(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	var firstErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && firstErr == nil {
			firstErr = fmt.Errorf("kafka: end offset of %s/%d: %w", topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out, firstErr
}
