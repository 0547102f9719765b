package workflows

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
)

var sa *activities.Stream

const testTopic = "iot-sensor-stream"

// streamHWM is the high watermark ListPartitions reports for partition p.
func streamHWM(p int32) int64 { return 100 * int64(p+1) }

// leaseLog records, on the workflow clock, when leases start and which
// were cancelled. The test environment runs activities on goroutines.
type leaseLog struct {
	env       *testsuite.TestWorkflowEnvironment
	mu        sync.Mutex
	starts    []leaseStart
	windows   []time.Duration // LeaseInput.Window of each start
	cancelled []int           // slots
}

type leaseStart struct {
	At    time.Duration // since the workflow started
	Slot  int
	Drain bool
	Parts []int32
	To    map[int32]int64
}

func (l *leaseLog) startsBetween(from, to time.Duration) []leaseStart {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []leaseStart
	for _, s := range l.starts {
		if s.At >= from && s.At < to {
			out = append(out, s)
		}
	}
	return out
}

var streamStart = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// newStreamEnv returns a test environment with the worker's
// SignalOrderInterceptor where ListPartitions finds `partitions` partitions
// and every lease (mocked) consumes for its full duration and ends
// cleanly; drain leases end drained at once. setup registers a test's own
// mocks first: the first matching mock wins.
func newStreamEnv(t *testing.T, partitions int32, setup func(env *testsuite.TestWorkflowEnvironment)) (*testsuite.TestWorkflowEnvironment, *leaseLog) {
	t.Helper()
	env, log := newStreamEnvWithout(t, partitions, setup)
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{SignalOrderInterceptor()}})
	return env, log
}

// newStreamEnvWithout is newStreamEnv on a worker without
// SignalOrderInterceptor.
func newStreamEnvWithout(t *testing.T, partitions int32, setup func(env *testsuite.TestWorkflowEnvironment)) (*testsuite.TestWorkflowEnvironment, *leaseLog) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(streamStart)
	env.RegisterActivity(sa)
	log := &leaseLog{env: env}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		if info.ActivityType.Name != "ConsumeLease" {
			return
		}
		var in activities.LeaseInput
		if err := args.Get(&in); err != nil {
			t.Error(err)
		}
		log.mu.Lock()
		log.starts = append(log.starts, leaseStart{At: env.Now().Sub(streamStart), Slot: in.Slot, Drain: in.DrainTo != nil, Parts: in.Partitions, To: in.DrainTo})
		log.windows = append(log.windows, in.Window)
		log.mu.Unlock()
	})
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		if info.ActivityType.Name != "ConsumeLease" {
			return // a listing cancelled with the workflow
		}
		log.mu.Lock()
		log.cancelled = append(log.cancelled, 0)
		log.mu.Unlock()
	})
	if setup != nil {
		setup(env)
	}
	env.OnActivity(sa.ListPartitions, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListPartitionsInput) (activities.ListPartitionsResult, error) {
			var res activities.ListPartitionsResult
			for p := int32(0); p < partitions; p++ {
				res.Partitions = append(res.Partitions, activities.PartitionProgress{Partition: p, HighWatermark: streamHWM(p), Lag: streamHWM(p)})
			}
			return res, nil
		}).Maybe()
	env.OnActivity(sa.ConsumeLease, mock.Anything, mock.MatchedBy(func(in activities.LeaseInput) bool { return in.DrainTo != nil })).Return(
		func(_ context.Context, in activities.LeaseInput) (activities.LeaseResult, error) {
			return leaseResult(in, activities.LeaseEndDrained, 1), nil
		}).Maybe()
	env.OnActivity(sa.ConsumeLease, mock.Anything, mock.Anything).After(ingest.DefaultLeaseDuration).Return(
		func(_ context.Context, in activities.LeaseInput) (activities.LeaseResult, error) {
			return leaseResult(in, activities.LeaseEndDuration, 1), nil
		}).Maybe()
	return env, log
}

