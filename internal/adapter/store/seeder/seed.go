// Package seeder fills the three source databases with a simulated fleet:
// the device registry, the locations, and readings with injected anomalies
// recorded as ground truth, reproducibly from a seed. It also resets what
// the pipelines built from earlier readings.
package seeder

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
)

// Options say what Run generates: the fleet of Seed with Devices devices,
// readings for the UTC days of Days.
type Options struct {
	Seed    int64
	Devices int
	Days    batch.Window // whole UTC days
	Sim     simulate.Options
	// Workers is how many goroutines generate readings for the COPY. Zero
	// means GOMAXPROCS.
	Workers int
}

// Summary is what Run wrote.
type Summary struct {
	Seed      int64
	Devices   int
	Locations int
	From, To  time.Time
	Interval  time.Duration
	Slots     int64 // devices x days x slots per day
	Readings  int64 // rows in sensor_readings
	Missing   int64 // Slots - Readings
	Dropouts  int64 // isolated missing readings (not ground truth)
	// Anomalies counts ground-truth rows per kind; Gap is the number of
	// outages.
	Anomalies     map[simulate.Kind]int64
	AnomalyRows   int64
	Checksum      string // ReadingsChecksum over [From, To)
	ChecksumCount int64
	Elapsed       time.Duration // the whole seed
	LoadElapsed   time.Duration // LoadReadings: truncate, copy, rebuild indexes, commit, analyze
	CopyElapsed   time.Duration // of which generating and copying
	IndexElapsed  time.Duration // of which rebuilding indexes
}

// ReadingsPerSecond is readings over LoadElapsed: generation, COPY and
// index rebuild together.
func (s Summary) ReadingsPerSecond() float64 {
	if s.LoadElapsed <= 0 {
		return 0
	}
	return float64(s.Readings) / s.LoadElapsed.Seconds()
}

