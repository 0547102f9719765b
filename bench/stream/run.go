package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

// The targets of the stream ingest (issue: stream ETL).
const (
	targetCeilingRatio = 0.5
	targetNaiveRatio   = 20
	targetP99          = 500 * time.Millisecond
)

// Phase is one timed consumer.
type Phase struct {
	Messages  int64   `json:"messages"` // Kafka records consumed
	Rows      int64   `json:"rows"`     // readings landed
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"messages_per_s"`
}

func newPhase(messages, rows int64, elapsed time.Duration) Phase {
	return Phase{Messages: messages, Rows: rows, Seconds: elapsed.Seconds(), PerSecond: float64(messages) / elapsed.Seconds()}
}

// Latency is the event-to-row latency phase.
type Latency struct {
	TargetRate   float64 `json:"target_messages_per_s"`
	Seconds      float64 `json:"seconds"`
	Messages     int64   `json:"messages"`
	AchievedRate float64 `json:"achieved_messages_per_s"`
	Measured     int64   `json:"measured"` // messages whose visible time was observed
	P50ms        float64 `json:"p50_ms"`
	P90ms        float64 `json:"p90_ms"`
	P99ms        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	// The cross-check from the rows: ingested_at (the start of the batch's
	// transaction) minus the reading time. It misses the transaction itself.
	TxStartP50ms float64 `json:"tx_start_p50_ms"`
	TxStartP99ms float64 `json:"tx_start_p99_ms"`
	PollMS       float64 `json:"poll_interval_ms"`
}

// Figures are what stream.json records.
type Figures struct {
	Messages        int64   `json:"messages"`
	Devices         int     `json:"devices"`
	IntervalSeconds float64 `json:"interval_s"` // event time between two readings of a device
	Partitions      int     `json:"partitions"`
	AnomalyRatio    float64 `json:"anomaly_ratio"`
	BadRatio        float64 `json:"bad_ratio"`
	Leases          int     `json:"leases"`
	MaxBatchRecords int     `json:"max_batch_records"`
	MaxBatchWaitMS  float64 `json:"max_batch_wait_ms"`
	TimescaleDB     bool    `json:"timescaledb"`

	Produce Phase `json:"produce"` // the simulator into kfake
	Ceiling Phase `json:"ceiling"`
	Naive   Phase `json:"naive"`
	// NaiveExtrapolatedSeconds is the naive consumer's time for all the
	// messages at its measured rate.
	NaiveExtrapolatedSeconds float64 `json:"naive_extrapolated_seconds"`
	Ingest                   Phase   `json:"ingest"`
	IngestToCeiling          float64 `json:"ingest_to_ceiling"`
	IngestToNaive            float64 `json:"ingest_to_naive"`
	Latency                  Latency `json:"latency"`
	// CPU time of this process (decoding, the leases' Go side, kfake, the
	// pgx clients) during the ceiling and ingest phases; the rest of the
	// wall time is PostgreSQL's or waiting.
	CeilingProcessCPUSeconds float64 `json:"ceiling_process_cpu_s"`
	IngestProcessCPUSeconds  float64 `json:"ingest_process_cpu_s"`
	PeakRSSKiB               int64   `json:"peak_rss_kib"`
	// The 1-minute load average when the run started and ended: the
	// machine is shared, and other work skews every figure.
	LoadAvgStart float64 `json:"load_avg_1m_start"`
	LoadAvgEnd   float64 `json:"load_avg_1m_end"`

	MeetsCeilingTarget bool `json:"meets_ceiling_target"`
	MeetsNaiveTarget   bool `json:"meets_naive_target"`
	MeetsLatencyTarget bool `json:"meets_latency_target"`

	// Densities repeat the ceiling and the ingest with several readings per
	// device per minute of event time (see density.go).
	Densities []Density `json:"densities,omitempty"`
}

type options struct {
	messages        int64
	naiveMessages   int64
	devices         int
	interval        time.Duration
	seed            int64
	partitions      int
	anomalyRatio    float64
	badRatio        float64
	latencyRate     float64
	latencyDuration time.Duration
	densities       []int // readings per device per minute of event time
	out             string
	verbose         bool
	cpuProfile      string
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench/stream", flag.ContinueOnError)
	fs.Int64Var(&o.messages, "messages", 2_000_000, "messages to pre-produce and ingest")
	quick := fs.Bool("quick", false, "smoke run: 200,000 messages, 10,000 naive, 10 s of latency (flags given explicitly win)")
	fs.Int64Var(&o.naiveMessages, "naive-messages", 50_000, "messages the naive consumer is timed on (then extrapolated)")
	fs.IntVar(&o.devices, "devices", 1000, "simulated devices")
	fs.DurationVar(&o.interval, "interval", time.Minute, "event time between two readings of a device in the pre-produced messages: 1m puts each reading in its own 1-minute window")
	fs.Int64Var(&o.seed, "seed", 42, "simulator seed")
	fs.IntVar(&o.partitions, "partitions", 6, "partitions of the topic")
	fs.Float64Var(&o.anomalyRatio, "anomaly-ratio", 0.01, "share of anomalous readings")
	fs.Float64Var(&o.badRatio, "bad-ratio", 0, "share of malformed messages (dead letters)")
	fs.Float64Var(&o.latencyRate, "latency-rate", 10_000, "messages/s of the latency phase")
	fs.DurationVar(&o.latencyDuration, "latency-duration", 30*time.Second, "length of the latency phase")
	densities := fs.String("densities", "1,2,10", "readings per device per minute of event time to measure the ceiling and the ingest at, each on a fresh topic (comma-separated; empty for none)")
	fs.StringVar(&o.out, "out", "bench/results/stream.json", "results file")
	fs.BoolVar(&o.verbose, "v", false, "log the leases")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the ingest phase to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *quick {
		if err := benchutil.SetUnset(fs, map[string]string{"messages": "200000", "naive-messages": "10000", "latency-duration": "10s"}); err != nil {
			return o, err
		}
	}
	o.naiveMessages = min(o.naiveMessages, o.messages)
	if o.messages < 1 || o.devices < 1 || o.partitions < 1 || o.latencyRate <= 0 || o.latencyDuration <= 0 || o.interval < time.Duration(o.devices) {
		return o, errors.New("--messages, --devices, --partitions, --latency-rate, --latency-duration and --interval must be positive (--interval at least 1ns per device)")
	}
	var err error
	if o.densities, err = parseDensities(*densities, o.devices); err != nil {
		return o, err
	}
	return o, nil
}

// parseDensities parses a comma-separated list of readings per device per
// minute.
func parseDensities(list string, devices int) ([]int, error) {
	var out []int
	for field := range strings.SplitSeq(list, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		d, err := strconv.Atoi(field)
		if err != nil || d < 1 || densityInterval(d) < time.Duration(devices) {
			return nil, fmt.Errorf("--densities: %q: want a whole number of readings per device-minute, at least 1, with 60s/d at least 1ns per device", field)
		}
		if slices.Contains(out, d) {
			return nil, fmt.Errorf("--densities: %d given twice", d)
		}
		out = append(out, d)
	}
	return out, nil
}

// bench is the shared state of the phases.
type bench struct {
	opts   options
	cfg    *config.Config
	ts     *pgxpool.Pool
	my     *sql.DB
	fleet  simulate.Fleet
	limits reading.Limits
	log    *slog.Logger
	// cluster is the in-process Kafka cluster that cfg.Kafka points at.
	cluster *kfake.Cluster
}

func run(ctx context.Context, args []string) error {
	opts, err := parseOptions(args)
	if err != nil {
		return err
	}
	cfg, err := config.Load(ctx)
	if err != nil {
		return err
	}
	stack, err := benchutil.OpenStack(ctx, cfg, "stream")
	if err != nil {
		return err
	}
	defer func() {
		if err := stack.Close(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(os.Stderr, "bench/stream:", err)
		}
	}()
	my, ts := stack.MySQL, stack.Timescale
	cfg = stack.Cfg
	fleet := simulate.NewFleet(opts.seed, opts.devices)
	if err := seeder.ReplaceDevices(ctx, my, fleet); err != nil {
		return err
	}
	ids := make([]string, len(fleet.Devices))
	for i, d := range fleet.Devices {
		ids[i] = d.ID
	}

	level := slog.LevelWarn
	if opts.verbose {
		level = slog.LevelInfo
	}
	b := &bench{
		opts: opts, cfg: cfg, ts: ts, my: my, fleet: fleet,
		limits: reading.Limits{Devices: reading.NewDeviceSet(ids)},
		log:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if err := b.freshCluster(); err != nil {
		return err
	}
	defer b.closeCluster()
	return b.measure(ctx)
}

// freshCluster replaces the Kafka cluster, if any, with a new in-process
// one holding an empty topic, and points cfg.Kafka at it.
func (b *bench) freshCluster() error {
	b.closeCluster()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(b.opts.partitions), b.cfg.Kafka.Topic))
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	b.cluster = cluster
	// The benchmark's own broker speaks plain Kafka, whatever KAFKA_TLS_*
	// and KAFKA_SASL_* say of the operator's cluster.
	b.cfg.Kafka = config.Kafka{BootstrapServers: cluster.ListenAddrs(), Topic: b.cfg.Kafka.Topic, Partitions: b.cfg.Kafka.Partitions}
	return nil
}

func (b *bench) closeCluster() {
	if b.cluster != nil {
		b.cluster.Close()
		b.cluster = nil
	}
}

func (b *bench) measure(ctx context.Context) error {
	o := b.opts
	hyper, err := store.HasTimescale(ctx, b.ts)
	if err != nil {
		return err
	}
	f := Figures{
		Messages: o.messages, Devices: o.devices, IntervalSeconds: o.interval.Seconds(), Partitions: o.partitions,
		AnomalyRatio: o.anomalyRatio, BadRatio: o.badRatio, Leases: max(b.cfg.Stream.Leases, 1),
		MaxBatchRecords: b.cfg.Stream.MaxBatchRecords, MaxBatchWaitMS: float64(b.cfg.Stream.MaxBatchWait) / float64(time.Millisecond),
		TimescaleDB: hyper, LoadAvgStart: benchutil.LoadAverage(),
	}
	progress(fmt.Sprintf("produce %d messages", o.messages))
	var ends map[int32]int64
	if f.Produce, ends, err = b.produce(ctx, o.interval); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	b.checkpoint(ctx)
	progress("ceiling: decode + one COPY")
	cpuBefore := processCPU()
	if f.Ceiling, err = b.ceiling(ctx, ends); err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	f.CeilingProcessCPUSeconds = processCPU() - cpuBefore
	b.checkpoint(ctx)
	progress(fmt.Sprintf("naive: INSERT per message with autocommit, first %d messages", o.naiveMessages))
	if f.Naive, err = b.naive(ctx, ends, o.naiveMessages); err != nil {
		return fmt.Errorf("naive: %w", err)
	}
	f.NaiveExtrapolatedSeconds = float64(o.messages) / f.Naive.PerSecond
	b.checkpoint(ctx)
	progress(fmt.Sprintf("ingest: %d drain leases of the exactly-once path", f.Leases))
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	cpuBefore = processCPU()
	f.Ingest, err = b.ingest(ctx, ends, f.Ceiling.Rows)
	f.IngestProcessCPUSeconds = processCPU() - cpuBefore
	stopProfile()
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	f.IngestToCeiling = f.Ingest.PerSecond / f.Ceiling.PerSecond
	f.IngestToNaive = f.Ingest.PerSecond / f.Naive.PerSecond
	// The density this run's interval gives is measured already: count
	// its windows before the latency phase adds readings.
	measured := map[int]Density{}
	if i := slices.IndexFunc(o.densities, func(d int) bool { return densityInterval(d) == o.interval }); i >= 0 {
		windows, err := b.checkSink(ctx, f.Produce.Rows)
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		d := o.densities[i]
		measured[d] = newDensity(d, true, f.Produce, f.Ceiling, f.Ingest, windows, f.IngestProcessCPUSeconds)
	}
	b.checkpoint(ctx)
	progress(fmt.Sprintf("latency: %.0f messages/s for %s", o.latencyRate, o.latencyDuration))
	if f.Latency, err = b.latency(ctx, ends); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	f.PeakRSSKiB = benchutil.PeakRSSKiB(os.Getpid())
	f.LoadAvgEnd = benchutil.LoadAverage()
	if f.Densities, err = b.densities(ctx, measured); err != nil {
		return err
	}
	f.MeetsCeilingTarget = f.IngestToCeiling >= targetCeilingRatio
	f.MeetsNaiveTarget = f.IngestToNaive >= targetNaiveRatio
	f.MeetsLatencyTarget = f.Latency.P99ms <= float64(targetP99/time.Millisecond)

	res := benchutil.Result{
		Benchmark: "stream",
		RanAt:     time.Now().UTC(),
		Machine:   benchutil.Describe(ctx, b.ts),
		Figures:   f,
		Notes:     notes(f),
	}
	if err := benchutil.Write(o.out, res); err != nil {
		return err
	}
	printTable(os.Stdout, f)
	for _, n := range res.Notes {
		fmt.Println("- " + n)
	}
	fmt.Println("written to", o.out)
	return nil
}

// checkpoint flushes dirty pages between phases, so one phase's writes are
// not paid for by the next one's I/O. It needs superuser; without it the
// phases simply run back to back.
func (b *bench) checkpoint(ctx context.Context) {
	_, _ = b.ts.Exec(ctx, "CHECKPOINT")
}

func notes(f Figures) []string {
	n := []string{
		fmt.Sprintf("one run: kfake (in-process Kafka, %d partitions), the simulator and the consumers in this process and the PostgreSQL server share the machine's %d cores", f.Partitions, runtime.NumCPU()),
		fmt.Sprintf("ceiling: fetch from kfake, reading.Decode, and ONE pgx CopyFrom of all %d rows into an empty table created LIKE sensor_readings INCLUDING ALL (same columns, unique key and index), one transaction", f.Ceiling.Rows),
		fmt.Sprintf("naive: fetch, decode, one INSERT ... ON CONFLICT DO NOTHING per message with autocommit on one connection; timed on the first %d messages and extrapolated to %d (%.0f s)", f.Naive.Messages, f.Messages, f.NaiveExtrapolatedSeconds),
		fmt.Sprintf("ingest: activities.Stream.ConsumeLease run as %d drain leases in parallel (partitions dealt round robin), max %d records or %.0f ms per micro-batch, each batch ONE transaction: readings, 1-minute windows, anomalies, dead letters, fenced offsets", f.Leases, f.MaxBatchRecords, f.MaxBatchWaitMS),
		fmt.Sprintf("latency: the simulator publishes at %.0f messages/s stamping each record with its send time while the leases consume; a poller reads stream_offsets every %.0f ms and a record's row counts as visible at the first poll whose committed offset passes it; latency = visible - record timestamp (includes the producer's 20 ms linger and the micro-batch wait)", f.Latency.TargetRate, f.Latency.PollMS),
		"peak_rss_kib is the whole process, kfake's copy of every record included",
	}
	if len(f.Densities) > 0 {
		n = append(n, fmt.Sprintf("densities: the ceiling and the ingest again with d readings per device per minute of event time (one round of the fleet, in a shuffled order, every 60/d s); the same %d messages, so 1/d as much event time. "+
			"Each density runs on a fresh kfake cluster with the sink's tables (sensor_readings, sensor_readings_stream_agg, stream_anomalies, stream_dead_letters, stream_offsets) truncated; main_run marks the density of --interval, whose figures are the ceiling and ingest above. "+
			"windows is the rows of sensor_readings_stream_agg, checked equal to the distinct (device, window) of the ceiling's rows, with sensor_readings holding exactly the readings produced; window_rows_per_message = windows/messages, 1 when every reading opens its own window", f.Messages))
	}
	verdict := func(ok bool, what string) {
		if ok {
			n = append(n, "target met: "+what)
		} else {
			n = append(n, "target MISSED: "+what)
		}
	}
	verdict(f.MeetsCeilingTarget, fmt.Sprintf("ingest/ceiling %.2f (target >= %.1f)", f.IngestToCeiling, targetCeilingRatio))
	verdict(f.MeetsNaiveTarget, fmt.Sprintf("ingest/naive %.1f (target >= %d)", f.IngestToNaive, targetNaiveRatio))
	verdict(f.MeetsLatencyTarget, fmt.Sprintf("p99 latency %.0f ms (target <= %d ms)", f.Latency.P99ms, targetP99/time.Millisecond))
	return n
}

func printTable(w io.Writer, f Figures) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "phase\tmessages\trows\tseconds\tmessages/s\tvs ingest\t\n")
	row := func(name string, p Phase, ratio string) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.0f\t%s\t\n", name, p.Messages, p.Rows, p.Seconds, p.PerSecond, ratio)
	}
	row("produce (simulator -> kfake)", f.Produce, "")
	row("ceiling (decode + COPY)", f.Ceiling, fmt.Sprintf("%.2fx", f.IngestToCeiling))
	row("naive (INSERT autocommit)*", f.Naive, fmt.Sprintf("%.1fx", f.IngestToNaive))
	row("exactly-once ingest", f.Ingest, "")
	tw.Flush()
	fmt.Fprintf(w, "* measured on the first %d messages; all %d would take %.0f s\n", f.Naive.Messages, f.Messages, f.NaiveExtrapolatedSeconds)
	fmt.Fprintf(w, "CPU of this process: ceiling %.1f s in %.1f s, ingest %.1f s in %.1f s (the rest is PostgreSQL or waiting)\n",
		f.CeilingProcessCPUSeconds, f.Ceiling.Seconds, f.IngestProcessCPUSeconds, f.Ingest.Seconds)
	l := f.Latency
	fmt.Fprintf(w, "latency at %.0f messages/s (achieved %.0f) over %.0f s, %d of %d measured: p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms (tx-start cross-check p50 %.0f, p99 %.0f)\n",
		l.TargetRate, l.AchievedRate, l.Seconds, l.Measured, l.Messages, l.P50ms, l.P90ms, l.P99ms, l.MaxMS, l.TxStartP50ms, l.TxStartP99ms)
	fmt.Fprintf(w, "peak RSS %.0f MiB; leases %d, batch <= %d records / %.0f ms; TimescaleDB %v; load average %.1f at the start, %.1f at the end\n",
		float64(f.PeakRSSKiB)/1024, f.Leases, f.MaxBatchRecords, f.MaxBatchWaitMS, f.TimescaleDB, f.LoadAvgStart, f.LoadAvgEnd)
	if len(f.Densities) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "readings/device-minute\tinterval\tmessages\twindows\twindows/message\tceiling s\tceiling msg/s\tingest s\tingest msg/s\tingest/ceiling\t\n")
	for _, d := range f.Densities {
		fmt.Fprintf(tw, "%d\t%gs\t%d\t%d\t%.3f\t%.1f\t%.0f\t%.1f\t%.0f\t%.2fx\t\n", d.ReadingsPerDeviceMinute, d.IntervalSeconds, d.Messages, d.Windows,
			d.WindowRowsPerMessage, d.Ceiling.Seconds, d.Ceiling.PerSecond, d.Ingest.Seconds, d.Ingest.PerSecond, d.IngestToCeiling)
	}
	tw.Flush()
}

// likeReadings creates an empty table with the columns, defaults, unique
// key and indexes of sensor_readings, replacing the one of an earlier
// density.
func (b *bench) likeReadings(ctx context.Context, name string) error {
	_, err := b.ts.Exec(ctx, "DROP TABLE IF EXISTS public."+name+"; CREATE TABLE public."+name+" (LIKE public.sensor_readings INCLUDING ALL)")
	return err
}

var readingColumns = []string{"time", "device_id", "value", "battery", "rssi", "source"}

func joinColumns() string { return strings.Join(readingColumns, ", ") }

// processCPU is the user and system CPU time of this process, in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// startProfile starts a CPU profile to path (none when path is empty) and
// returns its stop function.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