// leaseResult reports every partition of the lease at its drain target (or
// at 10 for a normal lease) with epoch.
func leaseResult(in activities.LeaseInput, end string, epoch int64) activities.LeaseResult {
	res := activities.LeaseResult{Slot: in.Slot, End: end}
	for _, p := range in.Partitions {
		next := int64(10)
		if in.DrainTo != nil {
			next = in.DrainTo[p]
		}
		res.Partitions = append(res.Partitions, activities.PartitionProgress{
			Partition: p, Epoch: epoch, Consumed: true, NextOffset: next, HighWatermark: streamHWM(p), Lag: streamHWM(p) - next,
			Counters: ingest.Counters{Records: next, Inserted: next},
		})
	}
	return res
}

func queryStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment) StreamStatus {
	t.Helper()
	v, err := env.QueryWorkflow(QueryStatus)
	if err != nil {
		t.Fatalf("status query: %v", err)
	}
	var st StreamStatus
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func at(env *testsuite.TestWorkflowEnvironment, d time.Duration, fn func()) {
	env.RegisterDelayedCallback(fn, d)
}

func slotsOf(starts []leaseStart) []int {
	var out []int
	for _, s := range starts {
		out = append(out, s.Slot)
	}
	sort.Ints(out)
	return out
}

func wantCancelled(t *testing.T, env *testsuite.TestWorkflowEnvironment) {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v, want cancelled", err)
	}
}

// TestStreamDealsPartitionsAndRenewsLeases: 7 partitions dealt round-robin
// to 3 slots; each lease runs its duration and the next one follows at once.
func TestStreamDealsPartitionsAndRenewsLeases(t *testing.T) {
	env, log := newStreamEnv(t, 7, nil)
	var running StreamStatus
	at(env, time.Minute, func() { running = queryStatus(t, env) })
	at(env, 2*ingest.DefaultLeaseDuration+time.Minute, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic})
	wantCancelled(t, env)

	first := log.startsBetween(0, time.Second)
	want := []leaseStart{
		{Slot: 0, Parts: []int32{0, 3, 6}},
		{Slot: 1, Parts: []int32{1, 4}},
		{Slot: 2, Parts: []int32{2, 5}},
	}
	sort.Slice(first, func(i, j int) bool { return first[i].Slot < first[j].Slot })
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("first leases (-want +got):\n%s", diff)
	}
	if got := slotsOf(log.startsBetween(ingest.DefaultLeaseDuration, ingest.DefaultLeaseDuration+time.Second)); !cmp.Equal(got, []int{0, 1, 2}) {
		t.Errorf("leases renewed at the end of the first: slots %v, want [0 1 2]", got)
	}
	if running.State != StreamRunning || running.LeaseAttempts != 3 || len(running.Partitions) != 7 || running.Lag != 100+200+300+400+500+600+700 {
		t.Errorf("status = %+v", running)
	}
	if p := running.Partitions[6]; p.Consumed || p.NextOffset != 0 || p.Lag != 700 {
		t.Errorf("never consumed partition 6 = %+v, want not consumed, offset 0, lag 700", p)
	}
}

// TestStreamCarriesItsWindowToEveryLease: the window length the stream was
// started with (none: window.Default) reaches every lease, renewals
// included, and the status shows it.
func TestStreamCarriesItsWindowToEveryLease(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{{0, time.Minute}, {5 * time.Minute, 5 * time.Minute}} {
		t.Run(tc.want.String(), func(t *testing.T) {
			env, log := newStreamEnv(t, 4, nil)
			var running StreamStatus
			at(env, time.Minute, func() { running = queryStatus(t, env) })
			at(env, 2*ingest.DefaultLeaseDuration+time.Minute, env.CancelWorkflow)
			env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 2, Window: tc.in})
			wantCancelled(t, env)
			log.mu.Lock()
			windows := slices.Clone(log.windows)
			log.mu.Unlock()
			want := []time.Duration{tc.want, tc.want, tc.want, tc.want, tc.want, tc.want} // 2 slots, 3 leases each
			if diff := cmp.Diff(want, windows); diff != "" {
				t.Errorf("lease windows (-want +got):\n%s", diff)
			}
			if running.Window != tc.want {
				t.Errorf("status window = %s, want %s", running.Window, tc.want)
			}
		})
	}
}

