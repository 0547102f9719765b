package sink_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestReplayLandsOnce runs the same replay page on two sinks at once, then
// once more: each dead letter's reading lands once, with its window and
// its anomaly, the kept one gets its new reason, and the runs that came
// second find the page closed.
func TestReplayLandsOnce(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	const topic = "replay-topic"
	t0 := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	// Five dead letters: three readings that land (two in one window, one
	// flagged), one whose reading is stored already, one that stays.
	if _, err := s.Timescale.Exec(ctx, `INSERT INTO public.sensor_readings (time, device_id, value, battery, rssi, source)
		VALUES ($1, 'TEMP-001', 21.0, 90, -60, 'stream')`, t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i, reason := range []string{"unknown_device", "unknown_device", "late", "unknown_device", "unknown_device"} {
		if _, err := s.Timescale.Exec(ctx, `INSERT INTO public.stream_dead_letters (id, topic, partition, "offset", raw, reason, error, record_time)
			VALUES ($1, $2, 0, $1, '{}', $3, 'x', $4)`, int64(i+1), topic, reason, t0); err != nil {
			t.Fatal(err)
		}
	}
	r := func(id int64, at time.Duration, v float64, reasons []string) sink.ReplayLanding {
		return sink.ReplayLanding{ID: id, Reading: ingest.Reading{Partition: 0, Offset: id, Reasons: reasons,
			Reading: reading.Reading{DeviceID: "TEMP-001", Time: t0.Add(at), Value: v, ValueValid: true, Battery: 90, RSSI: -60}}}
	}
	land := []sink.ReplayLanding{r(1, 10*time.Second, 20, nil), r(2, 20*time.Second, 22, nil), r(3, time.Minute, 500, []string{"out_of_range"}), r(4, 3*time.Minute, 21, nil)}
	kept := []sink.ReplayKept{{ID: 5, Reason: "not_json", Error: "now malformed"}}

	results := make([]map[int64]string, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			snk, err := sink.Open(ctx, s.Timescale, topic, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer snk.Close(ctx)
			if results[i], err = snk.Replay(ctx, "run-"+string(rune('a'+i)), land, nil, kept); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	first, second := results[0], results[1]
	if first[1] == sink.ReplayGone {
		first, second = second, first
	}
	want := map[int64]string{1: sink.ReplayLanded, 2: sink.ReplayLanded, 3: sink.ReplayLanded, 4: sink.ReplayDuplicate, 5: sink.ReplayRereasoned}
	for id, o := range want {
		if first[id] != o {
			t.Errorf("first replay: dead letter %d %s, want %s", id, first[id], o)
		}
		if id <= 4 && second[id] != sink.ReplayGone {
			t.Errorf("second replay: dead letter %d %s, want %s", id, second[id], sink.ReplayGone)
		}
	}
	snk, err := sink.Open(ctx, s.Timescale, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close(ctx)
	again, err := snk.Replay(ctx, "run-c", land, nil, kept)
	if err != nil {
		t.Fatal(err)
	}
	if again[1] != sink.ReplayGone || again[4] != sink.ReplayGone || again[5] != sink.ReplayKeptSame {
		t.Errorf("third replay: %v", again)
	}
	for query, n := range map[string]int64{
		`SELECT count(*) FROM public.sensor_readings`:                                                               4,
		`SELECT count(*) FROM public.stream_anomalies WHERE "offset" = 3`:                                           1,
		`SELECT count(*) FROM public.sensor_readings_stream_agg`:                                                    2, // 14:00 (2 readings), 14:01; 14:03 was never merged
		`SELECT reading_count FROM public.sensor_readings_stream_agg WHERE window_start = '2026-11-28 14:00:00+00'`: 2,
		`SELECT count(*) FROM public.stream_dead_letters WHERE replay_outcome = 'landed'`:                           3,
		`SELECT count(*) FROM public.stream_dead_letters WHERE replay_outcome = 'duplicate'`:                        1,
		`SELECT count(*) FROM public.stream_dead_letters WHERE replayed_at IS NULL AND reason = 'not_json'`:         1,
		`SELECT count(DISTINCT replay_run_id) FROM public.stream_dead_letters`:                                      1,
	} {
		if got := sinkCount(t, s, query); got != n {
			t.Errorf("%s = %d, want %d", query, got, n)
		}
	}
	rows, err := sink.ReplayPage(ctx, s.Timescale, sink.ReplayFilter{Topic: topic, Partition: -1}, "run-x", 0, 10)
	if err != nil || len(rows) != 1 || rows[0].ID != 5 {
		t.Errorf("open page after the replays: %+v, %v; want dead letter 5 only", rows, err)
	}
}
