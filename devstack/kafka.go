package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// kafkaComponent is the Kafka broker: an external one, or devstack's kfake
// broker process (`devstack kafka`).
type kafkaComponent struct {
	s   *stack
	cfg config.Kafka
}

func newKafka(s *stack, cfg config.Kafka) *kafkaComponent { return &kafkaComponent{s: s, cfg: cfg} }

func (k *kafkaComponent) Name() string                { return "kafka" }
func (k *kafkaComponent) Addr() string                { return k.cfg.BootstrapServers[0] }
func (k *kafkaComponent) Service() string             { return "Kafka" }
func (k *kafkaComponent) AddrVars() string            { return "KAFKA_BOOTSTRAP_SERVERS" }
func (k *kafkaComponent) StartTimeout() time.Duration { return 30 * time.Second }

// StopSignal is SIGTERM: the broker flushes its state to disk and exits.
func (k *kafkaComponent) StopSignal() syscall.Signal { return syscall.SIGTERM }

func (k *kafkaComponent) Owns(args []string) bool {
	return len(args) > 1 && slices.Contains(args[1:], "kafka")
}

// client talks to the configured brokers, with their TLS and SASL
// settings, and gives up quickly: devstack only probes and creates topics.
func (k *kafkaComponent) client() (*kgo.Client, error) {
	return kafka.NewClient(k.cfg, nil, kgo.DialTimeout(2*time.Second), kgo.RetryTimeout(2*time.Second))
}

func (k *kafkaComponent) admin() (*kadm.Client, error) {
	cl, err := k.client()
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// Probe asks for the broker list, which every Kafka broker answers.
func (k *kafkaComponent) Probe(ctx context.Context) error {
	adm, err := k.admin()
	if err != nil {
		return err
	}
	defer adm.Close()
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		return errors.New("metadata lists no brokers")
	}
	return nil
}

func (k *kafkaComponent) Command(ctx context.Context, _ io.Writer) (*exec.Cmd, error) {
	host, port, err := portOf(k.Addr())
	if err != nil {
		return nil, err
	}
	if !isLocalHost(host) {
		return nil, notLocalError(k.Addr(), "its Kafka broker", k.AddrVars())
	}
	// The broker is this very program, so it needs nothing installed.
	return exec.Command(k.s.self, "kafka", "--dir", k.s.absDir,
		"--port", strconv.Itoa(port), "--topic", k.cfg.Topic, "--partitions", strconv.Itoa(k.cfg.Partitions)), nil
}

// Prepare creates the readings topic when the broker lacks it and checks
// its partition count.
func (k *kafkaComponent) Prepare(ctx context.Context, managed bool) error {
	cl, err := k.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = ensureTopic(ctx, cl, k.cfg.Topic, k.cfg.Partitions, false)
	return err
}

func (k *kafkaComponent) Describe(ctx context.Context) string {
	adm, err := k.admin()
	if err != nil {
		return ""
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, k.s.probeTimeout)
	defer cancel()
	n, err := topicPartitions(ctx, adm, k.cfg.Topic)
	switch {
	case err != nil:
		return fmt.Sprintf("topic %s: %v", k.cfg.Topic, err)
	case n == 0:
		return fmt.Sprintf("topic %s missing", k.cfg.Topic)
	}
	return fmt.Sprintf("topic %s (%d partitions)", k.cfg.Topic, n)
}

// topicPartitions returns the partition count of topic, 0 when it does not
// exist.
func topicPartitions(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	d, ok := topics[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return 0, nil
	}
	if d.Err != nil {
		return 0, d.Err
	}
	return len(d.Partitions), nil
}

