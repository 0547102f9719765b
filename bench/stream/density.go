package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// Density is the ceiling and the ingest of one event-time density: the
// same number of messages, d readings per device per minute. At one
// reading per device-minute every reading opens its own 1-minute window;
// at d, a window row is written once and then merged into d-1 times.
type Density struct {
	ReadingsPerDeviceMinute int     `json:"readings_per_device_minute"`
	IntervalSeconds         float64 `json:"interval_s"` // event time between two readings of a device
	// MainRun says the figures are the main run's ceiling and ingest
	// (its --interval gives this density), not a separate topic's.
	MainRun  bool  `json:"main_run"`
	Messages int64 `json:"messages"` // Kafka records produced and consumed
	Rows     int64 `json:"rows"`     // readings landed in sensor_readings
	Windows  int64 `json:"windows"`  // rows of sensor_readings_stream_agg
	// WindowRowsPerMessage is windows/messages: the window rows the sink
	// writes per message, 1 at one reading per device-minute.
	WindowRowsPerMessage    float64 `json:"window_rows_per_message"`
	Ceiling                 Rate    `json:"ceiling"`
	Ingest                  Rate    `json:"ingest"`
	IngestToCeiling         float64 `json:"ingest_to_ceiling"`
	IngestProcessCPUSeconds float64 `json:"ingest_process_cpu_s"`
}

// Rate is how long a phase took over a density's messages.
type Rate struct {
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"messages_per_s"`
}

func rateOf(p Phase) Rate { return Rate{Seconds: p.Seconds, PerSecond: p.PerSecond} }

func newDensity(d int, mainRun bool, produce, ceiling, ingest Phase, windows int64, ingestCPU float64) Density {
	return Density{
		ReadingsPerDeviceMinute: d, IntervalSeconds: densityInterval(d).Seconds(), MainRun: mainRun,
		Messages: produce.Messages, Rows: ingest.Rows, Windows: windows,
		WindowRowsPerMessage: float64(windows) / float64(produce.Messages),
		Ceiling:              rateOf(ceiling), Ingest: rateOf(ingest),
		IngestToCeiling:         ingest.PerSecond / ceiling.PerSecond,
		IngestProcessCPUSeconds: ingestCPU,
	}
}

// densityInterval is the event time between two readings of a device at d
// readings per device-minute. The simulator stamps message i at
// start + i·interval/devices, each round of the fleet in a shuffled order,
// so a device's readings are one round apart (interval on average) and,
// when d divides a minute, d rounds fill each minute exactly.
func densityInterval(d int) time.Duration { return time.Minute / time.Duration(d) }

// densities measures every density of --densities in order; measured
// holds those the main run measured already.
func (b *bench) densities(ctx context.Context, measured map[int]Density) ([]Density, error) {
	out := make([]Density, 0, len(b.opts.densities))
	for _, d := range b.opts.densities {
		m, ok := measured[d]
		if !ok {
			var err error
			if m, err = b.density(ctx, d); err != nil {
				return nil, fmt.Errorf("density %d: %w", d, err)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// density produces the messages at d readings per device-minute into a
// fresh cluster, empties the sink, and times the ceiling and the ingest.
func (b *bench) density(ctx context.Context, d int) (Density, error) {
	o := b.opts
	if err := b.freshCluster(); err != nil {
		return Density{}, err
	}
	if err := b.truncateSink(ctx); err != nil {
		return Density{}, err
	}
	progress(fmt.Sprintf("density %d: produce %d messages, %s apart per device", d, o.messages, densityInterval(d)))
	produced, ends, err := b.produce(ctx, densityInterval(d))
	if err != nil {
		return Density{}, fmt.Errorf("produce: %w", err)
	}
	b.checkpoint(ctx)
	progress(fmt.Sprintf("density %d: ceiling", d))
	ceiling, err := b.ceiling(ctx, ends)
	if err != nil {
		return Density{}, fmt.Errorf("ceiling: %w", err)
	}
	b.checkpoint(ctx)
	progress(fmt.Sprintf("density %d: ingest", d))
	cpuBefore := processCPU()
	ingest, err := b.ingest(ctx, ends, ceiling.Rows)
	cpu := processCPU() - cpuBefore
	if err != nil {
		return Density{}, fmt.Errorf("ingest: %w", err)
	}
	windows, err := b.checkSink(ctx, produced.Rows)
	if err != nil {
		return Density{}, fmt.Errorf("ingest: %w", err)
	}
	b.checkpoint(ctx)
	return newDensity(d, false, produced, ceiling, ingest, windows, cpu), nil
}

// truncateSink empties every table a lease writes, its offsets and lease
// epochs included, so the next topic starts at offset 0 on empty tables.
func (b *bench) truncateSink(ctx context.Context) error {
	_, err := b.ts.Exec(ctx, `TRUNCATE public.sensor_readings, public.sensor_readings_stream_agg,
		public.stream_anomalies, public.stream_dead_letters, public.stream_offsets`)
	if err != nil {
		return fmt.Errorf("truncate the sink: %w", err)
	}
	return nil
}

// checkSink checks the ingest's tables exactly and returns the number of
// window rows: sensor_readings holds the wantRows readings produced, there
// is one window row per distinct (device, window) of the ceiling's copy of
// the readings, and the windows count every reading once.
func (b *bench) checkSink(ctx context.Context, wantRows int64) (int64, error) {
	var rows, windows, windowReadings, wantWindows int64
	// The distinct (device, window) count hashes millions of keys: with the
	// default work_mem (4 MB) its spilling hash aggregate ran for minutes.
	err := pgx.BeginFunc(ctx, b.ts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '512MB'`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM public.sensor_readings),
		(SELECT count(*) FROM public.sensor_readings_stream_agg),
		(SELECT coalesce(sum(reading_count), 0)::bigint FROM public.sensor_readings_stream_agg),
		(SELECT count(*) FROM (SELECT DISTINCT device_id, date_bin(make_interval(secs => $1), time, timestamptz '2000-01-01 00:00:00+00')
		                       FROM public.sensor_readings_ceiling) w)`,
			b.cfg.Stream.WindowLength().Duration().Seconds()).Scan(&rows, &windows, &windowReadings, &wantWindows)
	})
	if err != nil {
		return 0, fmt.Errorf("count the sink: %w", err)
	}
	if rows != wantRows || windows != wantWindows || windowReadings != rows {
		return 0, fmt.Errorf("sensor_readings holds %d rows (want %d), %d windows (want %d distinct (device, %s window)) counting %d readings",
			rows, wantRows, windows, wantWindows, b.cfg.Stream.WindowLength(), windowReadings)
	}
	return windows, nil
}

// progress says which phase starts, on stderr.
func progress(what string) { fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), what) }