// TestStreamRefusesAWindowThatDoesNotDivideAnHour: started with a window
// length the sink cannot store, the stream fails at once, before any lease.
func TestStreamRefusesAWindowThatDoesNotDivideAnHour(t *testing.T) {
	env, log := newStreamEnv(t, 2, nil)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Window: 7 * time.Minute})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != "InvalidInput" ||
		appErr.Message() != "window 7m0s: must divide one hour evenly (such as 30s, 1m, 2m, 5m, 10m, 15m, 30m or 1h)" {
		t.Fatalf("workflow error = %v, want InvalidInput for the window", err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.starts) != 0 {
		t.Errorf("%d leases started", len(log.starts))
	}
}

// TestStreamPauseResume: pause cancels every lease and none starts while
// paused; resume starts them again.
func TestStreamPauseResume(t *testing.T) {
	env, log := newStreamEnv(t, 6, nil)
	var paused, resumed StreamStatus
	at(env, 10*time.Second, func() { env.SignalWorkflow(SignalPause, nil) })
	at(env, 20*time.Second, func() { paused = queryStatus(t, env) })
	at(env, time.Hour, func() { env.SignalWorkflow(SignalResume, nil) })
	at(env, time.Hour+time.Second, func() { resumed = queryStatus(t, env) })
	at(env, time.Hour+time.Minute, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic})
	wantCancelled(t, env)

	if n := len(log.startsBetween(0, time.Second)); n != 3 {
		t.Errorf("%d leases at start, want 3", n)
	}
	log.mu.Lock()
	cancelled := len(log.cancelled)
	log.mu.Unlock()
	if cancelled != 3+3 { // by pause, then by the final cancel
		t.Errorf("%d leases cancelled, want 6", cancelled)
	}
	if got := log.startsBetween(time.Second, time.Hour); len(got) != 0 {
		t.Errorf("leases started while paused: %+v", got)
	}
	if got := slotsOf(log.startsBetween(time.Hour, time.Hour+time.Second)); !cmp.Equal(got, []int{0, 1, 2}) {
		t.Errorf("after resume: slots %v, want [0 1 2]", got)
	}
	if paused.State != StreamPaused || paused.MessagesPerSecond != 0 {
		t.Errorf("paused status = %+v", paused)
	}
	for _, l := range paused.Leases {
		if l.Running || l.LastEnd != activities.LeaseEndCancelled {
			t.Errorf("lease slot %d while paused: %+v", l.Slot, l)
		}
	}
	if resumed.State != StreamRunning || resumed.LeaseAttempts != 6 {
		t.Errorf("resumed status = %+v", resumed)
	}
}

// TestStreamStopDrains: stop cancels the leases, lists the partitions again
// for the drain targets, runs one drain lease per slot up to them and
// completes with the final status.
func TestStreamStopDrains(t *testing.T) {
	env, log := newStreamEnv(t, 4, nil)
	at(env, 10*time.Second, func() { env.SignalWorkflow(SignalStop, nil) })
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 2})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var final StreamStatus
	if err := env.GetWorkflowResult(&final); err != nil {
		t.Fatal(err)
	}
	drains := log.startsBetween(10*time.Second, time.Hour)
	sort.Slice(drains, func(i, j int) bool { return drains[i].Slot < drains[j].Slot })
	want := []leaseStart{
		{At: 10 * time.Second, Slot: 0, Drain: true, Parts: []int32{0, 2}, To: map[int32]int64{0: 100, 2: 300}},
		{At: 10 * time.Second, Slot: 1, Drain: true, Parts: []int32{1, 3}, To: map[int32]int64{1: 200, 3: 400}},
	}
	if diff := cmp.Diff(want, drains); diff != "" {
		t.Errorf("drain leases (-want +got):\n%s", diff)
	}
	if final.State != StreamStopped || final.Lag != 0 || final.Totals.Records != 100+200+300+400 || final.LeaseAttempts != 4 {
		t.Errorf("final status = %+v", final)
	}
	env.AssertExpectations(t)
}

