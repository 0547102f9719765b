// Package testenv gives integration tests real services: a fresh PostgreSQL
// database and a fresh MySQL database per test (dropped afterwards), a
// Temporal dev server per test binary, and an in-process kfake Kafka cluster.
//
// When a service is missing, a test skips locally but FAILS when CI=true, so a
// green CI run always means the integration tests ran.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// InCI reports whether the tests run in CI, where a missing service fails.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Integration skips an integration test under -short (make test-unit),
// which runs only the tests that need no service.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
}

// Unavailable stops the test because service cannot be used: a failure in
// CI, a skip elsewhere.
func Unavailable(t testing.TB, service string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required in CI but unavailable: %v", service, err)
	}
	t.Skipf("%s unavailable, skipping (set CI=true to make this a failure): %v", service, err)
}

// BaseConfig is the configuration the tests start from: defaults, overridden
// by the process environment (so MYSQL_HOST etc. point tests elsewhere).
func BaseConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.LoadFrom(context.Background(), envconfig.OsLookuper())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// Many workers run at once in the tests: none serves metrics unless a
	// test gives it an address.
	cfg.MetricsAddr = ""
	return cfg
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("iotetl_t_%s_%s", strings.ToLower(prefix), hex.EncodeToString(b))
}

// PostgresDB creates an empty database on the configured PostgreSQL server,
// drops it when the test ends, and returns p pointing at it.
func PostgresDB(t testing.TB, p config.Postgres, prefix string) config.Postgres {
	t.Helper()
	Integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, p.URLFor("postgres"))
	if err != nil {
		Unavailable(t, "PostgreSQL at "+p.Addr(), err)
	}
	defer admin.Close(ctx)
	name := uniqueName(prefix)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	DropPostgresDatabaseAtCleanup(t, p, name)
	p.Database = name
	return p
}

// MySQLDB creates an empty database on the configured MySQL server, drops it
// when the test ends, and returns m pointing at it.
func MySQLDB(t testing.TB, m config.MySQL, prefix string) config.MySQL {
	t.Helper()
	Integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := mysqlServer(ctx, t, m)
	defer db.Close()
	name := uniqueName(prefix)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := store.MySQLHandle(m, "")
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	m.Database = name
	return m
}

// Stack is a configuration whose three databases were created for this test
// and migrated, plus open handles on them.
type Stack struct {
	Config *config.Config
	*store.DBs
}

// Databases creates and migrates the three databases of one test.
func Databases(t testing.TB) *Stack {
	t.Helper()
	return DatabasesWith(t, nil)
}

// DatabasesWith is Databases on the servers configure points the
// configuration at (a throwaway cluster, say); nil means the configured
// ones.
func DatabasesWith(t testing.TB, configure func(*config.Config)) *Stack {
	t.Helper()
	cfg := BaseConfig(t)
	if configure != nil {
		configure(cfg)
	}
	cfg.MySQL = MySQLDB(t, cfg.MySQL, "dev")
	cfg.Postgres = PostgresDB(t, cfg.Postgres, "loc")
	cfg.Timescale = PostgresDB(t, cfg.Timescale, "ts")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbs, err := store.Open(ctx, cfg, nil, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dbs.Close)
	if err := dbs.EnsureSchema(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return &Stack{Config: cfg, DBs: dbs}
}

// mysqlServer connects to m's server without a database, as its
// (administrative) user; the service is unavailable when that fails.
func mysqlServer(ctx context.Context, t testing.TB, m config.MySQL) *sql.DB {
	t.Helper()
	db, err := store.MySQLHandle(m, "")
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		Unavailable(t, "MySQL at "+m.Addr(), err)
	}
	return db
}
