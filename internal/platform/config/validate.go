package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Validate checks the values that parse but make no sense, and that the
// certificate files named exist and hold what they should.
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
	errs = append(errs, c.Postgres.validate("POSTGRES_")...)
	errs = append(errs, c.Timescale.validate("TIMESCALE_")...)
	errs = append(errs, c.MySQL.validate()...)
	errs = append(errs, c.Kafka.validate()...)
	errs = append(errs, c.Temporal.TLS.validate("TEMPORAL_TLS_")...)
	if err := checkHostPort(c.Temporal.Address); err != nil {
		errs = append(errs, fmt.Errorf("TEMPORAL_ADDRESS=%q: %w", c.Temporal.Address, err))
	}
	if err := checkListen(c.Dashboard.Addr); err != nil {
		errs = append(errs, fmt.Errorf("DASHBOARD_ADDR=%q: %w", c.Dashboard.Addr, err))
	}
	if c.MetricsAddr != "" {
		if err := checkListen(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("METRICS_ADDR=%q: %w (empty disables the endpoint)", c.MetricsAddr, err))
		}
	}
	if err := c.Export.validate(); err != nil {
		errs = append(errs, err)
	}
	positive("BATCH_CHUNK", c.Batch.ChunkSize)
	positive("BATCH_CATCHUP_WINDOW", c.Batch.CatchupWindow)
	positive("ROLLING_WINDOW", c.RollingWindow)
	switch {
	case c.Batch.Lookback < 0:
		errs = append(errs, fmt.Errorf("BATCH_LOOKBACK=%s: must not be negative", c.Batch.Lookback))
	case c.RollingWindow > 0 && c.Batch.Lookback < c.RollingWindow:
		errs = append(errs, fmt.Errorf("BATCH_LOOKBACK=%s: shorter than ROLLING_WINDOW=%s, so the readings at the start of a batch window would get truncated rolling statistics: set BATCH_LOOKBACK to at least ROLLING_WINDOW, or leave it unset to follow it",
			c.Batch.Lookback, c.RollingWindow))
	}
	if err := c.Batch.Gate().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("BATCH_DQ_MIN=%v, BATCH_REJECT_MAX=%v: %w", c.Batch.DQMin, c.Batch.RejectMax, err))
	}
	if len(strings.Fields(c.Batch.ScheduleCron)) != 5 {
		errs = append(errs, fmt.Errorf("BATCH_SCHEDULE_CRON=%q: want five cron fields, such as \"0 2 * * *\"", c.Batch.ScheduleCron))
	}
	if c.Stream.Window <= 0 {
		errs = append(errs, fmt.Errorf("STREAM_WINDOW=%s: must be positive", c.Stream.Window))
	} else if err := c.Stream.WindowLength().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("STREAM_WINDOW=%s: %w", c.Stream.Window, err))
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

func (p Postgres) validate(prefix string) []error {
	var errs []error
	switch p.SSLMode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		errs = append(errs, fmt.Errorf("%sSSLMODE=%q: want disable, allow, prefer, require, verify-ca or verify-full", prefix, p.SSLMode))
	}
	if (p.SSLCert == "") != (p.SSLKey == "") {
		errs = append(errs, fmt.Errorf("%sSSLCERT and %sSSLKEY: set both for a client certificate, or neither", prefix, prefix))
	}
	if p.SSLMode == "disable" && (p.SSLRootCert != "" || p.SSLCert != "") {
		errs = append(errs, fmt.Errorf("%sSSLMODE=disable but %sSSLROOTCERT or %sSSLCERT is set: choose an sslmode such as verify-full", prefix, prefix, prefix))
	}
	for _, f := range []struct{ name, path string }{{"SSLROOTCERT", p.SSLRootCert}, {"SSLCERT", p.SSLCert}, {"SSLKEY", p.SSLKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s%s=%q: %w", prefix, f.name, f.path, errors.Unwrap(err)))
		}
	}
	return errs
}

