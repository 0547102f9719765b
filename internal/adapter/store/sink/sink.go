// Package sink is the stream ETL's side of TimescaleDB: what a consumer
// lease reads and writes. A lease owns one connection (Sink) for its
// lifetime, because the staging table of its micro-batches is a
// session-scoped temporary table. Each micro-batch is ONE transaction
// (Sink.Commit): raw readings, window aggregates, anomalies, dead letters
// and the fenced offsets, so a batch is either entirely visible or not at
// all, and a redelivered batch changes nothing. The package also reads the
// committed offsets, the dead letters and the device registry.
package sink

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// ApplicationName names the sessions of consumer leases in
// pg_stat_activity.
const ApplicationName = "iot-etl stream lease"

// ErrLeaseFenced means a newer lease has claimed a partition since this one
// did: the batch was rolled back and the lease must end.
var ErrLeaseFenced = errors.New("stream lease fenced: a newer lease owns the partition")

// Sink is the database side of one consumer lease: a dedicated
// connection with the temporary staging table.
type Sink struct {
	conn  *pgx.Conn
	topic string
	win   window.Length
	sql   windowStatements
	// lastWindow is, per device, the start (Unix µs) of the latest window
	// this sink committed: a later window cannot be stored yet unless
	// another writer wrote it, so the fast path inserts it plainly.
	lastWindow map[string]int64
}

// The staging table is ON COMMIT DELETE ROWS: every batch starts empty
// without a TRUNCATE round trip, and a rolled-back batch leaves nothing.
// reasons holds the transform's anomaly reasons (NULL: none); merge marks
// readings whose window may already be stored; single marks readings that
// are alone in their window in the batch.
const createStreamStage = `CREATE TEMP TABLE IF NOT EXISTS stream_stage (
	partition integer          NOT NULL,
	"offset"  bigint           NOT NULL,
	time      timestamptz      NOT NULL,
	device_id text             NOT NULL,
	value     double precision,
	battery   double precision,
	rssi      integer,
	reasons   text[],
	merge     boolean          NOT NULL,
	single    boolean          NOT NULL
) ON COMMIT DELETE ROWS`

var streamStageColumns = []string{"partition", "offset", "time", "device_id", "value", "battery", "rssi", "reasons", "merge", "single"}

// Open opens a connection of its own (not one of the pool's, so
// long-lived leases never starve the batch activities) with the pool's
// settings, and creates the staging table on it. The sink aggregates
// readings into windows of length win (zero: window.Default).
func Open(ctx context.Context, pool *pgxpool.Pool, topic string, win window.Length) (*Sink, error) {
	cfg := pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = ApplicationName
	// A lease frozen inside a transaction (a paused VM, a stopped process)
	// holds the row locks of its partitions and would block the lease that
	// takes them over; the server ends such a session after a minute. A
	// lease's own statements follow each other without idling.
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = "60s"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("stream sink: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, createStreamStage); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("stream sink: create staging table: %w", err)
	}
	return &Sink{conn: conn, topic: topic, win: win, sql: statementsFor(win), lastWindow: map[string]int64{}}, nil
}

// Close closes the connection; the staging table goes with it.
func (s *Sink) Close(ctx context.Context) error { return s.conn.Close(ctx) }

