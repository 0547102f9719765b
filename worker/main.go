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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sethvargo/go-envconfig"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/adapter/lineage"
	"github.com/iot-etl/iot-etl/internal/adapter/metrics"
	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/platform/logging"
	"github.com/iot-etl/iot-etl/workflows"
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
	tc  client.Client // the staging sweep asks it whether a run's workflow is running
	*store.DBs
	metrics *metrics.Registry
	lineage *activities.Lineage // the OpenLineage events of both queues' jobs
}

// run serves until ctx ends. env, when not nil, replaces the process
// environment and .env as the configuration source.
func run(ctx context.Context, args []string, logOut io.Writer, env envconfig.Lookuper) (err error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	queues := fs.String("queues", "batch,stream", "task queues to serve: batch, stream or both")
	stopTimeout := fs.Duration("stop-timeout", 30*time.Second, "time running activities get to finish on shutdown")
	maxBatchActivities := fs.Int("batch-activities", 4, "batch activities this worker runs at once")
	var prof profiles
	prof.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := prof.start(); err != nil {
		return err
	}
	defer func() {
		if perr := prof.stop(); perr != nil && err == nil {
			err = perr
		}
	}()
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
	dbs, err := store.Open(ctx, cfg, log, store.Options{TimescaleConns: int32(2**maxBatchActivities + 4), Statements: prof.stmts})
	if err != nil {
		return err
	}
	defer dbs.Close()
	reg := metrics.New()
	sdkMetrics, err := reg.TemporalHandler(log)
	if err != nil {
		return err
	}
	tc, err := temporalx.Dial(ctx, cfg.Temporal, log, func(o *client.Options) { o.MetricsHandler = sdkMetrics })
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := temporalx.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace); err != nil {
		// A namespace managed elsewhere may not allow it; the runs still
		// work, only without the custom UI filters.
		log.Warn("search attributes not registered", "error", err)
	}

	emitter, err := lineage.New(cfg.Lineage, log)
	if err != nil {
		return err
	}
	d := deps{cfg: cfg, log: log, tc: tc, DBs: dbs, lineage: &activities.Lineage{Emitter: emitter, MySQL: dbs.MySQL,
		MySQLAddr: cfg.MySQL.Addr(), MySQLDatabase: cfg.MySQL.Database, Locations: dbs.Locations, Timescale: dbs.Timescale}}
	if emitter.Enabled() {
		log.Info("lineage events", "url", cfg.Lineage.URL, "namespace", cfg.Lineage.Namespace)
	}
	health, closeMetrics, err := observe(reg, d, serveStream)
	if err != nil {
		return err
	}
	defer closeMetrics()
	d.metrics = reg
	if cfg.MetricsAddr != "" {
		srv, err := metrics.Listen(cfg.MetricsAddr, metrics.Mux(reg, health), log)
		if err != nil {
			return err
		}
		go srv.Serve()
		defer srv.Shutdown()
		log.Info("metrics endpoint", "url", "http://"+srv.Addr()+"/metrics", "ready", "http://"+srv.Addr()+"/readyz")
	}
	// Every activity's error is classified once, here: data errors are
	// non-retryable, the rest is left to the retry policies. The stream
	// applies control signals that arrive together in arrival order.
	interceptors := []interceptor.WorkerInterceptor{activities.ErrorClassifier(), workflows.SignalOrderInterceptor()}
	var workers []worker.Worker
	if serveBatch {
		w := worker.New(tc, cfg.Temporal.BatchTaskQueue, worker.Options{
			MaxConcurrentActivityExecutionSize: *maxBatchActivities,
			WorkerStopTimeout:                  *stopTimeout,
			Interceptors:                       interceptors,
		})
		if err := registerBatch(w, d); err != nil {
			return err
		}
		workers = append(workers, w)
	}
	if serveStream {
		w := worker.New(tc, cfg.Temporal.StreamTaskQueue, worker.Options{
			MaxConcurrentActivityExecutionSize: cfg.Stream.Leases + 2,
			WorkerStopTimeout:                  *stopTimeout,
			Interceptors:                       interceptors,
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
	health.SetStarted()
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
