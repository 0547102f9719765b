package features_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/parquet-go/parquet-go"

	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/quality"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// Monday 2 March 2026, 00:00 UTC.
var day = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func f(x float64) *float64 { return &x }

// enriched builds the part of an enriched reading the aggregates read.
func enriched(device string, minute int, value *float64, quality float64, anomalous bool, flags quality.Flags) transform.Enriched {
	e := transform.Enriched{
		Reading:  reading.Reading{Time: day.Add(time.Duration(minute) * time.Minute), DeviceID: device},
		TypeCode: "TEMP", Zone: "north",
		Anomaly: anomalous, Quality: quality, FlagSet: flags,
	}
	if value != nil {
		e.Value, e.ValueValid = *value, true
	}
	return e
}

func TestHourAgg(t *testing.T) {
	t.Parallel()
	a := features.NewHourAgg("TEMP-001", "TEMP", "north", day.Add(25*time.Minute))
	for _, e := range []transform.Enriched{
		enriched("TEMP-001", 0, f(1), 1, false, 0),
		enriched("TEMP-001", 10, f(2), 1, false, 0),
		enriched("TEMP-001", 20, f(3), 0.8, true, quality.Gap),
		enriched("TEMP-001", 30, f(4), 1, false, 0),
		enriched("TEMP-001", 30, f(90), 0.5, true, quality.Duplicate), // skipped
		enriched("TEMP-001", 40, nil, 0, false, quality.Null),
	} {
		a.Add(&e)
	}
	type summary struct {
		Hour                             time.Time
		Count, ValueCount, AnomalyCount  int
		Mean, Std, Min, Max, Slope, MQ   float64
		HasMean, HasStd, HasMinMax, HasS bool
	}
	mean, hasMean := a.Mean()
	std, hasStd := a.Std()
	lo, hasMin := a.Min()
	hi, _ := a.Max()
	slope, hasSlope := a.Slope()
	got := summary{a.Hour, a.Count, a.ValueCount, a.AnomalyCount, mean, std, lo, hi, slope, a.MeanQuality(), hasMean, hasStd, hasMin, hasSlope}
	want := summary{
		Hour: day, Count: 5, ValueCount: 4, AnomalyCount: 1,
		Mean: 2.5, Std: math.Sqrt(5.0 / 3), Min: 1, Max: 4, Slope: 0.1, MQ: 0.76,
		HasMean: true, HasStd: true, HasMinMax: true, HasS: true,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-14, 0)); diff != "" {
		t.Errorf("aggregate (-want +got):\n%s", diff)
	}
}

