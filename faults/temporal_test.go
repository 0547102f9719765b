//go:build faults

package faults_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/workflows"
)

const (
	// temporalDown is how long the Temporal server stays killed in the
	// stream: longer than the leases' 5 s heartbeat timeout, so the server
	// gives up on them and the workflow starts new ones.
	temporalDown = 5 * time.Second
	// batchTemporalDown is how long it stays killed in the batch.
	batchTemporalDown = 3 * time.Second
	// crashPartitions are the partitions of the stream's topic.
	crashPartitions = 4
)

// TestStreamTemporalCrash kills the Temporal server (kill -9 of its process
// group; it persists to a SQLite file) three times while the leases run
// under a 2,500 msg/s load, 1 s into the load and after each recovery, and
// starts it again after 5 s each time. The
// load goes on throughout (it talks to Kafka only). The stream must catch
// up exactly, as the same workflow (its first run or the Continue-As-New
// chain from it), and still answer queries and signals.
func TestStreamTemporalCrash(t *testing.T) {
	t.Parallel()
	const crashes = 3
	r := newRig(t, rigOptions{ownTemporal: true, partitions: crashPartitions})
	r.StartWorker()
	r.start()
	firstRun := r.run.GetRunID()
	load := r.load(loadRate, 0)
	var worst time.Duration
	for i := range crashes {
		before := load.Sent()
		load.WaitSent(before+loadRate, time.Minute) // 1 s of load
		// Killed while the leases run and commit.
		r.StatusUntil("with both leases running", func(st workflows.StreamStatus) bool { return runningLeases(st) == 2 })
		waitUntil(t, "commits before the crash", time.Minute, func() bool { return r.Committed() > before })
		committed := r.Committed()
		r.temporal.Kill()
		t.Logf("crash %d: Temporal killed -9 with %d committed, %d sent", i+1, committed, load.Sent())
		time.Sleep(temporalDown)
		atRestart := r.Committed()
		claims := r.claims()
		restart := time.Now()
		r.temporal.Restart()
		up := time.Now()
		t.Logf("crash %d: Temporal up again %s after the restart began; %d records committed while it was down", i+1,
			up.Sub(restart).Round(100*time.Millisecond), atRestart-committed)
		// Recovered: a lease started after the restart claimed every
		// partition (a newer epoch, which fences the leases from before
		// the crash), 1,000 more records are committed since, and the
		// status query answers with both leases running.
		var claimed int64 = -1 // committed when every partition was claimed again
		waitUntil(t, "commits of new leases after the restart", 2*time.Minute, func() bool {
			if claimed < 0 {
				for p, c := range r.claims() {
					if c.epoch <= claims[p].epoch {
						return false
					}
				}
				claimed = r.Committed()
			}
			if r.Committed() < claimed+1000 {
				return false
			}
			st, err := r.StatusErr()
			return err == nil && runningLeases(st) == 2
		})
		rec := time.Since(up)
		worst = max(worst, rec)
		t.Logf("crash %d: new leases committing %s after the restart", i+1, rec.Round(100*time.Millisecond))
	}
	rep := load.Stop()
	lost, dup := r.settle(rep, 3*time.Minute)

	chain := runChain(t, r.TC, r.ID(), firstRun)
	// The status query answers, with every record in its totals.
	st := r.StatusUntil("with every record", func(st workflows.StreamStatus) bool { return st.Totals.Records == rep.Sent })
	if st.State != workflows.StreamRunning {
		t.Errorf("status after the crashes: state %q, want %q", st.State, workflows.StreamRunning)
	}
	final := r.stop()
	if final.State != workflows.StreamStopped || final.Totals.Records != rep.Sent {
		t.Errorf("after the stop signal: state %q, %d records; want %q, %d", final.State, final.Totals.Records, workflows.StreamStopped, rep.Sent)
	}
	t.Logf("final: %d runs in the chain, %d lease attempts, %d failures, last error %q", len(chain), final.LeaseAttempts, final.LeaseFailures, final.LastError)
	faultenv.Record(t, faultenv.Figures{Scenario: "temporal crash: stream", Faults: crashes, Messages: rep.Sent, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: "recovery: restart until leases started after it claimed every partition and committed 1,000 records, and the status query answers with both leases running"})
}

// claim is a partition's lease epoch and committed next offset.
type claim struct{ epoch, next int64 }