func (m MySQL) validate() []error {
	var errs []error
	switch m.TLSMode {
	case "false", "true", "skip-verify", "preferred":
	default:
		errs = append(errs, fmt.Errorf("MYSQL_TLS=%q: want false, true, skip-verify or preferred", m.TLSMode))
	}
	if m.TLSMode == "false" && m.TLS.set() {
		errs = append(errs, errors.New("MYSQL_TLS=false but a MYSQL_TLS_* setting is given: set MYSQL_TLS=true (verify the server) or skip-verify"))
	}
	return append(errs, m.TLS.validate("MYSQL_TLS_")...)
}

func (k Kafka) validate() []error {
	var errs []error
	if len(k.BootstrapServers) == 0 {
		errs = append(errs, errors.New("KAFKA_BOOTSTRAP_SERVERS: must list at least one host:port"))
	}
	for _, s := range k.BootstrapServers {
		if err := checkHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_BOOTSTRAP_SERVERS=%q: %w", s, err))
		}
	}
	if k.Partitions < 1 {
		errs = append(errs, fmt.Errorf("KAFKA_PARTITIONS=%d: must be at least 1", k.Partitions))
	}
	switch k.SASLMechanism {
	case "":
		if k.SASLUsername != "" || k.SASLPassword != "" {
			errs = append(errs, errors.New("KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set but KAFKA_SASL_MECHANISM is empty: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if k.SASLUsername == "" {
			errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%s needs KAFKA_SASL_USERNAME", k.SASLMechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASLMechanism))
	}
	return append(errs, k.TLS.validate("KAFKA_TLS_")...)
}

func (e Export) validate() error {
	u, err := ParseExportURL(e.URL)
	if err != nil {
		return fmt.Errorf("EXPORT_URL=%q: %w", e.URL, err)
	}
	if u.Scheme != "s3" && (e.S3Endpoint != "" || e.S3Region != "" || e.S3PathStyle) {
		return fmt.Errorf("EXPORT_S3_* is set but EXPORT_URL=%q is not an s3:// URL", e.URL)
	}
	if e.S3Endpoint != "" {
		eu, err := url.Parse(e.S3Endpoint)
		if err != nil || (eu.Scheme != "http" && eu.Scheme != "https") || eu.Host == "" {
			return fmt.Errorf("EXPORT_S3_ENDPOINT=%q: want an http:// or https:// URL", e.S3Endpoint)
		}
	}
	return nil
}

// ExportURL is a parsed EXPORT_URL: Scheme "file" with an absolute Path,
// or "s3" with Bucket and Prefix (no leading or trailing slash).
type ExportURL struct {
	Scheme string
	Path   string
	Bucket string
	Prefix string
}

// ParseExportURL accepts file:///abs/path, a plain path (relative to the
// working directory) or s3://bucket[/prefix].
func ParseExportURL(s string) (ExportURL, error) {
	if strings.TrimSpace(s) == "" {
		return ExportURL{}, errors.New("must not be empty")
	}
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		abs, err := filepath.Abs(s)
		if err != nil {
			return ExportURL{}, err
		}
		return ExportURL{Scheme: "file", Path: abs}, nil
	}
	switch scheme {
	case "file":
		if !strings.HasPrefix(rest, "/") {
			return ExportURL{}, errors.New("a file:// URL needs an absolute path, such as file:///var/lib/iot-etl/exports")
		}
		return ExportURL{Scheme: "file", Path: filepath.Clean(rest)}, nil
	case "s3":
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return ExportURL{}, errors.New("want s3://bucket/prefix")
		}
		return ExportURL{Scheme: "s3", Bucket: bucket, Prefix: strings.Trim(prefix, "/")}, nil
	}
	return ExportURL{}, fmt.Errorf("unknown scheme %q: want a path, file:///path or s3://bucket/prefix", scheme)
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

// checkListen checks a listen address: host:port, where an empty host is
// every interface and port 0 picks a free one.
func checkListen(s string) error {
	_, p, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return errors.New("port must be between 0 and 65535")
	}
	return nil
}
