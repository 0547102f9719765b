package activities

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-etl/iot-etl/internal/simulate"
	"github.com/iot-etl/iot-etl/internal/store"
	"github.com/iot-etl/iot-etl/internal/testenv"
	"github.com/iot-etl/iot-etl/internal/transform"
)

var (
	batchDay    = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	batchWindow = Window{Start: batchDay, End: batchDay.Add(24 * time.Hour)}
)

// batchFixture is a seeded stack and the batch activities on it.
type batchFixture struct {
	t     *testing.T
	stack *testenv.Stack
	b     *Batch
	run   RunRef
}

func newBatchFixture(t *testing.T, devices int) *batchFixture {
	t.Helper()
	s := testenv.Databases(t)
	_, err := store.Seed(context.Background(), s.MySQL, s.Locations, s.Timescale, store.SeedOptions{
		Seed: 3, Devices: devices, From: batchDay.Add(-24 * time.Hour), To: batchWindow.End, Sim: simulate.DefaultOptions(),
	})
	if err != nil {
		t.Fatal(err)
	}
	run := RunRef{RunKey: "run-key", RunID: "run-id", WorkflowID: "wf"}
	if err := store.CreateStaging(context.Background(), s.Timescale, run.RunKey); err != nil {
		t.Fatal(err)
	}
	return &batchFixture{t: t, stack: s, run: run,
		b: &Batch{MySQL: s.MySQL, Locations: s.Locations, Timescale: s.Timescale, ExportDir: t.TempDir(), Params: transform.DefaultParams()}}
}

func (f *batchFixture) env() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(f.b)
	return env
}