// claims reads the lease epoch and next offset of every partition of the
// topic; an error (the database is not at fault here) fails the test.
func (r *rig) claims() map[int32]claim {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := r.Stack.Timescale.Query(ctx, `SELECT partition, lease_epoch, next_offset FROM public.stream_offsets WHERE topic = $1`, r.Topic)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int32]claim{}
	for rows.Next() {
		var p int32
		var c claim
		if err := rows.Scan(&p, &c.epoch, &c.next); err != nil {
			r.t.Fatal(err)
		}
		out[p] = c
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	if len(out) != crashPartitions {
		r.t.Fatalf("stream_offsets has %d partitions of %s, want %d", len(out), r.Topic, crashPartitions)
	}
	return out
}

func runningLeases(st workflows.StreamStatus) int {
	n := 0
	for _, l := range st.Leases {
		if l.Running {
			n++
		}
	}
	return n
}

// runChain returns the runs of workflow id from first on, following
// Continue-As-New, and fails the test unless the last of them is the
// workflow's current run and still running: the crashes neither ended the
// workflow nor started another one in its place.
func runChain(t *testing.T, tc client.Client, id, first string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	chain := []string{first}
	for {
		run := chain[len(chain)-1]
		d, err := tc.DescribeWorkflow(ctx, id, run)
		if err != nil {
			t.Fatalf("describe run %s: %v", run, err)
		}
		status := d.Status
		if status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			break
		}
		if status != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			t.Fatalf("run %s of the stream ended %s", run, status)
		}
		next, err := continuedAs(ctx, tc, id, run)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, next)
	}
	d, err := tc.DescribeWorkflow(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if cur := d.WorkflowExecution.RunID; cur != chain[len(chain)-1] {
		t.Fatalf("the stream's current run is %s, not %s, the end of the chain from its first run %s", cur, chain[len(chain)-1], first)
	}
	return chain
}

// continuedAs is the run that run continued as.
func continuedAs(ctx context.Context, tc client.Client, id, run string) (string, error) {
	iter := tc.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return "", err
		}
		if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			return a.GetNewExecutionRunId(), nil
		}
	}
	return "", fmt.Errorf("run %s of %s: no continued-as-new event", run, id)
}

