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
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/domain/window"
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
	Export    Export   `env:", prefix=EXPORT_"`
	AWS       AWS      `env:", prefix=AWS_"`

	Dashboard Dashboard `env:", prefix=DASHBOARD_"`
	Lineage   Lineage   `env:", prefix=OPENLINEAGE_"`

	// RollingWindow is the trailing horizon of the rolling statistics of
	// the shared transform, in the batch and the stream (Params.Window);
	// unset, transform.DefaultParams().Window.
	RollingWindow time.Duration `env:"ROLLING_WINDOW"`

	// MetricsAddr is where the worker serves /metrics, /healthz and
	// /readyz (host:port; an empty host is every interface, port 0 picks
	// a free one); empty disables it.
	MetricsAddr string `env:"METRICS_ADDR, default=127.0.0.1:9464"`

	// ModelPath is the anomaly model file (`starter model train --out`)
	// the batch scores each run's device-hours with; empty means the
	// model registered with `starter model train --register`, if any.
	ModelPath string `env:"MODEL_PATH"`

	LogLevel  string `env:"LOG_LEVEL, default=info"`
	LogFormat string `env:"LOG_FORMAT, default=text"`
}

// Lineage is where OpenLineage run events go: URL is http(s)://host[:port]
// (Marquez: POST to /api/v1/lineage when the URL has no path, else to the
// URL itself) or file:///path (one JSON event per line, appended); empty
// sends none. Namespace is the jobs' namespace; APIKey, when set, is sent
// as a bearer token.
type Lineage struct {
	URL       string `env:"URL"`
	Namespace string `env:"NAMESPACE, default=iot-etl"`
	APIKey    Secret `env:"API_KEY"`
}

// Dashboard is the web UI `starter dashboard` serves.
type Dashboard struct {
	// Addr is host:port; a non-loopback address needs Token.
	Addr string `env:"ADDR, default=127.0.0.1:8080"`
	// Token, when set, is required by every action (pause, resume,
	// stop); starter dashboard refuses a non-loopback Addr without one.
	Token Secret `env:"TOKEN"`
}

// MySQL is the device registry (MySQL 8 or MariaDB 10.11).
type MySQL struct {
	Host     string `env:"HOST, default=127.0.0.1"`
	Port     int    `env:"PORT, default=3306"`
	User     string `env:"USER, default=root"`
	Password Secret `env:"PASSWORD"`
	Database string `env:"DATABASE, default=iot_devices"`
	// TLSMode is false, true (verify the server), skip-verify or preferred
	// (TLS when the server offers it, unverified), as go-sql-driver/mysql
	// names them.
	TLSMode string `env:"TLS, default=false"`
	TLS     TLS    `env:", prefix=TLS_"`
}

// Postgres is one PostgreSQL database: the locations source or the
// TimescaleDB database that holds readings, stream sink and warehouse.
// Database has no tag default because the two roles differ; Load fills it.
// The SSL settings are libpq's: sslmode, sslrootcert, sslcert, sslkey.
type Postgres struct {
	Host        string `env:"HOST, default=127.0.0.1"`
	Port        int    `env:"PORT, default=5432"`
	User        string `env:"USER, default=postgres"`
	Password    Secret `env:"PASSWORD"`
	Database    string `env:"DATABASE"`
	SSLMode     string `env:"SSLMODE, default=disable"`
	SSLRootCert string `env:"SSLROOTCERT"`
	SSLCert     string `env:"SSLCERT"`
	SSLKey      string `env:"SSLKEY"`
}

// Kafka is the broker, its security and the readings topic.
type Kafka struct {
	BootstrapServers []string `env:"BOOTSTRAP_SERVERS, default=127.0.0.1:9092"`
	Topic            string   `env:"TOPIC, default=iot-sensor-stream"`
	// Partitions is used when the dev stack creates the topic.
	Partitions int `env:"PARTITIONS, default=6"`

	// TLSOn turns TLS on; any TLS_* file or server name implies it.
	TLSOn bool `env:"TLS, default=false"`
	TLS   TLS  `env:", prefix=TLS_"`
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty means
	// no authentication.
	SASLMechanism string `env:"SASL_MECHANISM"`
	SASLUsername  string `env:"SASL_USERNAME"`
	SASLPassword  Secret `env:"SASL_PASSWORD"`
}

// TLSEnabled reports whether connections to the brokers use TLS.
func (k Kafka) TLSEnabled() bool { return k.TLSOn || k.TLS.set() }

