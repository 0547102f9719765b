package seeder_test

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

var seedDay = time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC)

// expected is what the pure generator says a seed must write.
type expected struct {
	slots, readings, missing, dropouts int64
	kinds                              map[simulate.Kind]int64
	rows                               int64
	firstDevice                        simulate.DeviceDay
}

func expect(t *testing.T, seed int64, devices int, from, to time.Time) expected {
	t.Helper()
	fleet := simulate.NewFleet(seed, devices)
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	e := expected{kinds: map[simulate.Kind]int64{}}
	for i, dev := range fleet.Devices {
		for _, day := range simulate.Days(from, to) {
			d := gen.Day(dev, day)
			if i == 0 && day.Equal(from) {
				e.firstDevice = d
			}
			e.slots += int64(d.Slots)
			e.readings += int64(len(d.Readings))
			e.missing += int64(d.Missing)
			e.dropouts += int64(d.Dropouts)
			for _, a := range d.Anomalies {
				e.kinds[a.Kind]++
				e.rows++
			}
		}
	}
	return e
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func indexDefs(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, _ := pool.Query(context.Background(), `
		SELECT pg_get_indexdef(indexrelid) FROM pg_index
		WHERE indrelid = 'public.sensor_readings'::regclass ORDER BY 1`)
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return defs
}

func TestSeed(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	ctx := context.Background()
	st := testenv.Databases(t)
	const devices = 12
	opts := seeder.Options{Seed: 42, Devices: devices, Days: batch.Window{Start: seedDay, End: seedDay.AddDate(0, 0, 1)}, Sim: simulate.DefaultOptions()}
	want := expect(t, 42, devices, opts.Days.Start, opts.Days.End)
	indexesBefore := indexDefs(t, st.Timescale)

	first, err := seeder.Run(ctx, st.DBs, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The checksum is pinned: it changes only with the generated data
	// (see the golden digest in internal/domain/simulate) or the checksum SQL.
	const wantChecksum = "9844410341684799716695"
	got := []any{first.Devices, first.Locations, first.Slots, first.Readings, first.Missing, first.Dropouts, first.AnomalyRows, first.ChecksumCount, first.Checksum}
	wantSummary := []any{devices, 4, want.slots, want.readings, want.missing, want.dropouts, want.rows, want.readings, wantChecksum}
	if diff := cmp.Diff(wantSummary, got); diff != "" {
		t.Errorf("summary: devices, locations, slots, readings, missing, dropouts, anomalies, checksum count, checksum (-want +got):\n%s", diff)
	}
	if want.slots != int64(devices*1440) || want.readings+want.missing != want.slots {
		t.Errorf("generator accounting: slots %d, readings %d, missing %d", want.slots, want.readings, want.missing)
	}
	if diff := cmp.Diff(want.kinds, first.Anomalies); diff != "" {
		t.Errorf("anomalies per kind (-want +got):\n%s", diff)
	}

	// MySQL: the registry is the fleet.
	fleet := simulate.NewFleet(42, devices)
	var nTypes, nDevices int64
	if err := st.MySQL.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM device_types), (SELECT count(*) FROM devices)").Scan(&nTypes, &nDevices); err != nil {
		t.Fatal(err)
	}
	if nTypes != 6 || nDevices != devices {
		t.Errorf("MySQL holds %d types and %d devices, want 6 and %d", nTypes, nDevices, devices)
	}
	var dev reading.Device
	if err := st.MySQL.QueryRowContext(ctx, `SELECT device_id, type_code, location_id, model, firmware, status, installed_at, updated_at
		FROM devices WHERE device_id = 'PWR-002'`).Scan(&dev.ID, &dev.TypeCode, &dev.LocationID, &dev.Model, &dev.Firmware, &dev.Status, &dev.InstalledAt, &dev.UpdatedAt); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fleet.Devices[11], dev); diff != "" {
		t.Errorf("MySQL device PWR-002 (-fleet +stored):\n%s", diff)
	}

	// PostgreSQL: the locations are the fleet's.
	rows, _ := st.Locations.Query(ctx, `SELECT location_id, site, building, floor, zone, latitude, longitude, timezone, updated_at
		FROM public.locations ORDER BY location_id`)
	locs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (reading.Location, error) {
		var l reading.Location
		err := r.Scan(&l.ID, &l.Site, &l.Building, &l.Floor, &l.Zone, &l.Latitude, &l.Longitude, &l.Timezone, &l.UpdatedAt)
		l.UpdatedAt = l.UpdatedAt.UTC()
		return l, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fleet.Locations, locs); diff != "" {
		t.Errorf("locations (-fleet +stored):\n%s", diff)
	}

	// Timescale: the readings and ground truth, exactly.
	if n := count(t, st.Timescale, "SELECT count(*) FROM public.sensor_readings WHERE source = 'seed'"); n != want.readings {
		t.Errorf("sensor_readings holds %d seed rows, want %d", n, want.readings)
	}
	if n := count(t, st.Timescale, "SELECT count(*) FROM public.anomaly_ground_truth"); n != want.rows {
		t.Errorf("anomaly_ground_truth holds %d rows, want %d", n, want.rows)
	}
	if diff := cmp.Diff(indexesBefore, indexDefs(t, st.Timescale)); diff != "" {
		t.Errorf("sensor_readings indexes after the load (-before +after):\n%s", diff)
	}
	// One device-day read back equals what the generator made.
	rows, _ = st.Timescale.Query(ctx, `SELECT time, device_id, value, battery, rssi FROM public.sensor_readings
		WHERE device_id = $1 ORDER BY time`, want.firstDevice.DeviceID)
	stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (reading.Reading, error) {
		var rd reading.Reading
		var v pgtype.Float8
		err := r.Scan(&rd.Time, &rd.DeviceID, &v, &rd.Battery, &rd.RSSI)
		rd.Time, rd.Value, rd.ValueValid = rd.Time.UTC(), v.Float64, v.Valid
		return rd, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.firstDevice.Readings, stored); diff != "" {
		t.Errorf("readings of %s (-generated +stored):\n%s", want.firstDevice.DeviceID, diff)
	}

	// Seeding again replaces: same rows, same checksum, one more seed_runs row.
	second, err := seeder.Run(ctx, st.DBs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if second.Checksum != first.Checksum || second.ChecksumCount != first.ChecksumCount {
		t.Errorf("reseed: %d readings checksum %s, want %d and %s", second.ChecksumCount, second.Checksum, first.ChecksumCount, first.Checksum)
	}
	if n := count(t, st.Timescale, "SELECT count(*) FROM public.sensor_readings"); n != want.readings {
		t.Errorf("after reseed sensor_readings holds %d rows, want %d", n, want.readings)
	}
	if n := count(t, st.Timescale, "SELECT count(*) FROM public.seed_runs WHERE seed = 42 AND readings = $1 AND checksum = $2", want.readings, first.Checksum); n != 2 {
		t.Errorf("seed_runs has %d matching rows, want 2", n)
	}

	// The checksum adds up over disjoint ranges.
	mid := seedDay.Add(13*time.Hour + 7*time.Minute)
	n1, c1, err := seeder.ReadingsChecksum(ctx, st.Timescale, batch.Window{Start: seedDay, End: mid})
	if err != nil {
		t.Fatal(err)
	}
	n2, c2, err := seeder.ReadingsChecksum(ctx, st.Timescale, batch.Window{Start: mid, End: opts.Days.End})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := new(big.Int).SetString(c1, 10)
	b, _ := new(big.Int).SetString(c2, 10)
	if sum := new(big.Int).Add(a, b).String(); n1+n2 != first.ChecksumCount || sum != first.Checksum {
		t.Errorf("checksums of two halves: %d + %d readings, %s + %s = %s; want %d and %s", n1, n2, c1, c2, sum, first.ChecksumCount, first.Checksum)
	}
	if n, c, err := seeder.ReadingsChecksum(ctx, st.Timescale, batch.Window{Start: opts.Days.End, End: opts.Days.End.AddDate(0, 0, 1)}); err != nil || n != 0 || c != "0" {
		t.Errorf("checksum of an empty range = %d, %q, %v; want 0, \"0\", nil", n, c, err)
	}

	// Another seed writes other data.
	opts.Seed = 43
	other, err := seeder.Run(ctx, st.DBs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want43 := expect(t, 43, devices, opts.Days.Start, opts.Days.End); other.Readings != want43.readings || other.Checksum == first.Checksum {
		t.Errorf("seed 43: %d readings, checksum %s; want %d readings and a checksum other than seed 42's", other.Readings, other.Checksum, want43.readings)
	}
}

func TestSeedRejectsBadRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts seeder.Options
	}{
		{"not midnight", seeder.Options{Devices: 1, Days: batch.Window{Start: seedDay.Add(time.Hour), End: seedDay.AddDate(0, 0, 1)}, Sim: simulate.DefaultOptions()}},
		{"empty range", seeder.Options{Devices: 1, Days: batch.Window{Start: seedDay, End: seedDay}, Sim: simulate.DefaultOptions()}},
		{"no devices", seeder.Options{Devices: 0, Days: batch.Window{Start: seedDay, End: seedDay.AddDate(0, 0, 1)}, Sim: simulate.DefaultOptions()}},
		{"bad interval", seeder.Options{Devices: 1, Days: batch.Window{Start: seedDay, End: seedDay.AddDate(0, 0, 1)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Validation happens before any database is touched.
			if _, err := seeder.Run(context.Background(), &store.DBs{}, tc.opts); err == nil {
				t.Errorf("Seed(%+v) = nil error, want one", tc.opts)
			}
		})
	}
}

