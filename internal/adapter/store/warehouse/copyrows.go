package warehouse

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// copyRows is a COPY … FROM STDIN (FORMAT binary) stream of transform
// output, written here rather than by pgx's CopyFrom: pgx plans and boxes
// every value of every row through its type map, which was a quarter of
// the worker's CPU in the batch; the fact row's types are fixed and few.
// The format: a header, then per row the field count and each field as its
// byte length (-1 for NULL) and its binary value, then a trailer.
type copyRows struct{ b []byte }

// copyBuffers keeps the streams' memory between copies.
var copyBuffers = sync.Pool{New: func() any { return &copyRows{} }}

const (
	// pgEpochMicros is 2000-01-01 00:00 UTC, PostgreSQL's timestamp
	// epoch, in Unix microseconds.
	pgEpochMicros = 946_684_800_000_000
	textOID       = 25
)

func (c *copyRows) reset() {
	c.b = append(c.b[:0], "PGCOPY\n\xff\r\n\x00"...)
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // flags
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // header extension length
}

func (c *copyRows) row(fields int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(fields)) }
func (c *copyRows) null()          { c.b = binary.BigEndian.AppendUint32(c.b, math.MaxUint32) }
func (c *copyRows) end()           { c.b = binary.BigEndian.AppendUint16(c.b, math.MaxUint16) }
func (c *copyRows) length(n int)   { c.b = binary.BigEndian.AppendUint32(c.b, uint32(n)) }
func (c *copyRows) int4(v int32)   { c.length(4); c.b = binary.BigEndian.AppendUint32(c.b, uint32(v)) }
func (c *copyRows) float8(v float64) {
	c.length(8)
	c.b = binary.BigEndian.AppendUint64(c.b, math.Float64bits(v))
}

func (c *copyRows) text(s string) {
	c.length(len(s))
	c.b = append(c.b, s...)
}

func (c *copyRows) bool(v bool) {
	c.length(1)
	if v {
		c.b = append(c.b, 1)
	} else {
		c.b = append(c.b, 0)
	}
}

func (c *copyRows) timestamptz(t time.Time) {
	c.length(8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(t.UnixMicro()-pgEpochMicros))
}

// textArray writes a one-dimensional text[] without NULLs (an empty one
// has no dimension).
func (c *copyRows) textArray(a []string) {
	n := 12
	if len(a) > 0 {
		n += 8
	}
	for _, s := range a {
		n += 4 + len(s)
	}
	c.length(n)
	dims := uint32(0)
	if len(a) > 0 {
		dims = 1
	}
	c.b = binary.BigEndian.AppendUint32(c.b, dims)
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // no NULL element
	c.b = binary.BigEndian.AppendUint32(c.b, textOID)
	if len(a) > 0 {
		c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(a)))
		c.b = binary.BigEndian.AppendUint32(c.b, 1) // lower bound
	}
	for _, s := range a {
		c.text(s)
	}
}

func (c *copyRows) optFloat8(v float64, ok bool) {
	if ok {
		c.float8(v)
	} else {
		c.null()
	}
}

// enriched writes the values of EnrichedColumns of e.
func (c *copyRows) enriched(e *transform.Enriched) {
	st := e.Rolling
	c.timestamptz(e.Time)
	c.text(e.DeviceID)
	c.optFloat8(e.Value, e.ValueValid)
	c.float8(e.Battery)
	c.int4(e.RSSI)
	for _, s := range [...]string{e.TypeCode, e.Metric, e.Unit, e.LocationID, e.Site, e.Building} {
		c.text(s)
	}
	c.int4(int32(e.Floor))
	c.text(e.Zone)
	c.int4(int32(st.Count))
	c.optFloat8(st.Mean, st.Count > 0)
	c.optFloat8(st.Std, st.Count > 0 && st.HasStd)
	c.optFloat8(st.Min, st.Count > 0)
	c.optFloat8(st.Max, st.Count > 0)
	c.optFloat8(st.Z, st.Count > 0 && st.HasZ)
	c.bool(e.Anomaly)
	c.textArray(e.Reasons)
	c.float8(e.Quality)
	c.textArray(e.QualityFlags)
}

// CopyTransformed writes one shard's transform output within tx: to
// staging.enriched, or, when direct, straight into the fact table as
// this run's rows (a first load that needs no staging; see
// activities.Batch.Transform).
func (r Run) CopyTransformed(ctx context.Context, tx pgx.Tx, shard int, rows []transform.Enriched, direct bool) (copied int64, err error) {
	c := copyBuffers.Get().(*copyRows)
	defer copyBuffers.Put(c)
	c.reset()
	table, cols := pgx.Identifier{"staging", "enriched"}, append([]string{"run_key", "shard"}, EnrichedColumns...)
	if direct {
		table, cols = pgx.Identifier{"dwh", "fact_sensor_readings_enriched"}, append(append([]string(nil), EnrichedColumns...), "run_id")
	}
	for i := range rows {
		c.row(len(cols))
		if !direct {
			c.text(r.ID)
			c.int4(int32(shard))
		}
		c.enriched(&rows[i])
		if direct {
			c.text(r.ID)
		}
	}
	c.end()
	// The connection's tracers (the log, -sqlprofile) see the copy as
	// they see pgx's.
	conn := tx.Conn()
	var tag pgconn.CommandTag
	if t, ok := conn.Config().Tracer.(pgx.CopyFromTracer); ok {
		ctx = t.TraceCopyFromStart(ctx, conn, pgx.TraceCopyFromStartData{TableName: table, ColumnNames: cols})
		defer func() { t.TraceCopyFromEnd(ctx, conn, pgx.TraceCopyFromEndData{CommandTag: tag, Err: err}) }()
	}
	tag, err = conn.PgConn().CopyFrom(ctx, bytes.NewReader(c.b), copySQL(table, cols))
	return tag.RowsAffected(), err
}

func copySQL(table pgx.Identifier, cols []string) string {
	return fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", table.Sanitize(), strings.Join(cols, ", "))
}
