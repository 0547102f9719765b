package ingest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

var tempType = reading.DeviceType{Code: "TEMP", Metric: "temperature", Unit: "°C", ValidMin: -40, ValidMax: 85,
	MaxRatePerMin: 5, ExpectedInterval: time.Second}

func devices(ids ...string) map[string]ingest.Device {
	out := map[string]ingest.Device{}
	for _, id := range ids {
		out[id] = ingest.Device{Device: reading.Device{ID: id, TypeCode: "TEMP", LocationID: "L1"}, Type: tempType}
	}
	return out
}

// fakeSink records what it is asked and answers as a sink where every
// reading is new.
type fakeSink struct {
	commits []ingest.Batch
	recent  [][]string // device ids asked for, per call
	history []reading.Reading
	fail    error
}

func (f *fakeSink) Commit(_ context.Context, b *ingest.Batch) (map[int32]ingest.Counters, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	cp := ingest.Batch{Readings: slices.Clone(b.Readings), DeadLetters: slices.Clone(b.DeadLetters), Offsets: slices.Clone(b.Offsets)}
	f.commits = append(f.commits, cp)
	out := map[int32]ingest.Counters{}
	for _, r := range b.Readings {
		c := out[r.Partition]
		c.Inserted++
		if r.Reasons != nil {
			c.Anomalies++
		}
		out[r.Partition] = c
	}
	for _, o := range b.Offsets {
		c := out[o.Partition]
		c.Records, c.Duplicates = o.Counters.Records, o.Counters.Duplicates
		c.DeadLetters = o.Counters.DeadLetters
		out[o.Partition] = c
	}
	return out, nil
}

