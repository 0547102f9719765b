// Package health probes every component iot-etl depends on and says, per
// component, its address and either what it found or the precise error.
// `starter check` prints it; `make demo` relies on it before running.
package health

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
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
		checkTemporal, checkMySQL, checkLocations, checkTimescale, checkKafka, checkExport,
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

// The settings behind each component's connection, named in diagnoses.
var (
	TemporalSettings = Settings{TLS: "TEMPORAL_TLS", CA: "TEMPORAL_TLS_CA", Cert: "TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY",
		ServerName: "TEMPORAL_TLS_SERVER_NAME", Credentials: "TEMPORAL_API_KEY"}
	MySQLSettings = Settings{TLS: "MYSQL_TLS", CA: "MYSQL_TLS_CA", Cert: "MYSQL_TLS_CERT/MYSQL_TLS_KEY",
		ServerName: "MYSQL_TLS_SERVER_NAME", Credentials: "MYSQL_USER/MYSQL_PASSWORD"}
	ExportSettings = Settings{TLS: "EXPORT_S3_ENDPOINT", ServerName: "EXPORT_S3_ENDPOINT",
		Credentials: "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"}
	KafkaSettings = Settings{TLS: "KAFKA_TLS", CA: "KAFKA_TLS_CA", Cert: "KAFKA_TLS_CERT/KAFKA_TLS_KEY",
		ServerName: "KAFKA_TLS_SERVER_NAME", Credentials: "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD"}
)

// TemporalSettingsFor and MySQLSettingsFor complete the settings with what
// the configuration says of TLS.
func TemporalSettingsFor(t config.Temporal) Settings {
	s := TemporalSettings
	s.Plaintext, s.NoClientCert = !t.TLSEnabled(), t.TLSEnabled() && t.TLS.Cert == ""
	return s
}

// MySQLSettingsFor is MySQLSettings for m.
func MySQLSettingsFor(m config.MySQL) Settings {
	s := MySQLSettings
	s.Plaintext, s.NoClientCert = m.TLSMode == "false", m.TLSMode != "false" && m.TLS.Cert == ""
	return s
}

// PostgresSettings names the variables of the database whose variables
// start with prefix (POSTGRES_ or TIMESCALE_).
func PostgresSettings(prefix string) Settings {
	return Settings{TLS: prefix + "SSLMODE", CA: prefix + "SSLROOTCERT", Cert: prefix + "SSLCERT/" + prefix + "SSLKEY",
		ServerName: prefix + "HOST", Credentials: prefix + "USER/" + prefix + "PASSWORD"}
}

func checkTemporal(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "Temporal", Address: cfg.Temporal.Address}
	fail := func(err error) Result {
		r.Err = Diagnose(err, TemporalSettingsFor(cfg.Temporal))
		return r
	}
	c, err := temporalx.DialWith(ctx, cfg.Temporal, temporalx.Silent)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fail(err)
	}
	ns, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.Temporal.Namespace})
	if err != nil {
		return fail(fmt.Errorf("namespace %s: %w", cfg.Temporal.Namespace, err))
	}
	r.Detail = fmt.Sprintf("namespace %s (%s), UI %s", ns.GetNamespaceInfo().GetName(), ns.GetNamespaceInfo().GetState(), cfg.Temporal.UIURL)
	switch t := cfg.Temporal; {
	case t.APIKey != "":
		r.Detail += " (TLS, API key)"
	case t.TLS.Cert != "":
		r.Detail += " (mTLS)"
	case t.TLSEnabled():
		r.Detail += " (TLS)"
	}
	return r
}

func checkMySQL(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "MySQL", Address: cfg.MySQL.Addr()}
	db, err := store.OpenMySQL(ctx, cfg.MySQL)
	if err != nil {
		r.Err = Diagnose(err, MySQLSettingsFor(cfg.MySQL))
		return r
	}
	defer db.Close()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		r.Err = Diagnose(err, MySQLSettingsFor(cfg.MySQL))
		return r
	}
	if cfg.MySQL.TLSMode != "false" {
		version += tlsNote(mysqlCipher(ctx, db))
	}
	return withCount(r, version, cfg.MySQL.Database, "devices", MySQLSettingsFor(cfg.MySQL), func() (n int64, err error) {
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM devices").Scan(&n)
		return n, err
	})
}

func checkLocations(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "PostgreSQL", Address: cfg.Postgres.Addr()}
	settings := PostgresSettings("POSTGRES_")
	conn, err := pgx.Connect(ctx, cfg.Postgres.URL())
	if err != nil {
		r.Err = Diagnose(err, settings)
		return r
	}
	defer conn.Close(ctx)
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		r.Err = Diagnose(err, settings)
		return r
	}
	return withCount(r, "PostgreSQL "+version+pgTLSNote(conn), cfg.Postgres.Database, "locations", settings,
		pgCount(ctx, conn, "SELECT count(*) FROM public.locations"))
}

