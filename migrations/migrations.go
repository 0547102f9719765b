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

// timeseriesGo holds Go migrations of the timeseries set: statements such as
// TimescaleDB continuous aggregates that cannot run inside a transaction and
// must be skipped when the extension is absent. Files append to it in init.
var timeseriesGo []*goose.Migration

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
			res.Applied = append(res.Applied, r.Source.Path)
			if log != nil {
				log.Info("migration applied", "set", set, "file", r.Source.Path, "duration", r.Duration)
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
		opts = append(opts, goose.WithGoMigrations(timeseriesGo...))
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
	opts = append(opts, goose.WithDisableGlobalRegistry(true))
	p, err := goose.NewProvider(dialect, db, dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", set, err)
	}
	return p, nil
}