// TestStreamLeaseRestartBackoff: a lease slot that fails (heartbeat timeout,
// error) is restarted after 1s, 2s, 4s; a clean end resets the backoff;
// attempts and the last error are counted.
func TestStreamLeaseRestartBackoff(t *testing.T) {
	hbTimeout := temporal.NewHeartbeatTimeoutError()
	env, log := newStreamEnv(t, 1, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(sa.ConsumeLease, mock.Anything, mock.Anything).After(3*time.Second).Return(activities.LeaseResult{}, hbTimeout).Once()
		env.OnActivity(sa.ConsumeLease, mock.Anything, mock.Anything).Return(activities.LeaseResult{}, errors.New("kafka: broker unreachable")).Once()
		env.OnActivity(sa.ConsumeLease, mock.Anything, mock.Anything).After(time.Second).Return(activities.LeaseResult{}, hbTimeout).Once()
		env.OnActivity(sa.ConsumeLease, mock.Anything, mock.Anything).After(time.Minute).Return(
			func(_ context.Context, in activities.LeaseInput) (activities.LeaseResult, error) {
				return leaseResult(in, activities.LeaseEndDuration, 4), nil
			}).Once()
		env.OnActivity(sa.ConsumeLease, mock.Anything, mock.Anything).Return(activities.LeaseResult{}, errors.New("postgres: connection reset")).Once()
	})
	var backingOff, later StreamStatus
	at(env, 5*time.Second, func() { backingOff = queryStatus(t, env) })
	at(env, 3*time.Minute, func() { later = queryStatus(t, env) })
	at(env, 3*time.Minute+time.Second, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 1})
	wantCancelled(t, env)

	// Fails at 3s → retry at 4s fails at once → retry at 6s fails at 7s →
	// retry at 11s runs a minute and ends cleanly at 1m11s → the next lease
	// fails at once → retry 1s later (the clean end reset the backoff).
	var got []time.Duration
	for _, s := range log.startsBetween(0, 3*time.Minute) {
		got = append(got, s.At)
	}
	want := []time.Duration{0, 4 * time.Second, 6 * time.Second, 11 * time.Second, 71 * time.Second, 72 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lease start times (-want +got):\n%s", diff)
	}
	if backingOff.LeaseAttempts != 2 || backingOff.LeaseFailures != 2 || backingOff.Leases[0].Failures != 2 || backingOff.Leases[0].Running ||
		!backingOff.Leases[0].RetryAt.Equal(streamStart.Add(6*time.Second)) || backingOff.LastError != "lease 0 (partitions [0]): kafka: broker unreachable" {
		t.Errorf("status during the second backoff = %+v", backingOff)
	}
	if later.LeaseAttempts != 6 || later.LeaseFailures != 4 || later.Leases[0].Failures != 1 || !later.Leases[0].Running ||
		later.LastError != "lease 0 (partitions [0]): postgres: connection reset" || later.Partitions[0].Epoch != 4 {
		t.Errorf("status at 3 minutes = %+v", later)
	}
}

