package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"golang.org/x/sync/errgroup"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
)

// noTemporal stands in for the Temporal client of a lease run outside a
// worker: its heartbeats and lease-progress signals go nowhere. Every other
// method is absent (nil embedded interface); a lease uses only these two.
type noTemporal struct{ client.Client }

func (noTemporal) RecordActivityHeartbeat(context.Context, []byte, ...any) error { return nil }
func (noTemporal) SignalWorkflow(context.Context, string, string, string, any) error {
	return nil
}

// leaseInputs deals the partitions round robin to the configured number of
// leases, as StreamIngestWorkflow does. With drain, each lease consumes up
// to ends and returns; otherwise it runs for duration or until stopped.
func (b *bench) leaseInputs(ends map[int32]int64, drain bool, duration time.Duration) []activities.LeaseInput {
	parts := make([]int32, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	n := min(max(b.cfg.Stream.Leases, 1), len(parts))
	ins := make([]activities.LeaseInput, n)
	for i := range ins {
		ins[i] = activities.LeaseInput{
			Topic: b.cfg.Kafka.Topic, Slot: i, Duration: duration,
			MaxBatchRecords: b.cfg.Stream.MaxBatchRecords, MaxBatchWait: b.cfg.Stream.MaxBatchWait,
			AllowedLateness: b.cfg.Stream.AllowedLateness, Window: b.cfg.Stream.Window,
		}
		if drain {
			ins[i].DrainTo = map[int32]int64{}
		}
	}
	for i, p := range parts {
		in := &ins[i%n]
		in.Partitions = append(in.Partitions, p)
		if drain {
			in.DrainTo[p] = ends[p]
		}
	}
	return ins
}

// runLeases runs the ConsumeLease activity once per input, all in
// parallel, each in a Temporal test activity environment (activity info,
// context, worker stop channel) instead of a worker. Closing stop ends them
// as a worker shutdown would: each commits its open batch and returns.
func (b *bench) runLeases(ins []activities.LeaseInput, stop chan struct{}) ([]activities.LeaseResult, error) {
	act := &activities.Stream{
		Timescale: b.ts, MySQL: b.my, Kafka: b.cfg.Kafka, Temporal: noTemporal{},
		Config: b.cfg.Stream, Log: b.log,
	}
	results := make([]activities.LeaseResult, len(ins))
	var g errgroup.Group
	for i, in := range ins {
		g.Go(func() error {
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(log.NewStructuredLogger(b.log))
			env := suite.NewTestActivityEnvironment()
			env.RegisterActivity(act)
			if stop != nil {
				env.SetWorkerStopChannel(stop)
			}
			val, err := env.ExecuteActivity(act.ConsumeLease, in)
			if err != nil {
				return fmt.Errorf("lease %d (partitions %v): %w", in.Slot, in.Partitions, err)
			}
			return val.Get(&results[i])
		})
	}
	return results, g.Wait()
}

// ingest drains every partition through the exactly-once path and checks
// that it landed what the ceiling landed.
func (b *bench) ingest(ctx context.Context, ends map[int32]int64, wantRows int64) (Phase, error) {
	ins := b.leaseInputs(ends, true, 30*time.Minute)
	began := time.Now()
	results, err := b.runLeases(ins, nil)
	if err != nil {
		return Phase{}, err
	}
	elapsed := time.Since(began)
	for _, r := range results {
		if r.End != activities.LeaseEndDrained {
			return Phase{}, fmt.Errorf("lease %d ended %q, want %q", r.Slot, r.End, activities.LeaseEndDrained)
		}
	}
	offsets, err := sink.ReadOffsets(ctx, b.ts, b.cfg.Kafka.Topic)
	if err != nil {
		return Phase{}, err
	}
	var consumed, inserted, dead int64
	for p, o := range offsets {
		if o.NextOffset != ends[p] {
			return Phase{}, fmt.Errorf("partition %d committed at %d, its end is %d", p, o.NextOffset, ends[p])
		}
		consumed += o.NextOffset
		inserted += o.Counters.Inserted
		dead += o.Counters.DeadLetters
	}
	var rows int64
	if err := b.ts.QueryRow(ctx, "SELECT count(*) FROM public.sensor_readings").Scan(&rows); err != nil {
		return Phase{}, err
	}
	if rows != wantRows || inserted != rows || consumed != sumOffsets(ends) {
		return Phase{}, fmt.Errorf("consumed %d of %d records, %d rows (offsets say %d inserted, %d dead letters), the ceiling landed %d",
			consumed, sumOffsets(ends), rows, inserted, dead, wantRows)
	}
	return newPhase(consumed, rows, elapsed), nil
}
