package store

// The stream sink: what a consumer lease reads and writes in TimescaleDB.
// A lease owns one connection (StreamSink) for its lifetime, because the
// staging table of its micro-batches is a session-scoped temporary table.
// Each micro-batch is ONE transaction (StreamSink.Commit): raw readings,
// window aggregates, anomalies, dead letters and the fenced offsets, so a
// batch is either entirely visible or not at all, and a redelivered batch
// changes nothing.

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

	"github.com/iot-etl/iot-etl/internal/reading"
	"github.com/iot-etl/iot-etl/internal/window"
)

// ErrLeaseFenced means a newer lease has claimed a partition since this one
// did: the batch was rolled back and the lease must end.
var ErrLeaseFenced = errors.New("stream lease fenced: a newer lease owns the partition")

// pgQuerier is what both a pool and a single connection offer.
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// StreamCounters are the cumulative counters of a partition, kept in
// stream_offsets and advanced with the offsets.
type StreamCounters struct {
	Records     int64 `json:"records"`      // Kafka records consumed
	Inserted    int64 `json:"inserted"`     // new rows in sensor_readings
	Duplicates  int64 `json:"duplicates"`   // valid readings already stored (same device_id and time)
	DeadLetters int64 `json:"dead_letters"` // rows added to stream_dead_letters
	Anomalies   int64 `json:"anomalies"`    // rows added to stream_anomalies
}

// Add adds o to c.
func (c *StreamCounters) Add(o StreamCounters) {
	c.Records += o.Records
	c.Inserted += o.Inserted
	c.Duplicates += o.Duplicates
	c.DeadLetters += o.DeadLetters
	c.Anomalies += o.Anomalies
}

// StreamOffset is one row of public.stream_offsets.
type StreamOffset struct {
	Partition  int32
	NextOffset int64
	Watermark  time.Time // zero when NULL
	Epoch      int64
	Owner      string
	Counters   StreamCounters
	UpdatedAt  time.Time
}

const streamOffsetColumns = `partition, next_offset, watermark, lease_epoch, coalesce(lease_owner, ''),
	records, inserted, duplicates, dead_letters, anomalies, updated_at`

func scanStreamOffsets(rows pgx.Rows) (map[int32]StreamOffset, error) {
	out := map[int32]StreamOffset{}
	var o StreamOffset
	var wm *time.Time
	_, err := pgx.ForEachRow(rows, []any{&o.Partition, &o.NextOffset, &wm, &o.Epoch, &o.Owner,
		&o.Counters.Records, &o.Counters.Inserted, &o.Counters.Duplicates, &o.Counters.DeadLetters, &o.Counters.Anomalies, &o.UpdatedAt},
		func() error {
			o.Watermark = time.Time{}
			if wm != nil {
				o.Watermark = wm.UTC()
			}
			o.UpdatedAt = o.UpdatedAt.UTC()
			out[o.Partition] = o
			return nil
		})
	return out, err
}

// StreamOffsets reads the committed state of every partition of topic that
// has one. A partition without a row was never claimed.
func StreamOffsets(ctx context.Context, q pgQuerier, topic string) (map[int32]StreamOffset, error) {
	rows, err := q.Query(ctx, `SELECT `+streamOffsetColumns+` FROM public.stream_offsets WHERE topic = $1`, topic)
	if err != nil {
		return nil, fmt.Errorf("read stream offsets of %s: %w", topic, err)
	}
	out, err := scanStreamOffsets(rows)
	if err != nil {
		return nil, fmt.Errorf("read stream offsets of %s: %w", topic, err)
	}
	return out, nil
}

// StreamReading is a decoded, accepted reading of a batch, staged for
// insertion, with the record it came from and the anomaly reasons the
// transform gave it (nil when none fired).
type StreamReading struct {
	Partition int32
	Offset    int64
	reading.Reading
	Reasons []string
}

// DeadLetter is one quarantined record.
type DeadLetter struct {
	Partition  int32
	Offset     int64
	Key        []byte
	Raw        []byte
	Reason     string
	Error      string
	RecordTime time.Time
}

// OffsetAdvance is what a batch commits for one partition: the offset after
// its last record, the partition's watermark after it, and the counters it
// adds.
type OffsetAdvance struct {
	Partition int32
	Epoch     int64 // the lease's epoch: the commit is fenced on it
	Expected  int64 // next_offset as the lease last committed or claimed it
	Next      int64
	Watermark time.Time
	// Records and in-batch Duplicates (readings repeated within the batch,
	// never staged) as the lease counted them; Commit sets the rest from
	// what the database actually added.
	Counters StreamCounters
}

