package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/health"
	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
)

func init() {
	register(command{
		Name:    "simulate",
		Summary: "publish live readings of the seeded fleet to the Kafka topic, paced, with anomalies and malformed messages",
		Run:     runSimulate,
	})
}

// brokerTimeout bounds the start-up probe of the broker and the topic.
const brokerTimeout = 15 * time.Second

func runSimulate(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "simulate", "[--devices N] [--rate R] [--duration D] [--anomaly-ratio x] [--bad-ratio y] [--seed S] [--max-messages M] [--start T] [--test-mode]")
	devices := fs.Int("devices", 50, "number of devices; with the --devices and --seed of `starter seed` they are all in the registry")
	rate := fs.Float64("rate", 100, "messages per second over all devices; 0 sends as fast as the broker takes them")
	duration := fs.Duration("duration", time.Minute, "how long to send; 0 to send until --max-messages or Ctrl-C")
	maxMessages := fs.Int64("max-messages", 0, "stop after this many messages; 0 for no limit")
	anomalyRatio := fs.Float64("anomaly-ratio", 0.01, "share of readings with an injected anomaly: spike, out of range or null value (0..1)")
	badRatio := fs.Float64("bad-ratio", 0, "share of malformed messages, spread evenly over every quarantine reason (0..1)")
	seed := fs.Int64("seed", 42, "seed of the fleet and of every random choice")
	start := fs.String("start", "", "replay event time from this RFC 3339 instant, one message every 1/rate s, instead of stamping the wall clock")
	testMode := fs.Bool("test-mode", false, "print the messages to stdout as \"key value\" lines instead of sending them; the report goes to stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	opts := producer.Options{
		Seed: *seed, Devices: *devices, Rate: *rate, Duration: *duration, MaxMessages: *maxMessages,
		AnomalyRatio: *anomalyRatio, BadRatio: *badRatio,
	}
	if *start != "" {
		t, err := time.Parse(time.RFC3339Nano, *start)
		if err != nil {
			return fmt.Errorf("%w: --start %q: want an RFC 3339 time such as 2026-01-01T00:00:00Z", errUsage, *start)
		}
		opts.Start = t
	}
	topic := app.Cfg.Kafka.Topic
	opts.Progress = func(r producer.Report) {
		app.Log.Info("simulating", "topic", topic, "sent", r.Sent, "bad", r.BadTotal(), "elapsed", r.Elapsed.Round(time.Second))
	}
	sim, err := producer.New(opts)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}

	var (
		pub    producer.Publisher
		report = app.Out
		dest   = "topic " + topic
	)
	if *testMode {
		pub = producer.NewWriterPublisher(app.Out)
		report, dest = app.Err, "stdout (test mode, nothing sent)"
	} else {
		cl, err := producerClient(ctx, app)
		if err != nil {
			return err
		}
		defer cl.Close()
		pub = producer.KafkaPublisher{Client: cl}
	}
	rep, runErr := sim.Run(ctx, pub)
	printSimulateReport(report, rep, opts, dest)
	return runErr
}

// producerClient connects the idempotent, batching producer and checks that
// the broker answers and the topic exists, so a wrong address fails at once
// with the address instead of after the produce retries.
func producerClient(ctx context.Context, app *App) (*kgo.Client, error) {
	cfg := app.Cfg.Kafka
	watch := kafka.NewConnWatch(cfg)
	cl, err := kafka.NewClient(cfg, nil, append(kafka.ProducerOptions(cfg.Topic), watch.Opt())...)
	if err != nil {
		return nil, err
	}
	if err := probeTopic(ctx, cl, watch, cfg.BootstrapServers, cfg.Topic); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// probeTopic checks that a broker at addrs answers and that topic exists.
// A refused certificate or password fails at once, named by its layer.
func probeTopic(ctx context.Context, cl *kgo.Client, watch *kafka.ConnWatch, addrs []string, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		if d := health.DiagnoseKafka(err, watch); health.LayerOf(d) != "" {
			return fmt.Errorf("kafka broker %s: %w", strings.Join(addrs, ","), d)
		}
		return fmt.Errorf("kafka broker %s unreachable (KAFKA_BOOTSTRAP_SERVERS): %w", strings.Join(addrs, ","), err)
	}
	if _, err := kafka.Partitions(ctx, cl, topic); err != nil {
		if d := health.DiagnoseKafka(err, watch); health.LayerOf(d) != "" {
			return fmt.Errorf("kafka topic %s: %w", topic, d)
		}
		return fmt.Errorf("%w (KAFKA_TOPIC; the dev stack creates it)", err)
	}
	return nil
}

func printSimulateReport(w io.Writer, r producer.Report, o producer.Options, dest string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "sent\t%d messages from %d devices (seed %d) to %s\n", r.Sent, o.Devices, o.Seed, dest)
	fmt.Fprintf(tw, "good\t%d\n", r.Good)
	fmt.Fprintf(tw, "anomalous\t%d", r.AnomalousTotal())
	for _, k := range []simulate.Kind{simulate.Spike, simulate.OutOfRange, simulate.Null} {
		fmt.Fprintf(tw, " %s=%d", k, r.Anomalous[k])
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "bad\t%d", r.BadTotal())
	for _, reason := range producer.BadReasons() {
		fmt.Fprintf(tw, " %s=%d", reason, r.Bad[reason])
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "failed\t%d\n", r.Failed)
	fmt.Fprintf(tw, "elapsed\t%s\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "rate\t%.0f messages/s\n", r.PerSecond())
	if r.Stopped {
		fmt.Fprintf(tw, "stopped\tby signal before the limits\n")
	}
	tw.Flush()
}