// TestStreamIgnoresStaleProgress: a report of an older lease epoch than one
// already seen (a superseded lease) is ignored and counted.
func TestStreamIgnoresStaleProgress(t *testing.T) {
	env, _ := newStreamEnv(t, 1, nil)
	report := func(epoch, next int64) activities.LeaseProgress {
		return activities.LeaseProgress{Partitions: []activities.PartitionProgress{{Partition: 0, Epoch: epoch, Consumed: true, NextOffset: next, HighWatermark: 100, Lag: 100 - next, Rate: 50}}}
	}
	var st StreamStatus
	at(env, 5*time.Second, func() { env.SignalWorkflow(SignalLeaseProgress, report(7, 40)) })
	at(env, 6*time.Second, func() { env.SignalWorkflow(SignalLeaseProgress, report(6, 90)) })
	at(env, 7*time.Second, func() { st = queryStatus(t, env) })
	at(env, 8*time.Second, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 1})
	wantCancelled(t, env)
	p := st.Partitions[0]
	if p.Epoch != 7 || p.NextOffset != 40 || p.Lag != 60 || st.StaleReports != 1 || st.MessagesPerSecond != 50 {
		t.Errorf("status = %+v, partition 0 = %+v; want epoch 7 at offset 40, 1 stale report", st, p)
	}
}

// TestStreamContinueAsNewCarriesState: when Continue-As-New is suggested the
// leases are cancelled and waited for, the signals still pending are
// applied, and the state goes to the next run, which starts from it.
func TestStreamContinueAsNewCarriesState(t *testing.T) {
	env, log := newStreamEnv(t, 2, func(env *testsuite.TestWorkflowEnvironment) {
		slot0 := mock.MatchedBy(func(in activities.LeaseInput) bool { return in.Slot == 0 })
		env.OnActivity(sa.ConsumeLease, mock.Anything, slot0).After(2*time.Second).Return(activities.LeaseResult{}, errors.New("boom")).Once()
	})
	progress := activities.LeaseProgress{Slot: 1, Partitions: []activities.PartitionProgress{{Partition: 1, Epoch: 3, Consumed: true, NextOffset: 77, HighWatermark: 200, Lag: 123}}}
	at(env, 10*time.Second, func() { env.SignalWorkflow(SignalPause, nil) })
	at(env, 50*time.Second, func() {
		// Paused, so no lease runs: the continue-as-new happens in the same
		// workflow task as these signals, and must not lose the progress.
		// (Not at a multiple of partitionRelistInterval: the relist timer
		// would fire first, in a workflow task of its own.)
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflowSkippingWorkflowTask(SignalLeaseProgress, progress)
		env.SignalWorkflow(SignalResume, nil)
	})
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Debug: true})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow error = %v, want continue-as-new", err)
	}
	var next StreamInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.Topic != testTopic || !next.Debug || next.State == nil {
		t.Fatalf("next input = %+v", next)
	}
	st := *next.State
	if st.Paused || st.Stopping || st.LeaseAttempts != 3 || st.LeaseFailures != 1 || st.Runs != 0 || !st.StartedAt.Equal(streamStart) ||
		st.LastError != "lease 0 (partitions [0]): boom" {
		t.Errorf("carried state = %+v", st)
	}
	wantParts := []activities.PartitionProgress{
		{Partition: 0, HighWatermark: 100, Lag: 100},
		{Partition: 1, Epoch: 3, Consumed: true, NextOffset: 77, HighWatermark: 200, Lag: 123},
	}
	if diff := cmp.Diff(wantParts, st.Partitions); diff != "" {
		t.Errorf("carried partitions (-want +got):\n%s", diff)
	}
	if n := len(log.startsBetween(10*time.Second, time.Hour)); n != 0 {
		t.Errorf("%d leases started after the pause", n)
	}

	// The next run starts from the carried state.
	env2, log2 := newStreamEnv(t, 2, nil)
	var first StreamStatus
	at(env2, time.Second, func() { first = queryStatus(t, env2) })
	at(env2, 2*time.Second, env2.CancelWorkflow)
	env2.ExecuteWorkflow(StreamIngestWorkflow, next)
	wantCancelled(t, env2)
	if first.State != StreamRunning || first.Runs != 1 || first.LeaseAttempts != 5 || first.LeaseFailures != 1 ||
		first.Partitions[1].NextOffset != 77 || !first.StartedAt.Equal(streamStart) {
		t.Errorf("next run status = %+v", first)
	}
	if n := len(log2.startsBetween(0, time.Second)); n != 2 {
		t.Errorf("next run started %d leases, want 2", n)
	}
}

