package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// deployBlock is one SQL block of docs/deploy.md: on which server, in which
// database and as whom it runs, and its statements.
type deployBlock struct {
	server, database, as, note string
	stmts                      []string
}

var deployBlockRE = regexp.MustCompile("(?s)<!-- deploy-sql: (\\S+) (\\S+) (\\S+)(?: (\\S+))? -->\\n```sql\\n(.*?)```")

// deployBlocks reads the SQL of docs/deploy.md with every name and password
// replaced as names says.
func deployBlocks(t *testing.T, names map[string]string) []deployBlock {
	t.Helper()
	b, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []deployBlock
	for _, m := range deployBlockRE.FindAllStringSubmatch(string(b), -1) {
		blk := deployBlock{server: m[1], as: m[2], database: m[3], note: m[4]}
		body := m[5]
		for from, to := range names {
			body = regexp.MustCompile(`\b`+regexp.QuoteMeta(from)+`\b`).ReplaceAllString(body, to)
		}
		for _, s := range strings.Split(body, ";") {
			var lines []string
			for _, l := range strings.Split(s, "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") {
					lines = append(lines, l)
				}
			}
			if len(lines) > 0 {
				blk.stmts = append(blk.stmts, strings.Join(lines, " "))
			}
		}
		if blk.database != "-" {
			if d, ok := names[blk.database]; ok {
				blk.database = d
			}
		}
		out = append(out, blk)
	}
	if len(out) != 6 {
		t.Fatalf("docs/deploy.md has %d deploy-sql blocks, want 6", len(out))
	}
	return out
}

func pgExecAs(t *testing.T, p config.Postgres, stmts []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatalf("connect as %s: %v", p.User, err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("as %s in %s: %s: %v", p.User, p.Database, s, err)
		}
	}
}

