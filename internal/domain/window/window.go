// Package window defines the stream's event-time windows: tumbling windows
// in UTC of a configured Length (1 minute by default, STREAM_WINDOW), their
// mergeable aggregates (count, exact sum and sum of squares, min, max) and
// the per-partition watermark that decides when an event is too late for
// its window. It is the specification of what the SQL sink stores in
// public.sensor_readings_stream_agg, and does no I/O.
package window

import (
	"errors"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// ReasonLate is the dead-letter reason for an event whose window has closed.
const ReasonLate = reading.ReasonLate

// Default is the window length when none is configured.
const Default = time.Minute

// Length is the length of the tumbling windows. It is a whole number of
// seconds that divides one hour, so windows never straddle an hour (the
// reconciliation rolls them up per hour) and start on the same instants as
// PostgreSQL's date_bin from 2000-01-01 00:00 UTC. The zero Length is
// Default.
type Length time.Duration

// Duration is the length as a time.Duration, Default for the zero Length.
func (l Length) Duration() time.Duration {
	if l == 0 {
		return Default
	}
	return time.Duration(l)
}

func (l Length) String() string { return l.Duration().String() }

// Validate reports why l cannot be a window length. The zero Length is
// valid: it is Default.
func (l Length) Validate() error {
	d := time.Duration(l)
	switch {
	case d == 0:
		return nil
	case d < 0:
		return errors.New("must be positive")
	case d%time.Second != 0:
		return errors.New("must be a whole number of seconds")
	case time.Hour%d != 0:
		return errors.New("must divide one hour evenly (such as 30s, 1m, 2m, 5m, 10m, 15m, 30m or 1h)")
	}
	return nil
}

// Start returns the start of the window holding t: t truncated to the
// length, in UTC. Windows are half-open, [Start, End).
func (l Length) Start(t time.Time) time.Time { return t.UTC().Truncate(l.Duration()) }

// End returns the exclusive end of the window holding t, Start(t) + l.
func (l Length) End(t time.Time) time.Time { return l.Start(t).Add(l.Duration()) }

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

// Late reports whether an event at t is too late: its window of length win
// closed, that is win.End(t) + allowed <= watermark. Exactly at the
// boundary is late: with 1-minute windows and no allowed lateness, an event
// at 14:01:00 closes the window [14:00, 14:01). A negative allowed lateness
// counts as zero.
func (w Watermark) Late(t time.Time, win Length, allowed time.Duration) bool {
	if w.max.IsZero() {
		return false
	}
	allowed = max(allowed, 0)
	return !win.End(t).Add(allowed).After(w.max)
}

// Accept is the consumer's step for one decoded event: it reports whether
// the event at t is on time for its window of length win and, if so,
// observes it. A late event leaves the
// watermark unchanged.
func (w *Watermark) Accept(t time.Time, win Length, allowed time.Duration) bool {
	if w.Late(t, win, allowed) {
		return false
	}
	w.Observe(t)
	return true
}