func TestSeedCancelledKeepsPreviousReadings(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	ctx := context.Background()
	st := testenv.Databases(t)
	opts := seeder.Options{Seed: 42, Devices: 6, Days: batch.Window{Start: seedDay, End: seedDay.AddDate(0, 0, 1)}, Sim: simulate.DefaultOptions()}
	before, err := seeder.Run(ctx, st.DBs, opts)
	if err != nil {
		t.Fatal(err)
	}
	indexes := indexDefs(t, st.Timescale)

	// A load of 10 M slots cancelled after a moment: the transaction rolls
	// back, so the previous readings, ground truth and indexes remain.
	fleet := simulate.NewFleet(7, 1000)
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := seeder.LoadReadings(cctx, st.Timescale, gen, fleet.Devices, batch.Window{Start: seedDay, End: seedDay.AddDate(0, 0, 7)}, 2); err == nil {
		t.Fatal("cancelled load returned no error")
	}
	n, sum, err := seeder.ReadingsChecksum(ctx, st.Timescale, opts.Days)
	if err != nil {
		t.Fatal(err)
	}
	if n != before.Readings || sum != before.Checksum {
		t.Errorf("after a cancelled load: %d readings, checksum %s; want the previous %d and %s", n, sum, before.Readings, before.Checksum)
	}
	if got := count(t, st.Timescale, "SELECT count(*) FROM public.anomaly_ground_truth"); got != before.AnomalyRows {
		t.Errorf("after a cancelled load: %d ground-truth rows, want the previous %d", got, before.AnomalyRows)
	}
	if diff := cmp.Diff(indexes, indexDefs(t, st.Timescale)); diff != "" {
		t.Errorf("indexes after a cancelled load (-before +after):\n%s", diff)
	}
}
