package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Version 1 enables TimescaleDB when the server offers it. Later migrations
// test pg_extension and fall back to plain PostgreSQL otherwise.
//
// It works for a role that owns its database without being a superuser,
// as managed services hand out: detection reads only pg_extension,
// pg_available_extensions and pg_settings rows every role may see, never
// shared_preload_libraries (readable only with pg_read_all_settings).
func init() {
	register(Timeseries, 1, "timeseries_timescaledb.go",
		func(ctx context.Context, db *sql.DB) error { return ensureExtension(ctx, db, timescaleExtension) },
		func(context.Context, *sql.DB) error { return nil })
}

// extension is a PostgreSQL extension the schema uses when it can.
type extension struct {
	name string
	// preloadSetting is a setting the extension's preloaded library
	// defines, so visible in pg_settings exactly when the library is in
	// shared_preload_libraries; empty when no preload is needed.
	preloadSetting string
}

// TimescaleDB's loader defines timescaledb.disable_load when preloaded.
// Without the preload, CREATE EXTENSION timescaledb ends the session
// (FATAL), so it must not be tried.
var timescaleExtension = extension{name: "timescaledb", preloadSetting: "timescaledb.disable_load"}

// ExtensionSupport is what the server offers of one extension.
type ExtensionSupport struct {
	Installed bool // in pg_extension of this database
	Available bool // in pg_available_extensions (its files are on the server)
	Preloaded bool // its library is preloaded (or needs no preload)
}

// String says in a few words what the schema gets.
func (s ExtensionSupport) String() string {
	switch {
	case s.Installed:
		return "installed"
	case !s.Available:
		return "not available on this server"
	case !s.Preloaded:
		return "available but not in shared_preload_libraries"
	}
	return "available, not created"
}

func probeExtension(ctx context.Context, db *sql.DB, e extension) (ExtensionSupport, error) {
	var s ExtensionSupport
	err := db.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1),
		EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1),
		$2 = '' OR EXISTS (SELECT 1 FROM pg_settings WHERE name = $2)`, e.name, e.preloadSetting).Scan(&s.Installed, &s.Available, &s.Preloaded)
	if err != nil {
		return s, fmt.Errorf("detect extension %s: %w", e.name, err)
	}
	return s, nil
}

// Timescale reports what the server connected to by db offers of the
// timescaledb extension.
func Timescale(ctx context.Context, db *sql.DB) (ExtensionSupport, error) {
	return probeExtension(ctx, db, timescaleExtension)
}

// ensureExtension creates e when the server offers it and it is not
// created yet. When the role may not create it, the error says so and
// what to ask an administrator for.
func ensureExtension(ctx context.Context, db *sql.DB, e extension) error {
	s, err := probeExtension(ctx, db, e)
	if err != nil || s.Installed || !s.Available || !s.Preloaded {
		return err
	}
	_, err = db.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{e.name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		var role, database string
		if qerr := db.QueryRowContext(ctx, `SELECT current_user, current_database()`).Scan(&role, &database); qerr != nil {
			return errors.Join(err, qerr)
		}
		return fmt.Errorf("the %[1]s extension is available on this server, but role %[2]s may not create it in database %[3]s (%[4]s): "+
			"ask an administrator to run `CREATE EXTENSION %[1]s;` in database %[3]s, then run migrate again",
			e.name, role, database, pgErr.Message)
	}
	if err != nil {
		return fmt.Errorf("create extension %s: %w", e.name, err)
	}
	return nil
}
