package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
)

func init() {
	register(command{
		Name:    "seed",
		Summary: "replace devices, locations, readings and anomaly ground truth with generated data (deterministic per seed)",
		Run:     runSeed,
	})
}

func runSeed(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "seed", "[--devices N] [--days D] [--interval 1m] [--seed S] [--end YYYY-MM-DD]")
	devices := fs.Int("devices", 50, "number of devices")
	days := fs.Int("days", 2, "number of UTC days of readings, ending at --end")
	interval := fs.Duration("interval", time.Minute, "time between two readings of a device (1s..15m, divides 24h)")
	seed := fs.Int64("seed", 42, "seed: the same seed and flags always write the same data")
	end := fs.String("end", "", "first day NOT seeded, YYYY-MM-DD (default: today, UTC)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "goroutines generating readings for the COPY")
	keepDerived := fs.Bool("keep-derived", false, "keep the warehouse and the stream sink (by default they are emptied: they were built from the old readings)")
	if err := parse(fs, args); err != nil {
		return err
	}
	to := time.Now().UTC().Truncate(24 * time.Hour)
	if *end != "" {
		t, err := time.Parse(time.DateOnly, *end)
		if err != nil {
			return fmt.Errorf("%w: --end %q: want YYYY-MM-DD", errUsage, *end)
		}
		to = t
	}
	switch {
	case *devices < 1:
		return fmt.Errorf("%w: --devices %d: want at least 1", errUsage, *devices)
	case *days < 1:
		return fmt.Errorf("%w: --days %d: want at least 1", errUsage, *days)
	case *workers < 1:
		return fmt.Errorf("%w: --workers %d: want at least 1", errUsage, *workers)
	}
	opts := simulate.DefaultOptions()
	opts.Interval = *interval
	if _, err := simulate.NewGenerator(simulate.Fleet{}, opts); err != nil {
		return fmt.Errorf("%w: --interval: %w", errUsage, err)
	}

	if err := app.EnsureDatabases(ctx); err != nil {
		return err
	}
	dbs, err := app.DBs(ctx)
	if err != nil {
		return err
	}
	if err := dbs.EnsureSchema(ctx, app.Log); err != nil {
		return err
	}
	sum, err := seeder.Run(ctx, dbs, seeder.Options{
		Seed: *seed, Devices: *devices, Days: batch.Window{Start: to.AddDate(0, 0, -*days), End: to}, Sim: opts, Workers: *workers,
	})
	if err != nil {
		return err
	}
	printSeedSummary(app.Out, sum)
	if *keepDerived {
		return nil
	}
	tables, err := seeder.ResetDerived(ctx, dbs.Timescale)
	if err != nil {
		return err
	}
	fmt.Fprintf(app.Out, "reset      %d tables built from the previous readings (warehouse, staging, stream sink); Kafka offsets kept\n", len(tables))
	return nil
}

func printSeedSummary(w io.Writer, s seeder.Summary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	days, unit := int(s.To.Sub(s.From)/batch.Day), "days"
	if days == 1 {
		unit = "day"
	}
	fmt.Fprintf(tw, "range\t%s .. %s (%d %s, every %s)\n", s.From.Format(time.DateOnly), s.To.Format(time.DateOnly), days, unit, s.Interval)
	fmt.Fprintf(tw, "devices\t%d in %d locations (seed %d)\n", s.Devices, s.Locations, s.Seed)
	fmt.Fprintf(tw, "slots\t%d\n", s.Slots)
	fmt.Fprintf(tw, "readings\t%d\n", s.Readings)
	fmt.Fprintf(tw, "gaps\t%d missing slots: %d in %d outages, %d isolated dropouts\n", s.Missing, s.Missing-s.Dropouts, s.Anomalies[simulate.Gap], s.Dropouts)
	fmt.Fprintf(tw, "anomalies\t%d:", s.AnomalyRows)
	for _, k := range simulate.Kinds {
		fmt.Fprintf(tw, " %s %d", k, s.Anomalies[k])
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "elapsed\t%s; readings loaded in %s (copy %s, indexes %s): %.0f readings/s\n", s.Elapsed.Round(time.Millisecond),
		s.LoadElapsed.Round(time.Millisecond), s.CopyElapsed.Round(time.Millisecond), s.IndexElapsed.Round(time.Millisecond), s.ReadingsPerSecond())
	fmt.Fprintf(tw, "checksum\t%s over %d readings\n", s.Checksum, s.ChecksumCount)
	tw.Flush()
}