// TestStreamCarriedPauseHolds: a run continued from a paused state starts
// no lease until resumed.
func TestStreamCarriedPauseHolds(t *testing.T) {
	env, log := newStreamEnv(t, 3, nil)
	var st StreamStatus
	at(env, time.Hour, func() { st = queryStatus(t, env) })
	at(env, time.Hour+time.Second, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, State: &StreamState{Paused: true, LeaseAttempts: 9, StartedAt: streamStart}})
	wantCancelled(t, env)
	if n := len(log.startsBetween(0, 2*time.Hour)); n != 0 {
		t.Errorf("%d leases started in a paused run", n)
	}
	if st.State != StreamPaused || st.LeaseAttempts != 9 || len(st.Partitions) != 3 {
		t.Errorf("status = %+v", st)
	}
}

// TestStreamResumeCutsBackoffShort: a resume restarts a backing-off slot at
// once and resets its failure count.
func TestStreamResumeCutsBackoffShort(t *testing.T) {
	env, log := newStreamEnv(t, 1, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(sa.ConsumeLease, mock.Anything, mock.Anything).Return(activities.LeaseResult{}, errors.New("kafka: broker unreachable")).Times(3)
	})
	var backingOff, resumed StreamStatus
	at(env, 4*time.Second, func() { backingOff = queryStatus(t, env) })
	at(env, 5*time.Second, func() { env.SignalWorkflow(SignalResume, nil) })
	at(env, 6*time.Second, func() { resumed = queryStatus(t, env) })
	at(env, time.Minute, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 1})
	wantCancelled(t, env)

	// Fails at 0s, 1s and 3s; the retry due at 7s starts at 5s instead.
	var got []time.Duration
	for _, s := range log.startsBetween(0, time.Minute) {
		got = append(got, s.At)
	}
	if diff := cmp.Diff([]time.Duration{0, time.Second, 3 * time.Second, 5 * time.Second}, got); diff != "" {
		t.Errorf("lease start times (-want +got):\n%s", diff)
	}
	if l := backingOff.Leases[0]; l.Running || l.Failures != 3 || !l.RetryAt.Equal(streamStart.Add(7*time.Second)) {
		t.Errorf("lease while backing off = %+v", l)
	}
	if l := resumed.Leases[0]; !l.Running || l.Failures != 0 || !l.RetryAt.IsZero() || resumed.LeaseFailures != 3 {
		t.Errorf("lease after the resume = %+v, status %+v", l, resumed)
	}
}

// TestStreamStopWhileBackingOff: a stop cancels the backoff of a failing
// slot, and the slot drains as soon as the drain targets are known.
func TestStreamStopWhileBackingOff(t *testing.T) {
	env, log := newStreamEnv(t, 2, func(env *testsuite.TestWorkflowEnvironment) {
		slot1 := mock.MatchedBy(func(in activities.LeaseInput) bool { return in.Slot == 1 && in.DrainTo == nil })
		env.OnActivity(sa.ConsumeLease, mock.Anything, slot1).Return(activities.LeaseResult{}, errors.New("kafka: broker unreachable"))
	})
	at(env, 4500*time.Millisecond, func() { env.SignalWorkflow(SignalStop, nil) })
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var final StreamStatus
	if err := env.GetWorkflowResult(&final); err != nil {
		t.Fatal(err)
	}
	drains := log.startsBetween(4*time.Second, time.Hour)
	sort.Slice(drains, func(i, j int) bool { return drains[i].Slot < drains[j].Slot })
	want := []leaseStart{
		{At: 4500 * time.Millisecond, Slot: 0, Drain: true, Parts: []int32{0}, To: map[int32]int64{0: 100}},
		{At: 4500 * time.Millisecond, Slot: 1, Drain: true, Parts: []int32{1}, To: map[int32]int64{1: 200}},
	}
	if diff := cmp.Diff(want, drains); diff != "" {
		t.Errorf("drain leases (-want +got):\n%s", diff)
	}
	// Slot 1 failed at 0s, 1s and 3s (retry due at 7s) before the stop.
	if final.State != StreamStopped || final.LeaseFailures != 3 || final.Leases[1].LastEnd != activities.LeaseEndDrained || final.Lag != 0 {
		t.Errorf("final status = %+v", final)
	}
}

