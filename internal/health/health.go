// Package health probes every component iot-etl depends on and says, per
// component, its address and either what it found or the precise error.
// `starter check` prints it; `make demo` relies on it before running.
package health

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/config"
	"github.com/iot-etl/iot-etl/internal/kafka"
	"github.com/iot-etl/iot-etl/internal/store"
)

// Result is the outcome of probing one component.
type Result struct {
	Component string
	Address   string
	Detail    string // what was found, when OK
	Err       error
}

// OK reports whether the component answered as expected.
func (r Result) OK() bool { return r.Err == nil }

// String is the one-line report: component, address, OK or the error.
func (r Result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("%-11s %-22s FAILED: %v", r.Component, r.Address, r.Err)
	}
	return fmt.Sprintf("%-11s %-22s OK   %s", r.Component, r.Address, r.Detail)
}

// Check probes all components concurrently, each with its own timeout, and
// returns the results in a fixed order.
func Check(ctx context.Context, cfg *config.Config, timeout time.Duration) []Result {
	probes := []func(context.Context, *config.Config) Result{
		checkTemporal, checkMySQL, checkLocations, checkTimescale, checkKafka,
	}
	results := make([]Result, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			results[i] = p(pctx, cfg)
		}()
	}
	wg.Wait()
	return results
}

// AllOK reports whether every result is OK.
func AllOK(rs []Result) bool {
	for _, r := range rs {
		if !r.OK() {
			return false
		}
	}
	return true
}

func checkTemporal(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "Temporal", Address: cfg.Temporal.Address}
	c, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.Address, Namespace: cfg.Temporal.Namespace, Logger: silent{}})
	if err != nil {
		r.Err = err
		return r
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		r.Err = err
		return r
	}
	ns, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.Temporal.Namespace})
	if err != nil {
		r.Err = fmt.Errorf("namespace %s: %w", cfg.Temporal.Namespace, err)
		return r
	}
	r.Detail = fmt.Sprintf("namespace %s (%s), UI %s", ns.GetNamespaceInfo().GetName(), ns.GetNamespaceInfo().GetState(), cfg.Temporal.UIURL)
	return r
}

func checkMySQL(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "MySQL", Address: cfg.MySQL.Addr()}
	db, err := store.OpenMySQL(ctx, cfg.MySQL)
	if err != nil {
		r.Err = err
		return r
	}
	defer db.Close()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		r.Err = err
		return r
	}
	return withCount(r, version, cfg.MySQL.Database, "devices", func() (n int64, err error) {
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM devices").Scan(&n)
		return n, err
	})
}

func checkLocations(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "PostgreSQL", Address: cfg.Postgres.Addr()}
	conn, err := pgx.Connect(ctx, cfg.Postgres.URL())
	if err != nil {
		r.Err = err
		return r
	}
	defer conn.Close(ctx)
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		r.Err = err
		return r
	}
	return withCount(r, "PostgreSQL "+version, cfg.Postgres.Database, "locations", pgCount(ctx, conn, "SELECT count(*) FROM public.locations"))
}

func checkTimescale(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "TimescaleDB", Address: cfg.Timescale.Addr()}
	conn, err := pgx.Connect(ctx, cfg.Timescale.URL())
	if err != nil {
		r.Err = err
		return r
	}
	defer conn.Close(ctx)
	var version string
	var tsVersion *string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'),
		(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')`).Scan(&version, &tsVersion); err != nil {
		r.Err = err
		return r
	}
	engine := fmt.Sprintf("PostgreSQL %s without timescaledb (plain tables)", version)
	if tsVersion != nil {
		engine = fmt.Sprintf("PostgreSQL %s with timescaledb %s", version, *tsVersion)
	}
	return withCount(r, engine, cfg.Timescale.Database, "readings", pgCount(ctx, conn, "SELECT count(*) FROM public.sensor_readings"))
}

// withCount completes a database's result: its engine, its database and
// how many rows its main table holds, or that it is not migrated yet (the
// server answers, so the component is OK either way).
func withCount(r Result, engine, database, noun string, count func() (int64, error)) Result {
	n, err := count()
	if err != nil {
		r.Detail = fmt.Sprintf("%s, database %s (not migrated: run `starter migrate`)", engine, database)
		return r
	}
	r.Detail = fmt.Sprintf("%s, database %s, %d %s", engine, database, n, noun)
	return r
}

func pgCount(ctx context.Context, conn *pgx.Conn, query string) func() (int64, error) {
	return func() (n int64, err error) {
		err = conn.QueryRow(ctx, query).Scan(&n)
		return n, err
	}
}

func checkKafka(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "Kafka", Address: strings.Join(cfg.Kafka.BootstrapServers, ",")}
	cl, err := kafka.NewClient(cfg.Kafka, nil)
	if err != nil {
		r.Err = err
		return r
	}
	defer cl.Close()
	parts, err := kafka.Partitions(ctx, cl, cfg.Kafka.Topic)
	if err != nil {
		r.Err = err
		return r
	}
	r.Detail = fmt.Sprintf("topic %s, %d partitions", cfg.Kafka.Topic, len(parts))
	return r
}

type silent struct{}

func (silent) Debug(string, ...any) {}
func (silent) Info(string, ...any)  {}
func (silent) Warn(string, ...any)  {}
func (silent) Error(string, ...any) {}
