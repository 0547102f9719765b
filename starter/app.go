package main

import (
	"context"
	"database/sql"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/platform/logging"
)

// App is what every command gets: the configuration, the logger, the output
// streams and connections opened on first use and closed on exit.
type App struct {
	Cfg *config.Config
	Log *slog.Logger
	Out io.Writer
	Err io.Writer

	mysql     *sql.DB
	locations *pgxpool.Pool
	timescale *pgxpool.Pool
	temporal  client.Client
	kafka     *kgo.Client
}

func newApp(ctx context.Context, stdout, stderr io.Writer, env envconfig.Lookuper) (*App, error) {
	var (
		cfg *config.Config
		err error
	)
	if env != nil {
		cfg, err = config.LoadFrom(ctx, env)
	} else {
		cfg, err = config.Load(ctx)
	}
	if err != nil {
		return nil, err
	}
	return &App{Cfg: cfg, Log: logging.New(stderr, cfg.LogLevel, cfg.LogFormat), Out: stdout, Err: stderr}, nil
}

// EnsureDatabases creates the three databases when they do not exist.
func (a *App) EnsureDatabases(ctx context.Context) error { return store.EnsureDatabases(ctx, a.Cfg) }

// DBs opens the three databases.
func (a *App) DBs(ctx context.Context) (*store.DBs, error) {
	my, err := a.MySQL(ctx)
	if err != nil {
		return nil, err
	}
	loc, err := a.Locations(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := a.Timescale(ctx)
	if err != nil {
		return nil, err
	}
	return &store.DBs{MySQL: my, Locations: loc, Timescale: ts}, nil
}

// MySQL opens the device registry.
func (a *App) MySQL(ctx context.Context) (*sql.DB, error) {
	if a.mysql == nil {
		db, err := store.OpenMySQL(ctx, a.Cfg.MySQL)
		if err != nil {
			return nil, err
		}
		a.mysql = db
	}
	return a.mysql, nil
}

// Locations opens the locations database.
func (a *App) Locations(ctx context.Context) (*pgxpool.Pool, error) {
	if a.locations == nil {
		p, err := store.OpenPG(ctx, a.Cfg.Postgres, a.Log)
		if err != nil {
			return nil, err
		}
		a.locations = p
	}
	return a.locations, nil
}

// Timescale opens the readings, stream and warehouse database.
func (a *App) Timescale(ctx context.Context) (*pgxpool.Pool, error) {
	if a.timescale == nil {
		p, err := store.OpenPG(ctx, a.Cfg.Timescale, a.Log)
		if err != nil {
			return nil, err
		}
		a.timescale = p
	}
	return a.timescale, nil
}

// Temporal dials the Temporal frontend.
func (a *App) Temporal(ctx context.Context) (client.Client, error) {
	if a.temporal == nil {
		c, err := temporalx.Dial(ctx, a.Cfg.Temporal, a.Log)
		if err != nil {
			return nil, err
		}
		a.temporal = c
	}
	return a.temporal, nil
}

// Kafka returns a client for the configured brokers (admin look-ups; the
// commands that produce or consume build their own).
func (a *App) Kafka() (*kgo.Client, error) {
	if a.kafka == nil {
		cl, err := kafka.NewClient(a.Cfg.Kafka, nil)
		if err != nil {
			return nil, err
		}
		a.kafka = cl
	}
	return a.kafka, nil
}

// Close releases whatever was opened.
func (a *App) Close() {
	if a.kafka != nil {
		a.kafka.Close()
	}
	if a.mysql != nil {
		a.mysql.Close()
	}
	if a.locations != nil {
		a.locations.Close()
	}
	if a.timescale != nil {
		a.timescale.Close()
	}
	if a.temporal != nil {
		a.temporal.Close()
	}
}
