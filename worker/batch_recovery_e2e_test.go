package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

// emulateCrashRecovery does to a run's staging what PostgreSQL's crash
// recovery does to every unlogged table: it empties the run's staging
// partitions, its marker's included, in one statement. The TRUNCATE waits
// at most 100 ms for the locks of the run's open transactions, and tries
// again: waiting longer could deadlock with a transaction that holds one
// partition and wants another (a real crash waits for no one). It returns
// how long it took.
func emulateCrashRecovery(t *testing.T, b *e2e.Batch, runID string) time.Duration {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	for {
		err := pgx.BeginFunc(ctx, b.Stack.Timescale, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '100ms'"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(warehouse.StagingPartitions(runID), ", "))
			return err
		})
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return time.Since(start)
		case errors.As(err, &pgErr) && (pgErr.Code == "55P03" || pgErr.Code == "40P01") && time.Since(start) < time.Minute:
			continue // lock_not_available, deadlock_detected
		default:
			t.Fatalf("empty the staging of run %s: %v", runID, err)
		}
	}
}

// emptyStagingRows empties the run's staging partitions, its marker's
// included, with DELETE in one transaction: what crash recovery leaves,
// for a run one of whose transactions is held open on the staging it has
// read (a TRUNCATE would wait for that transaction, which waits on the
// test).
func emptyStagingRows(t *testing.T, b *e2e.Batch, runID string) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.Stack.Timescale, func(tx pgx.Tx) error {
		for _, p := range warehouse.StagingPartitions(runID) {
			if _, err := tx.Exec(ctx, "DELETE FROM "+p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("empty the staging of run %s: %v", runID, err)
	}
}

// phaseOf is the run's current phase.
func phaseOf(b *e2e.Batch, run client.WorkflowRun) string {
	var phase string
	b.ProgressUntil(run, func(p workflows.Progress) bool { phase = p.Phase; return true })
	return phase
}

// TestBatchRecoversLostStaging: a run's unlogged staging emptied as
// PostgreSQL's crash recovery would, once while the shards are being
// transformed and once as Load starts, is detected by the staging marker,
// re-created and redone by the run itself, which succeeds with the fact
// checksum, rows, buckets and features of an uninterrupted run, and
// records the recovery.
func TestBatchRecoversLostStaging(t *testing.T) {
	// 40 devices in 2 shards: each shard transforms about 30,000 readings,
	// long enough for the progress query to see the phase.
	b := e2e.NewBatch(t, 40)
	in := workflows.BatchInput{Shards: 2}
	reference := b.Wait(b.Start(in))
	if reference.Status != "succeeded" || reference.StagingRecoveries != 0 {
		t.Fatalf("uninterrupted run: status %s, %d staging recoveries", reference.Status, reference.StagingRecoveries)
	}
	t.Logf("uninterrupted run: %d facts, checksum %s", reference.RowsLoaded, reference.FactChecksum)

	// recovered checks that run recovered by itself, with the results of
	// the uninterrupted run.
	recovered := func(t *testing.T, run client.WorkflowRun) {
		t.Helper()
		res := b.Wait(run)
		if res.Status != "succeeded" || res.StagingRecoveries < 1 {
			t.Errorf("status %s after %d staging recoveries; want succeeded after at least 1", res.Status, res.StagingRecoveries)
		}
		if res.FactChecksum != reference.FactChecksum || res.RowsLoaded != reference.RowsLoaded || res.HourlyRows != reference.HourlyRows {
			t.Errorf("after lost staging: checksum %s, %d rows, %d buckets; uninterrupted %s, %d, %d",
				res.FactChecksum, res.RowsLoaded, res.HourlyRows, reference.FactChecksum, reference.RowsLoaded, reference.HourlyRows)
		}
		if res.Features.Rows != reference.Features.Rows || res.Devices != reference.Devices || res.Extracted != reference.Extracted {
			t.Errorf("after lost staging: %d feature rows, %d devices, %d extracted; uninterrupted %d, %d, %d",
				res.Features.Rows, res.Devices, res.Extracted, reference.Features.Rows, reference.Devices, reference.Extracted)
		}
		if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != reference.RowsLoaded {
			t.Errorf("%d fact rows, want %d", n, reference.RowsLoaded)
		}
		if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'succeeded' AND staging_recoveries = $2 AND fact_checksum = $3`,
			res.RunID, res.StagingRecoveries, reference.FactChecksum); n != 1 {
			t.Error("dwh.etl_runs does not record the run as succeeded with its recoveries and checksum")
		}
		staged, err := warehouse.StagedRuns(context.Background(), b.Stack.Timescale)
		if err != nil {
			t.Fatal(err)
		}
		if staged[res.RunID] != 0 {
			t.Errorf("%d staging partitions of the run left after it", staged[res.RunID])
		}
		t.Logf("recovered: %d staging recoveries, %d load attempts, checksum %s", res.StagingRecoveries, res.LoadAttempts, res.FactChecksum)
	}
	for _, moment := range []string{workflows.PhaseTransform, workflows.PhaseLoad} {
		t.Run(moment, func(t *testing.T) {
			b.ClearWarehouse()
			if moment == workflows.PhaseTransform {
				run := b.Start(in)
				p := b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == moment })
				waited := emulateCrashRecovery(t, b, run.GetRunID())
				t.Logf("staging emptied in phase %s at %d/%d (the TRUNCATE waited %s); phase now %s",
					p.Phase, p.ChunksDone, p.ChunksTotal, waited.Round(time.Millisecond), phaseOf(b, run))
				recovered(t, run)
				return
			}
			// Load is short now that the transform writes the facts: it is
			// held at its start by a lock on the first table it writes,
			// LoadDimensions' dim_locations, after that activity checked
			// the marker.
			release := b.HoldTable(t, "dwh.dim_locations")
			run := b.Start(in)
			p := b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == moment })
			emptyStagingRows(t, b, run.GetRunID())
			release()
			t.Logf("staging emptied in phase %s at %d/%d; phase now %s", p.Phase, p.ChunksDone, p.ChunksTotal, phaseOf(b, run))
			recovered(t, run)
		})
	}
}
