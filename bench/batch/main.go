// Command batch benchmarks the batch ETL: it seeds throwaway databases,
// runs BatchETLWorkflow over the whole seeded range with a real worker
// process on a Temporal dev server, and, in the same run, times the same
// transform done inside PostgreSQL as one INSERT … SELECT with window
// functions into an identical table. It does this at two sizes to show that
// the worker's memory does not grow with the data.
//
//	go run ./bench/batch                      # 100 and 1000 devices x 7 days
//	go run ./bench/batch -sizes 20 -days 1    # a quick smoke run
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
	"github.com/iot-etl/iot-etl/workflows"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/batch:", err)
		os.Exit(1)
	}
}

// Size is the figures of one size.
type Size struct {
	Devices        int                `json:"devices"`
	Days           int                `json:"days"`
	Readings       int64              `json:"readings"`
	SeedSeconds    float64            `json:"seed_seconds"`
	BatchSeconds   float64            `json:"batch_seconds"`
	BatchRowsPerS  float64            `json:"batch_rows_per_s"`
	PhaseSeconds   map[string]float64 `json:"phase_seconds"`
	TransformLoadS float64            `json:"transform_plus_load_seconds"`
	WorkerPeakRSS  int64              `json:"worker_peak_rss_kib"`
	SQLSeconds     float64            `json:"sql_baseline_seconds"`
	SQLRowsPerS    float64            `json:"sql_baseline_rows_per_s"`
	SQLRows        int64              `json:"sql_baseline_rows"`
	RatioFull      float64            `json:"ratio_sql_over_full_batch"`
	RatioTL        float64            `json:"ratio_sql_over_transform_plus_load"`
	ZScoreAgree    int64              `json:"zscore_rows_agreeing"`
	FactChecksum   string             `json:"fact_checksum"`
	// The batch's wall time no activity was running (workflow tasks,
	// scheduling and dispatch between the steps), from its history.
	OrchestrationS     float64 `json:"orchestration_seconds"`
	OrchestrationShare float64 `json:"orchestration_share"`
	LongestIdleS       float64 `json:"longest_idle_seconds"`
	LongestIdleBefore  string  `json:"longest_idle_before"`
	ActivityAttempts   int     `json:"activity_attempts"`
	HistoryEvents      int     `json:"history_events"`
}

func run(ctx context.Context) error {
	sizes := flag.String("sizes", "100,1000", "device counts to run, comma-separated")
	days := flag.Int("days", 7, "UTC days of 1-minute readings per device")
	shards := flag.Int("shards", 8, "transform/load shards")
	out := flag.String("out", "bench/results/batch.json", "results file")
	profile := flag.String("profile", "", "directory for the worker's CPU, allocation and SQL statement profiles (one set per size)")
	flag.Parse()

	base, err := config.Load(ctx)
	if err != nil {
		return err
	}
	fmt.Println("starting a Temporal dev server and building the worker...")
	wb, err := benchutil.StartWorkbench(ctx, "batch")
	if err != nil {
		return err
	}
	defer wb.Close()

	var results []Size
	var machine benchutil.Machine
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-sizes: %w", err)
		}
		r, m, err := runSize(ctx, base, wb.Server.Addr, wb.WorkerBin, wb.Dir, *profile, n, *days, *shards)
		if err != nil {
			return err
		}
		machine = m
		results = append(results, r)
		printSizes(results)
	}
	notes := []string{
		"batch_seconds: BatchETLWorkflow end to end on one worker process (extract from MySQL/PostgreSQL/TimescaleDB into staging, transform in Go, load with upserts and hourly buckets, feature export to Parquet + dwh.ml_features, run bookkeeping with a checksum and detection scoring)",
		"sql_baseline: one INSERT ... SELECT in PostgreSQL over the same readings: trailing 1h count/mean/std/min/max with RANGE window frames excluding the current row, z-score, range, rate-of-change and gap checks via lag(), upserted into a copy of the fact table; no stuck-sensor rule, no extract, no export",
		"ratio_sql_over_*: SQL baseline seconds / batch seconds; above 1 means the batch is faster",
		"zscore_rows_agreeing: rows whose z-score from the SQL baseline equals the batch's within 1e-9 (both NULL counts as equal)",
		"worker_peak_rss_kib: VmHWM of the worker process at the end of the run",
		"orchestration_seconds: the batch's wall time (first to last history event) during which no activity attempt was running: workflow tasks, activity scheduling and dispatch, history writes between the steps; orchestration_share is it over that wall time; longest_idle_seconds is the longest of those stretches, and longest_idle_before the activity type started at its end (empty: the end of the run)",
	}
	return benchutil.Write(*out, benchutil.Result{Benchmark: "batch", RanAt: time.Now().UTC(), Machine: machine, Figures: results, Notes: notes})
}