// TestBatchTemporalCrash kills the Temporal server (kill -9) once in each
// of the extract, transform and load phases of a batch run, starting it
// again after 3 s each time. The run must complete with exactly the results
// of an uninterrupted run of the same window.
//
// Each phase is held open while the server is down by a lock the test takes
// on a table only that phase needs (phaseGates): its activities are in
// flight, blocked, when the server dies, however fast or slow the machine.
// The lock of the next phase is taken before the current one is released.
func TestBatchTemporalCrash(t *testing.T) {
	t.Parallel()
	srv := faultenv.StartTemporal(t)
	b := e2e.NewBatchWith(t, e2e.BatchOptions{Temporal: srv.Addr, TC: srv.Client(), Devices: crashBatchDevices, NoWorker: true})
	// Enough activity slots for every extract activity at once: the
	// readings chunks wait on the lock of the extract phase, and with the
	// default 4 slots they could take them all before the devices and
	// locations extracts, which would then never run.
	b.StartWorker("-batch-activities", "12")
	reference := b.Wait(b.Start(workflows.BatchInput{}))
	t.Logf("reference: %d rows, %d hourly rows, phases %v ms", reference.RowsLoaded, reference.HourlyRows, reference.PhaseMillis)
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if reference.Status != batch.StatusSucceeded || reference.RowsLoaded != readings || readings == 0 {
		t.Fatalf("reference run: %s, %d rows loaded; want succeeded, the window's %d readings", reference.Status, reference.RowsLoaded, readings)
	}
	b.ClearWarehouse()

	phases := []string{workflows.PhaseExtract, workflows.PhaseTransform, workflows.PhaseLoad}
	release := b.HoldTable(t, phaseGates[phases[0]])
	run := b.Start(workflows.BatchInput{})
	var worst time.Duration
	var up time.Time
	for i, phase := range phases {
		// In the phase, with what the lock does not hold done: the short
		// activities (extract's devices and locations, load's dimensions)
		// have no heartbeat, so one whose completion the crash lost would
		// be retried only after its 2-minute start-to-close timeout.
		p := b.ProgressUntil(run, func(p workflows.Progress) bool {
			return batchPhaseOrder(p.Phase) > batchPhaseOrder(phase) || p.Phase == phase && p.ChunksDone >= unlockedChunks[phase]
		})
		if p.Phase != phase {
			t.Fatalf("crash %d: the run is in phase %s, past %s: the lock on %s did not hold it", i+1, p.Phase, phase, phaseGates[phase])
		}
		next := func() {}
		if i+1 < len(phases) {
			next = b.HoldTable(t, phaseGates[phases[i+1]])
		}
		srv.Kill()
		t.Logf("crash %d: Temporal killed -9 in phase %s at %d/%d", i+1, p.Phase, p.ChunksDone, p.ChunksTotal)
		time.Sleep(batchTemporalDown)
		srv.Restart()
		up = time.Now()
		release()
		release = next
		// Recovered: the run enters the next phase (or completes, after
		// the last crash).
		if i+1 < len(phases) {
			next := b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase != phase })
			if next.Phase != phases[i+1] {
				t.Fatalf("after the crash in %s: phase %s, want %s", phase, next.Phase, phases[i+1])
			}
			worst = max(worst, time.Since(up))
			t.Logf("crash %d: phase %s %s after the restart", i+1, next.Phase, time.Since(up).Round(100*time.Millisecond))
		}
	}
	res := b.Wait(run)
	worst = max(worst, time.Since(up))
	t.Logf("completed %s after the last restart: %d rows, %d hourly rows, phases %v ms", time.Since(up).Round(100*time.Millisecond), res.RowsLoaded, res.HourlyRows, res.PhaseMillis)
	if res.Status != batch.StatusSucceeded || res.FactChecksum != reference.FactChecksum || res.RowsLoaded != reference.RowsLoaded || res.HourlyRows != reference.HourlyRows {
		t.Errorf("after the crashes: %s, checksum %s rows %d hourly %d; uninterrupted %s, %s %d %d", res.Status,
			res.FactChecksum, res.RowsLoaded, res.HourlyRows, reference.Status, reference.FactChecksum, reference.RowsLoaded, reference.HourlyRows)
	}
	// Each crash fell inside its phase: the phase lasted (in workflow time)
	// at least as long as the server was down, where the uninterrupted
	// run's took a fraction of that.
	for _, phase := range phases {
		if ms := res.PhaseMillis[phase]; ms < batchTemporalDown.Milliseconds() {
			t.Errorf("phase %s lasted %d ms, less than the %s the server was down: the crash was not inside it", phase, ms, batchTemporalDown)
		}
	}
	if res.Features.Rows != reference.Features.Rows {
		t.Errorf("features: %d rows, uninterrupted %d", res.Features.Rows, reference.Features.Rows)
	}
	facts := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`)
	if facts != reference.RowsLoaded {
		t.Errorf("the warehouse holds %d fact rows, the uninterrupted run loaded %d", facts, reference.RowsLoaded)
	}
	lost, dup := max(0, reference.RowsLoaded-facts), max(0, res.RowsLoaded-reference.RowsLoaded)
	faultenv.Record(t, faultenv.Figures{Scenario: "temporal crash: batch", Faults: len(phases), Messages: res.RowsLoaded, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: "recovery: restart until the run enters the next phase (completes, after the crash in load)"})
}

// phaseGates are the tables that hold a batch phase open while the test
// locks them: each is read or written by that phase alone.
var phaseGates = map[string]string{
	workflows.PhaseExtract:   "public.sensor_readings",            // ExtractReadings reads it
	workflows.PhaseTransform: "dwh.fact_sensor_readings_enriched", // Transform reads it first, then writes the run's facts into it
	workflows.PhaseLoad:      "dwh.fact_hourly_agg",               // LoadFacts rewrites the buckets
}

// unlockedChunks is how many of a phase's chunks (progress.ChunksDone) do
// not need its gate table and complete while the phase is held.
var unlockedChunks = map[string]int{workflows.PhaseExtract: 2, workflows.PhaseTransform: 0, workflows.PhaseLoad: 1}

// batchPhaseOrder is the place of phase in a run without failures; the
// others come last.
func batchPhaseOrder(phase string) int {
	for i, p := range []string{workflows.PhaseStarting, workflows.PhaseExtract, workflows.PhaseTransform, workflows.PhaseLoad,
		workflows.PhaseExport, workflows.PhaseFinishing, workflows.PhaseDone} {
		if p == phase {
			return i
		}
	}
	return 100
}

// crashBatchDevices sizes the seed: about 57k readings in the window, so
// that each of extract, transform and load lasts a few hundred ms (7 to 10
// chunk activities), enough to be caught by the 50 ms progress polls, and
// the reference run takes under 2 s.
const crashBatchDevices = 40
