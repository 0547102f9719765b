package migrations_test

import (
	"context"
	"strings"
	"testing"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/migrations"
)

// TestMigrateAsNonSuperuserOwner runs the extension detection and the whole
// timeseries set as a role that owns its database and nothing else, as
// managed PostgreSQL services hand out. Contrib extensions stand in for
// TimescaleDB, which this server does not have: citext is trusted (a
// database owner may create it), file_fdw is not (only a superuser may).
func TestMigrateAsNonSuperuserOwner(t *testing.T) {
	t.Parallel()
	admin := testenv.BaseConfig(t).Timescale
	role, password := testenv.UniqueName("owner"), testenv.Password()
	testenv.DropPostgresRolesAtCleanup(t, admin, role)
	testenv.PostgresExec(t, admin, "postgres", "CREATE ROLE "+role+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '"+password+"'")
	dbName := testenv.UniqueName("ext")
	testenv.DropPostgresDatabaseAtCleanup(t, admin, dbName)
	testenv.PostgresExec(t, admin, "postgres", "CREATE DATABASE "+dbName+" OWNER "+role)

	owner := admin
	owner.User, owner.Password, owner.Database = role, config.Secret(password), dbName
	ctx := context.Background()
	pool, err := store.OpenPG(ctx, owner, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := store.SQLDB(pool)
	defer db.Close()
	installed := func(name string) bool {
		t.Helper()
		var ok bool
		if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)`, name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// Available and creatable by the owner: created.
	if err := migrations.EnsureExtension(ctx, db, "citext", ""); err != nil {
		t.Fatalf("trusted extension: %v", err)
	}
	if !installed("citext") {
		t.Error("citext was not created")
	}
	// Available, but only a superuser may create it: the error says so and
	// what to ask an administrator for.
	err = migrations.EnsureExtension(ctx, db, "file_fdw", "")
	want := "the file_fdw extension is available on this server, but role " + role + " may not create it in database " + dbName +
		" (permission denied to create extension \"file_fdw\"): ask an administrator to run `CREATE EXTENSION file_fdw;` in database " + dbName + ", then run migrate again"
	if err == nil || err.Error() != want {
		t.Errorf("untrusted extension:\n got %v\nwant %s", err, want)
	}
	// Created beforehand by an administrator: nothing to do.
	testenv.PostgresExec(t, admin, dbName, "CREATE EXTENSION file_fdw")
	if err := migrations.EnsureExtension(ctx, db, "file_fdw", ""); err != nil {
		t.Errorf("extension pre-created by an administrator: %v", err)
	}
	// Not on the server at all, or its library not preloaded: plain
	// PostgreSQL, no error, nothing created.
	if err := migrations.EnsureExtension(ctx, db, "iotetl_no_such_extension", ""); err != nil {
		t.Errorf("unavailable extension: %v", err)
	}
	if err := migrations.EnsureExtension(ctx, db, "hstore", "iotetl.no_such_setting"); err != nil || installed("hstore") {
		t.Errorf("extension whose library is not preloaded: err %v, created %v; want nil, false", err, installed("hstore"))
	}

	// The whole timeseries set applies as this owner, without TimescaleDB.
	res, err := migrations.Up(ctx, migrations.Timeseries, db, nil)
	if err != nil {
		t.Fatalf("migrate as owner: %v", err)
	}
	if len(res.Applied) == 0 || res.Applied[0] != "timeseries_timescaledb.go" {
		t.Errorf("applied %v, want timeseries_timescaledb.go first", res.Applied)
	}
	for _, f := range res.Applied {
		if !strings.HasSuffix(f, ".sql") && !strings.HasSuffix(f, ".go") {
			t.Errorf("applied migration logged as %q, want its file name", f)
		}
	}
	support, err := migrations.Timescale(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if support.Installed || support.String() != "not available on this server" {
		t.Errorf("timescaledb support = %+v (%s), want not available", support, support)
	}
}
