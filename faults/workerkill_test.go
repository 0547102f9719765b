//go:build faults

package faults_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

const (
	streamWorkerKills = 20
	// streamKillMessages last 80 s at loadRate, longer than the 20 kills
	// take (about 57 s of seeded pauses, from the first commits on).
	streamKillMessages = 200_000
	// batchKillDevices gives every phase of a run a few seconds of work.
	batchKillDevices = 300
)

// TestStreamWorkerKills kills one of the two worker processes serving the
// stream with -9, 20 times at random moments (1–5 s apart, seeded), while
// the simulator publishes 200,000 messages at 2,500 msg/s: one that runs a
// lease at that moment if any does. A replacement starts right away each
// time, so two workers keep serving. Every lease a kill ended is a lease
// failure of the stream, and the stream is exact at the end.
func TestStreamWorkerKills(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	workers := []*testenv.Process{r.StartWorker(), r.StartNamedWorker("worker-2")}
	r.start()
	load := r.load(loadRate, streamKillMessages)
	waitUntil(t, "the stream committing", time.Minute, func() bool { return r.Committed() >= 5000 })
	watch := r.watchOffsets()

	rng := rand.New(rand.NewPCG(5, 20))
	var kills []streamKill
	var leasesEnded int64
	for i := range streamWorkerKills {
		time.Sleep(time.Second + time.Duration(rng.Int64N(int64(4*time.Second))))
		if load.Sent() >= streamKillMessages {
			t.Fatalf("kill %d: the load has ended; the kills must land while it runs", i+1)
		}
		// The victim runs a lease when one of the two does.
		leases := r.leasesByPid()
		var holders []int
		for slot, w := range workers {
			if leases[w.Pid()] > 0 {
				holders = append(holders, slot)
			}
		}
		slot := rng.IntN(len(workers))
		if len(holders) > 0 {
			slot = holders[rng.IntN(len(holders))]
		}
		k := streamKill{at: time.Now(), before: r.partitionOffsets()}
		ended := leases[workers[slot].Pid()]
		workers[slot].Kill()
		kills = append(kills, k)
		leasesEnded += ended
		workers[slot] = r.StartNamedWorker(fmt.Sprintf("worker-%d.%d", slot+1, i+1))
		t.Logf("kill %d: worker %d (running %d leases) killed -9 with %d committed, %d sent; replacement started", i+1, slot+1, ended, offsetTotal(k.before), load.Sent())
	}
	rep := load.Wait()
	lost, dup := r.settle(rep, 3*time.Minute)
	samples := watch.stop()

	var worst time.Duration
	for i, k := range kills {
		rec, ok := k.recovery(samples)
		if !ok {
			t.Errorf("kill %d: the committed offsets never moved again", i+1)
			continue
		}
		t.Logf("kill %d: every partition committing again after %s", i+1, rec.Round(100*time.Millisecond))
		worst = max(worst, rec)
	}
	st := r.stop()
	t.Logf("final: %d lease attempts, %d failures (%d leases ended by the kills), last error %q", st.LeaseAttempts, st.LeaseFailures, leasesEnded, st.LastError)
	if leasesEnded == 0 || st.LeaseFailures < leasesEnded {
		t.Errorf("the kills ended %d running leases, the stream booked %d lease failures", leasesEnded, st.LeaseFailures)
	}
	t.Logf("tally: kills %d, lost %d, duplicated %d", len(kills), lost, dup)
	faultenv.Record(t, faultenv.Figures{Scenario: "worker kill: stream", Faults: len(kills), Messages: rep.Sent, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: "recovery: from a kill until every partition committed past its offset at the kill (or up to its high watermark)"})
}

// streamKill is a kill and the committed offsets just before it.
type streamKill struct {
	at     time.Time
	before map[int32]int64
}

// recovery is how long after the kill every partition had committed past
// its offset at the kill, or everything there was to commit.
func (k streamKill) recovery(samples []offsetSample) (time.Duration, bool) {
	for _, s := range samples {
		if s.at.Before(k.at) {
			continue
		}
		moved := true
		for p, before := range k.before {
			if s.next[p] <= before && s.next[p] < s.hwm[p] {
				moved = false
			}
		}
		if moved {
			return s.at.Sub(k.at), true
		}
	}
	return 0, false
}

// offsetSample is the committed offsets and high watermarks at a moment.
type offsetSample struct {
	at   time.Time
	next map[int32]int64
	hwm  map[int32]int64
}

type offsetWatch struct {
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	samples []offsetSample
}

// watchOffsets samples the committed offsets and high watermarks every
// 100 ms until stopped, skipping a sample that fails.
func (r *rig) watchOffsets() *offsetWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &offsetWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			hwm, herr := kafka.HighWatermarks(qctx, r.Prod, r.Topic)
			offsets, oerr := sink.ReadOffsets(qctx, r.Stack.Timescale, r.Topic)
			qcancel()
			if herr == nil && oerr == nil {
				s := offsetSample{at: time.Now(), next: map[int32]int64{}, hwm: hwm}
				for p, o := range offsets {
					s.next[p] = o.NextOffset
				}
				w.mu.Lock()
				w.samples = append(w.samples, s)
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	r.t.Cleanup(func() { w.stop() })
	return w
}

