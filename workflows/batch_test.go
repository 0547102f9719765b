package workflows

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

var a *activities.Batch

// newBatchEnv returns a test environment whose activities all succeed with
// fixed figures. A test registers its own mocks in setup, which runs first:
// the first matching mock wins.
func newBatchEnv(t *testing.T, setup func(env *testsuite.TestWorkflowEnvironment)) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(a)
	if setup != nil {
		setup(env)
	}
	env.OnActivity(a.StartRun, mock.Anything, mock.Anything).Return(nil).Maybe()
	env.OnActivity(a.SweepStaging, mock.Anything, mock.Anything).Return(activities.SweepStagingResult{}, nil).Maybe()
	env.OnActivity(a.ResetStaging, mock.Anything, mock.Anything).Return(nil).Maybe()
	env.OnActivity(a.MarkRun, mock.Anything, mock.Anything).Return(nil).Maybe()
	env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
			res := activities.ExtractDevicesResult{Devices: 12, Types: 6}
			if in.MaxDevices > 0 {
				res.Devices, res.DeviceIDs = in.MaxDevices, []string{"TEMP-001", "HUM-001"}
			}
			return res, nil
		}).Maybe()
	env.OnActivity(a.ExtractLocations, mock.Anything, mock.Anything).Return(4, nil).Maybe()
	env.OnActivity(a.ExtractReadings, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ExtractReadingsInput) (activities.ExtractReadingsResult, error) {
			return activities.ExtractReadingsResult{Rows: int64(in.Chunk.To.Sub(in.Chunk.From) / time.Minute)}, nil
		}).Maybe()
	env.OnActivity(a.RecordRejects, mock.Anything, mock.Anything).Return(activities.RejectsResult{}, nil).Maybe()
	env.OnActivity(a.Transform, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.TransformInput) (activities.TransformTotal, error) {
			return activities.TransformTotal{Devices: 1, Rows: 100 + int64(in.Shard)}, nil
		}).Maybe()
	env.OnActivity(a.LoadDimensions, mock.Anything, mock.Anything).Return(activities.LoadDimensionsResult{}, nil).Maybe()
	env.OnActivity(a.RefreshAggregates, mock.Anything, mock.Anything).Return(nil).Maybe()
	env.OnActivity(a.ExportFeatures, mock.Anything, mock.Anything).Return(activities.ExportFeaturesResult{Rows: 7}, nil).Maybe()
	env.OnActivity(a.FinishRun, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.FinishRunInput) (activities.FinishRunResult, error) {
			return activities.FinishRunResult{FactRows: 42, DQScore: 0.99, FactChecksum: "42:1"}, nil
		}).Maybe()
	env.OnActivity(a.CleanupStaging, mock.Anything, mock.Anything).Return(nil).Maybe()
	env.OnActivity(a.ScoreAnomalies, mock.Anything, mock.Anything).Return(activities.ScoreResult{}, nil).Maybe()
	return env
}

func loadFactsOK(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
			return activities.LoadFactsResult{Rows: in.ExpectedRows}, nil
		})
}

