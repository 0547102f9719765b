// Command seed measures `starter seed`: it creates throwaway databases
// (iot_bench_seed_*), seeds them with 1000 devices x 7 days of 1-minute
// readings by default, drops them, and writes bench/results/seed.json. The
// baseline, measured in the same run, is the generator alone on the same
// number of goroutines: the gap between the two is the database's share.
//
//	go run ./bench/seed [-devices 1000] [-days 7] [-seed 42] [-interval 1m]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

// Figures are the numbers seed.json records.
type Figures struct {
	Devices               int     `json:"devices"`
	Days                  int     `json:"days"`
	IntervalSeconds       int     `json:"interval_s"`
	Workers               int     `json:"workers"`
	Slots                 int64   `json:"slots"`
	Readings              int64   `json:"readings"`
	Anomalies             int64   `json:"anomalies"`
	Seconds               float64 `json:"seconds"`      // the whole seed: registry, locations, readings, checksum
	LoadSeconds           float64 `json:"load_seconds"` // generating and copying readings, rebuilding indexes
	CopySeconds           float64 `json:"copy_seconds"`
	IndexSeconds          float64 `json:"index_rebuild_seconds"`
	ReadingsPerSecond     float64 `json:"readings_per_s"`
	GenerationSeconds     float64 `json:"generation_only_seconds"`
	GenerationPerSecond   float64 `json:"generation_only_readings_per_s"`
	LoadToGenerationRatio float64 `json:"load_to_generation_ratio"`
	ChecksumSeconds       float64 `json:"checksum_seconds"`
	Checksum              string  `json:"checksum"`
	PeakRSSKiB            int64   `json:"peak_rss_kib"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/seed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	devices := flag.Int("devices", 1000, "devices")
	days := flag.Int("days", 7, "UTC days of readings")
	seed := flag.Int64("seed", 42, "seed")
	interval := flag.Duration("interval", time.Minute, "time between readings")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "generator goroutines")
	out := flag.String("out", "bench/results/seed.json", "results file")
	flag.Parse()

	cfg, err := config.Load(ctx)
	if err != nil {
		return err
	}
	opts := simulate.DefaultOptions()
	opts.Interval = *interval
	to := time.Date(2026, 1, 12, 0, 0, 0, 0, time.UTC) // a fixed range: runs compare
	from := to.AddDate(0, 0, -*days)

	// Baseline: the generator alone, on the same goroutines.
	genStart := time.Now()
	genReadings, err := generateOnly(*seed, *devices, from, to, opts, *workers)
	if err != nil {
		return err
	}
	genSeconds := time.Since(genStart).Seconds()

	stack, err := benchutil.OpenStack(ctx, cfg, "seed")
	if err != nil {
		return err
	}
	defer func() {
		if err := stack.Close(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(os.Stderr, "bench/seed:", err)
		}
	}()
	span := batch.Window{Start: from, End: to}
	sum, err := seeder.Run(ctx, stack.DBs, seeder.Options{Seed: *seed, Devices: *devices, Days: span, Sim: opts, Workers: *workers})
	if err != nil {
		return err
	}
	ckStart := time.Now()
	if _, _, err := seeder.ReadingsChecksum(ctx, stack.Timescale, span); err != nil {
		return err
	}
	f := Figures{
		Devices: *devices, Days: *days, IntervalSeconds: int(*interval / time.Second), Workers: *workers,
		Slots: sum.Slots, Readings: sum.Readings, Anomalies: sum.AnomalyRows,
		Seconds: sum.Elapsed.Seconds(), LoadSeconds: sum.LoadElapsed.Seconds(),
		CopySeconds: sum.CopyElapsed.Seconds(), IndexSeconds: sum.IndexElapsed.Seconds(),
		ReadingsPerSecond:   sum.ReadingsPerSecond(),
		GenerationPerSecond: float64(genReadings) / genSeconds,
		GenerationSeconds:   genSeconds,
		ChecksumSeconds:     time.Since(ckStart).Seconds(),
		Checksum:            sum.Checksum,
		PeakRSSKiB:          benchutil.PeakRSSKiB(os.Getpid()),
	}
	f.LoadToGenerationRatio = f.ReadingsPerSecond / f.GenerationPerSecond
	res := benchutil.Result{
		Benchmark: "seed",
		RanAt:     time.Now().UTC(),
		Machine:   benchutil.Describe(ctx, stack.Timescale),
		Figures:   f,
		Notes: []string{
			"readings_per_s = readings / load_seconds; the load is one transaction: TRUNCATE, one COPY fed by the generator goroutines, ground truth COPY, index rebuild",
			"generation_only_readings_per_s: the same device-days generated in memory on the same goroutines, no database (baseline of the same run)",
			"seconds also covers MySQL and locations, ANALYZE and the checksum query; checksum_seconds is that query alone, run again",
			"peak_rss_kib is the whole process (baseline and seed)",
		},
	}
	if err := benchutil.Write(*out, res); err != nil {
		return err
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "seed\tdevices\tdays\treadings\tseconds\treadings/s\tgeneration-only/s\tratio\tchecksum s\tpeak RSS MiB\t\n")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f\t%.0f\t%.0f\t%.2f\t%.1f\t%.0f\t\n", *seed, f.Devices, f.Days, f.Readings, f.Seconds,
		f.ReadingsPerSecond, f.GenerationPerSecond, f.LoadToGenerationRatio, f.ChecksumSeconds, float64(f.PeakRSSKiB)/1024)
	tw.Flush()
	fmt.Printf("load %.1fs (copy %.1fs, index rebuild %.1fs) of %.1fs; checksum %s; written to %s\n", f.LoadSeconds, f.CopySeconds, f.IndexSeconds, f.Seconds, f.Checksum, *out)
	if genReadings != sum.Readings {
		return fmt.Errorf("generation-only produced %d readings, the seed %d", genReadings, sum.Readings)
	}
	return nil
}

// generateOnly generates every device-day on workers goroutines and
// returns how many readings they hold.
func generateOnly(seed int64, devices int, from, to time.Time, opts simulate.Options, workers int) (int64, error) {
	fleet := simulate.NewFleet(seed, devices)
	gen, err := simulate.NewGenerator(fleet, opts)
	if err != nil {
		return 0, err
	}
	type job struct {
		dev reading.Device
		day time.Time
	}
	jobs := make(chan job)
	var total atomic.Int64
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for j := range jobs {
				total.Add(int64(len(gen.Day(j.dev, j.day).Readings)))
			}
		})
	}
	for _, day := range simulate.Days(from, to) {
		for _, dev := range fleet.Devices {
			jobs <- job{dev, day}
		}
	}
	close(jobs)
	wg.Wait()
	return total.Load(), nil
}