func (w *offsetWatch) stop() []offsetSample {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples
}

// leasesByPid counts the stream's running leases by the pid of the worker
// that runs them, as the server sees them.
func (r *rig) leasesByPid() map[int]int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc, err := r.TC.DescribeWorkflow(ctx, r.ID(), "")
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[int]int64{}
	for _, a := range desc.RawResponse.GetPendingActivities() {
		if a.GetActivityType().GetName() != "ConsumeLease" || a.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED {
			continue
		}
		pid, _, _ := strings.Cut(a.GetLastWorkerIdentity(), "@")
		if n, err := strconv.Atoi(pid); err == nil {
			out[n]++
		}
	}
	return out
}

// partitionOffsets are the committed offsets of the topic by partition.
func (r *rig) partitionOffsets() map[int32]int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offsets, err := sink.ReadOffsets(ctx, r.Stack.Timescale, r.Topic)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, o := range offsets {
		out[p] = o.NextOffset
	}
	return out
}

func offsetTotal(offsets map[int32]int64) int64 {
	var n int64
	for _, o := range offsets {
		n += o
	}
	return n
}

// TestBatchWorkerKills kills the batch worker with -9 10 times during a
// run, starting a new one right away each time. The kills aim at Extract
// (3), Transform (4) and Load (3): each waits until the worker runs a
// heartbeating activity of its phase or a later one (a short phase may be
// over before all its kills), then a seeded random 0–500 ms more; at least
// one must hit each of the three. Load is held open until its kills are
// done by a lock on dwh.fact_hourly_agg, which LoadFacts rewrites (its
// LoadFacts wait there, heartbeating): it is too short now to be caught
// otherwise. The run completes with exactly the warehouse of an
// uninterrupted run of the same window.
func TestBatchWorkerKills(t *testing.T) {
	b := e2e.NewBatchWith(t, e2e.BatchOptions{Devices: batchKillDevices})
	began := time.Now()
	ref := b.Wait(b.Start(workflows.BatchInput{}))
	refTook := time.Since(began)
	refRows := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`)
	if refRows != ref.RowsLoaded {
		t.Fatalf("uninterrupted run: %d fact rows, result says %d", refRows, ref.RowsLoaded)
	}
	t.Logf("uninterrupted run: %d rows in %s", ref.RowsLoaded, refTook.Round(100*time.Millisecond))
	b.ClearWarehouse()

	rng := rand.New(rand.NewPCG(5, 10))
	holdLoad := b.HoldTable(t, phaseGates[workflows.PhaseLoad])
	began = time.Now()
	run := b.Start(workflows.BatchInput{})
	kills := 0
	killedIn := map[string]int{}
	for i, target := range batchKillPlan {
		for waited := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			m := batchKillMoment(t, b.TC, run, b.Worker.Pid())
			if !m.running {
				t.Fatalf("the run ended after %d of %d kills, in %s: the kills must land in a running run", i, len(batchKillPlan), time.Since(began).Round(100*time.Millisecond))
			}
			if m.heartbeating && batchPhaseRank[m.phase] >= batchPhaseRank[target] {
				break
			}
			if time.Since(waited) > 2*time.Minute {
				t.Fatalf("kill %d: the worker ran no heartbeating activity of phase %s or later in 2 minutes", i+1, target)
			}
		}
		time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Millisecond))))
		m := batchKillMoment(t, b.TC, run, b.Worker.Pid())
		b.Worker.Kill()
		kills++
		killedIn[m.phase]++
		b.StartWorker()
		t.Logf("kill %d: worker killed -9 at %s in phase %s (running %s); replacement started", i+1, time.Since(began).Round(100*time.Millisecond), m.phase, m.activities)
	}
	holdLoad()
	t.Logf("kills by phase: %v", killedIn)
	for _, phase := range []string{workflows.PhaseExtract, workflows.PhaseTransform, workflows.PhaseLoad} {
		if killedIn[phase] == 0 {
			t.Errorf("no kill landed while the worker ran an activity of phase %s", phase)
		}
	}
	lastKill := time.Now()
	res := b.Wait(run)
	recovery := time.Since(lastKill)
	t.Logf("run under kills: %d rows in %s (uninterrupted %s), load attempts %d, completed %s after the last kill",
		res.RowsLoaded, time.Since(began).Round(100*time.Millisecond), refTook.Round(100*time.Millisecond), res.LoadAttempts, recovery.Round(100*time.Millisecond))

	if res.FactChecksum != ref.FactChecksum || res.RowsLoaded != ref.RowsLoaded || res.HourlyRows != ref.HourlyRows {
		t.Errorf("under kills: checksum %s rows %d buckets %d; uninterrupted %s %d %d",
			res.FactChecksum, res.RowsLoaded, res.HourlyRows, ref.FactChecksum, ref.RowsLoaded, ref.HourlyRows)
	}
	if res.Features.Rows != ref.Features.Rows {
		t.Errorf("features: %d rows, uninterrupted %d", res.Features.Rows, ref.Features.Rows)
	}
	rows := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`)
	distinct := b.Count(`SELECT count(DISTINCT (device_id, time)) FROM dwh.fact_sensor_readings_enriched`)
	if rows != distinct {
		t.Errorf("fact table: %d rows, %d distinct (device_id, time)", rows, distinct)
	}
	if distinct != refRows {
		t.Errorf("fact table: %d distinct rows, uninterrupted %d", distinct, refRows)
	}
	lost := max(0, refRows-distinct)
	dup := rows - distinct + max(0, distinct-refRows)
	t.Logf("tally: kills %d, lost %d, duplicated %d", kills, lost, dup)
	faultenv.Record(t, faultenv.Figures{Scenario: "worker kill: batch", Faults: kills, Messages: res.RowsLoaded, Lost: lost, Duplicated: dup, Recovery: recovery,
		Notes: "recovery: from the last kill until the run completed"})
}