func result(t *testing.T, env *testsuite.TestWorkflowEnvironment) BatchResult {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var r BatchResult
	if err := env.GetWorkflowResult(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

var (
	nov20 = day("2026-11-20T00:00:00Z")
	nov21 = day("2026-11-21T00:00:00Z")
)

// TestWindowFromStartTime: without a window, a run started at 02:00 on the
// 28th processes the 27th; in test mode only its first hour.
func TestWindowFromStartTime(t *testing.T) {
	cases := []struct {
		name     string
		start    time.Time
		testMode bool
		want     batch.Window
	}{
		{"nightly", day("2026-11-28T02:00:05Z"), false, batch.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-28T00:00:00Z")}},
		{"late run", day("2026-11-28T23:59:59Z"), false, batch.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-28T00:00:00Z")}},
		{"test mode", day("2026-11-28T02:00:00Z"), true, batch.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-27T01:00:00Z")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newBatchEnv(t, loadFactsOK)
			env.SetStartTime(tc.start)
			env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{TestMode: tc.testMode})
			got := result(t, env)
			if diff := cmp.Diff(tc.want, got.Window); diff != "" {
				t.Errorf("window (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWindowFromScheduledStartTime: a schedule's nominal time wins over the
// (late) actual start, so a run of the 28th's 02:00 slot that starts on the
// 30th (or a backfill) still processes the 27th.
func TestWindowFromScheduledStartTime(t *testing.T) {
	env := newBatchEnv(t, loadFactsOK)
	env.SetStartTime(day("2026-11-30T10:00:00Z"))
	if err := env.SetTypedSearchAttributesOnStart(temporal.NewSearchAttributes(saScheduled.ValueSet(day("2026-11-28T02:00:00Z")))); err != nil {
		t.Fatal(err)
	}
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{})
	got := result(t, env)
	want := batch.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-28T00:00:00Z")}
	if diff := cmp.Diff(want, got.Window); diff != "" {
		t.Errorf("window (-want +got):\n%s", diff)
	}
}

func TestExplicitWindowAndFanOut(t *testing.T) {
	var chunks []batch.Chunk
	var mu sync.Mutex // the mocked activities run concurrently
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExtractReadings, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.ExtractReadingsInput) (activities.ExtractReadingsResult, error) {
				mu.Lock()
				defer mu.Unlock()
				chunks = append(chunks, in.Chunk)
				return activities.ExtractReadingsResult{Rows: 10}, nil
			})
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 3, Chunk: 12 * time.Hour})
	got := result(t, env)
	// 1h lookback + 24h in 12h chunks: [−1h, 11h), [11h, 23h), [23h, 24h).
	wantChunks := []batch.Chunk{
		{ID: 0, From: day("2026-11-19T23:00:00Z"), To: day("2026-11-20T11:00:00Z")},
		{ID: 1, From: day("2026-11-20T11:00:00Z"), To: day("2026-11-20T23:00:00Z")},
		{ID: 2, From: day("2026-11-20T23:00:00Z"), To: nov21},
	}
	sort.Slice(chunks, func(i, j int) bool { return chunks[i].ID < chunks[j].ID })
	if diff := cmp.Diff(wantChunks, chunks); diff != "" {
		t.Errorf("chunks (-want +got):\n%s", diff)
	}
	if got.Extracted != 30 || got.Devices != 12 || got.Status != "succeeded" || got.RowsLoaded != 42 || got.LoadAttempts != 1 {
		t.Errorf("result = %+v", got)
	}
}

func TestInvalidWindowFails(t *testing.T) {
	env := newBatchEnv(t, nil)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov21, WindowEnd: nov20})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != "InvalidInput" {
		t.Fatalf("error = %v, want InvalidInput", err)
	}
}

// TestLoadFailureParksThenRetryLoad: Load fails, the run parks in
// load_failed (visible to the progress query), retry-load runs Load again
// from staging (no second extract) and the run succeeds.
func TestLoadFailureParksThenRetryLoad(t *testing.T) {
	calls, extracts := map[int]int{}, 0
	var marked []string
	var mu sync.Mutex // the mocked activities run concurrently
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
				mu.Lock()
				defer mu.Unlock()
				calls[in.Shard]++
				if in.Shard == 0 && calls[0] == 1 {
					return activities.LoadFactsResult{}, temporal.NewNonRetryableApplicationError("check constraint violated", "InvalidData", nil)
				}
				return activities.LoadFactsResult{Rows: in.ExpectedRows}, nil
			})
		env.OnActivity(a.MarkRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.MarkRunInput) error {
			mu.Lock()
			defer mu.Unlock()
			marked = append(marked, string(in.Status))
			return nil
		})
		env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
			mu.Lock()
			defer mu.Unlock()
			extracts++
			return activities.ExtractDevicesResult{Devices: 12}, nil
		})
	})
	var parked Progress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		_ = v.Get(&parked)
		env.SignalWorkflow(SignalRetryLoad, nil)
	}, time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
	got := result(t, env)
	if parked.Phase != PhaseLoadFailed || parked.LoadError != "load facts shard 0: check constraint violated" {
		t.Errorf("progress while parked = %+v, want load_failed with the error", parked)
	}
	if got.Status != "succeeded" || got.LoadAttempts != 2 {
		t.Errorf("status %q after %d load attempts, want succeeded after 2", got.Status, got.LoadAttempts)
	}
	// Shard 0 failed once; shard 1 loaded the first time and is not loaded again.
	if diff := cmp.Diff(map[int]int{0: 2, 1: 1}, calls); diff != "" {
		t.Errorf("LoadFacts calls per shard (-want +got):\n%s", diff)
	}
	if extracts != 1 {
		t.Errorf("devices extracted %d times, want 1", extracts)
	}
	if diff := cmp.Diff([]string{"load_failed"}, marked); diff != "" {
		t.Errorf("run marks (-want +got):\n%s", diff)
	}
}

