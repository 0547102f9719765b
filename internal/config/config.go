// Package config reads the whole runtime configuration of iot-etl from the
// environment (and an optional .env file) into one struct. Invalid values fail
// at start-up with the name of the variable; secrets are wrapped in Secret so
// they never print.
package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Config is every setting of the worker, the starter and the dev stack.
type Config struct {
	MySQL     MySQL    `env:", prefix=MYSQL_"`
	Postgres  Postgres `env:", prefix=POSTGRES_"`
	Timescale Postgres `env:", prefix=TIMESCALE_"`
	Kafka     Kafka    `env:", prefix=KAFKA_"`
	Temporal  Temporal `env:", prefix=TEMPORAL_"`
	Batch     Batch    `env:", prefix=BATCH_"`
	Stream    Stream   `env:", prefix=STREAM_"`

	ExportDir string `env:"EXPORT_DIR, default=./exports"`
	LogLevel  string `env:"LOG_LEVEL, default=info"`
	LogFormat string `env:"LOG_FORMAT, default=text"`
}

// MySQL is the device registry (MySQL 8 or MariaDB 10.11).
type MySQL struct {
	Host     string `env:"HOST, default=127.0.0.1"`
	Port     int    `env:"PORT, default=3306"`
	User     string `env:"USER, default=root"`
	Password Secret `env:"PASSWORD"`
	Database string `env:"DATABASE, default=iot_devices"`
}

// Postgres is one PostgreSQL database: the locations source or the
// TimescaleDB database that holds readings, stream sink and warehouse.
// Database has no tag default because the two roles differ; Load fills it.
type Postgres struct {
	Host     string `env:"HOST, default=127.0.0.1"`
	Port     int    `env:"PORT, default=5432"`
	User     string `env:"USER, default=postgres"`
	Password Secret `env:"PASSWORD"`
	Database string `env:"DATABASE"`
	SSLMode  string `env:"SSLMODE, default=disable"`
}

// Kafka is the broker and the readings topic.
type Kafka struct {
	BootstrapServers []string `env:"BOOTSTRAP_SERVERS, default=127.0.0.1:9092"`
	Topic            string   `env:"TOPIC, default=iot-sensor-stream"`
	// Partitions is used when the dev stack creates the topic.
	Partitions int `env:"PARTITIONS, default=6"`
}

// Temporal is the Temporal frontend, namespace and task queues.
type Temporal struct {
	Address         string `env:"ADDRESS, default=127.0.0.1:7233"`
	Namespace       string `env:"NAMESPACE, default=default"`
	BatchTaskQueue  string `env:"BATCH_TASK_QUEUE, default=iot-batch"`
	StreamTaskQueue string `env:"STREAM_TASK_QUEUE, default=iot-stream"`
	UIURL           string `env:"UI_URL, default=http://127.0.0.1:8233"`
}

// Batch tunes the batch ETL.
type Batch struct {
	ScheduleID    string        `env:"SCHEDULE_ID, default=iot-batch-nightly"`
	ScheduleCron  string        `env:"SCHEDULE_CRON, default=0 2 * * *"`
	CatchupWindow time.Duration `env:"CATCHUP_WINDOW, default=24h"`
	ChunkSize     time.Duration `env:"CHUNK, default=6h"`
	Lookback      time.Duration `env:"LOOKBACK, default=1h"`
}

// Stream tunes the stream ETL.
type Stream struct {
	AllowedLateness time.Duration `env:"ALLOWED_LATENESS, default=10m"`
	MaxBatchRecords int           `env:"MAX_BATCH_RECORDS, default=5000"`
	MaxBatchWait    time.Duration `env:"MAX_BATCH_WAIT, default=200ms"`
	Leases          int           `env:"LEASES, default=3"`
	LeaseDuration   time.Duration `env:"LEASE_DURATION, default=5m"`
}