// batchKillPlan is the phase each kill of TestBatchWorkerKills waits for.
var batchKillPlan = []string{
	workflows.PhaseExtract, workflows.PhaseExtract, workflows.PhaseExtract,
	workflows.PhaseTransform, workflows.PhaseTransform, workflows.PhaseTransform, workflows.PhaseTransform,
	workflows.PhaseLoad, workflows.PhaseLoad, workflows.PhaseLoad,
}

// batchPhaseRank orders the phases a run goes through.
var batchPhaseRank = map[string]int{
	workflows.PhaseStarting: 1, workflows.PhaseRecovering: 1, workflows.PhaseExtract: 2, workflows.PhaseTransform: 3,
	workflows.PhaseLoad: 4, workflows.PhaseExport: 5, workflows.PhaseFinishing: 6,
}

// batchActivityPhases are the phases of the batch activities, by name.
var batchActivityPhases = map[string]string{
	"StartRun": workflows.PhaseStarting, "SweepStaging": workflows.PhaseStarting, "ResetStaging": workflows.PhaseRecovering,
	"ExtractDevices": workflows.PhaseExtract, "ExtractLocations": workflows.PhaseExtract, "ExtractReadings": workflows.PhaseExtract, "RecordRejects": workflows.PhaseExtract,
	"Transform":      workflows.PhaseTransform,
	"LoadDimensions": workflows.PhaseLoad, "LoadFacts": workflows.PhaseLoad, "RefreshAggregates": workflows.PhaseLoad,
	"ExportFeatures": workflows.PhaseExport,
	"FinishRun":      workflows.PhaseFinishing, "CleanupStaging": workflows.PhaseFinishing, "MarkRun": workflows.PhaseFinishing,
}

// batchUnwatched are the activities without a heartbeat timeout: a worker
// killed while it runs one is noticed only at their start-to-close
// timeout, minutes later.
var batchUnwatched = map[string]bool{"StartRun": true, "SweepStaging": true, "ResetStaging": true,
	"ExtractDevices": true, "ExtractLocations": true, "CleanupStaging": true, "MarkRun": true}

// killMoment is what a batch worker is doing, as the server sees it (a
// query would wait for a killed worker's sticky queue to time out).
type killMoment struct {
	running bool // the run is running
	// phase is the latest phase of the activities the worker runs,
	// "idle" when it runs none.
	phase string
	// heartbeating: one of them has a heartbeat timeout.
	heartbeating bool
	activities   string // "3 ExtractReadings, 1 ExtractDevices"
}

// batchKillMoment describes the run and what the worker of pid runs in it.
func batchKillMoment(t *testing.T, tc client.Client, run client.WorkflowRun, pid int) killMoment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc, err := tc.DescribeWorkflow(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	d := desc.RawResponse
	m := killMoment{running: d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, phase: "idle", activities: "nothing"}
	counts := map[string]int{}
	var names []string
	for _, a := range d.GetPendingActivities() {
		if a.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED || !strings.HasPrefix(a.GetLastWorkerIdentity(), fmt.Sprintf("%d@", pid)) {
			continue
		}
		name := a.GetActivityType().GetName()
		if counts[name] == 0 {
			names = append(names, name)
		}
		counts[name]++
		phase := cmp.Or(batchActivityPhases[name], name)
		if batchPhaseRank[phase] > batchPhaseRank[m.phase] || m.phase == "idle" {
			m.phase = phase
		}
		m.heartbeating = m.heartbeating || !batchUnwatched[name]
	}
	if len(names) > 0 {
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%d %s", counts[n], n)
		}
		m.activities = strings.Join(parts, ", ")
	}
	return m
}