// Run replaces the device registry (MySQL), the locations (PostgreSQL)
// and the readings and ground truth (TimescaleDB) with generated ones, and
// records the run in seed_runs. Seeding again with the same options writes
// the same rows: it replaces, it never adds.
func Run(ctx context.Context, dbs *store.DBs, opts Options) (Summary, error) {
	began := time.Now()
	my, locations, timescale := dbs.MySQL, dbs.Locations, dbs.Timescale
	from, to := opts.Days.Start.UTC(), opts.Days.End.UTC()
	if !from.Equal(from.Truncate(batch.Day)) || !to.Equal(to.Truncate(batch.Day)) || !to.After(from) {
		return Summary{}, fmt.Errorf("seed: range %s..%s: want whole UTC days, from before to", from, to)
	}
	if opts.Devices < 1 {
		return Summary{}, fmt.Errorf("seed: %d devices: want at least 1", opts.Devices)
	}
	fleet := simulate.NewFleet(opts.Seed, opts.Devices)
	gen, err := simulate.NewGenerator(fleet, opts.Sim)
	if err != nil {
		return Summary{}, err
	}
	if err := ReplaceDevices(ctx, my, fleet); err != nil {
		return Summary{}, err
	}
	if err := ReplaceLocations(ctx, locations, fleet.Locations); err != nil {
		return Summary{}, err
	}

	loadStart := time.Now()
	workers := opts.Workers
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	load, err := LoadReadings(ctx, timescale, gen, fleet.Devices, batch.Window{Start: from, End: to}, workers)
	if err != nil {
		return Summary{}, err
	}
	loadElapsed := time.Since(loadStart)

	sum := Summary{
		Seed: opts.Seed, Devices: len(fleet.Devices), Locations: len(fleet.Locations),
		From: from, To: to, Interval: gen.Interval(),
		Slots: load.Slots, Readings: load.Readings, Missing: load.Slots - load.Readings, Dropouts: load.Dropouts,
		Anomalies: load.Anomalies, AnomalyRows: load.AnomalyRows,
		LoadElapsed: loadElapsed, CopyElapsed: load.CopyElapsed, IndexElapsed: load.IndexElapsed,
	}
	if sum.ChecksumCount, sum.Checksum, err = ReadingsChecksum(ctx, timescale, batch.Window{Start: from, End: to}); err != nil {
		return Summary{}, err
	}
	if sum.ChecksumCount != sum.Readings {
		return Summary{}, fmt.Errorf("seed: copied %d readings but sensor_readings holds %d in %s..%s", sum.Readings, sum.ChecksumCount, from, to)
	}
	_, err = timescale.Exec(ctx, `
		INSERT INTO public.seed_runs (seed, devices, start_time, end_time, interval_s, slots, readings, gaps, anomalies, checksum)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		sum.Seed, sum.Devices, from, to, int(sum.Interval/time.Second), sum.Slots, sum.Readings, sum.Missing, sum.AnomalyRows, sum.Checksum)
	if err != nil {
		return Summary{}, fmt.Errorf("seed: record seed_runs: %w", err)
	}
	sum.Elapsed = time.Since(began)
	return sum, nil
}

// mysqlBatchRows bounds one multi-row INSERT, far below max_allowed_packet.
const mysqlBatchRows = 500

// ReplaceDevices replaces device_types and devices with the fleet's, in one
// transaction.
func ReplaceDevices(ctx context.Context, db *sql.DB, fleet simulate.Fleet) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("replace devices: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, stmt := range []string{"DELETE FROM devices", "DELETE FROM device_types"} {
		if _, err = tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("replace devices: %s: %w", stmt, err)
		}
	}
	typeRows := make([][]any, 0, len(fleet.Types))
	for _, t := range fleet.Types {
		typeRows = append(typeRows, []any{t.Code, t.Metric, t.Unit, t.ValidMin, t.ValidMax, t.MaxRatePerMin, int(t.ExpectedInterval / time.Second), fleet.TypesUpdatedAt})
	}
	if err = insertRows(ctx, tx, "device_types", []string{"code", "metric", "unit", "valid_min", "valid_max", "max_rate_per_min", "expected_interval_s", "updated_at"}, typeRows); err != nil {
		return err
	}
	devRows := make([][]any, 0, len(fleet.Devices))
	for _, d := range fleet.Devices {
		devRows = append(devRows, []any{d.ID, d.TypeCode, d.LocationID, d.Model, d.Firmware, d.Status, d.InstalledAt, d.UpdatedAt})
	}
	if err = insertRows(ctx, tx, "devices", []string{"device_id", "type_code", "location_id", "model", "firmware", "status", "installed_at", "updated_at"}, devRows); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("replace devices: commit: %w", err)
	}
	return nil
}

// insertRows inserts rows into table with multi-row INSERTs of at most
// mysqlBatchRows rows.
func insertRows(ctx context.Context, tx *sql.Tx, table string, cols []string, rows [][]any) error {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for chunk := range slices.Chunk(rows, mysqlBatchRows) {
		var q strings.Builder
		q.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
		args := make([]any, 0, len(chunk)*len(cols))
		for i, r := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(one)
			args = append(args, r...)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert %s: %w", table, err)
		}
	}
	return nil
}

// ReplaceLocations replaces public.locations with locs, in one transaction.
func ReplaceLocations(ctx context.Context, pool *pgxpool.Pool, locs []reading.Location) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM public.locations"); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"public", "locations"},
			[]string{"location_id", "site", "building", "floor", "zone", "latitude", "longitude", "timezone", "updated_at"},
			pgx.CopyFromSlice(len(locs), func(i int) ([]any, error) {
				l := locs[i]
				return []any{l.ID, l.Site, l.Building, l.Floor, l.Zone, l.Latitude, l.Longitude, l.Timezone, l.UpdatedAt}, nil
			}))
		return err
	})
	if err != nil {
		return fmt.Errorf("replace locations: %w", err)
	}
	return nil
}

// LoadStats is what LoadReadings copied.
type LoadStats struct {
	Slots       int64
	Readings    int64
	Dropouts    int64
	Anomalies   map[simulate.Kind]int64
	AnomalyRows int64
	// CopyElapsed is generating and copying the readings and ground truth;
	// IndexElapsed rebuilding the indexes of sensor_readings.
	CopyElapsed, IndexElapsed time.Duration
}

// LoadReadings replaces the contents of sensor_readings and
// anomaly_ground_truth with what gen produces for devices over the UTC days
// of days, in one transaction: readers see the old data or the new,
// never a mix. Readings are copied day by day, devices in id order within a
// day, and stream from workers generator goroutines through one COPY, so
// memory stays bounded whatever the range. Ground truth is small and copied
// at the end.
//
// On plain PostgreSQL the unique constraint and secondary indexes of
// sensor_readings are dropped before the copy and rebuilt after it, inside
// the same transaction: building an index once is several times faster
// than maintaining it row by row. A TimescaleDB hypertable keeps its
// indexes, which are per one-day chunk and stay small.
func LoadReadings(ctx context.Context, pool *pgxpool.Pool, gen *simulate.Generator, devices []reading.Device, days batch.Window, workers int) (LoadStats, error) {
	from, to := days.Start, days.End
	workers = max(workers, 1)
	sorted := slices.Clone(devices)
	slices.SortFunc(sorted, func(a, b reading.Device) int { return strings.Compare(a.ID, b.ID) })
	hypertable, err := store.HasTimescale(ctx, pool)
	if err != nil {
		return LoadStats{}, fmt.Errorf("load readings: %w", err)
	}
	src := &readingSource{}
	var copyElapsed, indexElapsed time.Duration
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL maintenance_work_mem = '512MB'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "TRUNCATE public.sensor_readings, public.anomaly_ground_truth"); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
		var rebuild []string
		if !hypertable {
			if rebuild, err = dropIndexes(ctx, tx, "public.sensor_readings"); err != nil {
				return err
			}
		}
		copyStart := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		src.ctx = gctx
		src.days = generateInOrder(gctx, g, gen, sorted, simulate.Days(from, to), workers)
		var copied int64
		g.Go(func() error {
			var err error
			copied, err = tx.CopyFrom(gctx, pgx.Identifier{"public", "sensor_readings"},
				[]string{"time", "device_id", "value", "battery", "rssi", "source"}, pgx.CopyFromFunc(src.next))
			return err
		})
		if err := g.Wait(); err != nil {
			return fmt.Errorf("copy readings: %w", err)
		}
		if copied != src.readings {
			return fmt.Errorf("copy readings: COPY reported %d rows, the generator produced %d", copied, src.readings)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"public", "anomaly_ground_truth"},
			[]string{"device_id", "kind", "start_time", "end_time", "magnitude"},
			pgx.CopyFromSlice(len(src.anomalies), func(i int) ([]any, error) {
				a := src.anomalies[i]
				return []any{a.DeviceID, string(a.Kind), a.Start, a.End, a.Magnitude}, nil
			})); err != nil {
			return fmt.Errorf("copy ground truth: %w", err)
		}
		copyElapsed = time.Since(copyStart)
		defer func() { indexElapsed = time.Since(copyStart) - copyElapsed }()
		for _, stmt := range rebuild {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("rebuild index: %s: %w", stmt, err)
			}
		}
		return nil
	})
	if err != nil {
		return LoadStats{}, fmt.Errorf("load readings: %w", err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE public.sensor_readings, public.anomaly_ground_truth"); err != nil {
		return LoadStats{}, fmt.Errorf("load readings: analyze: %w", err)
	}
	st := LoadStats{Slots: src.slots, Readings: src.readings, Dropouts: src.dropouts,
		Anomalies: map[simulate.Kind]int64{}, AnomalyRows: int64(len(src.anomalies)),
		CopyElapsed: copyElapsed, IndexElapsed: indexElapsed}
	for _, a := range src.anomalies {
		st.Anomalies[a.Kind]++
	}
	return st, nil
}

// dropIndexes drops the unique constraints and the indexes of table that
// back no other constraint, and returns the statements that recreate them
// as they were. The primary key, if any, stays.
func dropIndexes(ctx context.Context, tx pgx.Tx, table string) ([]string, error) {
	rows, err := tx.Query(ctx, `
		SELECT 'ALTER TABLE ' || $1 || ' DROP CONSTRAINT ' || quote_ident(conname),
		       'ALTER TABLE ' || $1 || ' ADD CONSTRAINT ' || quote_ident(conname) || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'u'
		UNION ALL
		SELECT 'DROP INDEX ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
		       pg_get_indexdef(i.indexrelid)
		FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE i.indrelid = $1::regclass
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)`, table)
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", table, err)
	}
	type pair struct{ drop, create string }
	pairs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pair, error) {
		var p pair
		return p, r.Scan(&p.drop, &p.create)
	})
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", table, err)
	}
	rebuild := make([]string, 0, len(pairs))
	for _, p := range pairs {
		if _, err := tx.Exec(ctx, p.drop); err != nil {
			return nil, fmt.Errorf("%s: %w", p.drop, err)
		}
		rebuild = append(rebuild, p.create)
	}
	return rebuild, nil
}

// generateInOrder generates the device-days of days x devices (day-major,
// so the table fills in time order) on workers goroutines of g and returns
// them in that order. At most a few dozen device-days are in flight.
func generateInOrder(ctx context.Context, g *errgroup.Group, gen *simulate.Generator, devices []reading.Device, days []time.Time, workers int) <-chan simulate.DeviceDay {
	type job struct {
		dev    reading.Device
		day    time.Time
		result chan simulate.DeviceDay
	}
	jobs := make(chan job)
	pending := make(chan chan simulate.DeviceDay, 4*workers)
	out := make(chan simulate.DeviceDay, workers)
	g.Go(func() error { // dispatch, in order
		defer close(jobs)
		defer close(pending)
		for _, day := range days {
			for _, dev := range devices {
				j := job{dev: dev, day: day, result: make(chan simulate.DeviceDay, 1)}
				select {
				case pending <- j.result:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case jobs <- j:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			for j := range jobs {
				j.result <- gen.Day(j.dev, j.day) // buffered: never blocks
			}
			return nil
		})
	}
	g.Go(func() error { // collect, in order
		defer close(out)
		for r := range pending {
			var d simulate.DeviceDay
			select {
			case d = <-r:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case out <- d:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	return out
}

// readingSource feeds COPY from a channel of device-days. It reuses one row
// of values, so copying allocates nothing per reading.
type readingSource struct {
	ctx  context.Context
	days <-chan simulate.DeviceDay
	cur  []reading.Reading
	pos  int

	// the row handed to COPY
	t       time.Time
	device  string
	value   pgtype.Float8
	battery float64
	rssi    int32
	row     []any

	slots, readings, dropouts int64
	anomalies                 []simulate.Anomaly
}

const seedSource = "seed"

// next is the CopyFromFunc of the readings: the reused row of the next
// reading, or nil at the end.
func (s *readingSource) next() ([]any, error) {
	for s.pos >= len(s.cur) {
		var d simulate.DeviceDay
		var ok bool
		select {
		case d, ok = <-s.days:
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		}
		if !ok {
			// The generator stops early only when the load is cancelled.
			return nil, s.ctx.Err()
		}
		s.cur, s.pos = d.Readings, 0
		s.slots += int64(d.Slots)
		s.dropouts += int64(d.Dropouts)
		s.anomalies = append(s.anomalies, d.Anomalies...)
	}
	r := &s.cur[s.pos]
	s.pos++
	s.readings++
	s.t, s.device, s.battery, s.rssi = r.Time, r.DeviceID, r.Battery, r.RSSI
	s.value = pgtype.Float8{Float64: r.Value, Valid: r.ValueValid}
	if s.row == nil {
		s.row = []any{&s.t, &s.device, &s.value, &s.battery, &s.rssi, seedSource}
	}
	return s.row, nil
}

// checksumSQL hashes each reading's canonical text with md5, keeps the
// first 60 bits as a bigint and sums them as numeric. The canonical text is
//
//	device_id|microseconds since 1970-01-01 UTC|value|battery|rssi
//
// with floats in PostgreSQL's shortest exact text form (extra_float_digits
// = 1, PostgreSQL 12 or later) and 'null' for NULL. The sum does not depend
// on row order and adds up over disjoint ranges.
const checksumSQL = `
SELECT count(*),
       coalesce(sum(('x' || substr(md5(
           device_id || '|' ||
           ((extract(epoch FROM time) * 1000000)::bigint)::text || '|' ||
           coalesce(value::text, 'null') || '|' ||
           coalesce(battery::text, 'null') || '|' ||
           coalesce(rssi::text, 'null')), 1, 15))::bit(60)::bigint), 0)::text
FROM public.sensor_readings
WHERE time >= $1 AND time < $2`

// ReadingsChecksum is an order-independent checksum of the readings in
// w: their count and the sum, as decimal text, of the first 60
// bits of the md5 of each row's canonical text (see checksumSQL). Equal
// data gives equal checksums whatever wrote it and in whatever order, and
// the checksums of disjoint ranges add up to that of their union.
func ReadingsChecksum(ctx context.Context, pool *pgxpool.Pool, w batch.Window) (count int64, checksum string, err error) {
	from, to := w.Start, w.End
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// The float text form depends on this setting: pin it.
		if _, err := tx.Exec(ctx, "SET LOCAL extra_float_digits = 1"); err != nil {
			return err
		}
		return tx.QueryRow(ctx, checksumSQL, from, to).Scan(&count, &checksum)
	})
	if err != nil {
		return 0, "", fmt.Errorf("readings checksum: %w", err)
	}
	return count, checksum, nil
}