// Load reads the configuration from the process environment, falling back to
// a .env file in the working directory when one exists. Variables set in the
// environment win over the file.
func Load(ctx context.Context) (*Config, error) {
	fileVars, err := ReadDotEnv(".env")
	if err != nil {
		return nil, err
	}
	return LoadFrom(ctx, envconfig.MultiLookuper(envconfig.OsLookuper(), envconfig.MapLookuper(fileVars)))
}

// LoadFrom reads the configuration through l. Tests pass a MapLookuper.
func LoadFrom(ctx context.Context, l envconfig.Lookuper) (*Config, error) {
	rec := &recordingLookuper{next: l}
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: rec}); err != nil {
		return nil, rec.explain(err)
	}
	if c.Postgres.Database == "" {
		c.Postgres.Database = "iot_locations"
	}
	if c.Timescale.Database == "" {
		c.Timescale.Database = "iot_timeseries"
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the values that parse but make no sense.
func (c *Config) Validate() error {
	var errs []error
	port := func(name string, p int) {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s=%d: port must be between 1 and 65535", name, p))
		}
	}
	nonEmpty := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", name))
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%s: must be positive", name, d))
		}
	}
	port("MYSQL_PORT", c.MySQL.Port)
	port("POSTGRES_PORT", c.Postgres.Port)
	port("TIMESCALE_PORT", c.Timescale.Port)
	nonEmpty("MYSQL_HOST", c.MySQL.Host)
	nonEmpty("MYSQL_DATABASE", c.MySQL.Database)
	nonEmpty("POSTGRES_HOST", c.Postgres.Host)
	nonEmpty("TIMESCALE_HOST", c.Timescale.Host)
	nonEmpty("KAFKA_TOPIC", c.Kafka.Topic)
	nonEmpty("TEMPORAL_NAMESPACE", c.Temporal.Namespace)
	nonEmpty("TEMPORAL_BATCH_TASK_QUEUE", c.Temporal.BatchTaskQueue)
	nonEmpty("TEMPORAL_STREAM_TASK_QUEUE", c.Temporal.StreamTaskQueue)
	for _, pair := range []struct{ name, mode string }{{"POSTGRES_SSLMODE", c.Postgres.SSLMode}, {"TIMESCALE_SSLMODE", c.Timescale.SSLMode}} {
		switch pair.mode {
		case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		default:
			errs = append(errs, fmt.Errorf("%s=%q: want disable, allow, prefer, require, verify-ca or verify-full", pair.name, pair.mode))
		}
	}
	if len(c.Kafka.BootstrapServers) == 0 {
		errs = append(errs, errors.New("KAFKA_BOOTSTRAP_SERVERS: must list at least one host:port"))
	}
	for _, s := range c.Kafka.BootstrapServers {
		if err := checkHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_BOOTSTRAP_SERVERS=%q: %w", s, err))
		}
	}
	if err := checkHostPort(c.Temporal.Address); err != nil {
		errs = append(errs, fmt.Errorf("TEMPORAL_ADDRESS=%q: %w", c.Temporal.Address, err))
	}
	if c.Kafka.Partitions < 1 {
		errs = append(errs, fmt.Errorf("KAFKA_PARTITIONS=%d: must be at least 1", c.Kafka.Partitions))
	}
	positive("BATCH_CHUNK", c.Batch.ChunkSize)
	positive("BATCH_CATCHUP_WINDOW", c.Batch.CatchupWindow)
	if c.Batch.Lookback < 0 {
		errs = append(errs, fmt.Errorf("BATCH_LOOKBACK=%s: must not be negative", c.Batch.Lookback))
	}
	if len(strings.Fields(c.Batch.ScheduleCron)) != 5 {
		errs = append(errs, fmt.Errorf("BATCH_SCHEDULE_CRON=%q: want five cron fields, such as \"0 2 * * *\"", c.Batch.ScheduleCron))
	}
	if c.Stream.AllowedLateness < 0 {
		errs = append(errs, fmt.Errorf("STREAM_ALLOWED_LATENESS=%s: must not be negative", c.Stream.AllowedLateness))
	}
	if c.Stream.MaxBatchRecords < 1 {
		errs = append(errs, fmt.Errorf("STREAM_MAX_BATCH_RECORDS=%d: must be at least 1", c.Stream.MaxBatchRecords))
	}
	positive("STREAM_MAX_BATCH_WAIT", c.Stream.MaxBatchWait)
	positive("STREAM_LEASE_DURATION", c.Stream.LeaseDuration)
	if c.Stream.Leases < 1 {
		errs = append(errs, fmt.Errorf("STREAM_LEASES=%d: must be at least 1", c.Stream.Leases))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q: want text or json", c.LogFormat))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

func checkHostPort(s string) error {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("host is empty")
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return errors.New("port must be between 1 and 65535")
	}
	return nil
}