// TestLoadFailedIsRecordedBeforeItIsExposed: while the load_failed status
// is being written to dwh.etl_runs, the progress query does not show the
// phase yet, so whoever sees load_failed also finds the row.
func TestLoadFailedIsRecordedBeforeItIsExposed(t *testing.T) {
	markDone := false
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(activities.LoadFactsResult{},
			temporal.NewNonRetryableApplicationError("check constraint violated", "InvalidData", nil))
		env.OnActivity(a.MarkRun, mock.Anything, mock.Anything).After(30 * time.Minute).Return(func(context.Context, activities.MarkRunInput) error {
			markDone = true
			return nil
		})
	})
	phaseAt := func() string {
		v, err := env.QueryWorkflow(QueryProgress)
		if err != nil {
			t.Errorf("query: %v", err)
			return ""
		}
		var p Progress
		_ = v.Get(&p)
		return p.Phase
	}
	var during, after string
	var markedBefore bool
	env.RegisterDelayedCallback(func() { during = phaseAt() }, 10*time.Minute)
	env.RegisterDelayedCallback(func() {
		after, markedBefore = phaseAt(), markDone
		env.SignalWorkflow(SignalAbandon, "test")
	}, time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
	if during == PhaseLoadFailed {
		t.Errorf("phase %s exposed while MarkRun was still recording it", during)
	}
	if after != PhaseLoadFailed || !markedBefore {
		t.Errorf("after MarkRun: phase %q, marked %v; want load_failed, true", after, markedBefore)
	}
}

func TestLoadFailureThenAbandon(t *testing.T) {
	var finished activities.FinishRunInput
	exported := false
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(activities.LoadFactsResult{},
			temporal.NewNonRetryableApplicationError("check constraint violated", "InvalidData", nil))
		env.OnActivity(a.FinishRun, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.FinishRunInput) (activities.FinishRunResult, error) {
				finished = in
				return activities.FinishRunResult{}, nil
			})
		env.OnActivity(a.ExportFeatures, mock.Anything, mock.Anything).Return(
			func(_ context.Context, _ activities.ExportFeaturesInput) (activities.ExportFeaturesResult, error) {
				exported = true
				return activities.ExportFeaturesResult{}, nil
			}).Maybe()
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalAbandon, "bad data upstream") }, 30*time.Minute)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 1})
	got := result(t, env)
	if got.Status != "abandoned" || finished.Status != "abandoned" {
		t.Errorf("status %q, finish status %q, want abandoned", got.Status, finished.Status)
	}
	if want := "abandoned by operator (bad data upstream) after load failure: load facts shard 0: check constraint violated"; finished.Error != want {
		t.Errorf("finish error = %q, want %q", finished.Error, want)
	}
	if exported {
		t.Error("an abandoned run exported features")
	}
}

// TestRetryableExtractErrorsAreRetried: an infrastructure error is retried
// with backoff until it succeeds.
func TestRetryableExtractErrorsAreRetried(t *testing.T) {
	attempts := 0
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExtractLocations, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.ExtractLocationsInput) (int, error) {
			attempts++
			if attempts < 3 {
				return 0, errors.New("connection refused")
			}
			return 4, nil
		})
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21})
	if got := result(t, env); got.Status != "succeeded" {
		t.Errorf("status %q", got.Status)
	}
	if attempts != 3 {
		t.Errorf("ExtractLocations ran %d times, want 3", attempts)
	}
}

// TestTransformDataErrorFailsTheRun: a non-retryable error outside Load
// fails the run at once and records it as failed.
func TestTransformDataErrorFailsTheRun(t *testing.T) {
	attempts := 0
	var finished activities.FinishRunInput
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.Transform, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.TransformInput) (activities.TransformTotal, error) {
			attempts++
			return activities.TransformTotal{}, temporal.NewNonRetryableApplicationError("bad row", "InvalidData", nil)
		})
		env.OnActivity(a.FinishRun, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.FinishRunInput) (activities.FinishRunResult, error) {
				finished = in
				return activities.FinishRunResult{}, nil
			})
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 1})
	if env.GetWorkflowError() == nil {
		t.Fatal("workflow succeeded")
	}
	if attempts != 1 || finished.Status != "failed" {
		t.Errorf("transform attempts %d, finish status %q; want 1 and failed", attempts, finished.Status)
	}
}

func TestTestModeLimitsDevices(t *testing.T) {
	var filters [][]string
	maxDevices := 0
	var mu sync.Mutex // the mocked activities run concurrently
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
			maxDevices = in.MaxDevices
			return activities.ExtractDevicesResult{Devices: 2, DeviceIDs: []string{"HUM-001", "TEMP-001"}}, nil
		})
		env.OnActivity(a.ExtractReadings, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractReadingsInput) (activities.ExtractReadingsResult, error) {
			mu.Lock()
			defer mu.Unlock()
			filters = append(filters, in.DeviceFilter)
			return activities.ExtractReadingsResult{}, nil
		})
	})
	env.SetStartTime(day("2026-11-28T02:00:00Z"))
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{TestMode: true})
	result(t, env)
	if maxDevices != batch.TestModeMaxDevices {
		t.Errorf("MaxDevices = %d, want %d", maxDevices, batch.TestModeMaxDevices)
	}
	if len(filters) != 1 { // the lookback hour and the test hour fit one chunk
		t.Errorf("%d readings chunks, want 1", len(filters))
	}
	for _, f := range filters {
		if diff := cmp.Diff([]string{"HUM-001", "TEMP-001"}, f); diff != "" {
			t.Errorf("readings filter (-want +got):\n%s", diff)
		}
	}
}

