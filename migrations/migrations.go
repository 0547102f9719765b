// Package migrations holds the schema of every database iot-etl owns, as goose
// SQL migrations embedded in the binary, one set per database: mysql/ (the
// device registry), postgres/locations/ and postgres/timeseries/ (readings,
// stream sink and warehouse). The timeseries set uses TimescaleDB when the
// extension is available and plain PostgreSQL when it is not; object names are
// the same either way.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed mysql/*.sql
var mysqlFS embed.FS

//go:embed postgres/locations/*.sql
var locationsFS embed.FS

//go:embed postgres/timeseries/*.sql
var timeseriesFS embed.FS

// goMigration is a migration written in Go: statements that depend on
// what the server offers (TimescaleDB or not) or that cannot run inside a
// transaction, such as continuous aggregates. file names it in logs.
type goMigration struct {
	set      Set
	version  int64
	file     string
	up, down func(context.Context, *sql.DB) error
}

var goMigrations []goMigration

// register adds a Go migration; each file registers its own in init.
func register(set Set, version int64, file string, up, down func(context.Context, *sql.DB) error) {
	goMigrations = append(goMigrations, goMigration{set: set, version: version, file: file, up: up, down: down})
}

// name is a migration's file, for SQL and Go migrations alike.
func name(set Set, src goose.Source) string {
	if src.Path != "" {
		return src.Path
	}
	for _, m := range goMigrations {
		if m.set == set && m.version == src.Version {
			return m.file
		}
	}
	return fmt.Sprintf("version %d (Go)", src.Version)
}

// Set names one migration set.
type Set string

// The migration sets, one per database.
const (
	MySQL      Set = "mysql"
	Locations  Set = "locations"
	Timeseries Set = "timeseries"
)

// Result is what Up applied.
type Result struct {
	Set     Set
	Applied []string // file names applied by this call, in order
	Version int64    // schema version after the call
}

// Up applies every pending migration of set to db. It is idempotent and safe
// to call from several processes at once on PostgreSQL (advisory lock).
func Up(ctx context.Context, set Set, db *sql.DB, log *slog.Logger) (Result, error) {
	p, err := provider(set, db)
	if err != nil {
		return Result{Set: set}, err
	}
	results, err := p.Up(ctx)
	res := Result{Set: set}
	for _, r := range results {
		if r.Error == nil {
			file := name(set, *r.Source)
			res.Applied = append(res.Applied, file)
			if log != nil {
				log.Info("migration applied", "set", set, "file", file, "duration", r.Duration)
			}
		}
	}
	if err != nil {
		return res, fmt.Errorf("migrate %s: %w", set, err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate %s: read version: %w", set, err)
	}
	res.Version = v
	return res, nil
}

// Down rolls every migration of set back. Tests use it to prove each
// migration has a working Down.
func Down(ctx context.Context, set Set, db *sql.DB) error {
	p, err := provider(set, db)
	if err != nil {
		return err
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		return fmt.Errorf("migrate %s down: %w", set, err)
	}
	return nil
}

func provider(set Set, db *sql.DB) (*goose.Provider, error) {
	var (
		dialect goose.Dialect
		fsys    fs.FS
		sub     string
		opts    []goose.ProviderOption
	)
	switch set {
	case MySQL:
		dialect, fsys, sub = goose.DialectMySQL, mysqlFS, "mysql"
	case Locations:
		dialect, fsys, sub = goose.DialectPostgres, locationsFS, "postgres/locations"
	case Timeseries:
		dialect, fsys, sub = goose.DialectPostgres, timeseriesFS, "postgres/timeseries"
	default:
		return nil, fmt.Errorf("migrate: unknown set %q", set)
	}
	dir, err := fs.Sub(fsys, sub)
	if err != nil {
		return nil, err
	}
	if dialect == goose.DialectPostgres {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	var gos []*goose.Migration
	for _, m := range goMigrations {
		if m.set == set {
			gos = append(gos, goose.NewGoMigration(m.version, &goose.GoFunc{RunDB: m.up}, &goose.GoFunc{RunDB: m.down}))
		}
	}
	opts = append(opts, goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(gos...))
	p, err := goose.NewProvider(dialect, db, dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", set, err)
	}
	return p, nil
}
