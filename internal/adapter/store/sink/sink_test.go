package sink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

const fenceTopic = "fence-topic"

func sinkCount(t *testing.T, s *testenv.Stack, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.Timescale.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func fenceBatch(epoch, expected int64) *ingest.Batch {
	t0 := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	return &ingest.Batch{
		Readings: []ingest.Reading{
			{Partition: 0, Offset: expected, Reading: reading.Reading{DeviceID: "TEMP-001", Time: t0, Value: 21.5, ValueValid: true, Battery: 90, RSSI: -60}},
			{Partition: 0, Offset: expected + 1, Reading: reading.Reading{DeviceID: "TEMP-001", Time: t0.Add(time.Second), Value: 500, ValueValid: true, Battery: 90, RSSI: -60}, Reasons: []string{"out_of_range"}},
		},
		DeadLetters: []ingest.DeadLetter{{Partition: 0, Offset: expected + 2, Raw: []byte("{"), Reason: "not_json", Error: "unexpected end", RecordTime: t0}},
		Offsets: []ingest.OffsetAdvance{{Partition: 0, Epoch: epoch, Expected: expected, Next: expected + 3, Watermark: t0.Add(time.Second),
			Counters: ingest.Counters{Records: 3, DeadLetters: 1}}},
	}
}

// TestStreamLeaseFencing: a second claim bumps the epoch; the first lease's
// commit is then rejected with ErrLeaseFenced and writes nothing, while the
// new lease commits; a commit from a stale offset is fenced too.
func TestStreamLeaseFencing(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	first, err := sink.Open(ctx, s.Timescale, fenceTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	second, err := sink.Open(ctx, s.Timescale, fenceTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(ctx)

	a, err := first.Claim(ctx, []int32{0, 1}, "lease-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := second.Claim(ctx, []int32{0}, "lease-b")
	if err != nil {
		t.Fatal(err)
	}
	if a[0].Epoch != 1 || a[1].Epoch != 1 || b[0].Epoch != 2 || b[0].NextOffset != 0 || b[0].Owner != "lease-b" {
		t.Fatalf("claims: a=%+v b=%+v", a, b)
	}

	_, err = first.Commit(ctx, fenceBatch(a[0].Epoch, 0))
	if !errors.Is(err, sink.ErrLeaseFenced) {
		t.Fatalf("zombie commit: err = %v, want ErrLeaseFenced", err)
	}
	for _, table := range []string{"public.sensor_readings", "public.sensor_readings_stream_agg", "public.stream_dead_letters", "public.stream_anomalies"} {
		if n := sinkCount(t, s, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("after the fenced commit %s has %d rows, want 0", table, n)
		}
	}

	got, err := second.Commit(ctx, fenceBatch(b[0].Epoch, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]ingest.Counters{0: {Records: 3, Inserted: 2, DeadLetters: 1, Anomalies: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("committed counters (-want +got):\n%s", diff)
	}
	// The same lease, but from an offset that is no longer the committed one.
	if _, err := second.Commit(ctx, fenceBatch(b[0].Epoch, 0)); !errors.Is(err, sink.ErrLeaseFenced) {
		t.Errorf("commit from a stale offset: err = %v, want ErrLeaseFenced", err)
	}
	offsets, err := sink.ReadOffsets(ctx, s.Timescale, fenceTopic)
	if err != nil {
		t.Fatal(err)
	}
	p0 := offsets[0]
	if p0.NextOffset != 3 || p0.Epoch != 2 || p0.Counters != (ingest.Counters{Records: 3, Inserted: 2, DeadLetters: 1, Anomalies: 1}) ||
		!p0.Watermark.Equal(time.Date(2026, 11, 28, 14, 0, 1, 0, time.UTC)) {
		t.Errorf("partition 0 = %+v", p0)
	}
	if p1 := offsets[1]; p1.NextOffset != 0 || p1.Epoch != 1 || !p1.Watermark.IsZero() {
		t.Errorf("partition 1 = %+v", p1)
	}
	if n := sinkCount(t, s, `SELECT count(*) FROM public.sensor_readings WHERE source = 'stream'`); n != 2 {
		t.Errorf("stream readings = %d, want 2", n)
	}
}

// TestStreamCommitIsIdempotent: committing the same readings and dead
// letters again (a redelivery from reset offsets) adds nothing: no rows,
// no window counts, no anomalies; the readings count as duplicates.
func TestStreamCommitIsIdempotent(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	sink, err := sink.Open(ctx, s.Timescale, fenceTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	c, err := sink.Claim(ctx, []int32{0}, "lease")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Commit(ctx, fenceBatch(c[0].Epoch, 0)); err != nil {
		t.Fatal(err)
	}
	windows := func() string {
		var s1 string
		if err := s.Timescale.QueryRow(ctx, `SELECT string_agg(concat_ws(',', device_id, window_start, reading_count, value_count, value_sum, value_sum_sq, value_min, value_max, anomaly_count), ';' ORDER BY device_id, window_start) FROM public.sensor_readings_stream_agg`).Scan(&s1); err != nil {
			t.Fatal(err)
		}
		return s1
	}
	before := windows()
	if want := "TEMP-001,2026-11-28 14:00:00+00,2,2,521.5,250462.25,21.5,500,1"; before != want {
		t.Errorf("windows = %q, want %q", before, want)
	}
	if _, err := s.Timescale.Exec(ctx, `UPDATE public.stream_offsets SET next_offset = 0`); err != nil {
		t.Fatal(err)
	}
	got, err := sink.Commit(ctx, fenceBatch(c[0].Epoch, 0))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[int32]ingest.Counters{0: {Records: 3, Duplicates: 2}}, got); diff != "" {
		t.Errorf("replayed batch counters (-want +got):\n%s", diff)
	}
	if after := windows(); after != before {
		t.Errorf("windows changed by the replay: %q, was %q", after, before)
	}
	for table, want := range map[string]int64{"public.sensor_readings": 2, "public.stream_dead_letters": 1, "public.stream_anomalies": 1} {
		if n := sinkCount(t, s, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s: %d rows, want %d", table, n, want)
		}
	}
}

// TestStreamCommitMergesWindowsAcrossBatches: windows that span batches
// are merged whichever path a batch takes: the fast path (windows known to
// be new are inserted, with or without aggregation, a window without a
// value included; the device's latest window merged) and, for a new sink
// that does not know what is stored, the fall-back path.
func TestStreamCommitMergesWindowsAcrossBatches(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	r := func(p int32, off int64, sec int, v float64) ingest.Reading {
		return ingest.Reading{Partition: p, Offset: off, Reading: reading.Reading{DeviceID: "TEMP-001", Time: t0.Add(time.Duration(sec) * time.Second), Value: v, ValueValid: true}}
	}
	commit := func(sink *sink.Sink, epoch, expected int64, readings ...ingest.Reading) {
		t.Helper()
		last := readings[len(readings)-1]
		b := &ingest.Batch{Readings: readings, Offsets: []ingest.OffsetAdvance{{Partition: 0, Epoch: epoch, Expected: expected,
			Next: last.Offset + 1, Watermark: last.Time, Counters: ingest.Counters{Records: int64(len(readings))}}}}
		got, err := sink.Commit(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if want := (ingest.Counters{Records: int64(len(readings)), Inserted: int64(len(readings))}); got[0] != want {
			t.Errorf("counters %+v, want %+v", got[0], want)
		}
	}
	first, err := sink.Open(ctx, s.Timescale, fenceTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	c, err := first.Claim(ctx, []int32{0}, "first")
	if err != nil {
		t.Fatal(err)
	}
	commit(first, c[0].Epoch, 0, r(0, 0, 10, 20.5), r(0, 1, 20, 21.25))
	null := r(0, 4, 185, 0)
	null.ValueValid = false
	commit(first, c[0].Epoch, 2, r(0, 2, 30, 19.75), r(0, 3, 65, 22), null)
	second, err := sink.Open(ctx, s.Timescale, fenceTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(ctx)
	c, err = second.Claim(ctx, []int32{0}, "second")
	if err != nil {
		t.Fatal(err)
	}
	commit(second, c[0].Epoch, 5, r(0, 5, 90, 23.5), r(0, 6, 125, 24))

	var got string
	if err := s.Timescale.QueryRow(ctx, `SELECT string_agg(concat_ws(',', to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), reading_count, value_count,
		trim_scale(value_sum), trim_scale(value_sum_sq), value_min, value_max), ' ' ORDER BY window_start) FROM public.sensor_readings_stream_agg`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	want := "14:00,3,3,61.5,1261.875,19.75,21.25 14:01,2,2,45.5,1036.25,22,23.5 14:02,1,1,24,576,24,24 14:03,1,0,0,0"
	if got != want {
		t.Errorf("windows = %q, want %q", got, want)
	}
}

// TestStreamCommitRunsAgainAfterDeadlock: a lease's batch and another
// transaction lock two windows in opposite orders. PostgreSQL aborts the
// batch, which has waited longer, as deadlocked; Commit runs it again once
// the other transaction is gone and lands it whole.
func TestStreamCommitRunsAgainAfterDeadlock(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lease, err := sink.Open(ctx, s.Timescale, fenceTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close(ctx)
	c, err := lease.Claim(ctx, []int32{0}, "lease")
	if err != nil {
		t.Fatal(err)
	}

	// The other transaction holds TEMP-001's 14:00 window; its own wait
	// comes later and is checked later, so the batch is the victim.
	other, err := s.Timescale.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	t0 := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	insertWindow := func(device string) error {
		_, err := other.Exec(ctx, `INSERT INTO public.sensor_readings_stream_agg (window_start, window_end, device_id, reading_count, value_count,
			value_sum, value_sum_sq, value_min, value_max, anomaly_count) VALUES ($1, $2, $3, 1, 1, 5, 25, 5, 5, 0)`, t0, t0.Add(time.Minute), device)
		return err
	}
	if _, err := other.Exec(ctx, `SET LOCAL deadlock_timeout = '30s'`); err != nil {
		t.Fatal(err)
	}
	if err := insertWindow("TEMP-001"); err != nil {
		t.Fatal(err)
	}

	// The batch writes TEMP-002's window, then waits for TEMP-001's.
	read := func(off int64, device string, v float64) ingest.Reading {
		return ingest.Reading{Partition: 0, Offset: off, Reading: reading.Reading{DeviceID: device, Time: t0.Add(time.Duration(off) * time.Second), Value: v, ValueValid: true}}
	}
	b := &ingest.Batch{
		Readings: []ingest.Reading{read(0, "TEMP-002", 20.5), read(1, "TEMP-001", 21.25)},
		Offsets: []ingest.OffsetAdvance{{Partition: 0, Epoch: c[0].Epoch, Expected: 0, Next: 2, Watermark: t0.Add(time.Second),
			Counters: ingest.Counters{Records: 2}}},
	}
	type result struct {
		counters map[int32]ingest.Counters
		err      error
	}
	done := make(chan result, 1)
	go func() {
		got, err := lease.Commit(ctx, b)
		done <- result{got, err}
	}()
	for {
		var waiting bool
		if err := s.Timescale.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database() AND wait_event_type = 'Lock'`, sink.ApplicationName).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Now the other transaction waits for TEMP-002's window: a deadlock,
	// of which the batch is the victim, so this insert goes through.
	if err := insertWindow("TEMP-002"); err != nil {
		t.Fatalf("the other transaction was aborted, not the batch: %v", err)
	}
	if err := other.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	res := <-done
	if res.err != nil {
		t.Fatalf("commit: %v", res.err)
	}
	if want := (ingest.Counters{Records: 2, Inserted: 2}); res.counters[0] != want {
		t.Errorf("counters %+v, want %+v", res.counters[0], want)
	}
	var got string
	if err := s.Timescale.QueryRow(ctx, `SELECT string_agg(concat_ws(',', device_id, reading_count, trim_scale(value_sum), trim_scale(value_sum_sq)), ' '
		ORDER BY device_id) FROM public.sensor_readings_stream_agg`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "TEMP-001,1,21.25,451.5625 TEMP-002,1,20.5,420.25"; got != want {
		t.Errorf("windows = %q, want %q", got, want)
	}
	if n := sinkCount(t, s, `SELECT next_offset FROM public.stream_offsets WHERE topic = $1 AND partition = 0`, fenceTopic); n != 2 {
		t.Errorf("next_offset %d, want 2", n)
	}
}