// recorded is one mocked activity call: which activity, for which shard
// (-1: not a shard's), with which staging generation (-1: no run ref).
type recorded struct {
	activity string
	shard    int
	gen      int
}

// recorder records the activity calls of a run; fail, when set, decides
// whether a call fails (the mocked activities run concurrently).
type recorder struct {
	mu       sync.Mutex
	calls    []recorded
	finished []activities.FinishRunInput
	fail     func(c recorded, n int) error // n: calls of c so far, this one included
}

func (r *recorder) add(activity string, shard, gen int) error {
	r.mu.Lock()
	c := recorded{activity, shard, gen}
	r.calls = append(r.calls, c)
	n := 0
	for _, o := range r.calls {
		if o == c {
			n++
		}
	}
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return fail(c, n)
	}
	return nil
}

// byActivity counts the calls with generation gen by activity.
func (r *recorder) byActivity(gen int) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, c := range r.calls {
		if c.gen == gen {
			out[c.activity]++
		}
	}
	return out
}

func (r *recorder) count(activity string, shard int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.activity == activity && c.shard == shard {
			n++
		}
	}
	return n
}

// recordingEnv is newBatchEnv whose activities record their calls in rec
// and fail as rec.fail says.
func recordingEnv(t *testing.T, rec *recorder) *testsuite.TestWorkflowEnvironment {
	return newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.ResetStaging, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ResetStagingInput) error {
			return rec.add("ResetStaging", -1, in.Run.StagingGeneration)
		})
		env.OnActivity(a.MarkRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.MarkRunInput) error {
			return rec.add("MarkRun", -1, in.Run.StagingGeneration)
		})
		env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
			return activities.ExtractDevicesResult{Devices: 12}, rec.add("ExtractDevices", -1, in.Run.StagingGeneration)
		})
		env.OnActivity(a.ExtractLocations, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractLocationsInput) (int, error) {
			return 4, rec.add("ExtractLocations", -1, in.Run.StagingGeneration)
		})
		env.OnActivity(a.ExtractReadings, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractReadingsInput) (activities.ExtractReadingsResult, error) {
			return activities.ExtractReadingsResult{Rows: 10}, rec.add("ExtractReadings", in.Chunk.ID, in.Run.StagingGeneration)
		})
		env.OnActivity(a.RecordRejects, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RejectsInput) (activities.RejectsResult, error) {
			return activities.RejectsResult{}, rec.add("RecordRejects", -1, in.Run.StagingGeneration)
		})
		env.OnActivity(a.Transform, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.TransformInput) (activities.TransformTotal, error) {
			return activities.TransformTotal{Devices: 1, Rows: 100 + int64(in.Shard)}, rec.add("Transform", in.Shard, in.Run.StagingGeneration)
		})
		env.OnActivity(a.LoadDimensions, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.LoadDimensionsInput) (activities.LoadDimensionsResult, error) {
			return activities.LoadDimensionsResult{}, rec.add("LoadDimensions", -1, in.Run.StagingGeneration)
		})
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
			if in.ExpectedRows != 100+int64(in.Shard) {
				t.Errorf("LoadFacts shard %d expects %d rows, transform wrote %d", in.Shard, in.ExpectedRows, 100+in.Shard)
			}
			return activities.LoadFactsResult{Rows: in.ExpectedRows}, rec.add("LoadFacts", in.Shard, in.Run.StagingGeneration)
		})
		env.OnActivity(a.ExportFeatures, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExportFeaturesInput) (activities.ExportFeaturesResult, error) {
			return activities.ExportFeaturesResult{Rows: 7, ManifestURL: "file:///x/manifest.json"}, rec.add("ExportFeatures", -1, in.Run.StagingGeneration)
		})
		env.OnActivity(a.FinishRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.FinishRunInput) (activities.FinishRunResult, error) {
			if err := rec.add("FinishRun", -1, in.Run.StagingGeneration); err != nil && in.Status == batch.StatusSucceeded {
				return activities.FinishRunResult{}, err
			}
			rec.mu.Lock()
			rec.finished = append(rec.finished, in)
			rec.mu.Unlock()
			return activities.FinishRunResult{FactRows: 42, FactChecksum: "42:1"}, nil
		})
	})
}

func stagingLost(gen int) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("staging lost: the staging marker of run r (generation %d) is gone", gen), activities.ErrTypeStagingLost, nil)
}