// signalTogether sends the signals in one workflow task, in order: every
// one but the last is delivered without a workflow task of its own.
func signalTogether(env *testsuite.TestWorkflowEnvironment, names ...string) {
	progress := activities.LeaseProgress{Slot: 0, Partitions: []activities.PartitionProgress{{Partition: 0, Epoch: 1, Consumed: true, NextOffset: 5, HighWatermark: 100, Lag: 95}}}
	for i, name := range names {
		var arg any
		if name == SignalLeaseProgress {
			arg = progress
		}
		if i < len(names)-1 {
			env.SignalWorkflowSkippingWorkflowTask(name, arg)
		} else {
			env.SignalWorkflow(name, arg)
		}
	}
}

// TestStreamSignalsInArrivalOrder: control signals that arrive in one
// workflow task apply in the order they arrived, also when another signal
// of the task (a lease's progress report) is handled first; a stop among
// them is final.
func TestStreamSignalsInArrivalOrder(t *testing.T) {
	tests := []struct {
		name    string
		paused  bool // before the signals
		signals []string
		want    string
	}{
		{"resume, pause", true, []string{SignalResume, SignalPause}, StreamPaused},
		{"progress, resume, pause", true, []string{SignalLeaseProgress, SignalResume, SignalPause}, StreamPaused},
		{"pause, resume", false, []string{SignalPause, SignalResume}, StreamRunning},
		{"progress, pause, resume", false, []string{SignalLeaseProgress, SignalPause, SignalResume}, StreamRunning},
		{"pause, resume, pause", false, []string{SignalPause, SignalResume, SignalPause}, StreamPaused},
		{"resume, pause, resume", true, []string{SignalResume, SignalPause, SignalResume}, StreamRunning},
		{"pause, stop, resume", false, []string{SignalPause, SignalStop, SignalResume}, StreamStopped},
		{"resume, pause, stop, resume", true, []string{SignalResume, SignalPause, SignalStop, SignalResume}, StreamStopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, log := newStreamEnv(t, 2, nil)
			st := runSignalsTogether(t, env, tt.paused, tt.signals)
			if st.State != tt.want {
				t.Fatalf("state after %v = %s, want %s", tt.signals, st.State, tt.want)
			}
			wantLeases := 0
			if tt.want == StreamRunning {
				wantLeases = 2
			}
			if n := len(log.startsBetween(20*time.Second, 21*time.Second)); tt.want != StreamStopped && n != wantLeases {
				t.Errorf("%d leases started after the signals, want %d", n, wantLeases)
			}
		})
	}
}

// TestStreamSignalsWithoutInterceptorInFixedOrder: a worker without
// SignalOrderInterceptor applies the control signals of one task in the
// fixed order stop, pause, resume.
func TestStreamSignalsWithoutInterceptorInFixedOrder(t *testing.T) {
	env, _ := newStreamEnvWithout(t, 2, nil)
	if st := runSignalsTogether(t, env, true, []string{SignalLeaseProgress, SignalResume, SignalPause}); st.State != StreamRunning {
		t.Fatalf("state = %s, want %s (pause, then resume)", st.State, StreamRunning)
	}
}