// RecentReadings returns the stored readings of devices in (until − window,
// until], ordered by device and time, for warming the transform state of
// devices a lease sees for the first time.
func (s *Sink) RecentReadings(ctx context.Context, devices []string, until time.Time, window time.Duration) ([]reading.Reading, error) {
	if len(devices) == 0 || until.IsZero() {
		return nil, nil
	}
	rows, err := s.conn.Query(ctx, `SELECT device_id, time, value, coalesce(battery, 0), coalesce(rssi, 0)
		FROM public.sensor_readings
		WHERE device_id = ANY($1::text[]) AND time > $2 AND time <= $3
		ORDER BY device_id, time`, devices, until.Add(-window), until)
	if err != nil {
		return nil, fmt.Errorf("recent readings: %w", err)
	}
	var out []reading.Reading
	var r reading.Reading
	var value *float64
	_, err = pgx.ForEachRow(rows, []any{&r.DeviceID, &r.Time, &value, &r.Battery, &r.RSSI}, func() error {
		r.Time = r.Time.UTC()
		r.Value, r.ValueValid = 0, value != nil
		if value != nil {
			r.Value = *value
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recent readings: %w", err)
	}
	return out, nil
}

// windowSelect aggregates the readings of from (with a WHERE clause,
// possibly empty) into windows of length win. value::numeric is
// PostgreSQL's float8 → numeric cast (15 significant digits, modelled
// exactly by internal/domain/window); numeric * numeric is exact (numeric ^ 2
// is not). date_bin does not depend on the session time zone, unlike
// date_trunc on timestamptz, and its bins from 2000-01-01 00:00 UTC are
// window.Length.Start's for every length that divides an hour. The length
// is a validated whole number of seconds, rendered into the statement.
func windowSelect(win window.Length, from, where string) string {
	length := fmt.Sprintf("interval '%d seconds'", int64(win.Duration()/time.Second))
	return `SELECT w, w + ` + length + `, device_id, count(*), count(value),
	       coalesce(sum(value::numeric), 0), coalesce(sum(value::numeric * value::numeric), 0),
	       min(value), max(value), count(*) FILTER (WHERE reasons IS NOT NULL), now()
	FROM (SELECT date_bin(` + length + `, time, timestamptz '2000-01-01 00:00:00+00') AS w, * FROM ` + from + `) l
	` + where + `
	GROUP BY w, device_id`
}

const windowColumns = `(window_start, window_end, device_id, reading_count, value_count, value_sum, value_sum_sq,
	 value_min, value_max, anomaly_count, updated_at)`

// mergeWindows adds the new partial aggregates to the stored ones.
const mergeWindows = `ON CONFLICT (device_id, window_start) DO UPDATE SET
		reading_count = a.reading_count + excluded.reading_count,
		value_count   = a.value_count + excluded.value_count,
		value_sum     = a.value_sum + excluded.value_sum,
		value_sum_sq  = a.value_sum_sq + excluded.value_sum_sq,
		value_min     = least(a.value_min, excluded.value_min),
		value_max     = greatest(a.value_max, excluded.value_max),
		anomaly_count = a.anomaly_count + excluded.anomaly_count,
		updated_at    = excluded.updated_at`

// landCTEs insert the staged readings, ignoring those already stored, and
// merge ONLY the newly inserted ones (landed) into the windows of length
// win and the anomalies. land (a batch's general path) and replay (a
// dead-letter replay) end them with what each needs to know of landed.
func landCTEs(win window.Length) string {
	return `
WITH inserted AS (
	INSERT INTO public.sensor_readings (time, device_id, value, battery, rssi, source)
	SELECT time, device_id, value, battery, rssi, 'stream' FROM stream_stage
	ON CONFLICT (device_id, time) DO NOTHING
	RETURNING device_id, time
), landed AS (
	SELECT s.* FROM stream_stage s JOIN inserted i USING (device_id, time)
), flagged AS (
	INSERT INTO public.stream_anomalies (device_id, time, value, reasons, topic, partition, "offset")
	SELECT device_id, time, value, reasons, $1, partition, "offset" FROM landed WHERE reasons IS NOT NULL
	ON CONFLICT (device_id, time) DO NOTHING
), windows AS (
	INSERT INTO public.sensor_readings_stream_agg AS a ` + windowColumns + `
	` + windowSelect(win, "landed", "") + `
	` + mergeWindows + `
)
`
}

// windowStatements are the statements of a sink that depend on its window
// length.
type windowStatements struct {
	// land returns, per partition, the rows inserted and how many of them
	// were flagged.
	land string
	// replay lands the staged readings of a replay and returns the record
	// (partition, offset) of each reading it inserted.
	replay string
	// The staged part of the fast path (landDirect): windows of several
	// readings of the batch that cannot exist yet are inserted without
	// merging (fastNew); windows that may exist are merged (fastMerge).
	fastNew, fastMerge string
}

func statementsFor(win window.Length) windowStatements {
	return windowStatements{
		land:      landCTEs(win) + `SELECT partition, count(*), count(*) FILTER (WHERE reasons IS NOT NULL) FROM landed GROUP BY partition`,
		replay:    landCTEs(win) + `SELECT partition, "offset" FROM landed`,
		fastNew:   `INSERT INTO public.sensor_readings_stream_agg ` + windowColumns + "\n" + windowSelect(win, "stream_stage", "WHERE NOT merge AND NOT single"),
		fastMerge: `INSERT INTO public.sensor_readings_stream_agg AS a ` + windowColumns + "\n" + windowSelect(win, "stream_stage", "WHERE merge") + "\n" + mergeWindows,
	}
}

var errFastPathConflicts = errors.New("stored readings or windows in the batch")

// advanceSQL writes the dead letters (a record already quarantined is not
// added again) and moves the offsets, watermarks and counters of the
// batch's partitions, fenced: a row only moves when it still carries the
// lease's epoch and the offset the lease last committed. It returns each
// moved partition with the dead letters actually added.
const advanceSQL = `WITH dead AS (
	INSERT INTO public.stream_dead_letters (topic, partition, "offset", key, raw, reason, error, record_time, watermark)
	SELECT $1, * FROM unnest($11::integer[], $12::bigint[], $13::bytea[], $14::bytea[], $15::text[], $16::text[], $17::timestamptz[], $18::timestamptz[])
	ON CONFLICT (topic, partition, "offset") DO NOTHING
	RETURNING partition
), added AS (
	SELECT partition, count(*) AS n FROM dead GROUP BY partition
)
UPDATE public.stream_offsets o SET
	next_offset = u.next, watermark = u.watermark,
	records = o.records + u.records, inserted = o.inserted + u.inserted,
	duplicates = o.duplicates + u.duplicates,
	dead_letters = o.dead_letters + coalesce((SELECT n FROM added WHERE added.partition = o.partition), 0),
	anomalies = o.anomalies + u.anomalies, updated_at = now()
	FROM unnest($2::integer[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[],
	            $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
	     AS u(partition, epoch, expected, next, watermark, records, inserted, duplicates, anomalies)
	WHERE o.topic = $1 AND o.partition = u.partition AND o.lease_epoch = u.epoch AND o.next_offset = u.expected
	RETURNING o.partition, coalesce((SELECT n FROM added WHERE added.partition = o.partition), 0)`

// Commit writes one micro-batch in one transaction and returns the counters
// each partition advanced by (b.Offsets' counters plus what was actually
// inserted, found already stored, flagged and quarantined). When a
// partition's epoch or expected offset no longer matches, nothing is
// written and the error is ErrLeaseFenced.
//
// Two leases whose batches write the same windows (a device whose readings
// reach several partitions) can lock them in opposite orders; PostgreSQL
// then aborts one of the transactions as deadlocked. Its batch is whole
// and rolled back, so Commit runs it again, up to commitAttempts times.
func (s *Sink) Commit(ctx context.Context, b *ingest.Batch) (map[int32]ingest.Counters, error) {
	return runAgainOnConflict(ctx, func() (map[int32]ingest.Counters, error) { return s.commit(ctx, b) })
}

// runAgainOnConflict runs tx, a whole transaction, again when PostgreSQL
// aborted it as deadlocked or by a serialization failure: it was rolled
// back whole, so running it again is safe.
func runAgainOnConflict[T any](ctx context.Context, tx func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		out, err := tx()
		if attempt == commitAttempts || !isTxConflict(err) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(time.Duration(attempt) * commitBackoff):
		}
	}
}