// TestStagingLostIsRecovered: wherever an activity finds the staging lost
// (a PostgreSQL crash empties the unlogged staging tables, its marker
// with them), the run re-creates its staging for generation 2 and runs
// again exactly what the lost staging held, with generation 2: the extract,
// the transform and load of the shards not loaded yet, the export if it
// did not publish, and the finish. It does not park and it succeeds, with
// the recovery counted.
func TestStagingLostIsRecovered(t *testing.T) {
	const chunks = 5 // 24h + 1h lookback in 6h chunks
	everything := map[string]int{
		"ExtractDevices": 1, "ExtractLocations": 1, "ExtractReadings": chunks, "RecordRejects": 1,
		"Transform": 2, "LoadDimensions": 1, "LoadFacts": 2, "ExportFeatures": 1, "FinishRun": 1,
	}
	cases := []struct {
		name string
		lost recorded // the call of generation 1 that finds the staging lost
		want map[string]int
	}{
		{"extract chunk", recorded{"ExtractReadings", 2, 1}, everything},
		{"rejects", recorded{"RecordRejects", -1, 1}, everything},
		{"transform", recorded{"Transform", 1, 1}, everything},
		{"load dimensions", recorded{"LoadDimensions", -1, 1}, everything},
		// Shard 0 loaded before the loss: only shard 1 is transformed and loaded again.
		{"load facts", recorded{"LoadFacts", 1, 1}, map[string]int{
			"ExtractDevices": 1, "ExtractLocations": 1, "ExtractReadings": chunks, "RecordRejects": 1,
			"Transform": 1, "LoadDimensions": 1, "LoadFacts": 1, "ExportFeatures": 1, "FinishRun": 1,
		}},
		// Everything loaded: the export and the finish read the staged devices only.
		{"export", recorded{"ExportFeatures", -1, 1}, map[string]int{"ExtractDevices": 1, "ExtractLocations": 1, "ExportFeatures": 1, "FinishRun": 1}},
		{"finish", recorded{"FinishRun", -1, 1}, map[string]int{"ExtractDevices": 1, "ExtractLocations": 1, "FinishRun": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{fail: func(c recorded, n int) error {
				if c == tc.lost {
					return stagingLost(c.gen)
				}
				return nil
			}}
			env := recordingEnv(t, rec)
			env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2})
			got := result(t, env)
			if got.Status != batch.StatusSucceeded || got.StagingRecoveries != 1 || got.FactChecksum != "42:1" {
				t.Errorf("result: status %s, %d staging recoveries, checksum %s; want succeeded after 1 recovery", got.Status, got.StagingRecoveries, got.FactChecksum)
			}
			if n := rec.byActivity(2)["ResetStaging"]; n != 1 {
				t.Errorf("staging reset %d times for generation 2, want 1", n)
			}
			redone := rec.byActivity(2)
			delete(redone, "ResetStaging")
			if diff := cmp.Diff(tc.want, redone); diff != "" {
				t.Errorf("activities run again with generation 2 (-want +got):\n%s", diff)
			}
			if n := rec.count("MarkRun", -1); n != 0 {
				t.Errorf("the run parked %d times; lost staging is recovered, not parked", n)
			}
			if tc.name == "load facts" && rec.count("LoadFacts", 0) != 1 {
				t.Errorf("shard 0 loaded %d times, want once: it was loaded before the loss", rec.count("LoadFacts", 0))
			}
			if len(rec.finished) != 1 || rec.finished[0].StagingRecoveries != 1 || rec.finished[0].Run.StagingGeneration != 2 {
				t.Errorf("finish: %+v; want one, recording 1 recovery, at generation 2", rec.finished)
			}
		})
	}
}

// TestStagingLostWhileParkedRetryRecovers: a retry-load of a parked run
// that finds its staging lost recovers it rather than parking again.
func TestStagingLostWhileParkedRetryRecovers(t *testing.T) {
	rec := &recorder{fail: func(c recorded, n int) error {
		switch {
		case c.activity == "LoadFacts" && c.gen == 1 && n == 1:
			return temporal.NewNonRetryableApplicationError("check constraint violated", activities.ErrTypeInvalidData, nil)
		case c.activity == "LoadDimensions" && c.gen == 1 && n == 2:
			return stagingLost(1)
		}
		return nil
	}}
	env := recordingEnv(t, rec)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalRetryLoad, nil) }, time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 1})
	got := result(t, env)
	if got.Status != batch.StatusSucceeded || got.StagingRecoveries != 1 || got.LoadAttempts != 3 {
		t.Errorf("status %s, %d recoveries, %d load attempts; want succeeded, 1, 3", got.Status, got.StagingRecoveries, got.LoadAttempts)
	}
	if n := rec.count("MarkRun", -1); n != 1 {
		t.Errorf("parked %d times, want once (for the constraint)", n)
	}
}

