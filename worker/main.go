// Command worker is the composition root of iot-etl: it reads the
// configuration, opens the database pools, dials Temporal, registers the
// workflows and activities and serves the batch and stream task queues until
// SIGINT or SIGTERM, then stops gracefully (running activities get
// WorkerStopTimeout to finish or heartbeat their progress).
//
// Run several workers against one Temporal cluster to share the work: batch
// chunks and shards fan out across them through the task queue.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"
	"go.temporal.io/sdk/worker"

	"github.com/iot-etl/iot-etl/internal/config"
	"github.com/iot-etl/iot-etl/internal/logging"
	"github.com/iot-etl/iot-etl/internal/store"
	"github.com/iot-etl/iot-etl/internal/temporalx"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// deps are what the activities are built from.
type deps struct {
	cfg *config.Config
	log *slog.Logger
	pools
}

// run serves until ctx ends. env, when not nil, replaces the process
// environment and .env as the configuration source.
func run(ctx context.Context, args []string, logOut io.Writer, env envconfig.Lookuper) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	queues := fs.String("queues", "batch,stream", "task queues to serve: batch, stream or both")
	stopTimeout := fs.Duration("stop-timeout", 30*time.Second, "time running activities get to finish on shutdown")
	maxBatchActivities := fs.Int("batch-activities", 4, "batch activities this worker runs at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	serveBatch, serveStream, err := parseQueues(*queues)
	if err != nil {
		return err
	}
	var cfg *config.Config
	if env != nil {
		cfg, err = config.LoadFrom(ctx, env)
	} else {
		cfg, err = config.Load(ctx)
	}
	if err != nil {
		return err
	}
	log := logging.New(logOut, cfg.LogLevel, cfg.LogFormat)

	// Batch activities hold up to two connections each (a read and a copy
	// or an export); the stream leases bring connections of their own.
	p, err := openPools(ctx, cfg, log, int32(2**maxBatchActivities+4))
	if err != nil {
		return err
	}
	defer p.close()
	tc, err := temporalx.Dial(ctx, cfg.Temporal, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := temporalx.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace); err != nil {
		// A namespace managed elsewhere may not allow it; the runs still
		// work, only without the custom UI filters.
		log.Warn("search attributes not registered", "error", err)
	}

	d := deps{cfg: cfg, log: log, pools: p}
	var workers []worker.Worker
	if serveBatch {
		w := worker.New(tc, cfg.Temporal.BatchTaskQueue, worker.Options{
			MaxConcurrentActivityExecutionSize: *maxBatchActivities,
			WorkerStopTimeout:                  *stopTimeout,
		})
		registerBatch(w, d)
		workers = append(workers, w)
	}
	if serveStream {
		w := worker.New(tc, cfg.Temporal.StreamTaskQueue, worker.Options{
			MaxConcurrentActivityExecutionSize: cfg.Stream.Leases + 2,
			WorkerStopTimeout:                  *stopTimeout,
		})
		if registerStream(w, d) {
			workers = append(workers, w)
		}
	}
	for _, w := range workers {
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
	}
	log.Info("worker started", "temporal", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace,
		"queues", *queues, "batch_queue", cfg.Temporal.BatchTaskQueue, "stream_queue", cfg.Temporal.StreamTaskQueue)
	<-ctx.Done()
	log.Info("worker stopping")
	for _, w := range workers {
		w.Stop()
	}
	log.Info("worker stopped")
	return nil
}

func parseQueues(s string) (batch, stream bool, err error) {
	for _, q := range strings.Split(s, ",") {
		switch strings.TrimSpace(q) {
		case "batch":
			batch = true
		case "stream":
			stream = true
		default:
			return false, false, fmt.Errorf("-queues: unknown queue %q (want batch, stream or batch,stream)", q)
		}
	}
	return batch, stream, nil
}

// pools are the database handles shared by all activities.
type pools struct {
	mysql     *sql.DB
	locations *pgxpool.Pool
	timescale *pgxpool.Pool
}

func openPools(ctx context.Context, cfg *config.Config, log *slog.Logger, timescaleConns int32) (pools, error) {
	var p pools
	var err error
	if p.mysql, err = store.OpenMySQL(ctx, cfg.MySQL); err != nil {
		return p, err
	}
	if p.locations, err = store.OpenPG(ctx, cfg.Postgres, log); err != nil {
		p.close()
		return p, err
	}
	if p.timescale, err = store.OpenPGPool(ctx, cfg.Timescale, log, timescaleConns); err != nil {
		p.close()
		return p, err
	}
	return p, nil
}

func (p pools) close() {
	if p.mysql != nil {
		p.mysql.Close()
	}
	if p.locations != nil {
		p.locations.Close()
	}
	if p.timescale != nil {
		p.timescale.Close()
	}
}