// Temporal is the Temporal frontend, its security, namespace and task
// queues.
type Temporal struct {
	Address         string `env:"ADDRESS, default=127.0.0.1:7233"`
	Namespace       string `env:"NAMESPACE, default=default"`
	BatchTaskQueue  string `env:"BATCH_TASK_QUEUE, default=iot-batch"`
	StreamTaskQueue string `env:"STREAM_TASK_QUEUE, default=iot-stream"`
	UIURL           string `env:"UI_URL, default=http://127.0.0.1:8233"`

	// TLSOn turns TLS on; any TLS_* file or server name implies it, and
	// so does an API key (as the Temporal SDK does).
	TLSOn  bool   `env:"TLS, default=false"`
	TLS    TLS    `env:", prefix=TLS_"`
	APIKey Secret `env:"API_KEY"`
}

// TLSEnabled reports whether the connection to the frontend uses TLS.
func (t Temporal) TLSEnabled() bool { return t.TLSOn || t.TLS.set() || t.APIKey != "" }

// Export is where the batch writes its feature files: a local directory
// (a path or a file:// URL) or an S3 bucket (s3://bucket/prefix) of AWS or
// any S3-compatible service.
type Export struct {
	URL string `env:"URL, default=./exports"`
	// S3Endpoint is the service's URL for S3-compatible stores (MinIO,
	// Ceph, R2...); empty means AWS.
	S3Endpoint string `env:"S3_ENDPOINT"`
	// S3Region defaults to AWS_REGION, then us-east-1.
	S3Region string `env:"S3_REGION"`
	// S3PathStyle addresses objects as endpoint/bucket/key, which most
	// S3-compatible stores need.
	S3PathStyle bool `env:"S3_PATH_STYLE, default=false"`
}

// AWS holds the standard AWS credential variables. When AccessKeyID is
// empty, the AWS SDK's default chain is used (shared config, web identity,
// instance or task role).
type AWS struct {
	AccessKeyID     string `env:"ACCESS_KEY_ID"`
	SecretAccessKey Secret `env:"SECRET_ACCESS_KEY"`
	SessionToken    Secret `env:"SESSION_TOKEN"`
	Region          string `env:"REGION"`
}

// Batch tunes the batch ETL.
type Batch struct {
	ScheduleID    string        `env:"SCHEDULE_ID, default=iot-batch-nightly"`
	ScheduleCron  string        `env:"SCHEDULE_CRON, default=0 2 * * *"`
	CatchupWindow time.Duration `env:"CATCHUP_WINDOW, default=24h"`
	// ChunkSize defaults to batch.DefaultChunk (see domainDefaults).
	// Lookback, the history read before the window for the rolling
	// statistics, defaults to ROLLING_WINDOW and may not be shorter.
	ChunkSize time.Duration `env:"CHUNK"`
	Lookback  time.Duration `env:"LOOKBACK"`
	// DQMin and RejectMax are the data-quality gate (batch.Gate): a run
	// whose transformed output has a lower mean quality score, or a
	// larger share of rejected readings, waits before Load for approve or
	// reject. 0 turns each off.
	DQMin     float64 `env:"DQ_MIN, default=0"`
	RejectMax float64 `env:"REJECT_MAX, default=0"`
}

// Gate is the data-quality gate the batch runs get.
func (b Batch) Gate() batch.Gate { return batch.Gate{DQMin: b.DQMin, RejectMax: b.RejectMax} }

// Stream tunes the stream ETL. Unset, each takes the default of
// internal/domain/ingest (see domainDefaults).
type Stream struct {
	// Window is the length of the tumbling event-time windows (see
	// window.Length): a whole number of seconds that divides one hour;
	// unset, window.Default.
	Window          time.Duration `env:"WINDOW"`
	AllowedLateness time.Duration `env:"ALLOWED_LATENESS"`
	MaxBatchRecords int           `env:"MAX_BATCH_RECORDS"`
	MaxBatchWait    time.Duration `env:"MAX_BATCH_WAIT"`
	Leases          int           `env:"LEASES"`
	LeaseDuration   time.Duration `env:"LEASE_DURATION"`
}

// WindowLength is the stream's window length.
func (s Stream) WindowLength() window.Length { return window.Length(s.Window) }

// TransformParams are the parameters of the shared transform: the
// domain's, with the configured rolling horizon.
func (c *Config) TransformParams() transform.Params {
	p := transform.DefaultParams()
	p.Window = c.RollingWindow
	return p
}