// DSN returns the go-sql-driver/mysql data source name, password included.
// It is for the driver only; never log it.
func (m MySQL) DSN() string {
	return m.dsnFor(m.Database)
}

// ServerDSN is DSN without a database, for CREATE DATABASE.
func (m MySQL) ServerDSN() string { return m.dsnFor("") }

func (m MySQL) dsnFor(db string) string {
	return fmt.Sprintf("%s:%s@tcp(%s)/%s?parseTime=true&loc=UTC&multiStatements=true&timeout=5s&interpolateParams=true",
		m.User, m.Password.Reveal(), m.Addr(), db)
}

// Addr is host:port.
func (m MySQL) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// String describes the connection without the password.
func (m MySQL) String() string { return fmt.Sprintf("mysql://%s@%s/%s", m.User, m.Addr(), m.Database) }

// URL returns the pgx connection string, password included. Never log it.
func (p Postgres) URL() string { return p.urlFor(p.Database) }

// URLFor is URL for another database on the same server.
func (p Postgres) URLFor(db string) string { return p.urlFor(db) }

func (p Postgres) urlFor(db string) string {
	u := url.URL{Scheme: "postgres", Host: p.Addr(), Path: "/" + db}
	if p.Password != "" {
		u.User = url.UserPassword(p.User, p.Password.Reveal())
	} else {
		u.User = url.User(p.User)
	}
	q := url.Values{"sslmode": {p.SSLMode}}
	u.RawQuery = q.Encode()
	return u.String()
}

// Addr is host:port.
func (p Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// String describes the connection without the password.
func (p Postgres) String() string {
	return fmt.Sprintf("postgres://%s@%s/%s", p.User, p.Addr(), p.Database)
}

// recordingLookuper remembers the last variable looked up so that a decode
// error can name the variable, not the Go field.
type recordingLookuper struct {
	next     envconfig.Lookuper
	lastKey  string
	lastVal  string
	lastSeen bool
}

func (r *recordingLookuper) Lookup(key string) (string, bool) {
	v, ok := r.next.Lookup(key)
	r.lastKey, r.lastVal, r.lastSeen = key, v, ok
	return v, ok
}

func (r *recordingLookuper) explain(err error) error {
	if r.lastKey == "" {
		return fmt.Errorf("config: %w", err)
	}
	// The value is shown unless the variable holds a secret.
	shown := strconv.Quote(r.lastVal)
	if isSecretName(r.lastKey) {
		shown = `"****"`
	}
	if !r.lastSeen {
		return fmt.Errorf("config: %s (unset, default used): %w", r.lastKey, unwrapField(err))
	}
	return fmt.Errorf("config: %s=%s: %w", r.lastKey, shown, unwrapField(err))
}

// unwrapField turns go-envconfig's "Field: strconv.ParseInt: ..." chain, which
// names Go fields the operator has never seen, into what the value should be.
func unwrapField(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "ParseInt"), strings.Contains(msg, "ParseUint"):
		return errors.New("not an integer")
	case strings.Contains(msg, "ParseFloat"):
		return errors.New("not a number")
	case strings.Contains(msg, "ParseBool"):
		return errors.New("not a boolean (true or false)")
	case strings.Contains(msg, "time: "):
		return errors.New("not a duration (such as 90s, 10m or 1h30m)")
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return errors.New(msg[i+2:])
	}
	return err
}