// A transaction aborted by a deadlock or a serialization failure runs
// again after attempt × commitBackoff.
const (
	commitAttempts = 5
	commitBackoff  = 20 * time.Millisecond
)

// isTxConflict reports whether err is PostgreSQL aborting the transaction
// for a deadlock or a serialization failure, after which it can run again.
func isTxConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

func (s *Sink) commit(ctx context.Context, b *ingest.Batch) (map[int32]ingest.Counters, error) {
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream batch: begin: %w", err)
	}
	defer tx.Rollback(ctx)

	// landed: per partition, readings inserted and flagged among them.
	landed := map[int32]ingest.Counters{}
	if len(b.Readings) > 0 {
		perWindow := make(map[windowKey]int, len(b.Readings))
		for _, r := range b.Readings {
			perWindow[windowKey{r.DeviceID, s.win.Start(r.Time).UnixMicro()}]++
		}
		switch landErr := s.landDirect(ctx, tx, b.Readings, perWindow); {
		case landErr == nil:
			for _, r := range b.Readings {
				c := landed[r.Partition]
				c.Inserted++
				if r.Reasons != nil {
					c.Anomalies++
				}
				landed[r.Partition] = c
			}
		case errors.Is(landErr, errFastPathConflicts):
			// Part of the batch is stored already: the general path works
			// from the whole batch staged.
			if err := s.landGeneral(ctx, tx, b.Readings, perWindow, landed); err != nil {
				return nil, err
			}
		default:
			return nil, landErr
		}
	}
	staged := map[int32]int64{}
	for _, r := range b.Readings {
		staged[r.Partition]++
	}

	rows, err := tx.Query(ctx, advanceSQL, advanceArgs(s.topic, b, landed, staged)...)
	if err != nil {
		return nil, fmt.Errorf("stream batch: advance offsets: %w", err)
	}
	moved := map[int32]int64{}
	var p int32
	var dead int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &dead}, func() error { moved[p] = dead; return nil }); err != nil {
		return nil, fmt.Errorf("stream batch: advance offsets: %w", err)
	}
	if len(moved) != len(b.Offsets) {
		var fenced []string
		for _, o := range b.Offsets {
			if _, ok := moved[o.Partition]; !ok {
				fenced = append(fenced, fmt.Sprintf("%d (epoch %d, offset %d)", o.Partition, o.Epoch, o.Expected))
			}
		}
		sort.Strings(fenced)
		return nil, fmt.Errorf("%w: topic %s partition %s", ErrLeaseFenced, s.topic, strings.Join(fenced, ", "))
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("stream batch: commit: %w", err)
	}
	for _, r := range b.Readings {
		if w := s.win.Start(r.Time).UnixMicro(); w > s.lastWindow[r.DeviceID] {
			s.lastWindow[r.DeviceID] = w
		}
	}
	out := make(map[int32]ingest.Counters, len(b.Offsets))
	for _, o := range b.Offsets {
		c := o.Counters
		l := landed[o.Partition]
		c.Inserted, c.Anomalies, c.DeadLetters = l.Inserted, l.Anomalies, moved[o.Partition]
		c.Duplicates += staged[o.Partition] - l.Inserted
		out[o.Partition] = c
	}
	return out, nil
}

