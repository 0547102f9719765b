package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/health"
)

func init() {
	register(command{
		Name:    "check",
		Summary: "test every component (Temporal, MySQL, PostgreSQL, TimescaleDB, Kafka); exit 1 if any fails",
		Run:     runCheck,
	})
}

func runCheck(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "check", "")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed to each component")
	if err := parse(fs, args); err != nil {
		return err
	}
	return checkAll(ctx, app, *timeout)
}

// checkAll prints one line per component and fails when any failed.
func checkAll(ctx context.Context, app *App, timeout time.Duration) error {
	results := health.Check(ctx, app.Cfg, timeout)
	failed := 0
	for _, r := range results {
		fmt.Fprintln(app.Out, r)
		if !r.OK() {
			failed++
		}
	}
	if failed > 0 {
		return errors.New(plural(failed, "component") + " failed")
	}
	return nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