// StreamBatch is one micro-batch. Readings must be unique on
// (DeviceID, Time): the lease drops repeats within a batch before staging.
type StreamBatch struct {
	Readings    []StreamReading
	DeadLetters []DeadLetter
	Offsets     []OffsetAdvance
}

// StreamSink is the database side of one consumer lease: a dedicated
// connection with the temporary staging table.
type StreamSink struct {
	conn  *pgx.Conn
	topic string
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

// OpenStreamSink opens a connection of its own (not one of the pool's, so
// long-lived leases never starve the batch activities) with the pool's
// settings, and creates the staging table on it.
func OpenStreamSink(ctx context.Context, pool *pgxpool.Pool, topic string) (*StreamSink, error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("stream sink: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, createStreamStage); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("stream sink: create staging table: %w", err)
	}
	return &StreamSink{conn: conn, topic: topic, lastWindow: map[string]int64{}}, nil
}

// Close closes the connection; the staging table goes with it.
func (s *StreamSink) Close(ctx context.Context) error { return s.conn.Close(ctx) }

// Offsets reads the committed state of the topic's partitions without
// claiming anything (test mode).
func (s *StreamSink) Offsets(ctx context.Context) (map[int32]StreamOffset, error) {
	return StreamOffsets(ctx, s.conn, s.topic)
}

// Claim starts a lease on partitions: in one transaction it creates the
// missing stream_offsets rows (next_offset 0, the earliest offset) and
// increments the lease epoch of each, recording owner. It returns the new
// state of each partition; from now on only commits with these epochs
// succeed, so every earlier lease of these partitions is fenced.
func (s *StreamSink) Claim(ctx context.Context, partitions []int32, owner string) (map[int32]StreamOffset, error) {
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO public.stream_offsets (topic, partition)
		SELECT $1, p FROM unnest($2::integer[]) AS p
		ON CONFLICT (topic, partition) DO NOTHING`, s.topic, partitions); err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	rows, err := tx.Query(ctx, `UPDATE public.stream_offsets
		SET lease_epoch = lease_epoch + 1, lease_owner = $3, updated_at = now()
		WHERE topic = $1 AND partition = ANY($2::integer[])
		RETURNING `+streamOffsetColumns, s.topic, partitions, owner)
	if err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	out, err := scanStreamOffsets(rows)
	if err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	if len(out) != len(partitions) {
		return nil, fmt.Errorf("claim partitions %v: %d rows updated", partitions, len(out))
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	return out, nil
}

// RecentReadings returns the stored readings of devices in (until − window,
// until], ordered by device and time, for warming the transform state of
// devices a lease sees for the first time.
func (s *StreamSink) RecentReadings(ctx context.Context, devices []string, until time.Time, window time.Duration) ([]reading.Reading, error) {
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

// The window aggregates: value::numeric is PostgreSQL's float8 → numeric
// cast (15 significant digits, modelled exactly by internal/window);
// numeric * numeric is exact (numeric ^ 2 is not). date_bin does not depend
// on the session time zone, unlike date_trunc on timestamptz.
const windowSelect = `SELECT w, w + interval '1 minute', device_id, count(*), count(value),
	       coalesce(sum(value::numeric), 0), coalesce(sum(value::numeric * value::numeric), 0),
	       min(value), max(value), count(*) FILTER (WHERE reasons IS NOT NULL), now()
	FROM (SELECT date_bin(interval '1 minute', time, timestamptz '2000-01-01 00:00:00+00') AS w, * FROM %s) l
	%s
	GROUP BY w, device_id`

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

// landSQL is the general path: insert the staged readings, ignoring those
// already stored, and merge ONLY the newly inserted ones into the windows
// and the anomalies. It returns, per partition, the rows inserted and how
// many of them were flagged.
var landSQL = `
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
	` + fmt.Sprintf(windowSelect, "landed", "") + `
	` + mergeWindows + `
)
SELECT partition, count(*), count(*) FILTER (WHERE reasons IS NOT NULL) FROM landed GROUP BY partition`

// The staged part of the fast path (landDirect): windows of several readings
// of the batch that cannot exist yet are inserted without merging; windows
// that may exist are merged.
var (
	fastNewWindowsSQL    = `INSERT INTO public.sensor_readings_stream_agg ` + windowColumns + "\n" + fmt.Sprintf(windowSelect, "stream_stage", "WHERE NOT merge AND NOT single")
	fastMergeWindowsSQL  = `INSERT INTO public.sensor_readings_stream_agg AS a ` + windowColumns + "\n" + fmt.Sprintf(windowSelect, "stream_stage", "WHERE merge") + "\n" + mergeWindows
	errFastPathConflicts = errors.New("stored readings or windows in the batch")
)

// advanceSQL writes the dead letters (a record already quarantined is not
// added again) and moves the offsets, watermarks and counters of the
// batch's partitions, fenced: a row only moves when it still carries the
// lease's epoch and the offset the lease last committed. It returns each
// moved partition with the dead letters actually added.
const advanceSQL = `WITH dead AS (
	INSERT INTO public.stream_dead_letters (topic, partition, "offset", key, raw, reason, error, record_time)
	SELECT $1, * FROM unnest($11::integer[], $12::bigint[], $13::bytea[], $14::bytea[], $15::text[], $16::text[], $17::timestamptz[])
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
func (s *StreamSink) Commit(ctx context.Context, b *StreamBatch) (map[int32]StreamCounters, error) {
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream batch: begin: %w", err)
	}
	defer tx.Rollback(ctx)

	// landed: per partition, readings inserted and flagged among them.
	landed := map[int32]StreamCounters{}
	if len(b.Readings) > 0 {
		perWindow := make(map[windowKey]int, len(b.Readings))
		for _, r := range b.Readings {
			perWindow[windowKey{r.DeviceID, window.Start(r.Time).UnixMicro()}]++
		}
		err := s.landDirect(ctx, tx, b.Readings, perWindow)
		if errors.Is(err, errFastPathConflicts) {
			// The general path works from the whole batch staged.
			if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT land`); rerr != nil {
				return nil, fmt.Errorf("stream batch: %w", rerr)
			}
			if serr := s.stage(ctx, tx, b.Readings, perWindow); serr != nil {
				return nil, serr
			}
		}
		switch {
		case err == nil:
			for _, r := range b.Readings {
				c := landed[r.Partition]
				c.Inserted++
				if r.Reasons != nil {
					c.Anomalies++
				}
				landed[r.Partition] = c
			}
		case errors.Is(err, errFastPathConflicts):
			rows, err := tx.Query(ctx, landSQL, s.topic)
			if err != nil {
				return nil, fmt.Errorf("stream batch: land readings: %w", err)
			}
			var p int32
			var inserted, flagged int64
			if _, err := pgx.ForEachRow(rows, []any{&p, &inserted, &flagged}, func() error {
				landed[p] = StreamCounters{Inserted: inserted, Anomalies: flagged}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("stream batch: land readings: %w", err)
			}
		default:
			return nil, err
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
		if w := window.Start(r.Time).UnixMicro(); w > s.lastWindow[r.DeviceID] {
			s.lastWindow[r.DeviceID] = w
		}
	}
	out := make(map[int32]StreamCounters, len(b.Offsets))
	for _, o := range b.Offsets {
		c := o.Counters
		l := landed[o.Partition]
		c.Inserted, c.Anomalies, c.DeadLetters = l.Inserted, l.Anomalies, moved[o.Partition]
		c.Duplicates += staged[o.Partition] - l.Inserted
		out[o.Partition] = c
	}
	return out, nil
}

// stage copies readings into the connection's staging table.
func (s *StreamSink) stage(ctx context.Context, tx pgx.Tx, readings []StreamReading, perWindow map[windowKey]int) error {
	src := &stageSource{rows: readings, i: -1, lastWindow: s.lastWindow, perWindow: perWindow}
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
func (s *StreamSink) landDirect(ctx context.Context, tx pgx.Tx, readings []StreamReading, perWindow map[windowKey]int) error {
	if _, err := tx.Exec(ctx, `SAVEPOINT land`); err != nil {
		return fmt.Errorf("stream batch: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"public", "sensor_readings"},
		[]string{"time", "device_id", "value", "battery", "rssi", "source"}, &readingsSource{rows: readings, i: -1}); err != nil {
		return fastPathError("copy readings", err)
	}
	var singles, anomalies [][]any
	var rest []StreamReading
	for _, r := range readings {
		start := window.Start(r.Time)
		key := windowKey{r.DeviceID, start.UnixMicro()}
		last, seen := s.lastWindow[r.DeviceID]
		if merge := seen && key.start <= last; !merge && perWindow[key] == 1 {
			singles = append(singles, singleWindow(r, start))
		} else {
			rest = append(rest, r)
		}
		if r.Reasons != nil {
			anomalies = append(anomalies, []any{r.DeviceID, r.Time, nullableValue(r), r.Reasons, s.topic, r.Partition, r.Offset})
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
	batch.Queue(fastNewWindowsSQL)
	batch.Queue(fastMergeWindowsSQL)
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

// singleWindow is the windows-table row of a window holding one reading.
func singleWindow(r StreamReading, start time.Time) []any {
	row := []any{start, start.Add(window.Size), r.DeviceID, int64(1), int64(0), numeric(window.Decimal{}), numeric(window.Decimal{}), nil, nil, int64(0)}
	if r.ValueValid {
		d := window.FromFloat(r.Value)
		row[4], row[5], row[6], row[7], row[8] = int64(1), numeric(d), numeric(d.Mul(d)), r.Value, r.Value
	}
	if r.Reasons != nil {
		row[9] = int64(1)
	}
	return row
}

func numeric(d window.Decimal) pgtype.Numeric {
	coef, exp := d.Parts()
	return pgtype.Numeric{Int: coef, Exp: exp, Valid: true}
}

func nullableValue(r StreamReading) any {
	if r.ValueValid {
		return r.Value
	}
	return nil
}

// readingsSource streams a batch into sensor_readings.
type readingsSource struct {
	rows []StreamReading
	i    int
	row  [6]any
}

func (s *readingsSource) Next() bool { s.i++; return s.i < len(s.rows) }
func (s *readingsSource) Err() error { return nil }
func (s *readingsSource) Values() ([]any, error) {
	r := &s.rows[s.i]
	s.row[0], s.row[1], s.row[2], s.row[3], s.row[4], s.row[5] = r.Time, r.DeviceID, nullableValue(*r), r.Battery, r.RSSI, "stream"
	return s.row[:], nil
}

func fastPathError(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return errFastPathConflicts
	}
	return fmt.Errorf("stream batch: %s: %w", what, err)
}

func advanceArgs(topic string, b *StreamBatch, landed map[int32]StreamCounters, staged map[int32]int64) []any {
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
	for i, d := range b.DeadLetters {
		dParts[i], dOffs[i], keys[i], raws[i] = d.Partition, d.Offset, d.Key, d.Raw
		reasons[i], errs[i], times[i] = d.Reason, strings.ToValidUTF8(d.Error, "\uFFFD"), d.RecordTime
		if raws[i] == nil {
			raws[i] = []byte{}
		}
	}
	return []any{topic, parts, epochs, expected, next, wms, records, inserted, dups, anomalies,
		dParts, dOffs, keys, raws, reasons, errs, times}
}

// stageSource feeds the batch's readings to COPY, reusing one row buffer
// (pgx encodes each row before asking for the next). A reading is marked
// merge when its window is not later than the last window its device
// committed through this sink (that window may be stored already), and
// single when no other reading of the batch shares its window.
type stageSource struct {
	rows       []StreamReading
	i          int
	row        [10]any
	lastWindow map[string]int64
	perWindow  map[windowKey]int
}

// windowKey identifies a window of a device (start in Unix µs).
type windowKey struct {
	device string
	start  int64
}

func (s *stageSource) Next() bool {
	s.i++
	return s.i < len(s.rows)
}

func (s *stageSource) Values() ([]any, error) {
	r := &s.rows[s.i]
	s.row[0], s.row[1], s.row[2], s.row[3] = r.Partition, r.Offset, r.Time, r.DeviceID
	if r.ValueValid {
		s.row[4] = r.Value
	} else {
		s.row[4] = nil
	}
	s.row[5], s.row[6] = r.Battery, r.RSSI
	if r.Reasons != nil {
		s.row[7] = r.Reasons
	} else {
		s.row[7] = nil
	}
	start := window.Start(r.Time).UnixMicro()
	last, seen := s.lastWindow[r.DeviceID]
	s.row[8] = seen && start <= last
	s.row[9] = s.perWindow[windowKey{r.DeviceID, start}] == 1
	return s.row[:], nil
}

func (s *stageSource) Err() error { return nil }
