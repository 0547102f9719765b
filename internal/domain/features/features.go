// Package features turns enriched readings into per device-hour feature rows
// for machine learning: hourly value statistics and trend, anomaly count and
// mean quality, the previous hour's mean, calendar fields, and a label that
// says whether the NEXT hour contains an anomaly. It is pure and leak-free by
// construction: the features of hour h are computed from hours h and h−1
// only, and only the label looks at hour h+1.
package features

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/quality"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// HourAgg accumulates the readings of one device in one UTC hour. Values
// are accumulated with Welford's updates, so the statistics stay exact
// whatever the level of the signal.
type HourAgg struct {
	DeviceID   string
	Hour       time.Time // bucket start, UTC
	DeviceType string
	Zone       string

	Count        int     // readings (duplicates excluded), with or without value
	ValueCount   int     // readings with a value
	AnomalyCount int     // readings with at least one anomaly reason
	QualitySum   float64 // Σ quality score over the Count readings

	mean, m2 float64 // of the values
	min, max float64
	meanX    float64 // x = minutes since Hour
	cxx, cxy float64 // co-moments for the least-squares slope
}

// NewHourAgg starts the aggregate of deviceID for the hour containing t.
func NewHourAgg(deviceID, deviceType, zone string, t time.Time) HourAgg {
	return HourAgg{DeviceID: deviceID, Hour: HourOf(t), DeviceType: deviceType, Zone: zone}
}

// HourOf is the start of the UTC hour containing t.
func HourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// Add accumulates one enriched reading of the aggregate's device and hour.
// Duplicates are skipped: they repeat a reading already counted.
func (a *HourAgg) Add(e *transform.Enriched) {
	if e.FlagSet.Has(quality.Duplicate) {
		return
	}
	a.Count++
	a.QualitySum += e.Quality
	if e.Anomaly {
		a.AnomalyCount++
	}
	if !e.ValueValid {
		return
	}
	a.ValueCount++
	n := float64(a.ValueCount)
	x := float64(e.Time.Sub(a.Hour)) / float64(time.Minute)
	y := e.Value
	if a.ValueCount == 1 {
		a.min, a.max = y, y
	}
	a.min, a.max = min(a.min, y), max(a.max, y)
	dx := x - a.meanX
	dy := y - a.mean
	a.meanX += dx / n
	a.mean += dy / n
	a.m2 += dy * (y - a.mean)
	a.cxx += dx * (x - a.meanX)
	a.cxy += dx * (y - a.mean)
}

// HourState is everything an HourAgg accumulated, to keep it outside the
// process and carry on from it: the transform stages the device-hours of
// its output, and the export builds the features from them.
type HourState struct {
	Count, ValueCount, AnomalyCount int
	QualitySum                      float64
	ValueMean, ValueM2              float64 // Welford's mean and sum of squared deviations
	ValueMin, ValueMax              float64
	MinuteMean                      float64 // of x = minutes since the hour
	MinuteM2, MinuteValueCo         float64 // the co-moments of the slope: Σdx², Σdx·dy
}

// State returns what a accumulated.
func (a *HourAgg) State() HourState {
	return HourState{Count: a.Count, ValueCount: a.ValueCount, AnomalyCount: a.AnomalyCount, QualitySum: a.QualitySum,
		ValueMean: a.mean, ValueM2: a.m2, ValueMin: a.min, ValueMax: a.max, MinuteMean: a.meanX, MinuteM2: a.cxx, MinuteValueCo: a.cxy}
}

// HourAggOf is the aggregate of deviceID's hour that accumulated s.
func HourAggOf(deviceID, deviceType, zone string, hour time.Time, s HourState) HourAgg {
	a := NewHourAgg(deviceID, deviceType, zone, hour)
	a.Count, a.ValueCount, a.AnomalyCount, a.QualitySum = s.Count, s.ValueCount, s.AnomalyCount, s.QualitySum
	a.mean, a.m2, a.min, a.max = s.ValueMean, s.ValueM2, s.ValueMin, s.ValueMax
	a.meanX, a.cxx, a.cxy = s.MinuteMean, s.MinuteM2, s.MinuteValueCo
	return a
}

// Mean of the values; ok is false without values.
func (a *HourAgg) Mean() (mean float64, ok bool) { return a.mean, a.ValueCount > 0 }

// Std is the sample standard deviation (n − 1) of the values; ok is false
// with fewer than two values.
func (a *HourAgg) Std() (std float64, ok bool) {
	if a.ValueCount < 2 {
		return 0, false
	}
	return math.Sqrt(max(a.m2, 0) / float64(a.ValueCount-1)), true
}

// Min of the values; ok is false without values.
func (a *HourAgg) Min() (float64, bool) { return a.min, a.ValueCount > 0 }

// Max of the values; ok is false without values.
func (a *HourAgg) Max() (float64, bool) { return a.max, a.ValueCount > 0 }

// Slope is the least-squares slope of value against minutes within the
// hour (units per minute); ok is false unless values come at two different
// times at least.
func (a *HourAgg) Slope() (slope float64, ok bool) {
	if a.ValueCount < 2 || !(a.cxx > 0) {
		return 0, false
	}
	return a.cxy / a.cxx, true
}

// MeanQuality is the mean quality score of the hour's readings.
func (a *HourAgg) MeanQuality() float64 {
	if a.Count == 0 {
		return 0
	}
	return a.QualitySum / float64(a.Count)
}