func (f *batchFixture) count(q string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.stack.Timescale.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestExtractReadingsResumesFromHeartbeat: a retry whose last heartbeat
// says the first 3 hours are staged stages only the rest and reports the
// total.
func TestExtractReadingsResumesFromHeartbeat(t *testing.T) {
	f := newBatchFixture(t, 3)
	chunk := Chunk{ID: 0, From: batchDay, To: batchDay.Add(6 * time.Hour)}
	resumeAt := batchDay.Add(3 * time.Hour)
	// The attempt that died staged hour 3 but did not heartbeat it.
	if _, err := f.stack.Timescale.Exec(context.Background(), `INSERT INTO staging.readings (run_key, device_id, time, value, battery, rssi)
		SELECT $1, device_id, time, value, battery, rssi FROM public.sensor_readings WHERE time >= $2 AND time < $3`,
		f.run.RunKey, resumeAt, resumeAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	env := f.env()
	env.SetHeartbeatDetails(ExtractReadingsProgress{NextFrom: resumeAt, Rows: 1000})
	v, err := env.ExecuteActivity(f.b.ExtractReadings, ExtractReadingsInput{Run: f.run, Chunk: chunk})
	if err != nil {
		t.Fatal(err)
	}
	var res ExtractReadingsResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	rest := f.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, resumeAt, chunk.To)
	if staged := f.count(`SELECT count(*) FROM staging.readings WHERE run_key = $1`, f.run.RunKey); staged != rest {
		t.Errorf("staged %d rows, want %d (only [3h, 6h), each once)", staged, rest)
	}
	if err := store.IndexStagedReadings(context.Background(), f.stack.Timescale, f.run.RunKey); err != nil {
		t.Errorf("unique index over the staged readings: %v", err)
	}
	if res.Rows != 1000+rest {
		t.Errorf("result %d rows, want %d (heartbeat 1000 + %d staged now)", res.Rows, 1000+rest, rest)
	}
}

// TestTransformResumesAfterLastDevice: a retry skips the devices its last
// heartbeat committed and drops whatever the failed attempt wrote after them.
func TestTransformResumesAfterLastDevice(t *testing.T) {
	f := newBatchFixture(t, 4)
	ctx := context.Background()
	env := f.env()
	for _, call := range []func() error{
		func() error {
			_, err := env.ExecuteActivity(f.b.ExtractDevices, ExtractDevicesInput{Run: f.run, Shards: 1})
			return err
		},
		func() error {
			_, err := env.ExecuteActivity(f.b.ExtractLocations, ExtractLocationsInput{Run: f.run})
			return err
		},
		func() error {
			_, err := env.ExecuteActivity(f.b.ExtractReadings, ExtractReadingsInput{Run: f.run, Chunk: Chunk{From: batchDay.Add(-time.Hour), To: batchWindow.End}})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	devices, err := store.ShardDevices(ctx, f.stack.Timescale, f.run.RunKey, 0, "")
	if err != nil || len(devices) != 4 {
		t.Fatalf("shard devices: %d, %v", len(devices), err)
	}
	// A first attempt transforms everything, then "fails" after committing
	// the first two devices: its retry must keep those, drop the rest and
	// redo only the rest.
	if _, err := f.env().ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour}); err != nil {
		t.Fatal(err)
	}
	done := devices[1].Device.ID
	env = f.env()
	env.SetHeartbeatDetails(TransformProgress{LastDevice: done, Totals: TransformTotal{Devices: 2, Rows: 7}})
	v, err := env.ExecuteActivity(f.b.Transform, TransformInput{Run: f.run, Shard: 0, Window: batchWindow, Lookback: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var total TransformTotal
	if err := v.Get(&total); err != nil {
		t.Fatal(err)
	}
	all := f.count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, batchWindow.Start, batchWindow.End)
	rest := f.count(`SELECT count(*) FROM public.sensor_readings WHERE device_id > $1 AND time >= $2 AND time < $3`, done, batchWindow.Start, batchWindow.End)
	if got := f.count(`SELECT count(*) FROM staging.enriched WHERE run_key = $1`, f.run.RunKey); got != all {
		t.Errorf("staging.enriched has %d rows, want %d: every reading exactly once", got, all)
	}
	if got := f.count(`SELECT count(DISTINCT (device_id, time)) FROM staging.enriched WHERE run_key = $1`, f.run.RunKey); got != all {
		t.Errorf("%d distinct readings in staging.enriched, want %d", got, all)
	}
	if total.Devices != 4 || total.Rows != 7+rest {
		t.Errorf("totals %+v, want 4 devices and %d rows (heartbeat 7 + %d redone)", total, 7+rest, rest)
	}
}

// TestLoadFactsDetectsLostStaging: fewer staged rows than Transform wrote
// is a non-retryable StagingLost error, and nothing is loaded.
func TestLoadFactsDetectsLostStaging(t *testing.T) {
	f := newBatchFixture(t, 1)
	env := f.env()
	_, err := env.ExecuteActivity(f.b.LoadFacts, LoadFactsInput{Run: f.run, Shard: 0, Window: batchWindow, ExpectedRows: 1440})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != "StagingLost" || !appErr.NonRetryable() {
		t.Fatalf("error = %v, want a non-retryable StagingLost", err)
	}
	if n := f.count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != 0 {
		t.Errorf("%d facts loaded", n)
	}
}

func TestClassify(t *testing.T) {
	f := newBatchFixture(t, 1)
	_, dataErr := f.stack.Timescale.Exec(context.Background(), `INSERT INTO dwh.etl_watermarks (pipeline, high_watermark, last_run_id, updated_at) VALUES (NULL, now(), 'r', now())`)
	cases := []struct {
		err      error
		wantType string // "" = retryable, left as is
	}{
		{dataErr, "InvalidData"},
		{store.ErrStagingLost, "StagingLost"},
		{errors.New("dial tcp 127.0.0.1:5432: connection refused"), ""},
	}
	for _, c := range cases {
		got := classify(c.err)
		var appErr *temporal.ApplicationError
		switch {
		case c.wantType == "" && errors.As(got, &appErr):
			t.Errorf("classify(%v) = %v, want it retryable and unchanged", c.err, got)
		case c.wantType != "" && (!errors.As(got, &appErr) || appErr.Type() != c.wantType || !appErr.NonRetryable()):
			t.Errorf("classify(%v) = %v, want non-retryable %s", c.err, got, c.wantType)
		}
	}
}