// runSignalsTogether runs a stream of 2 partitions on 2 leases, paused at
// 10s when paused, sends the signals together at 20s and returns the
// status a second later (or the final status of a stopped stream).
func runSignalsTogether(t *testing.T, env *testsuite.TestWorkflowEnvironment, paused bool, signals []string) StreamStatus {
	t.Helper()
	if paused {
		at(env, 10*time.Second, func() { env.SignalWorkflow(SignalPause, nil) })
	}
	at(env, 20*time.Second, func() { signalTogether(env, signals...) })
	var st StreamStatus
	at(env, 21*time.Second, func() { st = queryStatus(t, env) })
	at(env, 22*time.Second, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 2})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err == nil {
		var final StreamStatus
		if err := env.GetWorkflowResult(&final); err != nil {
			t.Fatal(err)
		}
		return final
	} else if !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v", err)
	}
	return st
}

// TestStreamPicksUpAddedPartitions: partitions added to the topic are dealt
// at the next periodic listing, within partitionRelistInterval: a new slot
// (up to Leases) starts a lease on its partition, and the lease of the
// slot whose set grew is cancelled (it commits and ends) and restarted
// with the new set. The status lists the new partitions.
func TestStreamPicksUpAddedPartitions(t *testing.T) {
	const addedAt = 40 * time.Second
	env, log := newStreamEnv(t, 0, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(sa.ListPartitions, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.ListPartitionsInput) (activities.ListPartitionsResult, error) {
				n := int32(2)
				if env.Now().Sub(streamStart) >= addedAt {
					n = 4
				}
				var res activities.ListPartitionsResult
				for p := range n {
					res.Partitions = append(res.Partitions, activities.PartitionProgress{Partition: p, HighWatermark: streamHWM(p), Lag: streamHWM(p)})
				}
				return res, nil
			})
	})
	var before, after StreamStatus
	at(env, addedAt+time.Second, func() { before = queryStatus(t, env) })
	at(env, 61*time.Second, func() { after = queryStatus(t, env) })
	at(env, 62*time.Second, env.CancelWorkflow)
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 3})
	wantCancelled(t, env)

	if len(before.Partitions) != 2 || len(before.Leases) != 2 {
		t.Errorf("status before the listing = %+v, want 2 partitions on 2 leases", before)
	}
	// Listings at 0s, 30s and 60s: the one at 60s finds partitions 2 and 3.
	restarted := log.startsBetween(time.Second, 62*time.Second)
	sort.Slice(restarted, func(i, j int) bool { return restarted[i].Slot < restarted[j].Slot })
	want := []leaseStart{
		{At: time.Minute, Slot: 0, Parts: []int32{0, 3}},
		{At: time.Minute, Slot: 2, Parts: []int32{2}},
	}
	if diff := cmp.Diff(want, restarted); diff != "" {
		t.Errorf("leases started after the first (-want +got):\n%s", diff)
	}
	log.mu.Lock()
	cancelled := len(log.cancelled)
	log.mu.Unlock()
	if cancelled != 1+3 { // slot 0 to take partition 3, then the final cancel
		t.Errorf("%d leases cancelled, want 4", cancelled)
	}
	var parts []int32
	for _, p := range after.Partitions {
		parts = append(parts, p.Partition)
	}
	wantLeases := []LeaseStatus{
		{Slot: 0, Partitions: []int32{0, 3}, Running: true, Attempts: 2, LastEnd: activities.LeaseEndCancelled},
		{Slot: 1, Partitions: []int32{1}, Running: true, Attempts: 1},
		{Slot: 2, Partitions: []int32{2}, Running: true, Attempts: 1},
	}
	if diff := cmp.Diff(wantLeases, after.Leases); diff != "" || !cmp.Equal(parts, []int32{0, 1, 2, 3}) || after.Lag != 100+200+300+400 {
		t.Errorf("status after the listing: partitions %v, lag %d, leases (-want +got):\n%s", parts, after.Lag, diff)
	}
}