// TestStagingLostTooOftenFailsTheRun: a staging that keeps getting lost is
// re-created MaxStagingRecoveries times, then the run fails with an error
// that says so, and records it.
func TestStagingLostTooOftenFailsTheRun(t *testing.T) {
	rec := &recorder{fail: func(c recorded, _ int) error {
		if c.activity == "Transform" {
			return stagingLost(c.gen)
		}
		return nil
	}}
	env := recordingEnv(t, rec)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 1})
	err := env.GetWorkflowError()
	const want = "staging lost again after 3 recoveries, giving up (is PostgreSQL restarting? see its log): transform shard 0: staging lost: the staging marker of run r (generation 4) is gone"
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Message() != want {
		t.Fatalf("workflow error %v; want %q", err, want)
	}
	for gen := 2; gen <= 4; gen++ {
		if n := rec.byActivity(gen)["ResetStaging"]; n != 1 {
			t.Errorf("generation %d: staging reset %d times, want 1", gen, n)
		}
	}
	if n := rec.byActivity(5)["ResetStaging"]; n != 0 {
		t.Errorf("a 4th recovery was attempted")
	}
	if len(rec.finished) != 1 || rec.finished[0].Status != batch.StatusFailed || rec.finished[0].Error != want || rec.finished[0].StagingRecoveries != 3 {
		t.Errorf("finish: %+v; want failed with the error and 3 recoveries", rec.finished)
	}
}

// TestSweepAfterStartRun: the run sweeps the staging of the runs that are
// not running, right after StartRun, never its own; a sweep that fails
// does not stop the run.
func TestSweepAfterStartRun(t *testing.T) {
	var order []string
	var sweepIn activities.SweepStagingInput
	var mu sync.Mutex
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.StartRun, mock.Anything, mock.Anything).Return(func(context.Context, activities.StartRunInput) error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, "StartRun")
			return nil
		})
		env.OnActivity(a.SweepStaging, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SweepStagingInput) (activities.SweepStagingResult, error) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, "SweepStaging")
			sweepIn = in
			return activities.SweepStagingResult{}, errors.New("connection refused")
		})
		env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(func(context.Context, activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, "ExtractDevices")
			return activities.ExtractDevicesResult{Devices: 1}, nil
		})
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 1})
	got := result(t, env)
	if got.Status != batch.StatusSucceeded {
		t.Errorf("status %s", got.Status)
	}
	if diff := cmp.Diff([]string{"StartRun", "SweepStaging", "SweepStaging", "SweepStaging", "ExtractDevices"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if sweepIn.Except != got.RunID || got.RunID == "" {
		t.Errorf("sweep input %+v; want it to leave run %q alone", sweepIn, got.RunID)
	}
}

// TestExportFailureParksThenRetryExport: the export fails its
// ExportMaxAttempts attempts; the run parks in export_failed, recorded
// before it shows in the progress query; retry-export runs it again and
// the run succeeds, without loading anything twice.
func TestExportFailureParksThenRetryExport(t *testing.T) {
	exports := 0
	var offsets []int32
	var marked []activities.MarkRunInput
	markDone := false
	var mu sync.Mutex
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExportFeatures, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExportFeaturesInput) (activities.ExportFeaturesResult, error) {
			mu.Lock()
			defer mu.Unlock()
			exports++
			offsets = append(offsets, in.AttemptOffset)
			if exports <= 2 {
				return activities.ExportFeaturesResult{}, errors.New("export features: put features.csv: ServiceUnavailable")
			}
			return activities.ExportFeaturesResult{Rows: 7, ManifestURL: "s3://b/manifest.json"}, nil
		})
		env.OnActivity(a.MarkRun, mock.Anything, mock.Anything).After(30 * time.Minute).Return(func(_ context.Context, in activities.MarkRunInput) error {
			mu.Lock()
			defer mu.Unlock()
			marked = append(marked, in)
			markDone = true
			return nil
		})
	})
	query := func() Progress {
		v, err := env.QueryWorkflow(QueryProgress)
		if err != nil {
			t.Errorf("query: %v", err)
			return Progress{}
		}
		var p Progress
		_ = v.Get(&p)
		return p
	}
	var during, parked Progress
	var markedBefore bool
	env.RegisterDelayedCallback(func() { during = query() }, 10*time.Minute)
	env.RegisterDelayedCallback(func() {
		parked = query()
		mu.Lock()
		markedBefore = markDone
		mu.Unlock()
		env.SignalWorkflow(SignalRetryExport, nil)
	}, 2*time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 2, ExportMaxAttempts: 2})
	got := result(t, env)
	if during.Phase == PhaseExportFailed {
		t.Errorf("phase %s exposed while MarkRun was still recording it", during.Phase)
	}
	const wantErr = "export features: export features: put features.csv: ServiceUnavailable"
	if parked.Phase != PhaseExportFailed || parked.ExportError != wantErr || parked.ExportAttempts != 1 || !markedBefore {
		t.Errorf("parked progress %+v (marked before: %v); want export_failed with %q after 1 export", parked, markedBefore, wantErr)
	}
	if len(marked) != 1 || marked[0].Status != batch.StatusExportFailed || marked[0].Error != wantErr {
		t.Errorf("marks %+v; want export_failed with the error", marked)
	}
	if got.Status != batch.StatusSucceeded || got.ExportAttempts != 2 || got.LoadAttempts != 1 || got.Features.Rows != 7 {
		t.Errorf("result: status %s, %d exports, %d loads, %d feature rows; want succeeded, 2, 1, 7", got.Status, got.ExportAttempts, got.LoadAttempts, got.Features.Rows)
	}
	if exports != 3 {
		t.Errorf("ExportFeatures ran %d times, want 3 (2 attempts, parked, 1 more)", exports)
	}
	// The export after the park numbers its attempts after the first's 2.
	if diff := cmp.Diff([]int32{0, 0, 2}, offsets); diff != "" {
		t.Errorf("attempt offsets (-want +got):\n%s", diff)
	}
}

