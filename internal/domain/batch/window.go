// Package batch holds the rules of a batch run that are about time and
// state, in one place: which UTC day a run processes, how test mode limits
// it, how the window and its lookback split into extract chunks and
// transform pages, which hours the feature export covers, hour alignment,
// and the statuses a run goes through. It is pure.
package batch

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of a run: the configuration (BATCH_*), the workflow input and
// the starter start from these.
const (
	// DefaultChunk is the time span of one readings-extract activity.
	DefaultChunk = 6 * time.Hour
	// DefaultLookback is the history read before the window so the
	// trailing-hour statistics of its first readings are warm.
	DefaultLookback = time.Hour
	// DefaultShards is how many device shards Transform and Load fan out to.
	DefaultShards = 8
	// TestModeWindow and TestModeMaxDevices limit a test-mode run.
	TestModeWindow     = time.Hour
	TestModeMaxDevices = 10
	TestModeMaxShards  = 2
	// Page is the time span of the staged readings the transform reads in
	// one query, so a read never holds a connection for long.
	Page = 24 * time.Hour
	// Day is one UTC day.
	Day = 24 * time.Hour
)

// Window is a half-open time range [Start, End).
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Duration is End − Start.
func (w Window) Duration() time.Duration { return w.End.Sub(w.Start) }

// Contains reports whether t is in the window.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// DayBefore is the UTC day before the day of t: what a run scheduled (or,
// unscheduled, started) at t processes. Basing it on the scheduled time,
// not the clock, makes late runs and backfills process the right day.
func DayBefore(t time.Time) Window {
	day := t.UTC().Truncate(Day)
	return Window{Start: day.Add(-Day), End: day}
}

// UTCDay is the UTC day that starts at (the UTC day of) d.
func UTCDay(d time.Time) Window {
	day := d.UTC().Truncate(Day)
	return Window{Start: day, End: day.Add(Day)}
}

// ErrInvalidWindow is wrapped by Resolve's errors.
var ErrInvalidWindow = errors.New("invalid window")

// Resolve applies the window rules of a run's input: an empty window is
// the day before ref (the scheduled or start time), a given one needs both
// bounds in order, and test mode keeps only its first TestModeWindow.
func Resolve(start, end, ref time.Time, testMode bool) (Window, error) {
	w := Window{Start: start.UTC(), End: end.UTC()}
	switch {
	case w.Start.IsZero() && w.End.IsZero():
		w = DayBefore(ref)
	case w.Start.IsZero() || w.End.IsZero():
		return w, fmt.Errorf("%w: window_start and window_end must be given together", ErrInvalidWindow)
	case !w.Start.Before(w.End):
		return w, fmt.Errorf("%w: window start %s is not before end %s", ErrInvalidWindow, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
	}
	if testMode {
		w = w.ForTestMode()
	}
	return w, nil
}

// ForTestMode keeps the first TestModeWindow of w.
func (w Window) ForTestMode() Window {
	if w.Duration() > TestModeWindow {
		w.End = w.Start.Add(TestModeWindow)
	}
	return w
}

// Chunk is one time slice of the readings to extract.
type Chunk struct {
	ID   int       `json:"id"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Chunks splits [Start − lookback, End) into chunks of size, the last one
// shorter.
func (w Window) Chunks(lookback, size time.Duration) []Chunk {
	var out []Chunk
	from := w.Start.Add(-lookback)
	for id := 0; from.Before(w.End); id++ {
		to := earlier(from.Add(size), w.End)
		out = append(out, Chunk{ID: id, From: from, To: to})
		from = to
	}
	return out
}

// Pages splits [from, End) into Page-long windows, the last one shorter.
func (w Window) Pages(from time.Time) []Window {
	var out []Window
	for p := from; p.Before(w.End); p = p.Add(Page) {
		out = append(out, Window{Start: p, End: earlier(p.Add(Page), w.End)})
	}
	return out
}

// FeatureData is the span of facts the feature export reads: the label of
// an hour looks at the next hour, so the last hour of a window gets its row
// from the next run, and the first row of this run is the previous
// window's last hour, whose features need the hour before it.
func (w Window) FeatureData() Window { return Window{Start: w.Start.Add(-2 * time.Hour), End: w.End} }

// FeatureHours are the hours [Start − 1h, End − 1h) the feature export
// writes a row for.
func (w Window) FeatureHours() Window {
	return Window{Start: w.Start.Add(-time.Hour), End: w.End.Add(-time.Hour)}
}

// Hours is w widened to whole hours: the hourly buckets it touches.
func (w Window) Hours() Window { return Window{Start: HourFloor(w.Start), End: HourCeil(w.End)} }

// HourFloor is the start of t's hour (UTC).
func HourFloor(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// HourCeil is the first hour boundary at or after t.
func HourCeil(t time.Time) time.Time {
	if f := HourFloor(t); !f.Equal(t.UTC()) {
		return f.Add(time.Hour)
	}
	return t.UTC()
}

// ScheduleTimes turns the data days [first, last] (inclusive, UTC dates)
// into the schedule times whose runs process them: a run scheduled on day
// D+1 processes day D, so the range is [first + 1 day, last + 2 days).
func ScheduleTimes(first, last time.Time) Window {
	return Window{Start: first.UTC().Truncate(Day).Add(Day), End: last.UTC().Truncate(Day).Add(2 * Day)}
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