// ensureTopic makes topic exist with exactly partitions partitions. A
// missing topic is created. With grow, a topic with fewer partitions gets
// more; otherwise a different count is an error. Kafka cannot take
// partitions away, so more partitions than wanted is always an error. It
// returns what it did, for the broker's log.
func ensureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int, grow bool) (string, error) {
	adm := kadm.NewClient(cl)
	have, err := topicPartitions(ctx, adm, topic)
	if err != nil {
		return "", fmt.Errorf("list topic %s: %w", topic, err)
	}
	switch {
	case have == 0:
		resp, err := adm.CreateTopic(ctx, int32(partitions), -1, nil, topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return "", fmt.Errorf("create topic %s: %w %s", topic, err, resp.ErrMessage)
		}
		// Created concurrently, or just now: either way check the count,
		// past the client's cached answer that the topic does not exist.
		cl.PurgeTopicsFromClient(topic)
		if have, err = topicPartitions(ctx, adm, topic); err != nil {
			return "", err
		}
		if have != partitions {
			return "", fmt.Errorf("topic %s has %d partitions after creating it with %d", topic, have, partitions)
		}
		return fmt.Sprintf("created topic %s with %d partitions", topic, partitions), nil
	case have == partitions:
		return fmt.Sprintf("topic %s has %d partitions", topic, have), nil
	case have < partitions && grow:
		resps, err := adm.UpdatePartitions(ctx, partitions, topic)
		if err == nil {
			err = resps.Error()
		}
		if err != nil {
			return "", fmt.Errorf("grow topic %s from %d to %d partitions: %w", topic, have, partitions, err)
		}
		return fmt.Sprintf("grew topic %s from %d to %d partitions", topic, have, partitions), nil
	}
	return "", fmt.Errorf("topic %s has %d partitions, but KAFKA_PARTITIONS=%d: set KAFKA_PARTITIONS=%d, or recreate the topic", topic, have, partitions, have)
}

// runKafkaBroker is `devstack kafka`: a single-broker kfake cluster in the
// foreground, persisted under DIR/kafka. It runs until SIGINT or SIGTERM and
// then saves its state, so a restart keeps every record and offset.
func runKafkaBroker(ctx context.Context, cfg *config.Config, fs *flag.FlagSet, dirFlag *string, args []string, stdout, stderr io.Writer) error {
	_, defPort, err := portOf(cfg.Kafka.BootstrapServers[0])
	if err != nil {
		return err
	}
	port := fs.Int("port", defPort, "port on 127.0.0.1 (default: from KAFKA_BOOTSTRAP_SERVERS)")
	topic := fs.String("topic", cfg.Kafka.Topic, "topic to create (default: KAFKA_TOPIC)")
	partitions := fs.Int("partitions", cfg.Kafka.Partitions, "partitions of the topic (default: KAFKA_PARTITIONS)")
	logLevel := fs.String("log-level", "warn", "broker log level: none, error, warn, info, debug")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *partitions < 1 {
		return usageError{fmt.Sprintf("--partitions=%d: must be at least 1", *partitions)}
	}
	dir, err := filepath.Abs(*dirFlag)
	if err != nil {
		return err
	}
	dataDir := filepath.Join(dir, "kafka")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}

	// With a DataDir that already holds a cluster, kfake restores topics,
	// records, offsets and groups from it and ignores SeedTopics; the seed
	// only shapes a fresh directory. ensureTopic below therefore checks the
	// partition count on every start.
	cluster, err := kfake.NewCluster(
		kfake.Ports(*port),
		kfake.DataDir(dataDir),
		kfake.SeedTopics(int32(*partitions), *topic),
		kfake.DefaultNumPartitions(*partitions),
		kfake.WithLogger(kfake.BasicLogger(stderr, kfakeLevel(*logLevel))),
	)
	if err != nil {
		return fmt.Errorf("kafka broker on 127.0.0.1:%d (data %s): %w", *port, dataDir, err)
	}
	defer func() {
		// Close saves the in-memory state (groups, producer ids, segment
		// indexes) next to the segments already on disk.
		cluster.Close()
		fmt.Fprintf(stdout, "kafka: stopped, state saved in %s\n", dataDir)
	}()

	addrs := cluster.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return err
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	did, err := ensureTopic(setupCtx, cl, *topic, *partitions, true)
	cancel()
	cl.Close()
	if err != nil {
		if strings.Contains(err.Error(), "KAFKA_PARTITIONS") {
			err = fmt.Errorf("%w (the broker's data is in %s; delete it to start empty)", err, dataDir)
		}
		return err
	}
	fmt.Fprintf(stdout, "kafka: dev broker (kfake) listening on %s, data in %s; %s\n", strings.Join(addrs, ","), dataDir, did)
	<-ctx.Done()
	return nil
}

func kfakeLevel(s string) kfake.LogLevel {
	switch strings.ToLower(s) {
	case "debug":
		return kfake.LogLevelDebug
	case "info":
		return kfake.LogLevelInfo
	case "error":
		return kfake.LogLevelError
	case "none":
		return kfake.LogLevelNone
	}
	return kfake.LogLevelWarn
}
