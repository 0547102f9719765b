package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
	"github.com/iot-etl/iot-etl/workflows"
)

// produced is the pre-production of a stream run.
type produced struct {
	seconds     float64
	cpuUsPerRow float64 // of this process, which runs the producer and the broker
}

// stream pre-produces the messages into a fresh kfake cluster, then times
// the stream workflow with k worker processes from its start until every
// message is committed, and checks sensor_readings holds exactly one row
// per message.
func (e *env) stream(ctx context.Context, k int) (Run, produced, benchutil.Machine, error) {
	o := e.opts
	stack, err := benchutil.OpenStack(ctx, e.base, "scale")
	if err != nil {
		return Run{}, produced{}, benchutil.Machine{}, err
	}
	defer closeStack(ctx, stack)
	machine := benchutil.Describe(ctx, stack.Timescale)
	if err := seeder.ReplaceDevices(ctx, stack.MySQL, simulate.NewFleet(o.seed, o.streamDevices)); err != nil {
		return Run{}, produced{}, machine, err
	}
	cfg := *stack.Cfg
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(o.partitions), cfg.Kafka.Topic))
	if err != nil {
		return Run{}, produced{}, machine, fmt.Errorf("kfake: %w", err)
	}
	defer cluster.Close()
	// The benchmark's own broker speaks plain Kafka, whatever KAFKA_TLS_*
	// and KAFKA_SASL_* say of the operator's cluster.
	cfg.Kafka = config.Kafka{BootstrapServers: cluster.ListenAddrs(), Topic: cfg.Kafka.Topic, Partitions: cfg.Kafka.Partitions}
	benchutil.UseDevServer(&cfg, e.srv.Addr)
	cfg.Temporal.StreamTaskQueue = fmt.Sprintf("bench-scale-stream-%d", k)
	// The workers size their activity slots by it: every lease must fit
	// in one worker, or the 1-worker run waits for leases to expire.
	cfg.Stream.Leases = o.leases
	cfg.LogLevel = "warn"

	step("stream, %d worker(s): producing %d messages", k, o.messages)
	ends, prod, err := e.produce(ctx, cfg.Kafka)
	if err != nil {
		return Run{}, produced{}, machine, fmt.Errorf("produce: %w", err)
	}
	checkpoint(ctx, stack)

	tc, err := temporalx.Dial(ctx, cfg.Temporal, nil)
	if err != nil {
		return Run{}, prod, machine, err
	}
	defer tc.Close()
	ws, err := startWorkers(&cfg, e.workerBin, e.dir, fmt.Sprintf("stream-%d", k), "stream", k)
	if err != nil {
		return Run{}, prod, machine, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = ws.stop()
		}
	}()
	if err := waitPollers(ctx, tc, cfg.Temporal.StreamTaskQueue, k, ws); err != nil {
		return Run{}, prod, machine, err
	}
	m, err := newMeter(ctx, ws, e.srv.Pid(), stack.Locations, stack.Timescale)
	if err != nil {
		return Run{}, prod, machine, err
	}

	step("stream, %d worker(s): starting the stream with %d leases over %d partitions", k, o.leases, o.partitions)
	topic := cfg.Kafka.Topic
	before, err := m.read()
	if err != nil {
		return Run{}, prod, machine, err
	}
	began := time.Now()
	wf, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.StreamWorkflowID(topic), TaskQueue: cfg.Temporal.StreamTaskQueue},
		workflows.StreamWorkflowName, workflows.StreamInput{Topic: topic, Leases: o.leases})
	if err != nil {
		return Run{}, prod, machine, err
	}
	timeout := 10*time.Minute + time.Duration(o.messages)*time.Millisecond // generous: 1,000 messages/s
	err = waitCommitted(ctx, timeout, stack.Timescale, topic, ends, ws)
	elapsed := time.Since(began)
	if err != nil {
		return Run{}, prod, machine, err
	}
	after, err := m.read()
	if err != nil {
		return Run{}, prod, machine, err
	}

	var rows int64
	if err := stack.Timescale.QueryRow(ctx, "SELECT count(*) FROM public.sensor_readings").Scan(&rows); err != nil {
		return Run{}, prod, machine, err
	}
	if rows != o.messages {
		return Run{}, prod, machine, fmt.Errorf("sensor_readings holds %d rows after %d messages", rows, o.messages)
	}
	r := newRun(k, rows, elapsed, after.since(before))
	step("stream, %d worker(s): %d rows in %.1f s (%.0f rows/s); stopping the stream and the workers", k, r.Rows, r.Seconds, r.RowsPerS)
	if err := tc.SignalWorkflow(ctx, wf.GetID(), "", workflows.SignalStop, nil); err != nil {
		return r, prod, machine, fmt.Errorf("stop the stream: %w", err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := wf.Get(stopCtx, nil); err != nil {
		return r, prod, machine, fmt.Errorf("stream workflow: %w", err)
	}
	stopped = true
	return r, prod, machine, ws.stop()
}

// produce publishes the messages with the simulator, unpaced and none
// malformed, replaying event time as bench/stream does: each device once
// per minute of event time, ending a minute before now, so every
// (device_id, time) is unique and nothing is late. It returns the topic's
// end offsets.
func (e *env) produce(ctx context.Context, kc config.Kafka) (map[int32]int64, produced, error) {
	o := e.opts
	cl, err := kafka.NewClient(kc, nil, kafka.ProducerOptions(kc.Topic)...)
	if err != nil {
		return nil, produced{}, err
	}
	defer cl.Close()
	step := time.Minute / time.Duration(o.streamDevices)
	sim, err := producer.New(producer.Options{
		Seed: o.seed, Devices: o.streamDevices, MaxMessages: o.messages, AnomalyRatio: 0.01,
		Start: time.Now().Add(-time.Duration(o.messages)*step - time.Minute).Truncate(time.Minute), Step: step,
	})
	if err != nil {
		return nil, produced{}, err
	}
	cpuBefore, err := benchutil.ReadProcCPU(os.Getpid())
	if err != nil {
		return nil, produced{}, err
	}
	rep, err := sim.Run(ctx, producer.KafkaPublisher{Client: cl})
	if err != nil {
		return nil, produced{}, err
	}
	cpuAfter, err := benchutil.ReadProcCPU(os.Getpid())
	if err != nil {
		return nil, produced{}, err
	}
	ends, err := kafka.HighWatermarks(ctx, cl, kc.Topic)
	if err != nil {
		return nil, produced{}, err
	}
	var total int64
	for _, n := range ends {
		total += n
	}
	if total != o.messages || rep.Good != o.messages {
		return nil, produced{}, fmt.Errorf("the topic holds %d records, %d good, after producing %d", total, rep.Good, o.messages)
	}
	return ends, produced{seconds: math.Round(rep.Elapsed.Seconds()*1000) / 1000, cpuUsPerRow: round((cpuAfter.Self - cpuBefore.Self) * 1e6 / float64(o.messages))}, nil
}

// waitCommitted waits until every partition's committed next offset
// reaches its end: the stream has committed every message, each in the
// same transaction as its reading.
func waitCommitted(ctx context.Context, timeout time.Duration, ts *pgxpool.Pool, topic string, ends map[int32]int64, ws workers) error {
	err := benchutil.WaitFor(ctx, timeout, func() (bool, error) {
		if err := ws.exited(); err != nil {
			return false, err
		}
		offs, err := sink.ReadOffsets(ctx, ts, topic)
		if err != nil {
			return false, err
		}
		for p, end := range ends {
			if offs[p].NextOffset < end {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the stream to commit every message: %w", err)
	}
	return nil
}
