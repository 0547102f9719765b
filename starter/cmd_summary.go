package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
)

func init() {
	register(command{
		Name:    "summary",
		Summary: "print where everything is: Temporal UI, databases with row counts, Kafka",
		Run:     runSummary,
	})
}

// summaryLine is one row of the summary: what, where, and how much.
type summaryLine struct{ What, Where, Count string }

// summarySections add rows to the summary; pipeline files append their own.
var summarySections = []func(ctx context.Context, app *App) ([]summaryLine, error){
	summarySources,
	summaryWarehouse,
	summaryStream,
	summaryKafka,
}

func runSummary(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "summary", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Temporal UI\t%s\t\n", app.Cfg.Temporal.UIURL)
	fmt.Fprintf(tw, "Temporal frontend\t%s (namespace %s)\t\n", app.Cfg.Temporal.Address, app.Cfg.Temporal.Namespace)
	fmt.Fprintf(tw, "Dashboard\thttp://%s/ (starter dashboard)\t\n", displayAddr(app.Cfg.Dashboard.Addr))
	if u := metricsURL(app.Cfg.MetricsAddr); u != "" {
		fmt.Fprintf(tw, "Worker metrics\t%s/metrics (health: /healthz, /readyz)\t\n", u)
	}
	var firstErr error
	for _, section := range summarySections {
		lines, err := section(ctx, app)
		for _, l := range lines {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", l.What, l.Where, l.Count)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	tw.Flush()
	return firstErr
}

// rows renders the result of a count query, or "?" when it fails (for
// example before the tables exist).
func rows(n int64, err error) string {
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%d rows", n)
}

func countMySQL(ctx context.Context, db *sql.DB, query string) (n int64, err error) {
	err = db.QueryRowContext(ctx, query).Scan(&n)
	return n, err
}

func countPG(ctx context.Context, pool *pgxpool.Pool, query string) (n int64, err error) {
	err = pool.QueryRow(ctx, query).Scan(&n)
	return n, err
}

func summarySources(ctx context.Context, app *App) ([]summaryLine, error) {
	var lines []summaryLine
	my, err := app.MySQL(ctx)
	if err != nil {
		return lines, err
	}
	where := app.Cfg.MySQL.String()
	lines = append(lines,
		summaryLine{"MySQL device_types", where, rows(countMySQL(ctx, my, "SELECT COUNT(*) FROM device_types"))},
		summaryLine{"MySQL devices", where, rows(countMySQL(ctx, my, "SELECT COUNT(*) FROM devices"))})

	loc, err := app.Locations(ctx)
	if err != nil {
		return lines, err
	}
	lines = append(lines, summaryLine{"PostgreSQL locations", app.Cfg.Postgres.String(), rows(countPG(ctx, loc, "SELECT count(*) FROM public.locations"))})

	ts, err := app.Timescale(ctx)
	if err != nil {
		return lines, err
	}
	where = app.Cfg.Timescale.String()
	lines = append(lines,
		summaryLine{"Timescale sensor_readings", where, rows(countPG(ctx, ts, "SELECT count(*) FROM public.sensor_readings"))},
		summaryLine{"Timescale anomaly_ground_truth", where, rows(countPG(ctx, ts, "SELECT count(*) FROM public.anomaly_ground_truth"))})
	return lines, nil
}

func summaryKafka(ctx context.Context, app *App) ([]summaryLine, error) {
	where := strings.Join(app.Cfg.Kafka.BootstrapServers, ",")
	cl, err := kafka.NewClient(app.Cfg.Kafka, nil)
	if err != nil {
		return []summaryLine{{"Kafka", where, "unreachable"}}, err
	}
	defer cl.Close()
	ends, err := kafka.HighWatermarks(ctx, cl, app.Cfg.Kafka.Topic)
	if err != nil {
		return []summaryLine{{"Kafka topic " + app.Cfg.Kafka.Topic, where, "unreachable"}}, err
	}
	var total int64
	for _, o := range ends {
		total += o
	}
	return []summaryLine{{"Kafka topic " + app.Cfg.Kafka.Topic, where, fmt.Sprintf("%d partitions, %d messages", len(ends), total)}}, nil
}

// summaryWarehouse reports the warehouse and the latest batch run.
func summaryWarehouse(ctx context.Context, app *App) ([]summaryLine, error) {
	ts, err := app.Timescale(ctx)
	if err != nil {
		return nil, err
	}
	where := app.Cfg.Timescale.String()
	lines := []summaryLine{
		{"Warehouse fact rows", where, rows(countPG(ctx, ts, "SELECT count(*) FROM dwh.fact_sensor_readings_enriched"))},
		{"Warehouse anomalies", where, rows(countPG(ctx, ts, "SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE is_anomaly"))},
		{"Warehouse hourly buckets", where, rows(countPG(ctx, ts, "SELECT count(*) FROM dwh.fact_hourly_agg"))},
		{"Warehouse ml_features", where, rows(countPG(ctx, ts, "SELECT count(*) FROM dwh.ml_features"))},
	}
	var (
		workflowID, runID, status string
		from, to                  time.Time
		manifest                  *string
		files                     []string
	)
	err = ts.QueryRow(ctx, `SELECT workflow_id, run_id, status, window_start, window_end, export_manifest_url, export_files
		FROM dwh.etl_runs ORDER BY started_at DESC LIMIT 1`).Scan(&workflowID, &runID, &status, &from, &to, &manifest, &files)
	if err != nil {
		return lines, nil // no run yet
	}
	lines = append(lines, summaryLine{"Latest batch run", fmt.Sprintf("[%s, %s)", from.Format(time.RFC3339), to.Format(time.RFC3339)), status},
		summaryLine{"  in the Temporal UI", runURL(app, workflowID, runID), ""})
	if manifest != nil {
		lines = append(lines, summaryLine{"  features manifest", *manifest, fmt.Sprintf("%d files", len(files))})
		for _, f := range files {
			lines = append(lines, summaryLine{"  features file", f, ""})
		}
	}
	return lines, nil
}

// summaryStream reports what the stream ETL has landed.
func summaryStream(ctx context.Context, app *App) ([]summaryLine, error) {
	ts, err := app.Timescale(ctx)
	if err != nil {
		return nil, err
	}
	where := app.Cfg.Timescale.String()
	return []summaryLine{
		{"Stream raw readings", where, rows(countPG(ctx, ts, "SELECT count(*) FROM public.sensor_readings WHERE source = 'stream'"))},
		{"Stream windows", where, rows(countPG(ctx, ts, "SELECT count(*) FROM public.sensor_readings_stream_agg"))},
		{"Stream dead letters", where, rows(countPG(ctx, ts, "SELECT count(*) FROM public.stream_dead_letters"))},
		{"Stream anomalies", where, rows(countPG(ctx, ts, "SELECT count(*) FROM public.stream_anomalies"))},
	}, nil
}

// metricsURL is the base URL of a worker's metrics endpoint at addr (one
// listening on every interface is reached on 127.0.0.1), or "" when
// disabled.
func metricsURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if addr == "" || err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
