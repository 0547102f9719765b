package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// envOf renders a configuration as the environment that produces it.
func envOf(c *config.Config) map[string]string { return testenv.EnvMap(c) }

// testStack is a full configuration on throwaway databases, the shared
// Temporal dev server and an in-process Kafka cluster.
func testStack(t *testing.T) (*testenv.Stack, map[string]string) {
	t.Helper()
	s := testenv.Databases(t)
	s.Config.Temporal.Address = testenv.Temporal(t)
	_, brokers := testenv.Kafka(t, s.Config.Kafka.Topic, 6)
	s.Config.Kafka.BootstrapServers = brokers
	s.Config.Export.URL = t.TempDir()
	return s, envOf(s.Config)
}

func starter(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, envconfig.MapLookuper(env))
	return code, out.String(), errb.String()
}

var engineNamed = regexp.MustCompile(`OK +PostgreSQL [0-9.]+( \([^)]*\))? (without timescaledb \(plain tables\)|with timescaledb [0-9][0-9.]*)[ ,]`)

func TestCheckAllComponentsOK(t *testing.T) {
	_, env := testStack(t)
	code, out, errOut := starter(t, env, "check")
	if code != 0 {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"Temporal", "MySQL", "PostgreSQL", "TimescaleDB", "Kafka", "Export"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w+" ") || !strings.Contains(lines[i], " OK ") {
			t.Errorf("line %d = %q, want %s OK", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[4], "topic iot-sensor-stream, 6 partitions") {
		t.Errorf("kafka line %q does not report 6 partitions", lines[4])
	}
	if want := "OK   writable, 0 feature sets"; !strings.HasSuffix(lines[5], want) || !strings.Contains(lines[5], "file:///") {
		t.Errorf("export line %q, want the file:// URL and %q", lines[5], want)
	}
	// Either engine is fine (the project's docker-compose runs TimescaleDB,
	// the local stack plain PostgreSQL); the line must name the one found.
	if !engineNamed.MatchString(lines[3]) {
		t.Errorf("timescale line %q does not name the engine (want %s)", lines[3], engineNamed)
	}
}

// TestCheckNamesUnreachableMySQL: with MariaDB unreachable, check names
// MySQL, its address and the error, and exits 1.
func TestCheckNamesUnreachableMySQL(t *testing.T) {
	_, env := testStack(t)
	port, err := testenv.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	env["MYSQL_PORT"] = strconv.Itoa(port)
	code, out, errOut := starter(t, env, "check", "-timeout", "3s")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stdout:\n%s", code, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var mysqlLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "MySQL ") {
			mysqlLine = l
		}
	}
	if !strings.Contains(mysqlLine, addr) || !strings.Contains(mysqlLine, "FAILED") || !strings.Contains(mysqlLine, "connection refused") {
		t.Errorf("MySQL line = %q, want address %s, FAILED and the error", mysqlLine, addr)
	}
	if strings.Count(out, " OK ") != 5 {
		t.Errorf("want the 5 other components OK:\n%s", out)
	}
	if !strings.Contains(errOut, "1 component failed") {
		t.Errorf("stderr = %q, want the failure count", errOut)
	}
}

func TestUnknownCommandAndHelp(t *testing.T) {
	code, _, errOut := starter(t, map[string]string{}, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
	code, out, _ := starter(t, map[string]string{}, "help")
	if code != 0 || !strings.Contains(out, "check") || !strings.Contains(out, "migrate") {
		t.Errorf("help: exit %d, stdout %q", code, out)
	}
}

func TestBadConfigFailsBeforeWork(t *testing.T) {
	code, _, errOut := starter(t, map[string]string{"TIMESCALE_PORT": "five"}, "check")
	if code != 1 || !strings.Contains(errOut, `TIMESCALE_PORT="five": not an integer`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
