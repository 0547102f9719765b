package benchutil

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/config"
	"github.com/iot-etl/iot-etl/internal/store"
)

// Stack is a benchmark's own three databases (iot_bench_<name>_*), created
// empty and migrated, on the servers base points at.
type Stack struct {
	Cfg       *config.Config
	MySQL     *sql.DB
	Locations *pgxpool.Pool
	Timescale *pgxpool.Pool
}

// OpenStack drops what an interrupted run of the same benchmark left, then
// creates and migrates the databases.
func OpenStack(ctx context.Context, base *config.Config, name string) (*Stack, error) {
	cfg := *base
	cfg.MySQL.Database = "iot_bench_" + name + "_devices"
	cfg.Postgres.Database = "iot_bench_" + name + "_locations"
	cfg.Timescale.Database = "iot_bench_" + name + "_timeseries"
	s := &Stack{Cfg: &cfg}
	if err := s.drop(ctx); err != nil {
		return nil, err
	}
	if err := store.EnsureMySQLDatabase(ctx, cfg.MySQL); err != nil {
		return nil, err
	}
	for _, p := range []config.Postgres{cfg.Postgres, cfg.Timescale} {
		if err := store.EnsurePGDatabase(ctx, p); err != nil {
			return nil, err
		}
	}
	var err error
	if s.MySQL, err = store.OpenMySQL(ctx, cfg.MySQL); err != nil {
		return nil, err
	}
	if s.Locations, err = store.OpenPG(ctx, cfg.Postgres, nil); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	if s.Timescale, err = store.OpenPG(ctx, cfg.Timescale, nil); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	if err := store.EnsureSchema(ctx, s.MySQL, s.Locations, s.Timescale, nil); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	return s, nil
}

// Close closes the handles and drops the databases.
func (s *Stack) Close(ctx context.Context) error {
	if s.MySQL != nil {
		s.MySQL.Close()
	}
	if s.Locations != nil {
		s.Locations.Close()
	}
	if s.Timescale != nil {
		s.Timescale.Close()
	}
	return s.drop(ctx)
}

func (s *Stack) drop(ctx context.Context) error {
	var errs []error
	db, err := sql.Open("mysql", s.Cfg.MySQL.ServerDSN())
	if err == nil {
		_, err = db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+s.Cfg.MySQL.Database+"`")
		db.Close()
	}
	errs = append(errs, err)
	for _, p := range []config.Postgres{s.Cfg.Postgres, s.Cfg.Timescale} {
		conn, err := pgx.Connect(ctx, p.URLFor("postgres"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{p.Database}.Sanitize()+" WITH (FORCE)")
		conn.Close(ctx)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("drop bench databases: %w", err)
	}
	return nil
}