func (f *fakeSink) RecentReadings(_ context.Context, ids []string, until time.Time, window time.Duration) ([]reading.Reading, error) {
	f.recent = append(f.recent, slices.Clone(ids))
	var out []reading.Reading
	for _, r := range f.history {
		if slices.Contains(ids, r.DeviceID) && r.Time.After(until.Add(-window)) && !r.Time.After(until) {
			out = append(out, r)
		}
	}
	return out, nil
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func rec(partition int32, offset int64, device string, at time.Time, value float64) ingest.Record {
	r := reading.Reading{DeviceID: device, Time: at, Value: value, ValueValid: true, Battery: 90, RSSI: -60}
	return ingest.Record{Partition: partition, Offset: offset, Key: []byte(device), Value: reading.Encode(nil, r, offset), Timestamp: at}
}

func raw(partition int32, offset int64, value string, at time.Time) ingest.Record {
	return ingest.Record{Partition: partition, Offset: offset, Value: []byte(value), Timestamp: at}
}

// TestTakeSortsEveryRecord: one batch over two partitions holds a good
// reading, a malformed message, an unknown device, a repeat within the
// batch, a late reading and an out-of-range value; each lands where it
// belongs and the offsets advance per partition, ascending.
func TestTakeSortsEveryRecord(t *testing.T) {
	t.Parallel()
	sink := &fakeSink{}
	clk := &clock{now: t0}
	claimed := map[int32]ingest.Offset{0: {Partition: 0, NextOffset: 10, Epoch: 3}, 1: {Partition: 1, NextOffset: 5, Epoch: 3}}
	b := ingest.New(ingest.Options{AllowedLateness: time.Minute, Now: clk.Now}, sink, nil, devices("TEMP-001", "TEMP-002"), claimed, []int32{1, 0})
	if diff := cmp.Diff(map[int32]int64{0: 10, 1: 5}, b.Positions()); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
	records := []ingest.Record{
		rec(1, 5, "TEMP-002", t0.Add(10*time.Minute), 21.5), // good, advances partition 1's watermark
		rec(0, 10, "TEMP-001", t0, 20),                      // good
		raw(0, 11, `{"device_id":"TEMP-001","time":`, t0),   // malformed
		rec(0, 12, "NOPE-404", t0.Add(time.Second), 20),     // unknown device
		rec(0, 13, "TEMP-001", t0, 20.1),                    // repeat of offset 10's (device, time)
		rec(1, 6, "TEMP-002", t0.Add(5*time.Minute), 21),    // late: window closed 4 min before the watermark
		rec(0, 14, "TEMP-001", t0.Add(2*time.Second), 200),  // out of range: lands, flagged
		rec(7, 1, "TEMP-001", t0.Add(3*time.Second), 20),    // a partition this lease does not own
	}
	if err := b.Take(context.Background(), records); err != nil {
		t.Fatal(err)
	}
	if b.Open() != 7 || b.Room() != ingest.DefaultMaxRecords-7 {
		t.Errorf("open %d, room %d; want 7 records taken", b.Open(), b.Room())
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.commits) != 1 {
		t.Fatalf("%d commits, want 1", len(sink.commits))
	}
	got := sink.commits[0]
	type landed struct {
		P       int32
		O       int64
		Device  string
		Reasons []string
	}
	var readings []landed
	for _, r := range got.Readings {
		readings = append(readings, landed{r.Partition, r.Offset, r.DeviceID, r.Reasons})
	}
	wantReadings := []landed{{1, 5, "TEMP-002", nil}, {0, 10, "TEMP-001", nil}, {0, 14, "TEMP-001", []string{"out_of_range", "rate_of_change"}}}
	if diff := cmp.Diff(wantReadings, readings); diff != "" {
		t.Errorf("readings (-want +got):\n%s", diff)
	}
	var dead []string
	for _, d := range got.DeadLetters {
		dead = append(dead, d.Reason)
	}
	if diff := cmp.Diff([]string{"not_json", "unknown_device", "late"}, dead); diff != "" {
		t.Errorf("dead letter reasons (-want +got):\n%s", diff)
	}
	wantOffsets := []ingest.OffsetAdvance{
		{Partition: 0, Epoch: 3, Expected: 10, Next: 15, Watermark: t0.Add(2 * time.Second), Counters: ingest.Counters{Records: 5, Duplicates: 1, DeadLetters: 2}},
		{Partition: 1, Epoch: 3, Expected: 5, Next: 7, Watermark: t0.Add(10 * time.Minute), Counters: ingest.Counters{Records: 2, DeadLetters: 1}},
	}
	if diff := cmp.Diff(wantOffsets, got.Offsets); diff != "" {
		t.Errorf("offset advances (-want +got):\n%s", diff)
	}
	wantState := []ingest.PartitionState{
		{Partition: 0, Epoch: 3, Consumed: true, NextOffset: 15, HighWatermark: 15, Watermark: t0.Add(2 * time.Second),
			Counters: ingest.Counters{Records: 5, Inserted: 2, Duplicates: 1, DeadLetters: 2, Anomalies: 1}},
		{Partition: 1, Epoch: 3, Consumed: true, NextOffset: 7, HighWatermark: 7, Watermark: t0.Add(10 * time.Minute),
			Counters: ingest.Counters{Records: 2, Inserted: 1, DeadLetters: 1}},
	}
	if diff := cmp.Diff(wantState, b.Committed()); diff != "" {
		t.Errorf("committed state (-want +got):\n%s", diff)
	}
	if b.Open() != 0 || b.Batches() != 1 {
		t.Errorf("after commit: open %d, batches %d", b.Open(), b.Batches())
	}
}

// TestDueByCountAndByAge: a batch is due when full or when its first
// record is MaxWait old; Wait says how long a poll may wait.
func TestDueByCountAndByAge(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0}
	b := ingest.New(ingest.Options{MaxRecords: 3, MaxWait: 200 * time.Millisecond, Now: clk.Now}, &fakeSink{}, nil,
		devices("TEMP-001"), nil, []int32{0})
	if b.Due() || b.Wait(time.Second) != time.Second {
		t.Fatalf("empty batch: due %v, wait %s", b.Due(), b.Wait(time.Second))
	}
	if err := b.Take(context.Background(), []ingest.Record{rec(0, 0, "TEMP-001", t0, 20)}); err != nil {
		t.Fatal(err)
	}
	clk.now = t0.Add(150 * time.Millisecond)
	if b.Due() || b.Wait(time.Second) != 50*time.Millisecond {
		t.Errorf("150ms old: due %v, wait %s; want not due, 50ms", b.Due(), b.Wait(time.Second))
	}
	clk.now = t0.Add(200 * time.Millisecond)
	if !b.Due() {
		t.Error("200ms old: not due")
	}
	clk.now = t0
	if err := b.Take(context.Background(), []ingest.Record{rec(0, 1, "TEMP-001", t0.Add(time.Second), 20), rec(0, 2, "TEMP-001", t0.Add(2*time.Second), 20)}); err != nil {
		t.Fatal(err)
	}
	if !b.Due() || b.Room() != 0 {
		t.Errorf("3 of 3 records: due %v, room %d", b.Due(), b.Room())
	}
}

