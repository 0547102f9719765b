// Package streamcheck checks that a stream landed exactly what was
// produced to its topic: raw rows, dead letters, windows recomputed from the
// raw rows, anomalies, committed offsets against the high watermarks, and
// the counters of stream_offsets. It imports no testing, so the end-to-end
// tests and the benchmark programs (bench/soak) run the same check.
package streamcheck

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// Expect is what a topic's stream must have landed.
type Expect struct {
	// Produced is every message produced to the topic.
	Produced int64
	// Quarantined are the messages that must be dead letters still open
	// (not closed by a replay); the raw rows are Produced minus them and
	// minus the replayed ones whose reading was stored already.
	Quarantined int64
	// ByReason, when set, are the open dead letters by reason.
	ByReason map[string]int64
	// Window is the length of the stream's windows (its StreamInput's);
	// zero means window.Default. The windows are recomputed from the raw
	// rows with it.
	Window time.Duration
}

// Result is what Check found.
type Result struct {
	Raw         int64 // rows of sensor_readings from the stream
	DeadLetters int64 // rows of stream_dead_letters
	// Lost are valid messages without their row: Produced - Quarantined -
	// Raw, 0 when there are as many rows or more.
	Lost int64
	// Duplicated is the duplicates counter of stream_offsets, summed: valid
	// readings whose row was already there, a redelivery the committed
	// offsets did not fence.
	Duplicated int64
	// Problems are every way the stream differs from the expectation;
	// none when it is exact.
	Problems []string
}

// Exact says whether the stream landed exactly what was expected.
func (r Result) Exact() bool { return len(r.Problems) == 0 }

func (r *Result) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check compares the stream of topic, in the TimescaleDB database ts, with
// want: raw rows = produced - quarantined, dead letters by reason, windows
// = a recomputation from the raw rows in windows of want.Window, anomalies with their readings, and
// every partition committed up to its high watermark (read with cl) with
// counters that add up, duplicates 0 among them. A mismatch is a Problem;
// the error is for a query that failed.
func Check(ctx context.Context, ts *pgxpool.Pool, cl *kgo.Client, topic string, want Expect) (Result, error) {
	var r Result
	var err error
	count := func(query string, args ...any) int64 {
		var n int64
		if err == nil {
			if qerr := ts.QueryRow(ctx, query, args...).Scan(&n); qerr != nil {
				err = fmt.Errorf("%s: %w", query, qerr)
			}
		}
		return n
	}
	dead := want.Quarantined
	for reason, n := range want.ByReason {
		if got := count(`SELECT count(*) FROM public.stream_dead_letters WHERE reason = $1 AND replayed_at IS NULL`, reason); got != n {
			r.problem("%s dead letters = %d, want %d", reason, got, n)
		}
	}
	// Dead letters a replay closed: their reading landed then, or was
	// stored already.
	replayed := count(`SELECT count(*) FROM public.stream_dead_letters WHERE replayed_at IS NOT NULL`)
	replayedDuplicates := count(`SELECT count(*) FROM public.stream_dead_letters WHERE replay_outcome = 'duplicate'`)
	valid := want.Produced - dead - replayedDuplicates
	if r.Raw = count(`SELECT count(*) FROM public.sensor_readings WHERE source = 'stream'`); r.Raw != valid {
		r.problem("raw readings = %d, want %d", r.Raw, valid)
	}
	r.Lost = max(0, valid-r.Raw)
	if r.DeadLetters = count(`SELECT count(*) FROM public.stream_dead_letters WHERE replayed_at IS NULL`); r.DeadLetters != dead {
		r.problem("dead letters = %d, want %d", r.DeadLetters, dead)
	}
	if n := count(`SELECT coalesce(sum(reading_count), 0) FROM public.sensor_readings_stream_agg`); n != valid {
		r.problem("readings in windows = %d, want %d", n, valid)
	}
	length := int64(window.Length(want.Window).Duration() / time.Second)
	mismatched := count(`WITH raw AS (
		SELECT device_id, date_bin($1::bigint * interval '1 second', time, timestamptz '2000-01-01 00:00:00+00') AS w,
		       count(*) AS n, count(value) AS nv, coalesce(sum(value::numeric), 0) AS s,
		       coalesce(sum(value::numeric * value::numeric), 0) AS ss, min(value) AS mn, max(value) AS mx
		FROM public.sensor_readings GROUP BY 1, 2)
		SELECT count(*) FROM raw FULL JOIN public.sensor_readings_stream_agg a ON a.device_id = raw.device_id AND a.window_start = raw.w
		WHERE raw.device_id IS NULL OR a.device_id IS NULL OR a.window_end <> raw.w + $1::bigint * interval '1 second'
		   OR a.reading_count <> raw.n OR a.value_count <> raw.nv OR a.value_sum <> raw.s OR a.value_sum_sq <> raw.ss
		   OR a.value_min IS DISTINCT FROM raw.mn OR a.value_max IS DISTINCT FROM raw.mx`, length)
	if mismatched != 0 {
		r.problem("%d windows differ from the recomputation from the raw readings", mismatched)
	}
	if n := count(`SELECT count(*) FROM public.stream_anomalies a LEFT JOIN public.sensor_readings r USING (device_id, time) WHERE r.device_id IS NULL`); n != 0 {
		r.problem("%d anomalies without their reading", n)
	}
	if n := count(`SELECT count(*) FROM public.stream_anomalies`) - count(`SELECT coalesce(sum(anomaly_count), 0) FROM public.sensor_readings_stream_agg`); n != 0 {
		r.problem("anomaly rows and window anomaly counts differ by %d", n)
	}
	if err != nil {
		return r, err
	}
	hwms, err := kafka.HighWatermarks(ctx, cl, topic)
	if err != nil {
		return r, err
	}
	offsets, err := sink.ReadOffsets(ctx, ts, topic)
	if err != nil {
		return r, err
	}
	var counters ingest.Counters
	var hwmSum int64
	for p, hwm := range hwms {
		if o := offsets[p]; o.NextOffset != hwm {
			r.problem("partition %d: next_offset %d, high watermark %d", p, o.NextOffset, hwm)
		}
		hwmSum += hwm
		counters.Add(offsets[p].Counters)
	}
	if hwmSum != want.Produced {
		r.problem("high watermarks add up to %d, want %d produced", hwmSum, want.Produced)
	}
	r.Duplicated = counters.Duplicates
	// The counters are the consumers': a replay's readings and dead letters
	// are not among them.
	wantCounters := ingest.Counters{Records: want.Produced, Inserted: valid - (replayed - replayedDuplicates), DeadLetters: dead + replayed, Anomalies: counters.Anomalies}
	if counters != wantCounters {
		r.problem("stream_offsets counters = %+v, want %+v", counters, wantCounters)
	}
	return r, nil
}