func isSecretName(k string) bool {
	k = strings.ToUpper(k)
	return strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN")
}

// ReadDotEnv parses a .env file of KEY=VALUE lines. A missing file is not an
// error. Quotes around a value are removed; lines starting with # are
// comments; an optional "export " prefix is accepted.
func ReadDotEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return ParseDotEnv(path, string(b))
}

// ParseDotEnv parses the text of a .env file; name is used in errors.
func ParseDotEnv(name, text string) (map[string]string, error) {
	vars := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("config: %s line %d: want KEY=VALUE", name, i+1)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		} else if j := strings.Index(v, " #"); j >= 0 {
			v = strings.TrimSpace(v[:j])
		}
		vars[k] = v
	}
	return vars, nil
}

// Env renders c as the environment variables that produce it, for starting
// a subprocess (a worker) with the same configuration. Secrets are in clear:
// never log the result.
func (c *Config) Env() map[string]string {
	return map[string]string{
		"MYSQL_HOST": c.MySQL.Host, "MYSQL_PORT": strconv.Itoa(c.MySQL.Port), "MYSQL_USER": c.MySQL.User,
		"MYSQL_PASSWORD": c.MySQL.Password.Reveal(), "MYSQL_DATABASE": c.MySQL.Database,
		"POSTGRES_HOST": c.Postgres.Host, "POSTGRES_PORT": strconv.Itoa(c.Postgres.Port), "POSTGRES_USER": c.Postgres.User,
		"POSTGRES_PASSWORD": c.Postgres.Password.Reveal(), "POSTGRES_DATABASE": c.Postgres.Database,
		"TIMESCALE_HOST": c.Timescale.Host, "TIMESCALE_PORT": strconv.Itoa(c.Timescale.Port), "TIMESCALE_USER": c.Timescale.User,
		"TIMESCALE_PASSWORD": c.Timescale.Password.Reveal(), "TIMESCALE_DATABASE": c.Timescale.Database,
		"KAFKA_BOOTSTRAP_SERVERS": strings.Join(c.Kafka.BootstrapServers, ","), "KAFKA_TOPIC": c.Kafka.Topic,
		"KAFKA_PARTITIONS": strconv.Itoa(c.Kafka.Partitions),
		"TEMPORAL_ADDRESS": c.Temporal.Address, "TEMPORAL_NAMESPACE": c.Temporal.Namespace,
		"TEMPORAL_BATCH_TASK_QUEUE": c.Temporal.BatchTaskQueue, "TEMPORAL_STREAM_TASK_QUEUE": c.Temporal.StreamTaskQueue,
		"TEMPORAL_UI_URL":          c.Temporal.UIURL,
		"STREAM_ALLOWED_LATENESS":  c.Stream.AllowedLateness.String(),
		"STREAM_MAX_BATCH_RECORDS": strconv.Itoa(c.Stream.MaxBatchRecords),
		"STREAM_MAX_BATCH_WAIT":    c.Stream.MaxBatchWait.String(),
		"STREAM_LEASES":            strconv.Itoa(c.Stream.Leases),
		"STREAM_LEASE_DURATION":    c.Stream.LeaseDuration.String(),
		"BATCH_SCHEDULE_ID":        c.Batch.ScheduleID,
		"BATCH_SCHEDULE_CRON":      c.Batch.ScheduleCron,
		"BATCH_CATCHUP_WINDOW":     c.Batch.CatchupWindow.String(),
		"BATCH_CHUNK":              c.Batch.ChunkSize.String(),
		"BATCH_LOOKBACK":           c.Batch.Lookback.String(),
		"EXPORT_DIR":               c.ExportDir,
		"LOG_LEVEL":                c.LogLevel,
		"LOG_FORMAT":               c.LogFormat,
	}
}