func runSize(ctx context.Context, base *config.Config, temporalAddr, workerBin, tmp, profile string, devices, days, shards int) (Size, benchutil.Machine, error) {
	r := Size{Devices: devices, Days: days, PhaseSeconds: map[string]float64{}}
	stack, err := benchutil.OpenStack(ctx, base, "batch")
	if err != nil {
		return r, benchutil.Machine{}, err
	}
	defer func() {
		if err := stack.Close(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(os.Stderr, "bench/batch:", err)
		}
	}()
	machine := benchutil.Describe(ctx, stack.Timescale)

	to := time.Date(2026, 1, 12, 0, 0, 0, 0, time.UTC)
	from := to.AddDate(0, 0, -days)
	fmt.Printf("\n%d devices x %d days: seeding...\n", devices, days)
	seedStart := time.Now()
	sum, err := seeder.Run(ctx, stack.DBs, seeder.Options{Seed: 42, Devices: devices, Days: batch.Window{Start: from, End: to}, Sim: simulate.DefaultOptions()})
	if err != nil {
		return r, machine, err
	}
	r.SeedSeconds, r.Readings = time.Since(seedStart).Seconds(), sum.Readings

	cfg := *stack.Cfg
	benchutil.UseDevServer(&cfg, temporalAddr)
	cfg.Temporal.BatchTaskQueue = fmt.Sprintf("bench-batch-%d", devices)
	exportDir, err := filepath.Abs(filepath.Join(tmp, fmt.Sprintf("exports-%d", devices)))
	if err != nil {
		return r, machine, err
	}
	cfg.Export.URL = "file://" + filepath.ToSlash(exportDir) // the local export store
	cfg.LogLevel = "warn"
	args := []string{"-queues", "batch"}
	if profile != "" {
		if err := os.MkdirAll(profile, 0o755); err != nil {
			return r, machine, err
		}
		p := filepath.Join(profile, fmt.Sprintf("batch-%d", devices))
		args = append(args, "-cpuprofile", p+".cpu.pprof", "-memprofile", p+".allocs.pprof", "-sqlprofile", p+".sql.txt")
	}
	worker, err := benchutil.StartWorker(workerBin, benchutil.WorkerEnv(&cfg), os.Stderr, args...)
	if err != nil {
		return r, machine, err
	}
	defer func() {
		if err := worker.Stop(30 * time.Second); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "bench/batch:", err)
		}
	}()

	tc, err := temporalx.Dial(ctx, cfg.Temporal, nil)
	if err != nil {
		return r, machine, err
	}
	defer tc.Close()
	// The clock starts once the worker polls, not while it starts up.
	if err := benchutil.WaitPollers(ctx, tc, cfg.Temporal.BatchTaskQueue, 1, worker.Exited); err != nil {
		return r, machine, err
	}
	fmt.Printf("%d readings seeded in %.1fs; running the batch over [%s, %s)...\n", sum.Readings, r.SeedSeconds, from.Format("2006-01-02"), to.Format("2006-01-02"))
	batchStart := time.Now()
	wr, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: cfg.Temporal.BatchTaskQueue},
		workflows.BatchWorkflowName, workflows.BatchInput{WindowStart: from, WindowEnd: to, Shards: shards})
	if err != nil {
		return r, machine, err
	}
	var res workflows.BatchResult
	if err := wr.Get(ctx, &res); err != nil {
		return r, machine, err
	}
	r.BatchSeconds = time.Since(batchStart).Seconds()
	r.WorkerPeakRSS = benchutil.PeakRSSKiB(worker.Pid())
	r.BatchRowsPerS = float64(res.RowsLoaded) / r.BatchSeconds
	r.FactChecksum = res.FactChecksum
	for p, ms := range res.PhaseMillis {
		r.PhaseSeconds[p] = float64(ms) / 1000
	}
	r.TransformLoadS = r.PhaseSeconds["transform"] + r.PhaseSeconds["load"]
	if res.RowsLoaded != sum.Readings {
		return r, machine, fmt.Errorf("batch loaded %d rows, the seed wrote %d", res.RowsLoaded, sum.Readings)
	}
	cov, err := temporalx.ActivityCoverage(ctx, tc, wr.GetID(), wr.GetRunID())
	if err != nil {
		return r, machine, err
	}
	r.OrchestrationS, r.OrchestrationShare = cov.Orchestration().Seconds(), cov.Share()
	r.LongestIdleS, r.LongestIdleBefore = cov.LongestIdle.Seconds(), cov.IdleBefore
	r.ActivityAttempts, r.HistoryEvents = cov.Attempts, cov.Events
	if profile != "" {
		if err := worker.Stop(30 * time.Second); err != nil { // writes the profiles
			return r, machine, err
		}
	}

	fmt.Printf("batch done in %.1fs; SQL baseline...\n", r.BatchSeconds)
	if r.SQLSeconds, r.SQLRows, err = sqlBaseline(ctx, stack, from, to); err != nil {
		return r, machine, err
	}
	r.SQLRowsPerS = float64(r.SQLRows) / r.SQLSeconds
	r.RatioFull = r.SQLSeconds / r.BatchSeconds
	if r.TransformLoadS > 0 {
		r.RatioTL = r.SQLSeconds / r.TransformLoadS
	}
	err = stack.Timescale.QueryRow(ctx, `
		SELECT count(*) FROM dwh.fact_sensor_readings_enriched f
		JOIN bench_sql_fact s USING (device_id, time)
		WHERE (f.zscore IS NULL AND s.zscore IS NULL) OR abs(f.zscore - s.zscore) <= 1e-9 * greatest(1, abs(f.zscore))`).Scan(&r.ZScoreAgree)
	return r, machine, err
}

