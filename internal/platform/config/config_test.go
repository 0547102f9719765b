package config

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-envconfig"
)

func load(t *testing.T, env map[string]string) (*Config, error) {
	t.Helper()
	return LoadFrom(context.Background(), envconfig.MapLookuper(env))
}

func TestDefaultsTargetTheLocalStack(t *testing.T) {
	t.Parallel()
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{
		"mysql":      c.MySQL.String(),
		"postgres":   c.Postgres.String(),
		"timescale":  c.Timescale.String(),
		"kafka":      c.Kafka.BootstrapServers,
		"topic":      c.Kafka.Topic,
		"partitions": c.Kafka.Partitions,
		"temporal":   c.Temporal.Address,
		"namespace":  c.Temporal.Namespace,
		"queues":     []string{c.Temporal.BatchTaskQueue, c.Temporal.StreamTaskQueue},
		"cron":       c.Batch.ScheduleCron,
		"lateness":   c.Stream.AllowedLateness,
		"window":     c.Stream.Window,
		"rolling":    c.RollingWindow,
		"lookback":   c.Batch.Lookback,
	}
	want := map[string]any{
		"mysql":      "mysql://root@127.0.0.1:3306/iot_devices",
		"postgres":   "postgres://postgres@127.0.0.1:5432/iot_locations",
		"timescale":  "postgres://postgres@127.0.0.1:5432/iot_timeseries",
		"kafka":      []string{"127.0.0.1:9092"},
		"topic":      "iot-sensor-stream",
		"partitions": 6,
		"temporal":   "127.0.0.1:7233",
		"namespace":  "default",
		"queues":     []string{"iot-batch", "iot-stream"},
		"cron":       "0 2 * * *",
		"lateness":   10 * time.Minute,
		"window":     time.Minute,
		"rolling":    time.Hour,
		"lookback":   time.Hour,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{
		"MYSQL_HOST": "db.internal", "MYSQL_PORT": "3307", "MYSQL_DATABASE": "devs",
		"TIMESCALE_PORT": "5433", "TIMESCALE_DATABASE": "ts",
		"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
		"STREAM_ALLOWED_LATENESS": "90s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.MySQL.String(), "mysql://root@db.internal:3307/devs"; got != want {
		t.Errorf("mysql = %q, want %q", got, want)
	}
	if got, want := c.Timescale.String(), "postgres://postgres@127.0.0.1:5433/ts"; got != want {
		t.Errorf("timescale = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"k1:9092", "k2:9092"}, c.Kafka.BootstrapServers); diff != "" {
		t.Errorf("brokers (-want +got):\n%s", diff)
	}
	if c.Stream.AllowedLateness != 90*time.Second {
		t.Errorf("lateness = %s, want 1m30s", c.Stream.AllowedLateness)
	}
}

// TestInvalidValuesNameTheVariable: every start-up error names the variable
// the operator has to fix.
func TestInvalidValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"MYSQL_PORT": "abc"}, `MYSQL_PORT="abc": not an integer`},
		{map[string]string{"TIMESCALE_PORT": "70000"}, "TIMESCALE_PORT=70000: port must be between 1 and 65535"},
		{map[string]string{"POSTGRES_PORT": "0"}, "POSTGRES_PORT=0"},
		{map[string]string{"STREAM_ALLOWED_LATENESS": "ten minutes"}, `STREAM_ALLOWED_LATENESS="ten minutes": not a duration`},
		{map[string]string{"STREAM_ALLOWED_LATENESS": "-1m"}, "STREAM_ALLOWED_LATENESS=-1m0s: must not be negative"},
		{map[string]string{"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, `KAFKA_BOOTSTRAP_SERVERS="localhost": want host:port`},
		{map[string]string{"TEMPORAL_ADDRESS": "temporal:x"}, `TEMPORAL_ADDRESS="temporal:x"`},
		{map[string]string{"POSTGRES_SSLMODE": "maybe"}, `POSTGRES_SSLMODE="maybe"`},
		{map[string]string{"LOG_LEVEL": "loud"}, `LOG_LEVEL="loud"`},
		{map[string]string{"BATCH_SCHEDULE_CRON": "nightly"}, `BATCH_SCHEDULE_CRON="nightly"`},
		{map[string]string{"KAFKA_PARTITIONS": "0"}, "KAFKA_PARTITIONS=0"},
		{map[string]string{"STREAM_MAX_BATCH_RECORDS": "many"}, `STREAM_MAX_BATCH_RECORDS="many": not an integer`},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tc.env)
			if err == nil {
				t.Fatalf("no error for %v", tc.env)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestWindowSettings: STREAM_WINDOW and ROLLING_WINDOW parse, and
// BATCH_LOOKBACK left unset follows ROLLING_WINDOW.
func TestWindowSettings(t *testing.T) {
	t.Parallel()
	type got struct {
		Window, Rolling, Lookback, ParamsWindow time.Duration
	}
	cases := []struct {
		name string
		env  map[string]string
		want got
	}{
		{"defaults", nil, got{time.Minute, time.Hour, time.Hour, time.Hour}},
		{"5-minute windows", map[string]string{"STREAM_WINDOW": "5m"}, got{5 * time.Minute, time.Hour, time.Hour, time.Hour}},
		{"30-second windows", map[string]string{"STREAM_WINDOW": "30s"}, got{30 * time.Second, time.Hour, time.Hour, time.Hour}},
		{"hour windows", map[string]string{"STREAM_WINDOW": "1h"}, got{time.Hour, time.Hour, time.Hour, time.Hour}},
		{"shorter horizon: lookback follows", map[string]string{"ROLLING_WINDOW": "15m"},
			got{time.Minute, 15 * time.Minute, 15 * time.Minute, 15 * time.Minute}},
		{"longer horizon: lookback follows", map[string]string{"ROLLING_WINDOW": "2h"},
			got{time.Minute, 2 * time.Hour, 2 * time.Hour, 2 * time.Hour}},
		{"lookback set longer than the horizon is kept", map[string]string{"ROLLING_WINDOW": "15m", "BATCH_LOOKBACK": "1h"},
			got{time.Minute, 15 * time.Minute, time.Hour, 15 * time.Minute}},
		{"lookback equal to the horizon", map[string]string{"ROLLING_WINDOW": "2h", "BATCH_LOOKBACK": "2h"},
			got{time.Minute, 2 * time.Hour, 2 * time.Hour, 2 * time.Hour}},
		{"empty lookback is unset", map[string]string{"ROLLING_WINDOW": "90m", "BATCH_LOOKBACK": ""},
			got{time.Minute, 90 * time.Minute, 90 * time.Minute, 90 * time.Minute}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := load(t, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			p := c.TransformParams()
			if diff := cmp.Diff(tc.want, got{c.Stream.Window, c.RollingWindow, c.Batch.Lookback, p.Window}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if err := p.Validate(); err != nil {
				t.Errorf("TransformParams: %v", err)
			}
			if got := c.Stream.WindowLength().Duration(); got != tc.want.Window {
				t.Errorf("WindowLength = %s, want %s", got, tc.want.Window)
			}
		})
	}
}

// TestWindowSettingsErrors: the exact error of each invalid window setting.
func TestWindowSettingsErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"STREAM_WINDOW": "0s"}, "config: STREAM_WINDOW=0s: must be positive"},
		{map[string]string{"STREAM_WINDOW": "-5m"}, "config: STREAM_WINDOW=-5m0s: must be positive"},
		{map[string]string{"STREAM_WINDOW": "1500ms"}, "config: STREAM_WINDOW=1.5s: must be a whole number of seconds"},
		{map[string]string{"STREAM_WINDOW": "7m"},
			"config: STREAM_WINDOW=7m0s: must divide one hour evenly (such as 30s, 1m, 2m, 5m, 10m, 15m, 30m or 1h)"},
		{map[string]string{"STREAM_WINDOW": "2h"},
			"config: STREAM_WINDOW=2h0m0s: must divide one hour evenly (such as 30s, 1m, 2m, 5m, 10m, 15m, 30m or 1h)"},
		{map[string]string{"STREAM_WINDOW": "five minutes"},
			`config: STREAM_WINDOW="five minutes": not a duration (such as 90s, 10m or 1h30m)`},
		{map[string]string{"ROLLING_WINDOW": "0s"}, "config: ROLLING_WINDOW=0s: must be positive"},
		{map[string]string{"ROLLING_WINDOW": "an hour"}, `config: ROLLING_WINDOW="an hour": not a duration (such as 90s, 10m or 1h30m)`},
		{map[string]string{"ROLLING_WINDOW": "2h", "BATCH_LOOKBACK": "1h"},
			"config: BATCH_LOOKBACK=1h0m0s: shorter than ROLLING_WINDOW=2h0m0s, so the readings at the start of a batch window would get truncated rolling statistics: set BATCH_LOOKBACK to at least ROLLING_WINDOW, or leave it unset to follow it"},
		{map[string]string{"BATCH_LOOKBACK": "30m"},
			"config: BATCH_LOOKBACK=30m0s: shorter than ROLLING_WINDOW=1h0m0s, so the readings at the start of a batch window would get truncated rolling statistics: set BATCH_LOOKBACK to at least ROLLING_WINDOW, or leave it unset to follow it"},
		{map[string]string{"BATCH_LOOKBACK": "-1h"}, "config: BATCH_LOOKBACK=-1h0m0s: must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tc.env)
			if err == nil {
				t.Fatalf("no error for %v", tc.env)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

// TestPasswordsNeverPrint covers every way a config can reach a log line or
// a Temporal payload.
func TestPasswordsNeverPrint(t *testing.T) {
	t.Parallel()
	const pw = "s3cr3t-Pa55"
	c, err := load(t, map[string]string{"MYSQL_PASSWORD": pw, "POSTGRES_PASSWORD": pw, "TIMESCALE_PASSWORD": pw})
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", c, "mysql", c.MySQL, "pw", c.MySQL.Password)
	js, _ := json.Marshal(c)
	outputs := map[string]string{
		"%v":        fmt.Sprintf("%v", c),
		"%+v":       fmt.Sprintf("%+v", *c),
		"%#v":       fmt.Sprintf("%#v", *c),
		"String":    c.MySQL.String() + c.Postgres.String() + c.Timescale.String(),
		"json":      string(js),
		"slog":      logged.String(),
		"secretStr": c.MySQL.Password.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, pw) {
			t.Errorf("%s output contains the password: %s", name, out)
		}
	}
	if c.MySQL.Password.Reveal() != pw {
		t.Errorf("Reveal() = %q, want the password", c.MySQL.Password.Reveal())
	}
	my, err := c.MySQL.DriverConfig(c.MySQL.Database)
	if err != nil {
		t.Fatal(err)
	}
	if my.Passwd != pw || !strings.Contains(c.Timescale.URL(), pw) {
		t.Error("the driver configuration and URL must carry the password to the driver")
	}
}

func TestSecretValueOfABadVariableIsNotEchoed(t *testing.T) {
	t.Parallel()
	// A password cannot be invalid, but the redaction path must hold for any
	// secret-looking name that fails to decode.
	r := &recordingLookuper{lastKey: "MYSQL_PASSWORD", lastVal: "hunter2", lastSeen: true}
	err := r.explain(fmt.Errorf("Password: bad"))
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error echoes the secret: %v", err)
	}
}

func TestParseDotEnv(t *testing.T) {
	t.Parallel()
	got, err := ParseDotEnv(".env", `# comment
MYSQL_HOST=db
export POSTGRES_PORT=5433
KAFKA_TOPIC="quoted topic"
TIMESCALE_DATABASE='ts'   
LOG_LEVEL=debug # trailing comment

`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"MYSQL_HOST": "db", "POSTGRES_PORT": "5433", "KAFKA_TOPIC": "quoted topic", "TIMESCALE_DATABASE": "ts", "LOG_LEVEL": "debug"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseDotEnv(".env", "NOT A LINE"); err == nil || !strings.Contains(err.Error(), ".env line 1") {
		t.Errorf("bad line error = %v, want it to name .env line 1", err)
	}
}

func TestEnvironmentWinsOverDotEnv(t *testing.T) {
	t.Parallel()
	l := envconfig.MultiLookuper(envconfig.MapLookuper(map[string]string{"MYSQL_HOST": "from-env"}),
		envconfig.MapLookuper(map[string]string{"MYSQL_HOST": "from-file", "MYSQL_PORT": "3310"}))
	c, err := LoadFrom(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if c.MySQL.Host != "from-env" || c.MySQL.Port != 3310 {
		t.Errorf("host=%q port=%d, want from-env and 3310", c.MySQL.Host, c.MySQL.Port)
	}
}

// TestEnvRoundTrip: a subprocess started with c.Env() reads back exactly c.
func TestEnvRoundTrip(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{"MYSQL_PASSWORD": "pw", "TIMESCALE_PORT": "5433", "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2", "STREAM_LEASES": "5"})
	if err != nil {
		t.Fatal(err)
	}
	back, err := load(t, c.Env())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