// TestExportFailureThenAbandon: abandoning a run parked in export_failed
// ends it as abandoned with the export's error; the loaded facts stay.
func TestExportFailureThenAbandon(t *testing.T) {
	var finished activities.FinishRunInput
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExportFeatures, mock.Anything, mock.Anything).Return(activities.ExportFeaturesResult{}, errors.New("no space left on device"))
		env.OnActivity(a.FinishRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.FinishRunInput) (activities.FinishRunResult, error) {
			finished = in
			return activities.FinishRunResult{FactRows: 42}, nil
		})
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalAbandon, "disk full") }, 3*time.Hour)
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 1})
	got := result(t, env)
	if got.Status != batch.StatusAbandoned || finished.Status != batch.StatusAbandoned || got.RowsLoaded != 42 {
		t.Errorf("status %s, finish %s, %d rows; want abandoned with the loaded rows", got.Status, finished.Status, got.RowsLoaded)
	}
	if want := "abandoned by operator (disk full) after export failure: export features: no space left on device"; finished.Error != want {
		t.Errorf("finish error %q, want %q", finished.Error, want)
	}
}

// TestSourceSchemaIsNotRetried: a SourceSchema error (a dropped column in
// the registry) fails the run at once, by the retry policy's list, even
// when the error itself is not marked non-retryable.
func TestSourceSchemaIsNotRetried(t *testing.T) {
	attempts, loads := 0, 0
	var mu sync.Mutex
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(func(context.Context, activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			return activities.ExtractDevicesResult{}, temporal.NewApplicationError("source schema changed: MySQL table devices: Unknown column 'firmware' in 'field list'", activities.ErrTypeSourceSchema)
		})
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(func(context.Context, activities.LoadFactsInput) (activities.LoadFactsResult, error) {
			mu.Lock()
			defer mu.Unlock()
			loads++
			return activities.LoadFactsResult{}, nil
		}).Maybe()
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 1})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Message(), "extract devices: source schema changed: MySQL table devices: Unknown column 'firmware'") {
		t.Fatalf("workflow error %v; want the source schema error", err)
	}
	if attempts != 1 || loads != 0 {
		t.Errorf("ExtractDevices ran %d times, LoadFacts %d; want 1 and 0", attempts, loads)
	}
}

// TestFinishUsesTheLoadsSums: when every shard's load reports the sums of
// its facts and its detection scores, FinishRun gets their totals and need
// not read the facts; when
// one shard has none (loaded by a worker from before them), it gets none
// and measures.
func TestFinishUsesTheLoadsSums(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noSums int // the shard that reports no sums; -1: none
		want   *batch.FactSums
	}{
		{"every shard inserted", -1, &batch.FactSums{Rows: 3, Anomalies: 3, Quality: "1.5", Checksum: "3000000000000000000"}},
		{"one shard without sums", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *batch.FactSums
			var gotDetection *activities.Detection
			env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
				env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
					func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
						res := activities.LoadFactsResult{Rows: in.ExpectedRows}
						if in.Shard != tc.noSums {
							res.Sums = &batch.FactSums{Rows: 1, Anomalies: 1, Quality: "0.5", Checksum: "1000000000000000000"}
							res.Detection = &activities.Detection{Truth: in.Shard == 0,
								Kinds: map[anomaly.Kind]anomaly.Metrics{anomaly.KindSpike: {TP: 1, FP: 1, Events: 1, Found: 1}}}
						}
						return res, nil
					})
				env.OnActivity(a.FinishRun, mock.Anything, mock.Anything).Return(
					func(_ context.Context, in activities.FinishRunInput) (activities.FinishRunResult, error) {
						got, gotDetection = in.LoadedSums, in.LoadedDetection
						return activities.FinishRunResult{FactRows: 3}, nil
					})
			})
			env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 3})
			result(t, env)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FinishRunInput.LoadedSums (-want +got):\n%s", diff)
			}
			if tc.want == nil {
				if gotDetection != nil {
					t.Errorf("FinishRunInput.LoadedDetection %+v; want none", gotDetection)
				}
				return
			}
			spike := gotDetection.Kinds[anomaly.KindSpike]
			if !gotDetection.Truth || spike.TP != 3 || spike.FP != 3 || spike.Events != 3 || spike.Precision != 0.5 || spike.Recall != 1 {
				t.Errorf("FinishRunInput.LoadedDetection %+v; want truth, spike TP 3 FP 3 of 3 events", gotDetection)
			}
		})
	}
}

