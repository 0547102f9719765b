package migrations_test

import (
	"context"
	"testing"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/migrations"
)

// TestUpIsIdempotentAndDownReverts applies every set twice (the second call
// applies nothing), then rolls each back to zero and applies it again.
func TestUpIsIdempotentAndDownReverts(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t) // applies every set once
	ctx := context.Background()
	ts := store.SQLDB(s.Timescale)
	defer ts.Close()
	loc := store.SQLDB(s.Locations)
	defer loc.Close()
	cases := []struct {
		set  migrations.Set
		run  func() (migrations.Result, error)
		down func() error
	}{
		{migrations.MySQL, func() (migrations.Result, error) { return migrations.Up(ctx, migrations.MySQL, s.MySQL, nil) }, func() error { return migrations.Down(ctx, migrations.MySQL, s.MySQL) }},
		{migrations.Locations, func() (migrations.Result, error) { return migrations.Up(ctx, migrations.Locations, loc, nil) }, func() error { return migrations.Down(ctx, migrations.Locations, loc) }},
		{migrations.Timeseries, func() (migrations.Result, error) { return migrations.Up(ctx, migrations.Timeseries, ts, nil) }, func() error { return migrations.Down(ctx, migrations.Timeseries, ts) }},
	}
	for _, c := range cases {
		again, err := c.run()
		if err != nil {
			t.Fatalf("%s: second Up: %v", c.set, err)
		}
		if len(again.Applied) != 0 {
			t.Errorf("%s: second Up applied %v, want nothing", c.set, again.Applied)
		}
		if again.Version == 0 {
			t.Errorf("%s: version 0 after Up", c.set)
		}
		if err := c.down(); err != nil {
			t.Fatalf("%s: Down: %v", c.set, err)
		}
		redo, err := c.run()
		if err != nil {
			t.Fatalf("%s: Up after Down: %v", c.set, err)
		}
		if redo.Version != again.Version || len(redo.Applied) == 0 {
			t.Errorf("%s: Up after Down reached version %d applying %v, want version %d", c.set, redo.Version, redo.Applied, again.Version)
		}
	}
}