func TestHourAggUndefined(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                      string
		readings                  []transform.Enriched
		hasMean, hasStd, hasSlope bool
	}{
		{"only nulls", []transform.Enriched{enriched("A", 1, nil, 0, false, quality.Null)}, false, false, false},
		{"one value", []transform.Enriched{enriched("A", 1, f(3), 1, false, 0)}, true, false, false},
		{"two values", []transform.Enriched{enriched("A", 1, f(3), 1, false, 0), enriched("A", 2, f(5), 1, false, 0)}, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := features.NewHourAgg("A", "TEMP", "north", day)
			for _, e := range tt.readings {
				a.Add(&e)
			}
			_, hasMean := a.Mean()
			_, hasStd := a.Std()
			_, hasSlope := a.Slope()
			if hasMean != tt.hasMean || hasStd != tt.hasStd || hasSlope != tt.hasSlope {
				t.Errorf("defined mean, std, slope = %v, %v, %v; want %v, %v, %v", hasMean, hasStd, hasSlope, tt.hasMean, tt.hasStd, tt.hasSlope)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	g := features.NewAggregator()
	for _, e := range []transform.Enriched{
		// Device B first: the aggregator takes any order.
		enriched("B", 60, f(7), 1, false, 0),
		enriched("B", 61, f(9), 1, false, 0),
		enriched("B", 120, f(8), 1, false, 0),
		// Device A: hour 0 values, hour 1 only a null, hour 2 values, hour 3
		// nothing, hour 4 an anomaly, hour 5 values.
		enriched("A", 0, f(10), 1, false, 0),
		enriched("A", 30, f(13), 1, false, 0),
		enriched("A", 65, nil, 0, false, quality.Null),
		enriched("A", 120, f(4), 1, false, 0),
		enriched("A", 150, f(5), 1, true, quality.Gap),
		enriched("A", 150, f(6), 0.5, false, quality.Duplicate),
		enriched("A", 245, f(6), 0.4, true, quality.OutOfRange),
		enriched("A", 300, f(5), 1, false, 0),
	} {
		g.Add(&e)
	}
	h := func(i int) time.Time { return day.Add(time.Duration(i) * time.Hour) }
	// Data [00:00, 06:00): rows need the hour before and the hour after.
	got := features.Build(g.Hours(), h(0), h(6))
	want := []features.Row{
		{DeviceID: "A", Hour: h(1), DeviceType: "TEMP", Zone: "north", HourOfDay: 1, DayOfWeek: 1,
			Count: 1, MeanQuality: 0, PrevHourMean: f(11.5), Label: true},
		{DeviceID: "A", Hour: h(2), DeviceType: "TEMP", Zone: "north", HourOfDay: 2, DayOfWeek: 1,
			Count: 2, Mean: f(4.5), Std: f(math.Sqrt(0.5)), Min: f(4), Max: f(5), Slope: f(1.0 / 30),
			AnomalyCount: 1, MeanQuality: 1, PrevHourMean: nil, Label: false},
		{DeviceID: "A", Hour: h(4), DeviceType: "TEMP", Zone: "north", HourOfDay: 4, DayOfWeek: 1,
			Count: 1, Mean: f(6), Min: f(6), Max: f(6), AnomalyCount: 1, MeanQuality: 0.4, PrevHourMean: nil, Label: false},
		{DeviceID: "B", Hour: h(1), DeviceType: "TEMP", Zone: "north", HourOfDay: 1, DayOfWeek: 1,
			Count: 2, Mean: f(8), Std: f(math.Sqrt2), Min: f(7), Max: f(9), Slope: f(2), MeanQuality: 1, Label: false},
		{DeviceID: "B", Hour: h(2), DeviceType: "TEMP", Zone: "north", HourOfDay: 2, DayOfWeek: 1,
			Count: 1, Mean: f(8), Min: f(8), Max: f(8), MeanQuality: 1, PrevHourMean: f(8), Label: false},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-14, 0)); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

// pipeline runs readings through the transform, the aggregator and Build.
func pipeline(readings []reading.Reading, from, to time.Time) []features.Row {
	typ, _ := reading.TypeByCode("TEMP")
	s := transform.NewDeviceState(reading.Device{ID: "TEMP-001"}, typ, reading.Location{ID: "LOC-0001", Zone: "north"}, transform.DefaultParams())
	g := features.NewAggregator()
	for _, r := range readings {
		e := s.Push(r)
		g.Add(&e)
	}
	return features.Build(g.Hours(), from, to)
}

// TestBuildIsLeakFree perturbs the readings of hour h+1 and h+2 and checks
// what changes in the row of hour h: the label only for h+1, nothing for h+2.
func TestBuildIsLeakFree(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	var clean []reading.Reading
	for i := range 10 * 60 {
		clean = append(clean, reading.Reading{
			Time: day.Add(time.Duration(i) * time.Minute), DeviceID: "TEMP-001",
			Value: 21 + math.Sin(float64(i)/100) + 0.05*rng.NormFloat64(), ValueValid: true,
		})
	}
	const h = 5
	from, to := day, day.Add(10*time.Hour)
	rowOf := func(rows []features.Row) features.Row {
		for _, r := range rows {
			if r.Hour.Equal(day.Add(h * time.Hour)) {
				return r
			}
		}
		t.Fatalf("no row for hour %d", h)
		return features.Row{}
	}
	// spikeAt returns the readings with a spike at minute m of hour hour.
	spikeAt := func(hour, m int) []reading.Reading {
		out := append([]reading.Reading(nil), clean...)
		out[hour*60+m].Value += 10
		return out
	}
	base := rowOf(pipeline(clean, from, to))
	if base.Label {
		t.Fatalf("clean data: hour %d is labelled anomalous", h)
	}

	next := rowOf(pipeline(spikeAt(h+1, 30), from, to))
	want := base
	want.Label = true
	if diff := cmp.Diff(want, next); diff != "" {
		t.Errorf("spike in hour h+1: row of hour h (-want +got):\n%s", diff)
	}
	// The first and the last minute of h+2 as well: the rolling history of
	// hour h+2 reaches back into h+1, never into h.
	for _, m := range []int{0, 59} {
		after := rowOf(pipeline(spikeAt(h+2, m), from, to))
		if diff := cmp.Diff(base, after); diff != "" {
			t.Errorf("spike in hour h+2 minute %d: row of hour h (-want +got):\n%s", m, diff)
		}
	}
	// And a spike in hour h does change the features of h.
	if cmp.Equal(base, rowOf(pipeline(spikeAt(h, 30), from, to))) {
		t.Errorf("spike in hour h left the row of hour h unchanged")
	}
}

// TestRowParquetSchema checks that the struct tags form a valid Parquet schema.
func TestRowParquetSchema(t *testing.T) {
	t.Parallel()
	var names []string
	for _, field := range parquet.SchemaOf(features.Row{}).Fields() {
		names = append(names, field.Name())
	}
	want := []string{"device_id", "hour", "device_type", "zone", "hour_of_day", "day_of_week", "count",
		"mean", "std", "min", "max", "slope", "anomaly_count", "mean_quality", "prev_hour_mean", "label"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("parquet columns (-want +got):\n%s", diff)
	}
}

// TestHourStateRestores: an aggregate restored from its state is the
// aggregate: the same state, and the same feature rows, bit for bit.
func TestHourStateRestores(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	g := features.NewAggregator()
	for minute := range 180 {
		v := 20 + rng.NormFloat64()
		var flags quality.Flags
		if minute%37 == 0 {
			flags = quality.Null
		}
		e := enriched("TEMP-001", minute, f(v), rng.Float64(), minute%11 == 0, flags)
		if flags == quality.Null {
			e.ValueValid = false
		}
		g.Add(&e)
	}
	hours := g.Hours()
	restored := make([]features.HourAgg, len(hours))
	for i := range hours {
		a := &hours[i]
		restored[i] = features.HourAggOf(a.DeviceID, a.DeviceType, a.Zone, a.Hour, a.State())
		if got, want := restored[i].State(), a.State(); got != want {
			t.Errorf("hour %s: restored state %+v, want %+v", a.Hour, got, want)
		}
	}
	want := features.Build(hours, day, day.Add(3*time.Hour))
	if len(want) != 1 {
		t.Fatalf("%d rows from 3 hours; want 1 (the middle hour)", len(want))
	}
	if diff := cmp.Diff(want, features.Build(restored, day, day.Add(3*time.Hour))); diff != "" {
		t.Errorf("rows from the restored aggregates (-original +restored):\n%s", diff)
	}
}