// landGeneral is the general path of a batch of which part is stored
// already: back to the savepoint, the whole batch staged, then one
// statement inserts the new readings, merges the windows and records the
// anomalies; landed gets what it inserted and flagged per partition.
func (s *Sink) landGeneral(ctx context.Context, tx pgx.Tx, readings []ingest.Reading, perWindow map[windowKey]int, landed map[int32]ingest.Counters) error {
	if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT land`); err != nil {
		return fmt.Errorf("stream batch: %w", err)
	}
	if err := s.stage(ctx, tx, readings, perWindow); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, s.sql.land, s.topic)
	if err != nil {
		return fmt.Errorf("stream batch: land readings: %w", err)
	}
	var p int32
	var inserted, flagged int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &inserted, &flagged}, func() error {
		landed[p] = ingest.Counters{Inserted: inserted, Anomalies: flagged}
		return nil
	}); err != nil {
		return fmt.Errorf("stream batch: land readings: %w", err)
	}
	return nil
}

// stage copies readings into the connection's staging table.
func (s *Sink) stage(ctx context.Context, tx pgx.Tx, readings []ingest.Reading, perWindow map[windowKey]int) error {
	var row []any
	src := pgx.CopyFromSlice(len(readings), func(i int) ([]any, error) {
		row = s.stageRow(&readings[i], perWindow, row)
		return row, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stream_stage"}, streamStageColumns, src); err != nil {
		return fmt.Errorf("stream batch: stage readings: %w", err)
	}
	return nil
}

// landDirect is the fast path, for a batch of which nothing is stored yet
// (the normal case): after a savepoint, the readings are copied straight
// into sensor_readings, each window that is new and holds one reading of
// the batch straight into the windows table (its sums computed here, as
// PostgreSQL's float8-to-numeric cast would), and the flagged readings into
// stream_anomalies. Only the readings of the other windows go through the
// staging table to be aggregated or merged in SQL. A unique violation
// (errFastPathConflicts) means part of the batch is already stored: the
// caller rolls back to the savepoint and takes the general path.
func (s *Sink) landDirect(ctx context.Context, tx pgx.Tx, readings []ingest.Reading, perWindow map[windowKey]int) error {
	if _, err := tx.Exec(ctx, `SAVEPOINT land`); err != nil {
		return fmt.Errorf("stream batch: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"public", "sensor_readings"},
		[]string{"time", "device_id", "value", "battery", "rssi", "source"}, readingRows(readings)); err != nil {
		return fastPathError("copy readings", err)
	}
	var singles, anomalies [][]any
	var rest []ingest.Reading
	for _, r := range readings {
		start := s.win.Start(r.Time)
		key := windowKey{r.DeviceID, start.UnixMicro()}
		last, seen := s.lastWindow[r.DeviceID]
		if merge := seen && key.start <= last; !merge && perWindow[key] == 1 {
			singles = append(singles, singleWindow(r, start, s.win))
		} else {
			rest = append(rest, r)
		}
		if r.Reasons != nil {
			anomalies = append(anomalies, []any{r.DeviceID, r.Time, nullableValue(&r), r.Reasons, s.topic, r.Partition, r.Offset})
		}
	}
	if len(singles) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"public", "sensor_readings_stream_agg"},
			[]string{"window_start", "window_end", "device_id", "reading_count", "value_count", "value_sum", "value_sum_sq", "value_min", "value_max", "anomaly_count"},
			pgx.CopyFromRows(singles)); err != nil {
			return fastPathError("copy windows", err)
		}
	}
	if len(anomalies) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"public", "stream_anomalies"},
			[]string{"device_id", "time", "value", "reasons", "topic", "partition", "offset"}, pgx.CopyFromRows(anomalies)); err != nil {
			return fastPathError("copy anomalies", err)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	if err := s.stage(ctx, tx, rest, perWindow); err != nil {
		return err
	}
	batch := &pgx.Batch{}
	batch.Queue(s.sql.fastNew)
	batch.Queue(s.sql.fastMerge)
	br := tx.SendBatch(ctx, batch)
	for _, what := range []string{"insert windows", "merge windows"} {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fastPathError(what, err)
		}
	}
	if err := br.Close(); err != nil {
		return fastPathError("windows", err)
	}
	return nil
}

// readingRows streams a batch into sensor_readings.
func readingRows(readings []ingest.Reading) pgx.CopyFromSource {
	var row [6]any
	return pgx.CopyFromSlice(len(readings), func(i int) ([]any, error) {
		r := &readings[i]
		row[0], row[1], row[2], row[3], row[4], row[5] = r.Time, r.DeviceID, nullableValue(r), r.Battery, r.RSSI, "stream"
		return row[:], nil
	})
}

// singleWindow is the windows-table row of a window of length win holding
// one reading: its aggregate is window.Agg's, as SQL would merge it.
func singleWindow(r ingest.Reading, start time.Time, win window.Length) []any {
	var agg window.Agg
	if r.ValueValid {
		agg.Add(r.Value)
	}
	var anomalies int64
	if r.Reasons != nil {
		anomalies = 1
	}
	var lo, hi any
	if agg.Count > 0 {
		lo, hi = agg.Min, agg.Max
	}
	return []any{start, start.Add(win.Duration()), r.DeviceID, int64(1), agg.Count, numeric(agg.Sum), numeric(agg.SumSq), lo, hi, anomalies}
}

func numeric(d window.Decimal) pgtype.Numeric {
	coef, exp := d.Parts()
	return pgtype.Numeric{Int: coef, Exp: exp, Valid: true}
}

func nullableValue(r *ingest.Reading) any {
	if r.ValueValid {
		return r.Value
	}
	return nil
}

func fastPathError(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return errFastPathConflicts
	}
	return fmt.Errorf("stream batch: %s: %w", what, err)
}

func advanceArgs(topic string, b *ingest.Batch, landed map[int32]ingest.Counters, staged map[int32]int64) []any {
	n := len(b.Offsets)
	parts, epochs, expected, next := make([]int32, n), make([]int64, n), make([]int64, n), make([]int64, n)
	wms := make([]*time.Time, n)
	records, inserted, dups, anomalies := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, o := range b.Offsets {
		l := landed[o.Partition]
		parts[i], epochs[i], expected[i], next[i] = o.Partition, o.Epoch, o.Expected, o.Next
		if !o.Watermark.IsZero() {
			wm := o.Watermark
			wms[i] = &wm
		}
		records[i], inserted[i], anomalies[i] = o.Counters.Records, l.Inserted, l.Anomalies
		dups[i] = o.Counters.Duplicates + staged[o.Partition] - l.Inserted
	}
	m := len(b.DeadLetters)
	dParts, dOffs := make([]int32, m), make([]int64, m)
	keys, raws := make([][]byte, m), make([][]byte, m)
	reasons, errs, times := make([]string, m), make([]string, m), make([]time.Time, m)
	dWms := make([]*time.Time, m)
	for i, d := range b.DeadLetters {
		dParts[i], dOffs[i], keys[i], raws[i] = d.Partition, d.Offset, d.Key, d.Raw
		reasons[i], errs[i], times[i] = d.Reason, strings.ToValidUTF8(d.Error, "\uFFFD"), d.RecordTime
		if raws[i] == nil {
			raws[i] = []byte{}
		}
		if !d.Watermark.IsZero() {
			wm := d.Watermark
			dWms[i] = &wm
		}
	}
	return []any{topic, parts, epochs, expected, next, wms, records, inserted, dups, anomalies,
		dParts, dOffs, keys, raws, reasons, errs, times, dWms}
}

// stageRow renders a reading for the staging table into a reused row
// (pgx encodes each row before asking for the next). A reading is marked
// merge when its window is not later than the last window its device
// committed through this sink (that window may be stored already), and
// single when no other reading of the batch shares its window.
func (s *Sink) stageRow(r *ingest.Reading, perWindow map[windowKey]int, row []any) []any {
	start := s.win.Start(r.Time).UnixMicro()
	last, seen := s.lastWindow[r.DeviceID]
	var reasons any
	if r.Reasons != nil {
		reasons = r.Reasons
	}
	return append(row[:0], r.Partition, r.Offset, r.Time, r.DeviceID, nullableValue(r), r.Battery, r.RSSI,
		reasons, seen && start <= last, perWindow[windowKey{r.DeviceID, start}] == 1)
}

// windowKey identifies a window of a device (start in Unix µs).
type windowKey struct {
	device string
	start  int64
}
