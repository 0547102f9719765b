package main

import (
	"context"
	"fmt"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/migrations"
)

func init() {
	register(command{
		Name:    "migrate",
		Summary: "create the three databases if missing and apply every pending migration (idempotent)",
		Run:     runMigrate,
	})
}

func runMigrate(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "migrate", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := app.Cfg
	if err := app.EnsureDatabases(ctx); err != nil {
		return err
	}
	my, err := app.MySQL(ctx)
	if err != nil {
		return err
	}
	res, err := migrations.Up(ctx, migrations.MySQL, my, app.Log)
	if err != nil {
		return err
	}
	report(app, cfg.MySQL.String(), res)

	loc, err := app.Locations(ctx)
	if err != nil {
		return err
	}
	locDB := store.SQLDB(loc)
	defer locDB.Close()
	if res, err = migrations.Up(ctx, migrations.Locations, locDB, app.Log); err != nil {
		return err
	}
	report(app, cfg.Postgres.String(), res)

	ts, err := app.Timescale(ctx)
	if err != nil {
		return err
	}
	tsDB := store.SQLDB(ts)
	defer tsDB.Close()
	if res, err = migrations.Up(ctx, migrations.Timeseries, tsDB, app.Log); err != nil {
		return err
	}
	support, err := migrations.Timescale(ctx, tsDB)
	if err != nil {
		return err
	}
	mode := "plain PostgreSQL tables (timescaledb " + support.String() + ")"
	if support.Installed {
		mode = "TimescaleDB hypertables"
	}
	report(app, cfg.Timescale.String()+", "+mode, res)
	return nil
}

func report(app *App, target string, r migrations.Result) {
	fmt.Fprintf(app.Out, "%-11s %s: version %d, %d applied\n", r.Set, target, r.Version, len(r.Applied))
}