// TestLeastPrivilegeRoles creates exactly the roles and grants of
// docs/deploy.md and runs every process as the role the guide gives it:
// migrate and seed as the owner, the batch worker with SELECT-only roles on
// the MySQL and PostgreSQL sources, the stream worker with only what it
// writes. Every password comes from a *_FILE. A role without grants fails
// check at the authorization layer, naming the table.
func TestLeastPrivilegeRoles(t *testing.T) {
	base := testenv.BaseConfig(t)
	testenv.Integration(t)
	suffix := strings.TrimPrefix(testenv.UniqueName("r"), "iotetl_t_r_")
	names := map[string]string{
		"iot_owner": "iotetl_owner_" + suffix, "iot_reader": "iotetl_reader_" + suffix, "iot_stream": "iotetl_stream_" + suffix,
		"iot_locations": "iotetl_loc_" + suffix, "iot_timeseries": "iotetl_ts_" + suffix, "iot_devices": "iotetl_dev_" + suffix,
	}
	passwords := map[string]string{}
	for _, role := range []string{"owner", "reader", "stream"} {
		passwords[role] = testenv.Password()
		names["change-me-"+role] = passwords[role]
	}
	blocks := deployBlocks(t, names)

	// Cleanups run last first: databases go before their owners.
	testenv.DropPostgresRolesAtCleanup(t, base.Timescale, names["iot_owner"], names["iot_reader"], names["iot_stream"])
	testenv.DropPostgresDatabaseAtCleanup(t, base.Timescale, names["iot_locations"])
	testenv.DropPostgresDatabaseAtCleanup(t, base.Timescale, names["iot_timeseries"])
	testenv.DropMySQLAtCleanup(t, base.MySQL, []string{names["iot_owner"], names["iot_reader"]}, []string{names["iot_devices"]})

	// The administrator's part. Both PostgreSQL databases live on one
	// server here, so the owner role exists once.
	for _, b := range blocks {
		switch {
		case b.as != "admin":
		case b.note == "where-timescaledb-is-available":
			t.Logf("skipped (this server has no timescaledb): %v", b.stmts)
		case b.server == "mysql":
			testenv.MySQLExec(t, base.MySQL, b.stmts...)
		default:
			testenv.PostgresExec(t, base.Timescale, b.database, b.stmts...)
		}
	}

	dir := t.TempDir()
	secretFile := func(role string) string {
		p := filepath.Join(dir, role+"-password")
		if err := os.WriteFile(p, []byte(passwords[role]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// as renders the environment of a process whose MySQL, PostgreSQL and
	// TimescaleDB roles are my, pg and ts.
	temporalAddr := testenv.Temporal(t)
	_, brokers := testenv.Kafka(t, base.Kafka.Topic, 3)
	exportDir := t.TempDir()
	as := func(my, pg, ts string) map[string]string {
		c := *base
		c.MySQL.User, c.MySQL.Password, c.MySQL.Database = names["iot_"+my], "", names["iot_devices"]
		c.Postgres.User, c.Postgres.Password, c.Postgres.Database = names["iot_"+pg], "", names["iot_locations"]
		c.Timescale.User, c.Timescale.Password, c.Timescale.Database = names["iot_"+ts], "", names["iot_timeseries"]
		c.Temporal.Address = temporalAddr
		c.Temporal.BatchTaskQueue, c.Temporal.StreamTaskQueue = "batch-roles-"+suffix, "stream-roles-"+suffix
		c.Kafka.BootstrapServers = brokers
		c.Export.URL = exportDir
		env := c.Env()
		for _, v := range []string{"MYSQL_PASSWORD", "POSTGRES_PASSWORD", "TIMESCALE_PASSWORD"} {
			delete(env, v)
		}
		env["MYSQL_PASSWORD_FILE"], env["POSTGRES_PASSWORD_FILE"], env["TIMESCALE_PASSWORD_FILE"] = secretFile(my), secretFile(pg), secretFile(ts)
		return env
	}
	starterBin := testenv.Build(t, "./starter")
	owner := as("owner", "owner", "owner")
	e2e.RunStarter(t, starterBin, owner, "migrate")

	// The owner's grants.
	for _, b := range blocks {
		if b.as != "owner" {
			continue
		}
		p := base.Timescale
		p.User, p.Password, p.Database = names["iot_owner"], config.Secret(passwords["owner"]), b.database
		pgExecAs(t, p, b.stmts)
	}
	yesterday := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	e2e.RunStarter(t, starterBin, owner, "seed", "--devices", "8", "--days", "2", "--seed", "7")

	// A role without grants on the warehouse: check names the table.
	out, err := e2e.RunStarterErr(starterBin, as("reader", "reader", "reader"), "check", "-timeout", "5s")
	if err == nil || !strings.Contains(out, "TimescaleDB") ||
		!strings.Contains(out, "FAILED: authorization: permission denied for table sensor_readings (check the role's GRANTs, docs/deploy.md)") {
		t.Errorf("check as a role without grants: err %v\n%s", err, out)
	}

	// The batch: SELECT-only on the sources, the owner on the warehouse.
	batchEnv := as("reader", "reader", "owner")
	testenv.Start(t, "batch-worker", testenv.Build(t, "./worker"), batchEnv, "-queues", "batch")
	out = e2e.RunStarter(t, starterBin, batchEnv, "batch", "run", "--from", yesterday.Format("2006-01-02"))
	if !strings.Contains(out, "succeeded") {
		t.Fatalf("batch run:\n%s", out)
	}
	ts := base.Timescale
	ts.Database = names["iot_timeseries"]
	count := func(q string, args ...any) int64 {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, ts.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int64
		if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	readings := count(`SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2`, yesterday, yesterday.Add(24*time.Hour))
	facts := count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE time >= $1 AND time < $2`, yesterday, yesterday.Add(24*time.Hour))
	// The simulated fleet drops a few readings, so a day of 8 devices
	// holds somewhat fewer than 8 × 1440.
	if readings < 8*1400 || facts != readings {
		t.Errorf("batch as least-privilege roles: %d facts for %d readings, want one fact per reading", facts, readings)
	}
	if n := count(`SELECT count(*) FROM dwh.etl_runs WHERE status = 'succeeded'`); n != 1 {
		t.Errorf("%d succeeded runs recorded, want 1", n)
	}

	// The stream: SELECT on the registry, only what it writes on the sink.
	streamEnv := as("reader", "reader", "stream")
	testenv.Start(t, "stream-worker", testenv.Build(t, "./worker"), streamEnv, "-queues", "stream", "-stop-timeout", "5s")
	e2e.RunStarter(t, starterBin, streamEnv, "stream", "start", "--leases", "1", "--max-batch-wait", "100ms")
	// Event times from a fixed instant after the seeded days, one message
	// every millisecond: no two readings of a device share a time.
	start := yesterday.Add(24*time.Hour + 123*time.Millisecond).Format(time.RFC3339Nano)
	out = e2e.RunStarter(t, starterBin, streamEnv, "simulate", "--devices", "8", "--seed", "7", "--rate", "1000", "--start", start,
		"--max-messages", "1500", "--anomaly-ratio", "0.02", "--bad-ratio", "0.02")
	m := simulateReport.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no simulate report:\n%s", out)
	}
	e2e.RunStarter(t, starterBin, streamEnv, "stream", "status", "--wait-caught-up", "60s")
	e2e.RunStarter(t, starterBin, streamEnv, "stream", "stop")
	good, bad := atoi(t, m[1]), atoi(t, m[2])
	if good+bad != 1500 || bad != 30 {
		t.Fatalf("simulate: %d good, %d bad; want 1500 with 30 bad", good, bad)
	}
	if n := count(`SELECT count(*) FROM public.sensor_readings WHERE source = 'stream'`); n != int64(good) {
		t.Errorf("stream as %s: %d raw readings, want %d", names["iot_stream"], n, good)
	}
	if n := count(`SELECT count(*) FROM public.stream_dead_letters`); n != int64(bad) {
		t.Errorf("stream: %d dead letters, want %d", n, bad)
	}
	if n := count(`SELECT coalesce(sum(next_offset), 0) FROM public.stream_offsets`); n != 1500 {
		t.Errorf("stream: offsets sum to %d, want 1500", n)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