func checkTimescale(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "TimescaleDB", Address: cfg.Timescale.Addr()}
	settings := PostgresSettings("TIMESCALE_")
	conn, err := pgx.Connect(ctx, cfg.Timescale.URL())
	if err != nil {
		r.Err = Diagnose(err, settings)
		return r
	}
	defer conn.Close(ctx)
	var version string
	var tsVersion *string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'),
		(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')`).Scan(&version, &tsVersion); err != nil {
		r.Err = Diagnose(err, settings)
		return r
	}
	engine := fmt.Sprintf("PostgreSQL %s without timescaledb (plain tables)", version)
	if tsVersion != nil {
		engine = fmt.Sprintf("PostgreSQL %s with timescaledb %s", version, *tsVersion)
	}
	return withCount(r, engine+pgTLSNote(conn), cfg.Timescale.Database, "readings", settings,
		pgCount(ctx, conn, "SELECT count(*) FROM public.sensor_readings"))
}

// withCount completes a database's result: its engine, its database and
// how many rows its main table holds, or that it is not migrated yet (the
// server answers, so the component is OK either way). A table the user may
// not read is a failure at the authorization layer.
func withCount(r Result, engine, database, noun string, settings Settings, count func() (int64, error)) Result {
	n, err := count()
	if err != nil {
		if d := Diagnose(err, settings); isLayer(d, LayerAuthorization) {
			r.Err = d
			return r
		}
		r.Detail = fmt.Sprintf("%s, database %s (not migrated: run `starter migrate`)", engine, database)
		return r
	}
	r.Detail = fmt.Sprintf("%s, database %s, %d %s", engine, database, n, noun)
	return r
}

func isLayer(err error, l Layer) bool {
	var d *Diagnosis
	return errors.As(err, &d) && d.Layer == l
}

// pgTLSNote says when the connection is encrypted, with the TLS version.
func pgTLSNote(conn *pgx.Conn) string {
	if tc, ok := conn.PgConn().Conn().(*tls.Conn); ok {
		return tlsNote(tls.VersionName(tc.ConnectionState().Version))
	}
	return ""
}

func mysqlCipher(ctx context.Context, db *sql.DB) string {
	var name, version string
	if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_version'").Scan(&name, &version); err != nil {
		return ""
	}
	// The server says TLSv1.3; name it as Go does for the other databases.
	return strings.Replace(version, "TLSv", "TLS ", 1)
}

func tlsNote(version string) string {
	if version == "" {
		return ""
	}
	return " over " + version
}

func pgCount(ctx context.Context, conn *pgx.Conn, query string) func() (int64, error) {
	return func() (n int64, err error) {
		err = conn.QueryRow(ctx, query).Scan(&n)
		return n, err
	}
}

func checkKafka(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "Kafka", Address: strings.Join(cfg.Kafka.BootstrapServers, ",")}
	watch := kafka.NewConnWatch(cfg.Kafka)
	cl, err := kafka.NewClient(cfg.Kafka, nil, watch.Opt())
	if err != nil {
		r.Err = Diagnose(err, KafkaSettings)
		return r
	}
	defer cl.Close()
	parts, err := kafka.Partitions(ctx, cl, cfg.Kafka.Topic)
	if err != nil {
		r.Err = DiagnoseKafka(err, watch)
		return r
	}
	var security []string
	if cfg.Kafka.TLSEnabled() {
		security = append(security, "TLS")
	}
	if cfg.Kafka.SASLMechanism != "" {
		security = append(security, "SASL "+cfg.Kafka.SASLMechanism+" as "+cfg.Kafka.SASLUsername)
	}
	r.Detail = fmt.Sprintf("topic %s, %d partitions", cfg.Kafka.Topic, len(parts))
	if len(security) > 0 {
		r.Detail += " (" + strings.Join(security, ", ") + ")"
	}
	return r
}

// checkExport writes, lists and deletes a small object where the feature
// files go: exactly the rights an export needs.
func checkExport(ctx context.Context, cfg *config.Config) Result {
	r := Result{Component: "Export", Address: cfg.Export.URL}
	store, err := export.Open(cfg.Export, cfg.AWS)
	if err != nil {
		r.Err = err
		return r
	}
	r.Address = store.URL("")
	const probe = "features/.iot-etl-check"
	if err := store.Put(ctx, probe, []byte("iot-etl check\n")); err != nil {
		r.Err = Diagnose(err, ExportSettings)
		return r
	}
	keys, err := store.List(ctx, "features/")
	if err == nil {
		err = store.Delete(ctx, probe)
	}
	if err != nil {
		r.Err = Diagnose(err, ExportSettings)
		return r
	}
	manifests := 0
	for _, k := range keys {
		if strings.HasSuffix(k, "/manifest.json") {
			manifests++
		}
	}
	r.Detail = fmt.Sprintf("writable, %d feature sets", manifests)
	return r
}