// Aggregator groups enriched readings of any number of devices, in any
// order, into device-hours.
type Aggregator struct {
	index map[hourKey]int
	hours []HourAgg
	last  int // index of the most recent aggregate: consecutive readings usually share it
}

type hourKey struct {
	device string
	hour   int64 // Unix seconds of the hour start
}

// NewAggregator returns an empty aggregator.
func NewAggregator() *Aggregator { return &Aggregator{index: map[hourKey]int{}, last: -1} }

// Add accumulates e into its device-hour.
func (g *Aggregator) Add(e *transform.Enriched) {
	hour := HourOf(e.Time)
	if g.last >= 0 {
		if a := &g.hours[g.last]; a.DeviceID == e.DeviceID && a.Hour.Equal(hour) {
			a.Add(e)
			return
		}
	}
	k := hourKey{e.DeviceID, hour.Unix()}
	i, ok := g.index[k]
	if !ok {
		i = len(g.hours)
		g.hours = append(g.hours, NewHourAgg(e.DeviceID, e.TypeCode, e.Zone, hour))
		g.index[k] = i
	}
	g.last = i
	g.hours[i].Add(e)
}

// Hours returns the aggregates sorted by device and hour.
func (g *Aggregator) Hours() []HourAgg {
	out := slices.Clone(g.hours)
	slices.SortFunc(out, compareHours)
	return out
}

func compareHours(a, b HourAgg) int {
	return cmp.Or(cmp.Compare(a.DeviceID, b.DeviceID), a.Hour.Compare(b.Hour))
}

// Row is one device-hour of the ML feature set (dwh.ml_features). Nil
// pointers are NULL: no value in the hour (Mean, Min, Max), fewer than two
// values (Std, Slope), no value in the previous hour (PrevHourMean).
type Row struct {
	DeviceID     string    `json:"device_id" parquet:"device_id"`
	Hour         time.Time `json:"hour" parquet:"hour,timestamp(millisecond)"`
	DeviceType   string    `json:"device_type" parquet:"device_type"`
	Zone         string    `json:"zone" parquet:"zone"`
	HourOfDay    int       `json:"hour_of_day" parquet:"hour_of_day"`
	DayOfWeek    int       `json:"day_of_week" parquet:"day_of_week"` // 0 = Sunday, UTC
	Count        int       `json:"count" parquet:"count"`
	Mean         *float64  `json:"mean" parquet:"mean,optional"`
	Std          *float64  `json:"std" parquet:"std,optional"`
	Min          *float64  `json:"min" parquet:"min,optional"`
	Max          *float64  `json:"max" parquet:"max,optional"`
	Slope        *float64  `json:"slope" parquet:"slope,optional"`
	AnomalyCount int       `json:"anomaly_count" parquet:"anomaly_count"`
	MeanQuality  float64   `json:"mean_quality" parquet:"mean_quality"`
	PrevHourMean *float64  `json:"prev_hour_mean" parquet:"prev_hour_mean,optional"`
	// Label: at least one anomalous reading in the next hour.
	Label bool `json:"label" parquet:"label"`
}

// Build returns the feature rows that hours fully determine. hours are the
// aggregates of every reading in [from, to) (Aggregator.Hours; any order).
// A device-hour h gets a row when it has at least one reading and both its
// inputs lie inside [from, to): the previous hour (h − 1h ≥ from, for
// PrevHourMean) and the next hour (h + 2h ≤ to, for the label). Rows whose
// label would be unknown are left out, not guessed: the run whose data
// covers the next hour emits them. An hour of [from, to) without readings
// is a known hour without anomaly. Rows come sorted by device and hour.
func Build(hours []HourAgg, from, to time.Time) []Row {
	byKey := make(map[hourKey]*HourAgg, len(hours))
	sorted := make([]*HourAgg, 0, len(hours))
	for i := range hours {
		a := &hours[i]
		byKey[hourKey{a.DeviceID, a.Hour.Unix()}] = a
		sorted = append(sorted, a)
	}
	slices.SortFunc(sorted, func(a, b *HourAgg) int { return compareHours(*a, *b) })

	var rows []Row
	for _, a := range sorted {
		if a.Count == 0 || a.Hour.Add(-time.Hour).Before(from) || a.Hour.Add(2*time.Hour).After(to) {
			continue
		}
		h := a.Hour.UTC()
		row := Row{
			DeviceID:     a.DeviceID,
			Hour:         h,
			DeviceType:   a.DeviceType,
			Zone:         a.Zone,
			HourOfDay:    h.Hour(),
			DayOfWeek:    int(h.Weekday()),
			Count:        a.Count,
			AnomalyCount: a.AnomalyCount,
			MeanQuality:  a.MeanQuality(),
		}
		row.Mean = optional(a.Mean())
		row.Std = optional(a.Std())
		row.Min = optional(a.Min())
		row.Max = optional(a.Max())
		row.Slope = optional(a.Slope())
		if prev, ok := byKey[hourKey{a.DeviceID, h.Add(-time.Hour).Unix()}]; ok {
			row.PrevHourMean = optional(prev.Mean())
		}
		if next, ok := byKey[hourKey{a.DeviceID, h.Add(time.Hour).Unix()}]; ok {
			row.Label = next.AnomalyCount > 0
		}
		rows = append(rows, row)
	}
	return rows
}

func optional(v float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	return &v
}
