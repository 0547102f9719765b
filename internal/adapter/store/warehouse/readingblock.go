package warehouse

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// readingBlock is one row of staging.readings as the transform reads it:
// a device's readings of one staged range, decoded from the binary format
// of its four arrays (times, vals, batteries, rssis), which the extract's
// array_agg fills in one order. order lists the readings by time.
type readingBlock struct {
	micros            []int64 // since 2000-01-01 UTC, as PostgreSQL keeps timestamptz
	value, battery    []float64
	valueOK           []bool
	batteryOK, rssiOK []bool
	rssi              []int32
	order             []int
}

// ErrInvalidStagedReadings means a staged block cannot be read as
// readings: a time twice for a device (the source has no unique key on
// device and time), or arrays that do not match. Retrying reads the same
// block, so it is a data error.
var ErrInvalidStagedReadings = errors.New("invalid staged readings")

// blockPool keeps decoded blocks' slices between reads.
var blockPool = sync.Pool{New: func() any { return new(readingBlock) }}

// The element types of the block's arrays.
const (
	oidInt4        = 23
	oidFloat8      = 701
	oidTimestamptz = 1184
)

// y2kMicros is 2000-01-01 UTC in microseconds since the Unix epoch.
const y2kMicros = 946_684_800_000_000

// decode reads the block from the raw values of the row (binary format),
// reusing the block's slices.
func (b *readingBlock) decode(raw [][]byte) error {
	if len(raw) != 4 {
		return fmt.Errorf("staged block: %d columns, want 4", len(raw))
	}
	b.micros = b.micros[:0]
	err := eachElem(raw[0], oidTimestamptz, 8, func(v []byte) error {
		if v == nil {
			return fmt.Errorf("a staged reading without a time")
		}
		b.micros = append(b.micros, int64(binary.BigEndian.Uint64(v)))
		return nil
	})
	if err != nil {
		return err
	}
	b.value, b.valueOK, err = floats(raw[1], b.value[:0], b.valueOK[:0])
	if err != nil {
		return err
	}
	b.battery, b.batteryOK, err = floats(raw[2], b.battery[:0], b.batteryOK[:0])
	if err != nil {
		return err
	}
	b.rssi, b.rssiOK = b.rssi[:0], b.rssiOK[:0]
	err = eachElem(raw[3], oidInt4, 4, func(v []byte) error {
		if v == nil {
			b.rssi, b.rssiOK = append(b.rssi, 0), append(b.rssiOK, false)
			return nil
		}
		b.rssi, b.rssiOK = append(b.rssi, int32(binary.BigEndian.Uint32(v))), append(b.rssiOK, true)
		return nil
	})
	if err != nil {
		return err
	}
	n := len(b.micros)
	if len(b.value) != n || len(b.battery) != n || len(b.rssi) != n {
		return fmt.Errorf("staged block: arrays of %d, %d, %d and %d elements", n, len(b.value), len(b.battery), len(b.rssi))
	}
	b.order = b.order[:0]
	for i := range n {
		b.order = append(b.order, i)
	}
	sorted := true
	for i := 1; i < n; i++ {
		if b.micros[i] <= b.micros[i-1] {
			sorted = false
			break
		}
	}
	if !sorted {
		slices.SortFunc(b.order, func(i, j int) int { return cmp.Compare(b.micros[i], b.micros[j]) })
		for k := 1; k < n; k++ {
			if b.micros[b.order[k]] == b.micros[b.order[k-1]] {
				return fmt.Errorf("staged block: two readings at %s", b.time(b.order[k]).UTC().Format(time.RFC3339Nano))
			}
		}
	}
	return nil
}

// time is the time of reading i, as pgx decodes a timestamptz.
func (b *readingBlock) time(i int) time.Time {
	us := b.micros[i] + y2kMicros
	return time.Unix(us/1_000_000, (us%1_000_000)*1000)
}

// floats appends the elements of a float8 array, NULLs as 0 and not ok.
func floats(raw []byte, vals []float64, ok []bool) ([]float64, []bool, error) {
	err := eachElem(raw, oidFloat8, 8, func(v []byte) error {
		if v == nil {
			vals, ok = append(vals, 0), append(ok, false)
			return nil
		}
		vals, ok = append(vals, math.Float64frombits(binary.BigEndian.Uint64(v))), append(ok, true)
		return nil
	})
	return vals, ok, err
}

// eachElem calls fn with each element of a one-dimensional array in
// PostgreSQL's binary format (nil for NULL), checking the element type and
// width.
func eachElem(raw []byte, oid uint32, width int, fn func([]byte) error) error {
	if raw == nil {
		return fmt.Errorf("staged block: a NULL array")
	}
	if len(raw) < 12 {
		return fmt.Errorf("staged block: an array of %d bytes", len(raw))
	}
	ndim := binary.BigEndian.Uint32(raw)
	if got := binary.BigEndian.Uint32(raw[8:]); got != oid {
		return fmt.Errorf("staged block: array of type %d, want %d", got, oid)
	}
	switch ndim {
	case 0:
		return nil
	case 1:
	default:
		return fmt.Errorf("staged block: an array of %d dimensions", ndim)
	}
	if len(raw) < 20 {
		return fmt.Errorf("staged block: an array of %d bytes", len(raw))
	}
	n := int(int32(binary.BigEndian.Uint32(raw[12:])))
	p := raw[20:]
	for range n {
		if len(p) < 4 {
			return fmt.Errorf("staged block: a truncated array")
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l < 0 {
			if err := fn(nil); err != nil {
				return err
			}
			continue
		}
		if int(l) != width || len(p) < width {
			return fmt.Errorf("staged block: an element of %d bytes, want %d", l, width)
		}
		if err := fn(p[:width]); err != nil {
			return err
		}
		p = p[width:]
	}
	if len(p) != 0 {
		return fmt.Errorf("staged block: %d bytes after the last element", len(p))
	}
	return nil
}
