package workflows

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-etl/iot-etl/activities"
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
		want     activities.Window
	}{
		{"nightly", day("2026-11-28T02:00:05Z"), false, activities.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-28T00:00:00Z")}},
		{"late run", day("2026-11-28T23:59:59Z"), false, activities.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-28T00:00:00Z")}},
		{"test mode", day("2026-11-28T02:00:00Z"), true, activities.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-27T01:00:00Z")}},
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
	want := activities.Window{Start: day("2026-11-27T00:00:00Z"), End: day("2026-11-28T00:00:00Z")}
	if diff := cmp.Diff(want, got.Window); diff != "" {
		t.Errorf("window (-want +got):\n%s", diff)
	}
}

func TestExplicitWindowAndFanOut(t *testing.T) {
	var chunks []activities.Chunk
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExtractReadings, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.ExtractReadingsInput) (activities.ExtractReadingsResult, error) {
				chunks = append(chunks, in.Chunk)
				return activities.ExtractReadingsResult{Rows: 10}, nil
			})
	})
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{WindowStart: nov20, WindowEnd: nov21, Shards: 3, Chunk: 12 * time.Hour})
	got := result(t, env)
	// 1h lookback + 24h in 12h chunks: [−1h, 11h), [11h, 23h), [23h, 24h).
	wantChunks := []activities.Chunk{
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
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in activities.LoadFactsInput) (activities.LoadFactsResult, error) {
				calls[in.Shard]++
				if in.Shard == 0 && calls[0] == 1 {
					return activities.LoadFactsResult{}, temporal.NewNonRetryableApplicationError("check constraint violated", "InvalidData", nil)
				}
				return activities.LoadFactsResult{Rows: in.ExpectedRows}, nil
			})
		env.OnActivity(a.MarkRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.MarkRunInput) error {
			marked = append(marked, in.Status)
			return nil
		})
		env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
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

func TestLoadFailureThenAbandon(t *testing.T) {
	var finished activities.FinishRunInput
	exported := false
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(a.LoadFacts, mock.Anything, mock.Anything).Return(activities.LoadFactsResult{},
			temporal.NewNonRetryableApplicationError("staging rows missing", "StagingLost", nil))
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
	if want := "abandoned by operator (bad data upstream) after load failure: load facts shard 0: staging rows missing"; finished.Error != want {
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
	env := newBatchEnv(t, func(env *testsuite.TestWorkflowEnvironment) {
		loadFactsOK(env)
		env.OnActivity(a.ExtractDevices, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractDevicesInput) (activities.ExtractDevicesResult, error) {
			maxDevices = in.MaxDevices
			return activities.ExtractDevicesResult{Devices: 2, DeviceIDs: []string{"HUM-001", "TEMP-001"}}, nil
		})
		env.OnActivity(a.ExtractReadings, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExtractReadingsInput) (activities.ExtractReadingsResult, error) {
			filters = append(filters, in.DeviceFilter)
			return activities.ExtractReadingsResult{}, nil
		})
	})
	env.SetStartTime(day("2026-11-28T02:00:00Z"))
	env.ExecuteWorkflow(BatchETLWorkflow, BatchInput{TestMode: true})
	result(t, env)
	if maxDevices != TestModeMaxDevices {
		t.Errorf("MaxDevices = %d, want %d", maxDevices, TestModeMaxDevices)
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
