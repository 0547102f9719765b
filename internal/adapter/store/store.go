// Package store opens and prepares the databases: pgx pools for PostgreSQL
// and TimescaleDB, database/sql for MySQL. The SQL that reads and writes
// domain data lives in files beside this one, one per concern.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/platform/logging"
	"github.com/iot-etl/iot-etl/migrations"
)

// OpenPG opens a pool on the database p names and checks it answers.
func OpenPG(ctx context.Context, p config.Postgres, log *slog.Logger) (*pgxpool.Pool, error) {
	return OpenPGPool(ctx, p, log, 0, nil)
}

// OpenPGPool is OpenPG with at most maxConns connections (0: pgx's
// default, the larger of 4 and the number of CPUs); stmts, when not nil,
// adds up the time of every statement.
func OpenPGPool(ctx context.Context, p config.Postgres, log *slog.Logger, maxConns int32, stmts *Statements) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(p.URL())
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", p, err)
	}
	if maxConns > 0 {
		pc.MaxConns = maxConns
	}
	pc.ConnConfig.ConnectTimeout = 5 * time.Second
	var tracers []pgx.QueryTracer
	if log != nil {
		tracers = append(tracers, logging.PGTracer(log))
	}
	if stmts != nil {
		tracers = append(tracers, stmts)
	}
	switch len(tracers) {
	case 0:
	case 1:
		pc.ConnConfig.Tracer = tracers[0]
	default:
		pc.ConnConfig.Tracer = multitracer.New(tracers...)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", p, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres %s: %w", p, err)
	}
	return pool, nil
}

// SQLDB exposes a pool through database/sql, for goose.
func SQLDB(pool *pgxpool.Pool) *sql.DB { return stdlib.OpenDBFromPool(pool) }

// OpenMySQL opens the MySQL database m names and checks it answers.
func OpenMySQL(ctx context.Context, m config.MySQL) (*sql.DB, error) {
	db, err := MySQLHandle(m, m.Database)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	db.SetConnMaxLifetime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql %s: %w", m, err)
	}
	return db, nil
}

// EnsurePGDatabase creates p's database when it does not exist.
func EnsurePGDatabase(ctx context.Context, p config.Postgres) error {
	conn, err := pgx.Connect(ctx, p.URLFor("postgres"))
	if err != nil {
		return fmt.Errorf("postgres %s: %w", p.Addr(), err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, p.Database).Scan(&exists); err != nil {
		return fmt.Errorf("postgres %s: %w", p.Addr(), err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{p.Database}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres %s: create database %s: %w", p.Addr(), p.Database, err)
	}
	return nil
}

// MySQLHandle returns a database/sql handle on database (empty: none, for
// server-level statements) of m's server, with m's credentials and TLS. It
// does not connect.
func MySQLHandle(m config.MySQL, database string) (*sql.DB, error) {
	dc, err := m.DriverConfig(database)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: %w", m.Addr(), err)
	}
	conn, err := mysql.NewConnector(dc)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: %w", m.Addr(), err)
	}
	return sql.OpenDB(conn), nil
}

// EnsureMySQLDatabase creates m's database when it does not exist.
func EnsureMySQLDatabase(ctx context.Context, m config.MySQL) error {
	db, err := MySQLHandle(m, "")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+m.Database+"` CHARACTER SET utf8mb4"); err != nil {
		return fmt.Errorf("mysql %s: create database %s: %w", m.Addr(), m.Database, err)
	}
	return nil
}

// HasTimescale reports whether the timescaledb extension is installed in the
// database pool is connected to.
func HasTimescale(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')`).Scan(&ok)
	return ok, err
}

// EnsureSchema applies every pending migration of the three databases. It
// is idempotent.
func (d *DBs) EnsureSchema(ctx context.Context, log *slog.Logger) error {
	if _, err := migrations.Up(ctx, migrations.MySQL, d.MySQL, log); err != nil {
		return err
	}
	for _, s := range []struct {
		set  migrations.Set
		pool *pgxpool.Pool
	}{{migrations.Locations, d.Locations}, {migrations.Timeseries, d.Timescale}} {
		db := SQLDB(s.pool)
		_, err := migrations.Up(ctx, s.set, db, log)
		db.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// EnsureDatabases creates the three databases of cfg when they do not
// exist.
func EnsureDatabases(ctx context.Context, cfg *config.Config) error {
	if err := EnsureMySQLDatabase(ctx, cfg.MySQL); err != nil {
		return err
	}
	if err := EnsurePGDatabase(ctx, cfg.Postgres); err != nil {
		return err
	}
	return EnsurePGDatabase(ctx, cfg.Timescale)
}

// DBs are the three databases of iot-etl: the MySQL device registry, the
// PostgreSQL locations and the TimescaleDB readings, stream sink and
// warehouse.
type DBs struct {
	MySQL     *sql.DB
	Locations *pgxpool.Pool
	Timescale *pgxpool.Pool
}

// Options are how Open sizes and traces the pools.
type Options struct {
	// TimescaleConns bounds the TimescaleDB pool (0: pgx's default).
	TimescaleConns int32
	// Statements, when not nil, adds up the time of every statement of
	// both PostgreSQL pools.
	Statements *Statements
}

// Open opens the three databases of cfg and checks each answers. On error,
// what was opened is closed.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) (*DBs, error) {
	d := &DBs{}
	var err error
	if d.MySQL, err = OpenMySQL(ctx, cfg.MySQL); err != nil {
		return nil, err
	}
	if d.Locations, err = OpenPGPool(ctx, cfg.Postgres, log, 0, opts.Statements); err != nil {
		d.Close()
		return nil, err
	}
	if d.Timescale, err = OpenPGPool(ctx, cfg.Timescale, log, opts.TimescaleConns, opts.Statements); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Close closes whatever is open.
func (d *DBs) Close() {
	if d.MySQL != nil {
		d.MySQL.Close()
	}
	if d.Locations != nil {
		d.Locations.Close()
	}
	if d.Timescale != nil {
		d.Timescale.Close()
	}
}
