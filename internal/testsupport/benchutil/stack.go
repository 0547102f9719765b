package benchutil

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// Stack is a benchmark's own three databases (iot_bench_<name>_*), created
// empty and migrated, on the servers base points at.
type Stack struct {
	Cfg *config.Config
	*store.DBs
}

// OpenStack drops what an interrupted run of the same benchmark left, then
// creates and migrates the databases.
func OpenStack(ctx context.Context, base *config.Config, name string) (*Stack, error) {
	cfg := *base
	cfg.MySQL.Database = "iot_bench_" + name + "_devices"
	cfg.Postgres.Database = "iot_bench_" + name + "_locations"
	cfg.Timescale.Database = "iot_bench_" + name + "_timeseries"
	cfg.MetricsAddr = "" // benchmarks run several workers, none serving metrics
	s := &Stack{Cfg: &cfg}
	if err := s.drop(ctx); err != nil {
		return nil, err
	}
	if err := store.EnsureDatabases(ctx, &cfg); err != nil {
		return nil, err
	}
	dbs, err := store.Open(ctx, &cfg, nil, store.Options{})
	if err != nil {
		return nil, err
	}
	s.DBs = dbs
	if err := dbs.EnsureSchema(ctx, nil); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	return s, nil
}

// Close closes the handles and drops the databases.
func (s *Stack) Close(ctx context.Context) error {
	if s.DBs != nil {
		s.DBs.Close()
	}
	return s.drop(ctx)
}

func (s *Stack) drop(ctx context.Context) error {
	var errs []error
	db, err := store.MySQLHandle(s.Cfg.MySQL, "")
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
