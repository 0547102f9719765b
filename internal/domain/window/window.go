// Package window defines the stream's event-time windows: tumbling 1-minute
// windows in UTC, their mergeable aggregates (count, exact sum and sum of
// squares, min, max) and the per-partition watermark that decides when an
// event is too late for its window. It is the specification of what the SQL
// sink stores in public.sensor_readings_stream_agg, and does no I/O.
package window

import (
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// Size is the length of every window.
const Size = time.Minute

// ReasonLate is the dead-letter reason for an event whose window has closed.
const ReasonLate = reading.ReasonLate

// Start returns the start of the window holding t: t truncated to the
// minute, in UTC. Windows are half-open, [Start, End).
func Start(t time.Time) time.Time { return t.UTC().Truncate(Size) }

// End returns the exclusive end of the window holding t, Start(t) + Size.
func End(t time.Time) time.Time { return Start(t).Add(Size) }

// Watermark is the greatest event time accepted so far in one partition.
// The zero value has seen nothing and calls nothing late.
//
// A window closes when the watermark reaches its end plus the allowed
// lateness; events for a closed window are late. Only accepted events move
// the watermark: a late event cannot (it is older than the watermark), and a
// message the decoder rejected must not (its time is not trusted). The
// watermark is committed in the same transaction as the partition's offsets
// and restored with them, so a replay after a crash classifies every
// message exactly as the first attempt did.
type Watermark struct {
	max time.Time
}

// RestoreWatermark returns a watermark at t, as committed earlier; the zero
// time restores one that has seen nothing.
func RestoreWatermark(t time.Time) Watermark {
	if t.IsZero() {
		return Watermark{}
	}
	return Watermark{max: t.UTC().Round(0)}
}

// Time is the watermark, the zero time when nothing was observed. Persist it
// with the offsets (NULL for the zero time). A timestamptz column keeps
// microseconds: since the decoder truncates event times to the microsecond,
// nothing is lost.
func (w Watermark) Time() time.Time { return w.max }

// IsZero reports whether nothing was observed.
func (w Watermark) IsZero() bool { return w.max.IsZero() }

// Observe advances the watermark to t if t is later.
func (w *Watermark) Observe(t time.Time) {
	if t.After(w.max) {
		w.max = t.UTC().Round(0) // no monotonic reading: event times are wall times
	}
}

// Late reports whether an event at t is too late: its window closed, that is
// End(t) + allowed <= watermark. Exactly at the boundary is late: with no
// allowed lateness, an event at 14:01:00 closes the window [14:00, 14:01).
// A negative allowed lateness counts as zero.
func (w Watermark) Late(t time.Time, allowed time.Duration) bool {
	if w.max.IsZero() {
		return false
	}
	allowed = max(allowed, 0)
	return !End(t).Add(allowed).After(w.max)
}

// Accept is the consumer's step for one decoded event: it reports whether
// the event at t is on time and, if so, observes it. A late event leaves the
// watermark unchanged.
func (w *Watermark) Accept(t time.Time, allowed time.Duration) bool {
	if w.Late(t, allowed) {
		return false
	}
	w.Observe(t)
	return true
}