// TestFailedCommitAdvancesNothing: when the sink refuses a batch (fenced by
// a newer lease), the positions and counters stay where they were.
func TestFailedCommitAdvancesNothing(t *testing.T) {
	t.Parallel()
	fenced := errors.New("fenced")
	sink := &fakeSink{fail: fenced}
	b := ingest.New(ingest.Options{}, sink, nil, devices("TEMP-001"), map[int32]ingest.Offset{0: {NextOffset: 4}}, []int32{0})
	if err := b.Take(context.Background(), []ingest.Record{rec(0, 4, "TEMP-001", t0, 20)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(context.Background()); !errors.Is(err, fenced) {
		t.Fatalf("commit: %v, want the sink's error", err)
	}
	if st := b.Committed()[0]; st.NextOffset != 4 || st.Counters != (ingest.Counters{}) || b.Open() != 1 {
		t.Errorf("after a failed commit: %+v, open %d", st, b.Open())
	}
}

// TestTestModeNeverCallsTheSink: test mode advances positions in memory
// and counts every reading as inserted.
func TestTestModeNeverCallsTheSink(t *testing.T) {
	t.Parallel()
	sink := &fakeSink{fail: errors.New("must not be called")}
	b := ingest.New(ingest.Options{TestMode: true}, sink, nil, devices("TEMP-001"), nil, []int32{0})
	if err := b.Take(context.Background(), []ingest.Record{rec(0, 0, "TEMP-001", t0, 20), raw(0, 1, "x", t0)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := ingest.Counters{Records: 2, Inserted: 1, DeadLetters: 1}
	if st := b.Committed()[0]; st.NextOffset != 2 || st.Counters != want || len(sink.commits) != 0 {
		t.Errorf("test mode: %+v, %d commits", st, len(sink.commits))
	}
}

// TestWarmFromHistory: a device seen for the first time is warmed with its
// stored readings up to its partition's claimed watermark, once, so the
// first live reading is judged against a full history (here: a value 30σ
// from a steady hour is a z-score anomaly only with the history).
func TestWarmFromHistory(t *testing.T) {
	t.Parallel()
	claimWM := t0.Add(time.Hour)
	sink := &fakeSink{}
	for i := range 3600 {
		at := t0.Add(time.Duration(i+1) * time.Second)
		sink.history = append(sink.history, reading.Reading{DeviceID: "TEMP-001", Time: at, Value: 20 + 0.01*float64(i%2), ValueValid: true})
	}
	claimed := map[int32]ingest.Offset{0: {NextOffset: 100, Watermark: claimWM}}
	b := ingest.New(ingest.Options{}, sink, nil, devices("TEMP-001"), claimed, []int32{0})
	if err := b.Take(context.Background(), []ingest.Record{rec(0, 100, "TEMP-001", claimWM.Add(time.Second), 20.3)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Take(context.Background(), []ingest.Record{rec(0, 101, "TEMP-001", claimWM.Add(2*time.Second), 20)}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]string{{"TEMP-001"}}, sink.recent); diff != "" {
		t.Errorf("history asked for (-want +got):\n%s", diff)
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink.commits[0].Readings[0].Reasons; !slices.Contains(got, "zscore") {
		t.Errorf("first live reading: reasons %v, want zscore against the warmed history", got)
	}
}

// TestUnknownDeviceReloadsTheRegistryAtMostEvery: an unknown device
// reloads the registry, but not twice within RegistryRefresh.
func TestUnknownDeviceReloadsTheRegistryAtMostEvery(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0}
	loads := 0
	registry := func(context.Context) (map[string]ingest.Device, error) {
		loads++
		return devices("TEMP-001", "TEMP-009"), nil
	}
	b := ingest.New(ingest.Options{RegistryRefresh: 30 * time.Second, Now: clk.Now}, &fakeSink{}, registry, devices("TEMP-001"), nil, []int32{0})
	clk.now = t0.Add(10 * time.Second)
	_ = b.Take(context.Background(), []ingest.Record{rec(0, 0, "TEMP-009", t0, 20)}) // too soon: stays unknown
	clk.now = t0.Add(31 * time.Second)
	_ = b.Take(context.Background(), []ingest.Record{rec(0, 1, "TEMP-009", t0.Add(time.Second), 20)})   // reloads: known now
	_ = b.Take(context.Background(), []ingest.Record{rec(0, 2, "TEMP-404", t0.Add(2*time.Second), 20)}) // just reloaded: no reload
	if loads != 1 {
		t.Errorf("registry loaded %d times, want 1", loads)
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := b.Committed()[0]
	if st.Counters.Inserted != 1 || st.Counters.DeadLetters != 2 {
		t.Errorf("counters %+v, want 1 inserted (after the reload) and 2 unknown devices", st.Counters)
	}
}

// TestDrainStopsAtTheTarget: records at or beyond a partition's drain
// target are left for the next lease; Drained once every target is met.
func TestDrainStopsAtTheTarget(t *testing.T) {
	t.Parallel()
	b := ingest.New(ingest.Options{DrainTo: map[int32]int64{0: 2, 1: 0}}, &fakeSink{}, nil, devices("TEMP-001"), nil, []int32{0, 1})
	if b.Drained() {
		t.Fatal("drained before taking anything")
	}
	if err := b.Take(context.Background(), []ingest.Record{rec(0, 0, "TEMP-001", t0, 20), rec(0, 1, "TEMP-001", t0.Add(time.Second), 20), rec(0, 2, "TEMP-001", t0.Add(2*time.Second), 20)}); err != nil {
		t.Fatal(err)
	}
	if !b.Drained() || b.Open() != 2 {
		t.Errorf("drained %v with %d records open; want true with 2", b.Drained(), b.Open())
	}
}
