package warehouse

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestStagedReadingsReadBack: readings staged as blocks, over ranges that
// start and end inside clock hours, read back a page at a time exactly as
// the source holds them, NULLs and microseconds included; a block whose
// arrays are not in time order reads back in time order, one with a time
// twice is an error; the rejects of the window are exactly the source's
// readings of the window, the lookback left out.
func TestStagedReadingsReadBack(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	ts := s.Timescale
	t0 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(7, 2026))
	devices := []string{"dev-a", "dev-b", "dev-c"}
	for _, d := range devices {
		// Irregular times, a few seconds to two minutes apart, with
		// microseconds, from 90 minutes before t0 to 26 hours after.
		for tm := t0.Add(-90 * time.Minute); tm.Before(t0.Add(26 * time.Hour)); tm = tm.Add(time.Duration(2+rng.IntN(118))*time.Second + time.Duration(rng.IntN(1e6))*time.Microsecond) {
			var value, battery, rssi any = rng.NormFloat64() * 1e3, 100 * rng.Float64(), int32(-rng.IntN(120))
			switch rng.IntN(20) {
			case 0:
				value = nil
			case 1:
				battery = nil
			case 2:
				rssi = nil
			}
			if _, err := ts.Exec(ctx, `INSERT INTO public.sensor_readings (time, device_id, value, battery, rssi) VALUES ($1, $2, $3, $4, $5)`, tm, d, value, battery, rssi); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := Run{TS: ts, ID: "blocks-run"}
	if err := run.CreateStaging(ctx); err != nil {
		t.Fatal(err)
	}
	var staged int64
	split := t0.Add(3*time.Hour + 10*time.Minute)
	for _, w := range []batch.Window{{Start: t0.Add(-90 * time.Minute), End: split}, {Start: split, End: t0.Add(26 * time.Hour)}} {
		n, err := run.StageReadings(ctx, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		staged += n
	}
	var source int64
	if err := ts.QueryRow(ctx, `SELECT count(*) FROM public.sensor_readings`).Scan(&source); err != nil {
		t.Fatal(err)
	}
	if staged != source {
		t.Fatalf("staged %d readings, the source holds %d", staged, source)
	}
	// A device filter stages only those devices' readings.
	filtered := Run{TS: ts, ID: "blocks-run-filtered"}
	if err := filtered.CreateStaging(ctx); err != nil {
		t.Fatal(err)
	}
	all := batch.Window{Start: t0.Add(-90 * time.Minute), End: t0.Add(26 * time.Hour)}
	n, err := filtered.StageReadings(ctx, all, []string{"dev-b"})
	if err != nil {
		t.Fatal(err)
	}
	var devB, stagedB int64
	if err := ts.QueryRow(ctx, `SELECT count(*) FROM public.sensor_readings WHERE device_id = 'dev-b'`).Scan(&devB); err != nil {
		t.Fatal(err)
	}
	if err := ts.QueryRow(ctx, `SELECT count(*) FROM staging.readings r, unnest(r.times) WHERE run_key = $1 AND device_id = 'dev-b'`, filtered.ID).Scan(&stagedB); err != nil {
		t.Fatal(err)
	}
	if n != devB || stagedB != devB {
		t.Errorf("filtered to dev-b: staged %d readings (%d in staging), the source holds %d of it", n, stagedB, devB)
	}
	if _, err := ts.Exec(ctx, `DELETE FROM staging.readings WHERE run_key = $1`, filtered.ID); err != nil {
		t.Fatal(err)
	}

	var crossing int64
	if err := ts.QueryRow(ctx, `SELECT count(*) FROM staging.readings WHERE date_trunc('hour', range_start) <> date_trunc('hour', range_end - interval '1 microsecond')`).Scan(&crossing); err != nil {
		t.Fatal(err)
	}
	if crossing != 0 {
		t.Errorf("%d blocks cross a clock hour", crossing)
	}

	// A block written out of time order (the extract's array_agg keeps the
	// scan's order, which the SQL does not promise).
	if _, err := ts.Exec(ctx, `
		INSERT INTO staging.readings (run_key, device_id, range_start, range_end, times, vals, batteries, rssis)
		SELECT $1, 'dev-r', $2, $2 + interval '1 hour',
		       array_agg(t ORDER BY t DESC), array_agg(extract(epoch FROM t)::float8 ORDER BY t DESC),
		       array_agg(1.5::float8 ORDER BY t DESC), array_agg(NULL::integer ORDER BY t DESC)
		FROM generate_series($2::timestamptz, $2::timestamptz + interval '59 minutes', interval '1 minute') t`, run.ID, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	w := batch.Window{Start: t0, End: t0.Add(25 * time.Hour)}
	from := w.Start.Add(-75 * time.Minute) // inside an hour, as a lookback may be
	for _, d := range append(devices, "dev-r") {
		var got []reading.Reading
		for _, page := range w.Pages(from) {
			if err := run.EachStagedReading(ctx, d, page, func(r reading.Reading) error {
				got = append(got, r)
				return nil
			}); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
		}
		want := sourceReadings(t, s, d, batch.Window{Start: from, End: w.End})
		if d == "dev-r" {
			want = nil
			for tm := t0.Add(time.Hour); tm.Before(t0.Add(2 * time.Hour)); tm = tm.Add(time.Minute) {
				want = append(want, reading.Reading{DeviceID: d, Time: tm.Local(), Value: float64(tm.Unix()), ValueValid: true, Battery: 1.5})
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: read %d readings, want %d", d, len(got), len(want))
		}
		for i := range want {
			g, x := got[i], want[i]
			if !g.Time.Equal(x.Time) || g.Time.Location() != x.Time.Location() || g.Value != x.Value || g.ValueValid != x.ValueValid || g.Battery != x.Battery || g.RSSI != x.RSSI || g.DeviceID != d {
				t.Fatalf("%s reading %d: got %+v, want %+v", d, i, g, x)
			}
		}
	}

	// A reading staged twice is an error, not two readings.
	if _, err := ts.Exec(ctx, `
		INSERT INTO staging.readings (run_key, device_id, range_start, range_end, times, vals, batteries, rssis)
		VALUES ($1, 'dev-d', $2::timestamptz, $2::timestamptz + interval '1 hour', ARRAY[$2::timestamptz, $2::timestamptz + interval '1 minute', $2::timestamptz], '{1,2,3}', '{1,2,3}', '{1,2,3}')`, run.ID, t0); err != nil {
		t.Fatal(err)
	}
	err = run.EachStagedReading(ctx, "dev-d", batch.Window{Start: t0, End: t0.Add(time.Hour)}, func(reading.Reading) error { return nil })
	if !errors.Is(err, ErrInvalidStagedReadings) || !strings.Contains(err.Error(), "two readings at 2026-03-02T00:00:00Z") {
		t.Errorf("a time twice in a block: %v", err)
	}
	if _, err := ts.Exec(ctx, `DELETE FROM staging.readings WHERE device_id = 'dev-d'`); err != nil {
		t.Fatal(err)
	}

	// No device is staged, so every reading of the window is a reject, and
	// none of the lookback before it.
	for range 2 { // rerunning writes nothing new
		by, err := run.RecordRejects(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		if err := ts.QueryRow(ctx, `SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, w.Start, w.End).Scan(&want); err != nil {
			t.Fatal(err)
		}
		want += 60 // dev-r's block
		if len(by) != 1 || by["unknown_device"] != want {
			t.Errorf("rejects %v, want unknown_device %d", by, want)
		}
	}
}

// sourceReadings are a device's readings of w in the source, as the
// transform reads them (NULL battery and rssi as 0).
func sourceReadings(t *testing.T, s *testenv.Stack, device string, w batch.Window) []reading.Reading {
	t.Helper()
	rows, err := s.Timescale.Query(context.Background(), `
		SELECT time, value, coalesce(battery, 0), coalesce(rssi, 0) FROM public.sensor_readings
		WHERE device_id = $1 AND time >= $2 AND time < $3 ORDER BY time`, device, w.Start, w.End)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []reading.Reading
	for rows.Next() {
		r := reading.Reading{DeviceID: device}
		var value *float64
		if err := rows.Scan(&r.Time, &value, &r.Battery, &r.RSSI); err != nil {
			t.Fatal(err)
		}
		if value != nil {
			r.Value, r.ValueValid = *value, true
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// binaryArray writes a one-dimensional array in PostgreSQL's binary format:
// elems of width bytes each, nil for NULL.
func binaryArray(oid uint32, elems [][]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1)
	hasNull := uint32(0)
	for _, e := range elems {
		if e == nil {
			hasNull = 1
		}
	}
	b = binary.BigEndian.AppendUint32(b, hasNull)
	b = binary.BigEndian.AppendUint32(b, oid)
	b = binary.BigEndian.AppendUint32(b, uint32(len(elems)))
	b = binary.BigEndian.AppendUint32(b, 1)
	for _, e := range elems {
		if e == nil {
			b = binary.BigEndian.AppendUint32(b, math.MaxUint32) // -1
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// FuzzReadingBlock: whatever the bytes of a block's four columns, decoding
// returns an error or a block whose arrays have one length and whose order
// visits every reading once, in strictly increasing time.
func FuzzReadingBlock(f *testing.F) {
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	f.Add(
		binaryArray(oidTimestamptz, [][]byte{u64(120e6), u64(60e6), u64(0)}),
		binaryArray(oidFloat8, [][]byte{u64(math.Float64bits(1.5)), nil, u64(math.Float64bits(-2))}),
		binaryArray(oidFloat8, [][]byte{nil, nil, u64(math.Float64bits(80))}),
		binaryArray(oidInt4, [][]byte{u32(uint32(0xffffffc4)), nil, u32(7)}),
	)
	f.Add(binaryArray(oidTimestamptz, nil), binaryArray(oidFloat8, nil), binaryArray(oidFloat8, nil), binaryArray(oidInt4, nil))
	f.Add(binaryArray(oidTimestamptz, [][]byte{u64(5), u64(5)}), binaryArray(oidFloat8, [][]byte{nil, nil}), binaryArray(oidFloat8, [][]byte{nil, nil}), binaryArray(oidInt4, [][]byte{nil, nil}))
	f.Add([]byte{0, 0, 0, 1}, []byte{}, []byte{0xff}, binaryArray(oidFloat8, nil))
	f.Fuzz(func(t *testing.T, times, vals, batteries, rssis []byte) {
		var b readingBlock
		if err := b.decode([][]byte{times, vals, batteries, rssis}); err != nil {
			return
		}
		n := len(b.micros)
		if len(b.value) != n || len(b.valueOK) != n || len(b.battery) != n || len(b.batteryOK) != n || len(b.rssi) != n || len(b.rssiOK) != n || len(b.order) != n {
			t.Fatalf("lengths differ: %d times, order %d", n, len(b.order))
		}
		seen := make([]bool, n)
		for k, i := range b.order {
			if i < 0 || i >= n || seen[i] {
				t.Fatalf("order %v is not a permutation", b.order)
			}
			seen[i] = true
			if k > 0 && b.micros[i] <= b.micros[b.order[k-1]] {
				t.Fatalf("order %v is not strictly increasing in time", b.order)
			}
		}
	})
}

// TestReadingBlockDecodes: a block out of time order decodes with its
// NULLs and negative integers, and orders its readings by time; a time
// twice, an element of the wrong width or type, and trailing bytes are
// errors.
func TestReadingBlockDecodes(t *testing.T) {
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	times := binaryArray(oidTimestamptz, [][]byte{u64(120e6), u64(60e6), u64(0)})
	vals := binaryArray(oidFloat8, [][]byte{u64(math.Float64bits(1.5)), nil, u64(math.Float64bits(-2))})
	batteries := binaryArray(oidFloat8, [][]byte{nil, nil, u64(math.Float64bits(80))})
	rssis := binaryArray(oidInt4, [][]byte{u32(uint32(0xffffffc4)), nil, u32(7)})
	var b readingBlock
	if err := b.decode([][]byte{times, vals, batteries, rssis}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.order, []int{2, 1, 0}) {
		t.Errorf("order %v, want [2 1 0]", b.order)
	}
	if got := b.time(2).UTC(); !got.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("time of reading 2: %s", got)
	}
	if got := b.time(0).UTC(); !got.Equal(time.Date(2000, 1, 1, 0, 2, 0, 0, time.UTC)) {
		t.Errorf("time of reading 0: %s", got)
	}
	if !slices.Equal(b.value, []float64{1.5, 0, -2}) || !slices.Equal(b.valueOK, []bool{true, false, true}) ||
		!slices.Equal(b.battery, []float64{0, 0, 80}) || !slices.Equal(b.batteryOK, []bool{false, false, true}) ||
		!slices.Equal(b.rssi, []int32{-60, 0, 7}) || !slices.Equal(b.rssiOK, []bool{true, false, true}) {
		t.Errorf("decoded %+v", b)
	}
	for name, raw := range map[string][][]byte{
		"two readings at": {binaryArray(oidTimestamptz, [][]byte{u64(5), u64(5)}), binaryArray(oidFloat8, [][]byte{nil, nil}), binaryArray(oidFloat8, [][]byte{nil, nil}), binaryArray(oidInt4, [][]byte{nil, nil})},
		"want 8":          {times, binaryArray(oidFloat8, [][]byte{u32(1), nil, nil}), batteries, rssis},
		"of type 701":     {times, vals, batteries, binaryArray(oidFloat8, [][]byte{u64(1), nil, nil})},
		"after the last":  {times, vals, append(slices.Clone(batteries), 0), rssis},
		"arrays of 3, 2":  {times, binaryArray(oidFloat8, [][]byte{nil, nil}), batteries, rssis},
	} {
		if err := b.decode(raw); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