// TestDirectFactsReachTheLoad: without a gate the transforms may write
// first loads' facts (TransformInput.Direct), and each shard's LoadFacts
// is told whether its transform did, with the detection scores its
// transform reported; with the gate on, none may write facts.
func TestDirectFactsReachTheLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		gate batch.Gate
	}{{"no gate", batch.Gate{}}, {"gate", batch.Gate{DQMin: 0.5}}} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			asked := map[int]bool{}
			loaded := map[int]bool{}
			scored := map[int]bool{}
			env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
				env.OnActivity(a.Transform, mock.Anything, mock.Anything).Return(
					func(_ context.Context, in activities.TransformInput) (activities.TransformTotal, error) {
						mu.Lock()
						defer mu.Unlock()
						asked[in.Shard] = in.Direct
						// Shard 1 found facts of the window and staged; shard 2
						// had injected events.
						return activities.TransformTotal{Devices: 1, Rows: 10, Direct: in.Direct && in.Shard != 1,
							Detection: &activities.Detection{Truth: in.Shard == 2}}, nil
					})
				env.OnActivity(a.CheckDQGate, mock.Anything, mock.Anything).Return(batch.DQReport{Rows: 30, DQScore: 1}, nil)
				env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
					func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
						mu.Lock()
						defer mu.Unlock()
						loaded[in.Shard] = in.Direct
						scored[in.Shard] = in.Detection != nil && in.Detection.Truth
						return activities.LoadFactsResult{Rows: in.ExpectedRows}, nil
					})
			})
			env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 3, Gate: tc.gate})
			result(t, env)
			on := !tc.gate.On()
			wantAsked := map[int]bool{0: on, 1: on, 2: on}
			wantLoaded := map[int]bool{0: on, 1: false, 2: on}
			if diff := cmp.Diff(wantAsked, asked); diff != "" {
				t.Errorf("TransformInput.Direct by shard (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantLoaded, loaded); diff != "" {
				t.Errorf("LoadFactsInput.Direct by shard (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[int]bool{0: false, 1: false, 2: true}, scored); diff != "" {
				t.Errorf("LoadFactsInput.Detection.Truth by shard (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExportFromTransform: the export builds from the transforms' staged
// device-hours only when every shard's load was a first load and the
// staging was never lost; the transforms are asked to stage them.
func TestExportFromTransform(t *testing.T) {
	for _, tc := range []struct {
		name      string
		notFirst  int // the shard whose load was not a first load; -1: none
		lostAfter bool
		want      bool
	}{
		{"every load first", -1, false, true},
		{"shard 1 upserted", 1, false, false},
		{"staging lost in the export", -1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var staged []bool
			var fromTransform []bool
			env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
				env.OnActivity(a.Transform, mock.Anything, mock.Anything).Return(
					func(_ context.Context, in activities.TransformInput) (activities.TransformTotal, error) {
						mu.Lock()
						defer mu.Unlock()
						staged = append(staged, in.StageHours)
						return activities.TransformTotal{Devices: 1, Rows: 10}, nil
					})
				env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
					func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
						return activities.LoadFactsResult{Rows: in.ExpectedRows, FirstLoad: in.Shard != tc.notFirst}, nil
					})
				env.OnActivity(a.ExportFeatures, mock.Anything, mock.Anything).Return(
					func(_ context.Context, in activities.ExportFeaturesInput) (activities.ExportFeaturesResult, error) {
						fromTransform = append(fromTransform, in.FromTransform)
						if tc.lostAfter && len(fromTransform) == 1 {
							return activities.ExportFeaturesResult{}, temporal.NewNonRetryableApplicationError("staging lost", activities.ErrTypeStagingLost, nil)
						}
						return activities.ExportFeaturesResult{Rows: 7}, nil
					})
			})
			env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 3})
			result(t, env)
			if len(staged) != 3 || !staged[0] || !staged[1] || !staged[2] {
				t.Errorf("TransformInput.StageHours: %v; want true for each of 3 shards", staged)
			}
			want := []bool{tc.want}
			if tc.lostAfter {
				want = []bool{true, false}
			}
			if diff := cmp.Diff(want, fromTransform); diff != "" {
				t.Errorf("ExportFeaturesInput.FromTransform by export (-want +got):\n%s", diff)
			}
		})
	}
}