// sqlBaseline is the transform as PostgreSQL would do it alone: one
// statement, window functions, upsert into a copy of the fact table.
func sqlBaseline(ctx context.Context, stack *benchutil.Stack, from, to time.Time) (float64, int64, error) {
	ts := stack.Timescale
	if _, err := ts.Exec(ctx, `CREATE TABLE bench_sql_fact (LIKE dwh.fact_sensor_readings_enriched INCLUDING ALL)`); err != nil {
		return 0, 0, err
	}
	// The rate-of-change limit per type, which the warehouse does not keep.
	if _, err := ts.Exec(ctx, `CREATE TABLE bench_rate_limits (code text PRIMARY KEY, max_rate_per_min double precision)`); err != nil {
		return 0, 0, err
	}
	for _, t := range reading.Catalog {
		if _, err := ts.Exec(ctx, `INSERT INTO bench_rate_limits VALUES ($1, $2)`, t.Code, t.MaxRatePerMin); err != nil {
			return 0, 0, err
		}
	}
	start := time.Now()
	tag, err := ts.Exec(ctx, `
		INSERT INTO bench_sql_fact AS f (time, device_id, value, battery, rssi, device_type, metric, unit, location_id,
		       site, building, floor, zone, roll_count, roll_mean, roll_std, roll_min, roll_max, zscore,
		       is_anomaly, anomaly_reasons, quality_score, quality_flags, run_id)
		SELECT w.time, w.device_id, w.value, w.battery, w.rssi, d.device_type, d.metric, d.unit, d.location_id,
		       l.site, l.building, l.floor, l.zone, w.cnt, w.mean, w.std, w.mn, w.mx, z.z,
		       cardinality(rs.reasons) > 0, rs.reasons,
		       greatest(0, 1 - CASE WHEN w.value IS NULL THEN 1 ELSE 0 END
		                      - CASE WHEN w.value NOT BETWEEN d.valid_min AND d.valid_max THEN 0.6 ELSE 0 END
		                      - CASE WHEN w.since_prev > interval '3 minutes' THEN 0.2 ELSE 0 END),
		       array_remove(ARRAY[CASE WHEN w.value IS NULL THEN 'null' END,
		                          CASE WHEN w.value NOT BETWEEN d.valid_min AND d.valid_max THEN 'out_of_range' END,
		                          CASE WHEN w.since_prev > interval '3 minutes' THEN 'gap' END], NULL),
		       'sql-baseline'
		FROM (
		    SELECT r.*,
		           count(r.value)       OVER h AS cnt,
		           avg(r.value)         OVER h AS mean,
		           stddev_samp(r.value) OVER h AS std,
		           min(r.value)         OVER h AS mn,
		           max(r.value)         OVER h AS mx,
		           r.time - lag(r.time) OVER p AS since_prev,
		           lag(r.value) OVER p AS prev_value
		    FROM public.sensor_readings r
		    WHERE r.time >= $1::timestamptz - interval '1 hour' AND r.time < $2
		    WINDOW h AS (PARTITION BY r.device_id ORDER BY r.time RANGE BETWEEN interval '1 hour' PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW),
		           p AS (PARTITION BY r.device_id ORDER BY r.time)
		) w
		JOIN dwh.dim_devices d ON d.device_id = w.device_id AND d.is_current
		JOIN dwh.dim_locations l ON l.location_id = d.location_id
		JOIN bench_rate_limits rl ON rl.code = d.device_type
		JOIN LATERAL (SELECT CASE WHEN w.cnt >= 30 AND w.std > 0 THEN (w.value - w.mean) / w.std END AS z) z ON true
		JOIN LATERAL (SELECT array_remove(ARRAY[
		         CASE WHEN abs(z.z) > 3 THEN 'zscore' END,
		         CASE WHEN w.value NOT BETWEEN d.valid_min AND d.valid_max THEN 'out_of_range' END,
		         CASE WHEN abs(w.value - w.prev_value) / (extract(epoch FROM w.since_prev) / 60) > rl.max_rate_per_min THEN 'rate_of_change' END,
		         CASE WHEN w.since_prev > interval '3 minutes' THEN 'gap' END], NULL) AS reasons) rs ON true
		WHERE w.time >= $1
		ON CONFLICT (device_id, time) DO UPDATE SET value = EXCLUDED.value, roll_count = EXCLUDED.roll_count,
		       roll_mean = EXCLUDED.roll_mean, roll_std = EXCLUDED.roll_std, roll_min = EXCLUDED.roll_min,
		       roll_max = EXCLUDED.roll_max, zscore = EXCLUDED.zscore, is_anomaly = EXCLUDED.is_anomaly,
		       anomaly_reasons = EXCLUDED.anomaly_reasons, quality_score = EXCLUDED.quality_score,
		       quality_flags = EXCLUDED.quality_flags, run_id = EXCLUDED.run_id`, from, to)
	if err != nil {
		return 0, 0, fmt.Errorf("sql baseline: %w", err)
	}
	return time.Since(start).Seconds(), tag.RowsAffected(), nil
}

func printSizes(rs []Size) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\ndevices\treadings\tbatch s\tbatch rows/s\ttransform+load s\tSQL s\tSQL rows/s\tSQL/batch\tSQL/(t+l)\torchestration\tworker peak RSS MiB\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.0f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t%.1f%%\t%.1f\t\n", r.Devices, r.Readings, r.BatchSeconds, r.BatchRowsPerS,
			r.TransformLoadS, r.SQLSeconds, r.SQLRowsPerS, r.RatioFull, r.RatioTL, 100*r.OrchestrationShare, float64(r.WorkerPeakRSS)/1024)
	}
	tw.Flush()
}