// domainDefaults are the defaults the domain defines, by variable: an
// unset variable takes its value here. (A set one keeps its value, zero
// included: STREAM_ALLOWED_LATENESS=0 allows no lateness.) BATCH_LOOKBACK
// unset takes ROLLING_WINDOW's value (LoadFrom): the history the rolling
// statistics need.
var domainDefaults = map[string]any{
	"ROLLING_WINDOW":           transform.DefaultParams().Window,
	"BATCH_CHUNK":              batch.DefaultChunk,
	"STREAM_WINDOW":            window.Default,
	"STREAM_ALLOWED_LATENESS":  ingest.DefaultAllowedLateness,
	"STREAM_MAX_BATCH_RECORDS": ingest.DefaultMaxRecords,
	"STREAM_MAX_BATCH_WAIT":    ingest.DefaultMaxWait,
	"STREAM_LEASES":            ingest.DefaultLeases,
	"STREAM_LEASE_DURATION":    ingest.DefaultLeaseDuration,
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
//
// Every secret (a *_PASSWORD, TEMPORAL_API_KEY, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN) can instead be read from the file that <NAME>_FILE
// names, the Docker and Kubernetes secrets convention; setting both is an
// error.
func LoadFrom(ctx context.Context, l envconfig.Lookuper) (*Config, error) {
	if v, ok := l.Lookup("EXPORT_DIR"); ok && v != "" {
		return nil, fmt.Errorf("config: EXPORT_DIR=%q: replaced by EXPORT_URL (a path, file:///path or s3://bucket/prefix)", v)
	}
	rec := &recordingLookuper{next: &secretFileLookuper{next: l}}
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: rec}); err != nil {
		return nil, rec.explain(err)
	}
	if err := rec.next.(*secretFileLookuper).err(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	walkEnv(reflect.ValueOf(&c).Elem(), "", func(name string, v reflect.Value) {
		if d, ok := domainDefaults[name]; ok && !rec.set[name] {
			v.Set(reflect.ValueOf(d))
		}
	})
	if !rec.set["BATCH_LOOKBACK"] {
		c.Batch.Lookback = c.RollingWindow
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

// Addr is host:port.
func (m MySQL) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// String describes the connection without the password.
func (m MySQL) String() string { return fmt.Sprintf("mysql://%s@%s/%s", m.User, m.Addr(), m.Database) }

// URL returns the pgx connection string, password and SSL settings
// included. Never log it.
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
	for k, v := range map[string]string{"sslrootcert": p.SSLRootCert, "sslcert": p.SSLCert, "sslkey": p.SSLKey} {
		if v != "" {
			q.Set(k, v)
		}
	}
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
	set      map[string]bool // variables set to a non-empty value
}

func (r *recordingLookuper) Lookup(key string) (string, bool) {
	v, ok := r.next.Lookup(key)
	r.lastKey, r.lastVal, r.lastSeen = key, v, ok
	if ok && v != "" {
		if r.set == nil {
			r.set = map[string]bool{}
		}
		r.set[key] = true
	}
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

// isSecretName reports whether the variable k holds a secret: its value is
// never echoed, and it may come from k_FILE.
func isSecretName(k string) bool {
	k = strings.ToUpper(k)
	for _, s := range []string{"PASSWORD", "SECRET", "TOKEN", "API_KEY"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// secretFileLookuper serves a secret variable NAME from the file NAME_FILE
// names when NAME itself is unset. A trailing newline is not part of the
// secret (editors and `echo` add one). Errors are kept for err: the
// Lookuper interface cannot return them.
type secretFileLookuper struct {
	next envconfig.Lookuper
	errs []error
}

func (s *secretFileLookuper) Lookup(key string) (string, bool) {
	v, ok := s.next.Lookup(key)
	if !isSecretName(key) || strings.HasSuffix(key, "_FILE") {
		return v, ok
	}
	path, fromFile := s.next.Lookup(key + "_FILE")
	if !fromFile || path == "" {
		return v, ok
	}
	if ok && v != "" {
		s.errs = append(s.errs, fmt.Errorf("%s and %s_FILE are both set: use one", key, key))
		return v, ok
	}
	b, err := os.ReadFile(path)
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("%s_FILE=%q: %w", key, path, errors.Unwrap(err)))
		return "", false
	}
	return strings.TrimRight(string(b), "\r\n"), true
}

func (s *secretFileLookuper) err() error { return errors.Join(s.errs...) }

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
