package main

import (
	"context"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

// factKey names one fact row.
type factKey struct {
	device string
	time   time.Time
}

// factRunIDs maps every fact row to the run that last wrote it.
func factRunIDs(b *e2e.Batch) map[factKey]string {
	b.T.Helper()
	rows, err := b.Stack.Timescale.Query(context.Background(), `SELECT device_id, time, run_id FROM dwh.fact_sensor_readings_enriched`)
	if err != nil {
		b.T.Fatal(err)
	}
	defer rows.Close()
	out := map[factKey]string{}
	for rows.Next() {
		var k factKey
		var run string
		if err := rows.Scan(&k.device, &k.time, &run); err != nil {
			b.T.Fatal(err)
		}
		out[factKey{k.device, k.time.UTC()}] = run
	}
	if err := rows.Err(); err != nil {
		b.T.Fatal(err)
	}
	return out
}

// statChecksum is the md5 of the rolling statistics of the facts of
// [from, to), every float as its exact bits, in (device_id, time) order.
func statChecksum(b *e2e.Batch, from, to time.Time) string {
	b.T.Helper()
	var sum string
	err := b.Stack.Timescale.QueryRow(context.Background(), `
		SELECT md5(coalesce(string_agg(concat_ws('|', device_id, extract(epoch FROM time)::text, roll_count,
			coalesce(encode(float8send(roll_mean), 'hex'), '-'), coalesce(encode(float8send(roll_std), 'hex'), '-'),
			coalesce(encode(float8send(roll_min), 'hex'), '-'), coalesce(encode(float8send(roll_max), 'hex'), '-'),
			coalesce(encode(float8send(zscore), 'hex'), '-'), is_anomaly, anomaly_reasons::text), E'\n' ORDER BY device_id, time), ''))
		FROM dwh.fact_sensor_readings_enriched WHERE time >= $1 AND time < $2`, from, to).Scan(&sum)
	if err != nil {
		b.T.Fatal(err)
	}
	return sum
}

// TestRerunOfOverlappingWindowRewritesNoRow loads a seeded day, then runs
// the batch again over windows that overlap it and start at odd instants
// (not on a quarter hour): mid-day, and in the previous evening. The
// rolling statistics of a reading depend on the values of its trailing
// hour only, which the lookback covers, so no loaded fact is rewritten:
// same run id, same statistics to the bit, same row count.
func TestRerunOfOverlappingWindowRewritesNoRow(t *testing.T) {
	b := e2e.NewBatch(t, 12)
	first := b.Wait(b.Start(workflows.BatchInput{}))
	readings := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, e2e.Window.Start, e2e.Window.End)
	if first.Status != "succeeded" || first.Rejects != 0 || first.RowsLoaded != readings {
		t.Fatalf("first load: status %s, %d rejects, %d rows; want succeeded, 0, %d", first.Status, first.Rejects, first.RowsLoaded, readings)
	}
	t.Logf("first load [%s, %s): %d facts", e2e.Window.Start.Format(time.RFC3339), e2e.Window.End.Format(time.RFC3339), first.RowsLoaded)
	sumBefore := statChecksum(b, e2e.Window.Start, e2e.Window.End)
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id = $1`, first.RunID); n != readings {
		t.Fatalf("%d facts of the first load, want %d", n, readings)
	}

	// rerun runs [from, to) and returns how many of the facts that
	// existed before it now carry another run id.
	rerun := func(from, to time.Time) (workflows.BatchResult, int) {
		t.Helper()
		prev := factRunIDs(b)
		res := b.Wait(b.Start(workflows.BatchInput{WindowStart: from, WindowEnd: to}))
		if res.Status != "succeeded" {
			t.Fatalf("rerun of [%s, %s): status %s", from.Format(time.RFC3339), to.Format(time.RFC3339), res.Status)
		}
		rewritten := 0
		for k, run := range factRunIDs(b) {
			if was, ok := prev[k]; ok && run != was {
				rewritten++
			}
		}
		return res, rewritten
	}

	// Mid-day: [06:07, 12:00) of the loaded day, lookback from 05:07.
	from, to := e2e.Window.Start.Add(6*time.Hour+7*time.Minute), e2e.Window.Start.Add(12*time.Hour)
	inWindow := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, from, to)
	res, rewritten := rerun(from, to)
	if res.RowsLoaded != inWindow || inWindow == 0 {
		t.Errorf("mid-day rerun: %d rows, want the %d readings of the window", res.RowsLoaded, inWindow)
	}
	t.Logf("mid-day rerun [%s, %s): %d rows, %d facts rewritten", from.Format(time.RFC3339), to.Format(time.RFC3339), res.RowsLoaded, rewritten)
	if rewritten != 0 {
		t.Errorf("mid-day rerun rewrote %d of %d facts of its window, want 0", rewritten, inWindow)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != readings {
		t.Errorf("after the mid-day rerun: %d facts, want %d", n, readings)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id = $1`, res.RunID); n != 0 {
		t.Errorf("%d facts carry the mid-day rerun's id, want 0", n)
	}
	if got := statChecksum(b, e2e.Window.Start, e2e.Window.End); got != sumBefore {
		t.Errorf("rolling statistics checksum after the mid-day rerun %s, first load %s", got, sumBefore)
	}

	// From the previous evening: [21:13, 02:00) across midnight, lookback
	// from 20:13; the facts before midnight are new, the others loaded.
	from, to = e2e.Window.Start.Add(-2*time.Hour-47*time.Minute), e2e.Window.Start.Add(2*time.Hour)
	inWindow = b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, from, to)
	added := b.Count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, from, e2e.Window.Start)
	res, rewritten = rerun(from, to)
	if res.RowsLoaded != inWindow || added == 0 || added == inWindow {
		t.Errorf("evening rerun: %d rows, want the %d readings of the window (%d before midnight)", res.RowsLoaded, inWindow, added)
	}
	t.Logf("evening rerun [%s, %s): %d rows, %d new, %d facts rewritten", from.Format(time.RFC3339), to.Format(time.RFC3339), res.RowsLoaded, added, rewritten)
	if rewritten != 0 {
		t.Errorf("evening rerun rewrote %d of %d loaded facts of its window, want 0", rewritten, inWindow-added)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched`); n != readings+added {
		t.Errorf("after the evening rerun: %d facts, want %d + %d new", n, readings, added)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE run_id = $1`, res.RunID); n != added {
		t.Errorf("%d facts carry the evening rerun's id, want the %d new ones", n, added)
	}
	if got := statChecksum(b, e2e.Window.Start, e2e.Window.End); got != sumBefore {
		t.Errorf("rolling statistics checksum after the evening rerun %s, first load %s", got, sumBefore)
	}
}
