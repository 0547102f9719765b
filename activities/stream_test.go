package activities

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/testsupport/streamcheck"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

const leaseTopic = "lease-test"

// leaseFixture is one test's databases, device registry and Kafka topic.
type leaseFixture struct {
	t      *testing.T
	stack  *testenv.Stack
	stream *Stream
	prod   *kgo.Client
}

func newLeaseFixture(t *testing.T, partitions int32, devices ...string) *leaseFixture {
	t.Helper()
	s := testenv.Databases(t)
	_, brokers := testenv.Kafka(t, leaseTopic, partitions)
	s.Config.Kafka.BootstrapServers = brokers
	registerDevices(t, s.MySQL, devices...)
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(leaseTopic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &leaseFixture{t: t, stack: s, prod: prod, stream: &Stream{
		Timescale: s.Timescale, MySQL: s.MySQL, Kafka: s.Config.Kafka, Config: s.Config.Stream, Params: transform.DefaultParams(),
	}}
}

// registerDevices writes the catalog's device types and the devices (the
// type is the id's prefix) to the MySQL registry.
func registerDevices(t *testing.T, db *sql.DB, ids ...string) {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, ty := range reading.Catalog {
		if _, err := db.ExecContext(ctx, `INSERT INTO device_types (code, metric, unit, valid_min, valid_max, max_rate_per_min, expected_interval_s, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, ty.Code, ty.Metric, ty.Unit, ty.ValidMin, ty.ValidMax, ty.MaxRatePerMin, int(ty.ExpectedInterval/time.Second), now); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		code, _, _ := strings.Cut(id, "-")
		if _, err := db.ExecContext(ctx, `INSERT INTO devices (device_id, type_code, location_id, model, firmware, status, installed_at, updated_at)
			VALUES (?, ?, 'LOC-0001', 'test', '1.0', 'active', ?, ?)`, id, code, now, now); err != nil {
			t.Fatal(err)
		}
	}
}

// msg is one record to produce.
type msg struct {
	partition int32
	value     string
	at        time.Time // record timestamp
}

var t0 = time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)

// reading returns the JSON of a reading of device at t0+offset; value ""
// means null.
func readingJSON(device string, offset time.Duration, value string) string {
	if value == "" {
		value = "null"
	}
	return fmt.Sprintf(`{"device_id":%q,"time":%q,"value":%s,"battery":87.5,"rssi":-61,"seq":1}`, device, t0.Add(offset).Format(time.RFC3339Nano), value)
}

func (f *leaseFixture) produce(msgs ...msg) {
	f.t.Helper()
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		at := m.at
		if at.IsZero() {
			at = t0.Add(2 * time.Hour)
		}
		recs[i] = &kgo.Record{Partition: m.partition, Key: []byte(fmt.Sprint("k", m.partition)), Value: []byte(m.value), Timestamp: at}
	}
	if err := f.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		f.t.Fatal(err)
	}
}

func (f *leaseFixture) count(query string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.stack.Timescale.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (f *leaseFixture) text(query string) string {
	f.t.Helper()
	var s *string
	if err := f.stack.Timescale.QueryRow(context.Background(), query).Scan(&s); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
	if s == nil {
		return ""
	}
	return *s
}

func (f *leaseFixture) lease(in LeaseInput, hooks leaseHooks) (LeaseResult, error) {
	f.t.Helper()
	in.Topic = leaseTopic
	if in.AllowedLateness == 0 {
		in.AllowedLateness = 10 * time.Minute
	}
	if hooks.owner == "" {
		hooks.owner = "test-lease"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return f.stream.runLease(ctx, in, hooks)
}

// batchMessages is one batch with every kind of message. Partition 0 holds
// TEMP-001 (valid range −40…85 °C, 2 °C/min), partition 1 HUM-001.
var batchMessages = []msg{
	{0, readingJSON("TEMP-001", 0, "20"), time.Time{}},                                  // 0 lands
	{0, readingJSON("TEMP-001", time.Second, "20.01"), time.Time{}},                     // 1 lands
	{0, readingJSON("TEMP-001", time.Second, "25"), time.Time{}},                        // 2 duplicate of 1 in the batch
	{0, `not json`, time.Time{}},                                                        // 3 not_json
	{0, readingJSON("TEMP-999", 2*time.Second, "20"), time.Time{}},                      // 4 unknown_device
	{0, readingJSON("TEMP-001", 2*time.Second, "500"), time.Time{}},                     // 5 out of range: lands, flagged
	{0, readingJSON("TEMP-001", 3*time.Second, "20.02"), time.Time{}},                   // 6 lands, flagged (rate of change after 500)
	{0, readingJSON("TEMP-001", -15*time.Minute, "20"), time.Time{}},                    // 7 late
	{0, readingJSON("TEMP-001", 61*time.Second, ""), time.Time{}},                       // 8 null value: lands
	{0, readingJSON("TEMP-001", 62*time.Second, `"NaN"`), time.Time{}},                  // 9 non_finite
	{0, readingJSON("TEMP-001", 63*time.Second, "20.03"), time.Time{}},                  // 10 lands
	{1, readingJSON("HUM-001", 0, "45.5"), time.Time{}},                                 // 0 lands
	{1, readingJSON("HUM-001", 30*time.Second, "45.6"), time.Time{}},                    // 1 lands
	{1, readingJSON("HUM-001", 60*time.Second, "45.7"), time.Time{}},                    // 2 already stored: duplicate
	{1, readingJSON("HUM-001", 90*time.Second, "45.8"), time.Time{}},                    // 3 lands
	{1, readingJSON("HUM-001", 30*time.Second, "99"), time.Time{}},                      // 4 duplicate of 1 in the batch
	{1, strings.Replace(readingJSON("HUM-001", 0, "1"), "1,", "true,", 1), time.Time{}}, // 5 wrong_type
	{0, readingJSON("TEMP-001", 3*time.Hour, "20"), t0.Add(time.Hour)},                  // 11 time_in_future
}

// batchExpectation checks the sink after batchMessages landed exactly once.
func (f *leaseFixture) checkBatchLanded(wantRecords map[int32]int64, wantDuplicates map[int32]int64) {
	f.t.Helper()
	if n := f.count(`SELECT count(*) FROM public.sensor_readings WHERE source = 'stream'`); n != 9 {
		f.t.Errorf("stream readings = %d, want 9", n)
	}
	gotDLQ := f.text(`SELECT string_agg(partition || '/' || "offset" || ':' || reason, ' ' ORDER BY partition, "offset") FROM public.stream_dead_letters`)
	if want := "0/3:not_json 0/4:unknown_device 0/7:late 0/9:non_finite 0/11:time_in_future 1/5:wrong_type"; gotDLQ != want {
		f.t.Errorf("dead letters = %q, want %q", gotDLQ, want)
	}
	if raw := f.text(`SELECT convert_from(raw, 'UTF8') FROM public.stream_dead_letters WHERE reason = 'not_json'`); raw != "not json" {
		f.t.Errorf("raw bytes of the not_json dead letter = %q", raw)
	}
	gotAnomalies := f.text(`SELECT string_agg(device_id || '@' || to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS') || '=' || array_to_string(reasons, '+') || '/' || partition || '/' || "offset", ' ' ORDER BY time) FROM public.stream_anomalies`)
	if want := "TEMP-001@14:00:02=out_of_range+rate_of_change/0/5 TEMP-001@14:00:03=rate_of_change/0/6"; gotAnomalies != want {
		f.t.Errorf("anomalies = %q, want %q", gotAnomalies, want)
	}
	gotWindows := f.text(`SELECT string_agg(concat_ws(',', device_id, to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), to_char(window_end AT TIME ZONE 'UTC', 'HH24:MI'),
		reading_count, value_count, value_sum, value_sum_sq, value_min, value_max, anomaly_count), ' ' ORDER BY device_id, window_start) FROM public.sensor_readings_stream_agg`)
	want := "HUM-001,14:00,14:01,2,2,91.1,4149.61,45.5,45.6,0 HUM-001,14:01,14:02,1,1,45.8,2097.64,45.8,45.8,0 " +
		"TEMP-001,14:00,14:01,4,4,560.03,251201.2005,20,500,2 TEMP-001,14:01,14:02,2,1,20.03,401.2009,20.03,20.03,0"
	if gotWindows != want {
		f.t.Errorf("windows =\n%s\nwant\n%s", gotWindows, want)
	}
	f.checkWindowsMatchRaw(`source = 'stream'`)
	offsets, err := sink.ReadOffsets(context.Background(), f.stack.Timescale, leaseTopic)
	if err != nil {
		f.t.Fatal(err)
	}
	got := map[int32]ingest.Counters{}
	for p, o := range offsets {
		got[p] = o.Counters
	}
	wantCounters := map[int32]ingest.Counters{
		0: {Records: wantRecords[0], Inserted: 6, Duplicates: wantDuplicates[0], DeadLetters: 5, Anomalies: 2},
		1: {Records: wantRecords[1], Inserted: 3, Duplicates: wantDuplicates[1], DeadLetters: 1},
	}
	if diff := cmp.Diff(wantCounters, got); diff != "" {
		f.t.Errorf("partition counters (-want +got):\n%s", diff)
	}
	if o := offsets[0]; o.NextOffset != 12 || !o.Watermark.Equal(t0.Add(63*time.Second)) {
		f.t.Errorf("partition 0: next offset %d, watermark %s; want 12, %s", o.NextOffset, o.Watermark, t0.Add(63*time.Second))
	}
	if o := offsets[1]; o.NextOffset != 6 || !o.Watermark.Equal(t0.Add(90*time.Second)) {
		f.t.Errorf("partition 1: next offset %d, watermark %s; want 6, %s", o.NextOffset, o.Watermark, t0.Add(90*time.Second))
	}
}

// checkWindowsMatchRaw compares every column of the window table with a
// recomputation from the raw readings that match where.
func (f *leaseFixture) checkWindowsMatchRaw(where string) {
	f.t.Helper()
	f.checkWindowsOfLengthMatchRaw(where, time.Minute)
}

// checkWindowsOfLengthMatchRaw is checkWindowsMatchRaw for windows of the
// given length.
func (f *leaseFixture) checkWindowsOfLengthMatchRaw(where string, length time.Duration) {
	f.t.Helper()
	q := `WITH raw AS (
		SELECT device_id, date_bin($1::bigint * interval '1 second', time, timestamptz '2000-01-01 00:00:00+00') AS w,
		       count(*) AS n, count(value) AS nv, coalesce(sum(value::numeric), 0) AS s,
		       coalesce(sum(value::numeric * value::numeric), 0) AS ss, min(value) AS mn, max(value) AS mx
		FROM public.sensor_readings WHERE ` + where + ` GROUP BY 1, 2)
		SELECT count(*) FROM raw FULL JOIN public.sensor_readings_stream_agg a ON a.device_id = raw.device_id AND a.window_start = raw.w
		WHERE raw.device_id IS NULL OR a.device_id IS NULL OR a.window_end <> raw.w + $1::bigint * interval '1 second'
		   OR a.reading_count <> raw.n OR a.value_count <> raw.nv OR a.value_sum <> raw.s OR a.value_sum_sq <> raw.ss
		   OR a.value_min IS DISTINCT FROM raw.mn OR a.value_max IS DISTINCT FROM raw.mx`
	if n := f.count(q, int64(length/time.Second)); n != 0 {
		f.t.Errorf("%d windows differ from the recomputation from the raw readings", n)
	}
}

func (f *leaseFixture) seedStoredReading() {
	f.t.Helper()
	if _, err := f.stack.Timescale.Exec(context.Background(), `INSERT INTO public.sensor_readings (time, device_id, value, battery, rssi, source)
		VALUES ($1, 'HUM-001', 45.7, 90, -60, 'seed')`, t0.Add(60*time.Second)); err != nil {
		f.t.Fatal(err)
	}
}

// TestLeaseLandsOneBatchExactly: one micro-batch with valid, duplicate,
// late, malformed, unknown-device, non-finite, future and out-of-range
// messages gives exact raw, window, dead-letter and anomaly rows; consuming
// the same records again from reset offsets changes nothing.
func TestLeaseLandsOneBatchExactly(t *testing.T) {
	t.Parallel()
	f := newLeaseFixture(t, 2, "TEMP-001", "HUM-001")
	f.seedStoredReading()
	f.produce(batchMessages...)
	in := LeaseInput{Partitions: []int32{0, 1}, Duration: time.Minute, MaxBatchRecords: 1000, MaxBatchWait: 10 * time.Second, DrainTo: map[int32]int64{0: 12, 1: 6}}
	res, err := f.lease(in, leaseHooks{})
	if err != nil {
		t.Fatal(err)
	}
	if res.End != LeaseEndDrained || res.Batches != 1 {
		t.Errorf("lease ended %q after %d batches, want drained after 1", res.End, res.Batches)
	}
	f.checkBatchLanded(map[int32]int64{0: 12, 1: 6}, map[int32]int64{0: 1, 1: 2})
	// The same anomalies from the batch transform's code on the accepted
	// readings in order.
	state := transform.NewDeviceState(reading.Device{ID: "TEMP-001"}, reading.Catalog[0], reading.Location{}, transform.DefaultParams())
	var flagged []string
	for _, m := range []struct {
		off   time.Duration
		v     float64
		valid bool
	}{{0, 20, true}, {time.Second, 20.01, true}, {2 * time.Second, 500, true}, {3 * time.Second, 20.02, true}, {61 * time.Second, 0, false}, {63 * time.Second, 20.03, true}} {
		if e := state.Push(reading.Reading{DeviceID: "TEMP-001", Time: t0.Add(m.off), Value: m.v, ValueValid: m.valid}); e.Anomaly {
			flagged = append(flagged, strings.Join(e.Reasons, "+"))
		}
	}
	if diff := cmp.Diff([]string{"out_of_range+rate_of_change", "rate_of_change"}, flagged); diff != "" {
		t.Errorf("the batch transform flags (-want +got):\n%s", diff)
	}

	// Redelivery: the same records again change no row.
	snapshot := func() string {
		return f.text(`SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
			SELECT concat_ws(',', time, device_id, value, battery, rssi, source, ingested_at) AS t FROM public.sensor_readings
			UNION ALL SELECT concat_ws(',', window_start, device_id, reading_count, value_count, value_sum, value_sum_sq, value_min, value_max, anomaly_count, updated_at) FROM public.sensor_readings_stream_agg
			UNION ALL SELECT concat_ws(',', id, partition, "offset", reason, error, received_at) FROM public.stream_dead_letters
			UNION ALL SELECT concat_ws(',', device_id, time, reasons, detected_at) FROM public.stream_anomalies) x`)
	}
	before := snapshot()
	if _, err := f.stack.Timescale.Exec(context.Background(), `UPDATE public.stream_offsets SET next_offset = 0, watermark = NULL`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.lease(in, leaseHooks{}); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(); after != before {
		t.Error("consuming the same records again changed the sink")
	}
	f.checkBatchLanded(map[int32]int64{0: 24, 1: 12}, map[int32]int64{0: 1 + 7, 1: 2 + 5})
}

// TestLeaseCrashMidStreamThenRestart: a batch fails in the middle of its
// transaction (the offsets update raises, as a crash would leave it); the
// restarted lease continues from the committed offsets and the sink ends
// exactly as if nothing had happened.
func TestLeaseCrashMidStreamThenRestart(t *testing.T) {
	t.Parallel()
	f := newLeaseFixture(t, 2, "TEMP-001", "HUM-001")
	f.seedStoredReading()
	f.produce(batchMessages...)
	ctx := context.Background()
	if _, err := f.stack.Timescale.Exec(ctx, `
		CREATE FUNCTION crash_on_advance() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.partition = 0 AND NEW.next_offset > 6 THEN RAISE EXCEPTION 'injected crash'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER crash BEFORE UPDATE OF next_offset ON public.stream_offsets FOR EACH ROW EXECUTE FUNCTION crash_on_advance()`); err != nil {
		t.Fatal(err)
	}
	in := LeaseInput{Partitions: []int32{0, 1}, Duration: time.Minute, MaxBatchRecords: 3, MaxBatchWait: 10 * time.Second, DrainTo: map[int32]int64{0: 12, 1: 6}}
	if _, err := f.lease(in, leaseHooks{}); err == nil || !strings.Contains(err.Error(), "injected crash") {
		t.Fatalf("lease error = %v, want the injected crash", err)
	}
	committed := f.count(`SELECT next_offset FROM public.stream_offsets WHERE partition = 0`)
	if committed > 6 {
		t.Fatalf("partition 0 committed up to %d despite the crash", committed)
	}
	// Exactly the readings of the committed offsets are visible: partition
	// 0's records that land are at offsets 0, 1, 5, 6, 8 and 10.
	var want int64
	for _, o := range []int64{0, 1, 5, 6, 8, 10} {
		if o < committed {
			want++
		}
	}
	if n := f.count(`SELECT count(*) FROM public.sensor_readings WHERE source = 'stream' AND device_id = 'TEMP-001'`); n != want {
		t.Fatalf("%d readings of partition 0 visible after the crash, want %d (offsets below %d)", n, want, committed)
	}
	if _, err := f.stack.Timescale.Exec(ctx, `DROP TRIGGER crash ON public.stream_offsets`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.lease(in, leaseHooks{}); err != nil {
		t.Fatal(err)
	}
	f.checkBatchLanded(map[int32]int64{0: 12, 1: 6}, map[int32]int64{0: 1, 1: 2})
}

// TestLeaseFencedByNewerLease: once a newer lease claims the partition, the
// running lease's next commit is rejected, writes nothing and ends the
// lease with ErrLeaseFenced.
func TestLeaseFencedByNewerLease(t *testing.T) {
	t.Parallel()
	f := newLeaseFixture(t, 1, "TEMP-001")
	for i := range 5 {
		f.produce(msg{0, readingJSON("TEMP-001", time.Duration(i)*time.Second, "20"), time.Time{}})
	}
	type outcome struct {
		res LeaseResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := f.lease(LeaseInput{Partitions: []int32{0}, Duration: 30 * time.Second, MaxBatchWait: 50 * time.Millisecond}, leaseHooks{owner: "zombie"})
		done <- outcome{res, err}
	}()
	waitFor(t, func() bool { return f.count(`SELECT coalesce(max(next_offset), 0) FROM public.stream_offsets`) == 5 })

	ctx := context.Background()
	newer, err := sink.Open(ctx, f.stack.Timescale, leaseTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Close(ctx)
	claimed, err := newer.Claim(ctx, []int32{0}, "newer")
	if err != nil {
		t.Fatal(err)
	}
	f.produce(msg{0, readingJSON("TEMP-001", 5*time.Second, "20.01"), time.Time{}})
	var o outcome
	select {
	case o = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the fenced lease did not end")
	}
	if !errors.Is(o.err, sink.ErrLeaseFenced) {
		t.Fatalf("lease error = %v, want ErrLeaseFenced", o.err)
	}
	if n := f.count(`SELECT count(*) FROM public.sensor_readings`); n != 5 {
		t.Errorf("%d readings, want the 5 committed before the fence", n)
	}
	offsets, err := sink.ReadOffsets(ctx, f.stack.Timescale, leaseTopic)
	if err != nil {
		t.Fatal(err)
	}
	if p := offsets[0]; p.NextOffset != 5 || p.Epoch != claimed[0].Epoch || p.Owner != "newer" || p.Epoch != 2 {
		t.Errorf("partition 0 = %+v, want offset 5 owned by the newer lease at epoch 2", p)
	}
}

// TestLeaseCancelCommitsOpenBatchQuickly: a cancellation in a heartbeat
// response stops fetching, commits the open batch and returns within 2s.
func TestLeaseCancelCommitsOpenBatchQuickly(t *testing.T) {
	t.Parallel()
	f := newLeaseFixture(t, 1, "TEMP-001")
	var cancelled atomic.Bool
	hooks := leaseHooks{heartbeat: func(context.Context, LeaseHeartbeat) error {
		if cancelled.Load() {
			return temporal.NewCanceledError()
		}
		return nil
	}}
	type outcome struct {
		res LeaseResult
		err error
		at  time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		// A batch wait far beyond the test: only the cancellation commits.
		res, err := f.lease(LeaseInput{Partitions: []int32{0}, Duration: 40 * time.Second, MaxBatchWait: 30 * time.Second}, hooks)
		done <- outcome{res, err, time.Now()}
	}()
	for i := range 3 {
		f.produce(msg{0, readingJSON("TEMP-001", time.Duration(i)*time.Second, "20"), time.Time{}})
	}
	time.Sleep(2 * time.Second) // the lease has the records in its open batch
	if n := f.count(`SELECT count(*) FROM public.sensor_readings`); n != 0 {
		t.Fatalf("%d readings committed before the batch was due", n)
	}
	cancelledAt := time.Now()
	cancelled.Store(true)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if took := o.at.Sub(cancelledAt); took > 2*time.Second {
		t.Errorf("lease ended %s after the cancellation, want within 2s", took)
	}
	if o.res.End != LeaseEndCancelled || o.res.Batches != 1 || o.res.Partitions[0].NextOffset != 3 {
		t.Errorf("result = %+v", o.res)
	}
	if n := f.count(`SELECT count(*) FROM public.sensor_readings`); n != 3 {
		t.Errorf("%d readings, want the open batch's 3", n)
	}
}

// TestLeaseWarmStartFlagsLikeOneLease: a spike after 40 steady readings is
// flagged the same (zscore and rate of change) whether one lease consumes
// everything or a new lease takes over just before the spike, because the
// new lease warms the device's state from the stored readings.
func TestLeaseWarmStartFlagsLikeOneLease(t *testing.T) {
	t.Parallel()
	var msgs []msg
	for i := range 40 {
		v := fmt.Sprintf("%.2f", 20+0.01*float64(i%3))
		msgs = append(msgs, msg{0, readingJSON("TEMP-001", time.Duration(i)*time.Minute, v), t0.Add(time.Duration(i) * time.Minute)})
	}
	msgs = append(msgs, msg{0, readingJSON("TEMP-001", 40*time.Minute, "25"), t0.Add(40 * time.Minute)})
	anomalies := func(split bool) string {
		f := newLeaseFixture(t, 1, "TEMP-001")
		f.produce(msgs...)
		in := LeaseInput{Partitions: []int32{0}, Duration: time.Minute, MaxBatchWait: 100 * time.Millisecond, DrainTo: map[int32]int64{0: 41}}
		if split {
			first := in
			first.DrainTo = map[int32]int64{0: 40}
			if _, err := f.lease(first, leaseHooks{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.lease(in, leaseHooks{}); err != nil {
			t.Fatal(err)
		}
		return f.text(`SELECT string_agg(to_char(time AT TIME ZONE 'UTC', 'HH24:MI') || '=' || array_to_string(reasons, '+'), ' ' ORDER BY time) FROM public.stream_anomalies`)
	}
	one, split := anomalies(false), anomalies(true)
	if want := "14:40=zscore+rate_of_change"; one != want || split != want {
		t.Errorf("anomalies: one lease %q, split leases %q; want %q", one, split, want)
	}
}

// TestLeaseFiveMinuteWindows: a lease of a stream started with 5-minute
// windows lands 5-minute windows, merges a later batch into them, judges
// lateness by them (an event that a 1-minute window would have refused is
// on time, one whose 5-minute window closed is late), and streamcheck's
// exact check passes with the stream's length and fails with the default.
func TestLeaseFiveMinuteWindows(t *testing.T) {
	t.Parallel()
	f := newLeaseFixture(t, 2, "TEMP-001", "HUM-001")
	at := func(off time.Duration) time.Time { return t0.Add(off) }
	f.produce(
		msg{0, readingJSON("TEMP-001", 0, "20"), at(0)},                                 // 0 window 14:00
		msg{0, readingJSON("TEMP-001", 270*time.Second, "21"), at(270 * time.Second)},   // 1 watermark 14:04:30
		msg{0, readingJSON("TEMP-001", time.Minute, "20.5"), at(time.Minute)},           // 2 on time: [14:00, 14:05) is open
		msg{0, readingJSON("TEMP-001", 5*time.Minute, "21.5"), at(5 * time.Minute)},     // 3 window 14:05
		msg{0, readingJSON("TEMP-001", 7*time.Minute, "22"), at(7 * time.Minute)},       // 4 watermark 14:07
		msg{0, readingJSON("TEMP-001", 299*time.Second, "21.2"), at(299 * time.Second)}, // 5 late: [14:00, 14:05) closed
		msg{1, readingJSON("HUM-001", 0, "45.5"), at(0)},
		msg{1, readingJSON("HUM-001", 2*time.Minute, "45.6"), at(2 * time.Minute)},
		msg{1, readingJSON("HUM-001", 4*time.Minute, "45.7"), at(4 * time.Minute)},
		msg{1, readingJSON("HUM-001", 10*time.Minute, "46"), at(10 * time.Minute)},
	)
	in := LeaseInput{Partitions: []int32{0, 1}, Duration: time.Minute, MaxBatchRecords: 1000, MaxBatchWait: 10 * time.Second,
		AllowedLateness: time.Second, Window: 5 * time.Minute, DrainTo: map[int32]int64{0: 6, 1: 4}}
	if _, err := f.lease(in, leaseHooks{}); err != nil {
		t.Fatal(err)
	}
	// A later lease merges into a stored 5-minute window.
	f.produce(msg{1, readingJSON("HUM-001", 11*time.Minute, "46.1"), at(11 * time.Minute)})
	in.DrainTo = map[int32]int64{0: 6, 1: 5}
	if _, err := f.lease(in, leaseHooks{}); err != nil {
		t.Fatal(err)
	}

	gotWindows := f.text(`SELECT string_agg(concat_ws(',', device_id, to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), to_char(window_end AT TIME ZONE 'UTC', 'HH24:MI'),
		reading_count, value_count, value_sum, value_sum_sq, value_min, value_max, anomaly_count), ' ' ORDER BY device_id, window_start) FROM public.sensor_readings_stream_agg`)
	want := "HUM-001,14:00,14:05,3,3,136.8,6238.10,45.5,45.7,0 HUM-001,14:10,14:15,2,2,92.1,4241.21,46,46.1,1 " +
		"TEMP-001,14:00,14:05,3,3,61.5,1261.25,20,21,1 TEMP-001,14:05,14:10,2,2,43.5,946.25,21.5,22,0"
	if gotWindows != want {
		t.Errorf("windows =\n%s\nwant\n%s", gotWindows, want)
	}
	// More than 3 expected intervals (3 minutes) since the previous reading.
	gotAnomalies := f.text(`SELECT string_agg(device_id || '@' || to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS') || '=' || array_to_string(reasons, '+'), ' ' ORDER BY time) FROM public.stream_anomalies`)
	if want := "TEMP-001@14:04:30=gap HUM-001@14:10:00=gap"; gotAnomalies != want {
		t.Errorf("anomalies = %q, want %q", gotAnomalies, want)
	}
	if dlq := f.text(`SELECT string_agg(partition || '/' || "offset" || ':' || reason || ': ' || error, ' ' ORDER BY partition, "offset") FROM public.stream_dead_letters`); dlq !=
		"0/5:late: window [2026-11-28T14:00:00Z, 2026-11-28T14:05:00Z) closed: partition watermark 2026-11-28T14:07:00Z, allowed lateness 1s" {
		t.Errorf("dead letters = %q", dlq)
	}
	f.checkWindowsOfLengthMatchRaw("true", 5*time.Minute)

	ctx := context.Background()
	res, err := streamcheck.Check(ctx, f.stack.Timescale, f.prod, leaseTopic, streamcheck.Expect{Produced: 11, Quarantined: 1, Window: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Exact() || res.Raw != 10 || res.DeadLetters != 1 {
		t.Errorf("streamcheck with 5-minute windows: raw %d, dead letters %d, problems %q; want 10, 1, none", res.Raw, res.DeadLetters, res.Problems)
	}
	res, err = streamcheck.Check(ctx, f.stack.Timescale, f.prod, leaseTopic, streamcheck.Expect{Produced: 11, Quarantined: 1})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"10 windows differ from the recomputation from the raw readings"}, res.Problems); diff != "" {
		t.Errorf("streamcheck with the default 1-minute windows, problems (-want +got):\n%s", diff)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition not reached in 20s")
}

// TestLeaseDebugEchoesRecords: in debug mode every decoded record and every
// dead letter is echoed to the log, and the batch is written as usual.
func TestLeaseDebugEchoesRecords(t *testing.T) {
	t.Parallel()
	f := newLeaseFixture(t, 1, "TEMP-001")
	f.produce(
		msg{0, readingJSON("TEMP-001", 0, "20"), time.Time{}},
		msg{0, readingJSON("TEMP-001", time.Second, "20.01"), time.Time{}},
		msg{0, `{"device_id":`, time.Time{}},
		msg{0, readingJSON("TEMP-001", 2*time.Second, "20.02"), time.Time{}},
	)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	res, err := f.lease(LeaseInput{Partitions: []int32{0}, Duration: time.Minute, MaxBatchWait: 10 * time.Second, Debug: true, DrainTo: map[int32]int64{0: 4}}, leaseHooks{log: log})
	if err != nil {
		t.Fatal(err)
	}
	if res.Partitions[0].Counters != (ingest.Counters{Records: 4, Inserted: 3, DeadLetters: 1}) {
		t.Errorf("counters = %+v", res.Partitions[0].Counters)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="stream record"`); n != 3 {
		t.Errorf("%d records echoed, want 3:\n%s", n, out)
	}
	// Every line of the lease carries the epochs it claimed.
	if n := strings.Count(out, `msg="stream dead letter" epochs=map[0:1] partition=0 offset=2 reason=not_json`); n != 1 {
		t.Errorf("%d dead letters echoed, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, `msg="stream record" epochs=map[0:1] partition=0 offset=1 device_id=TEMP-001 time=2026-11-28T14:00:01.000Z battery=87.5 rssi=-61 value=20.01`) {
		t.Errorf("record 1 not echoed with its fields:\n%s", out)
	}
}
