package transform_test

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// testType has round limits so that every boundary below is exact.
var testType = reading.DeviceType{
	Code: "TEST", Metric: "level", Unit: "u",
	ValidMin: 0, ValidMax: 100, MaxRatePerMin: 10, ExpectedInterval: time.Minute,
}

var (
	testDevice   = reading.Device{ID: "TEST-001", TypeCode: "TEST", LocationID: "LOC-0001"}
	testLocation = reading.Location{ID: "LOC-0001", Site: "Rotterdam Botlek", Building: "RTM-A", Floor: 2, Zone: "north"}
	t0           = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
)

// at is the reading of testDevice m minutes after t0; nil means no value.
type at struct {
	minute float64
	value  *float64
}

func v(x float64) *float64 { return &x }

func seq(start float64, values ...*float64) []at {
	out := make([]at, len(values))
	for i, x := range values {
		out[i] = at{start + float64(i), x}
	}
	return out
}

func toReading(a at) reading.Reading {
	r := reading.Reading{Time: t0.Add(time.Duration(a.minute * float64(time.Minute))), DeviceID: testDevice.ID}
	if a.value != nil {
		r.Value, r.ValueValid = *a.value, true
	}
	return r
}

// push feeds readings in order and returns the last result.
func push(typ reading.DeviceType, readings []at) transform.Enriched {
	s := transform.NewDeviceState(testDevice, typ, testLocation, transform.DefaultParams())
	var last transform.Enriched
	for _, a := range readings {
		last = s.Push(toReading(a))
	}
	return last
}

// stdTwo is 30 values at minutes 0..29 with mean exactly 20 and sample std
// exactly 2: deviations 13×(+2, −2) then +3, −1, −1, −1 (Σd = 0, Σd² = 116 = 29·4).
func stdTwo() []at {
	var values []*float64
	for range 13 {
		values = append(values, v(22), v(18))
	}
	values = append(values, v(23), v(19), v(19), v(19))
	return seq(0, values...)
}

func repeat(x float64, n int) []*float64 {
	out := make([]*float64, n)
	for i := range out {
		out[i] = v(x)
	}
	return out
}

func join(parts ...[]at) []at {
	var out []at
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// verdict is what a golden case checks of the last reading.
type verdict struct {
	Reasons []string
	Flags   []string
	Quality float64
	Anomaly bool
}

func TestPushRulesAndFlags(t *testing.T) {
	t.Parallel()
	noRate := testType
	noRate.MaxRatePerMin = 0
	none := []string{}
	tests := []struct {
		name     string
		typ      reading.DeviceType
		readings []at
		want     verdict
	}{
		{"clean", testType, join(stdTwo(), seq(30, v(21))), verdict{none, none, 1, false}},
		{"zscore above threshold", testType, join(stdTwo(), seq(30, v(26.5))), verdict{[]string{"zscore"}, none, 1, true}},
		{"zscore below minus threshold", testType, join(stdTwo(), seq(30, v(13.5))), verdict{[]string{"zscore"}, none, 1, true}},
		{"z exactly 3 is not anomalous", testType, join(stdTwo(), seq(30, v(26))), verdict{none, none, 1, false}},
		{"z exactly -3 is not anomalous", testType, join(stdTwo(), seq(30, v(14))), verdict{none, none, 1, false}},
		{"no zscore below MinHistory", noRate, join(stdTwo()[1:], seq(30, v(60))), verdict{none, none, 1, false}},
		{"no zscore when history is constant", noRate, join(seq(0, repeat(20, 30)...), seq(30, v(60))), verdict{none, none, 1, false}},
		{"out_of_range above max", testType, seq(0, v(100.5)), verdict{[]string{"out_of_range"}, []string{"out_of_range"}, 0.4, true}},
		{"out_of_range below min", testType, seq(0, v(-0.5)), verdict{[]string{"out_of_range"}, []string{"out_of_range"}, 0.4, true}},
		{"exactly ValidMax is in range", testType, seq(0, v(100)), verdict{none, none, 1, false}},
		{"exactly ValidMin is in range", testType, seq(0, v(0)), verdict{none, none, 1, false}},
		{"rate_of_change", testType, seq(0, v(20), v(30.5)), verdict{[]string{"rate_of_change"}, none, 1, true}},
		{"rate exactly MaxRatePerMin is allowed", testType, seq(0, v(20), v(30)), verdict{none, none, 1, false}},
		{"rate is per minute elapsed", testType, join(seq(0, v(20)), seq(2, v(39))), verdict{none, none, 1, false}},
		{"rate compares with the previous non-null value", testType, seq(0, v(20), nil, v(41)), verdict{[]string{"rate_of_change"}, none, 1, true}},
		{"rate over a null is per minute since the value", testType, seq(0, v(20), nil, v(39)), verdict{none, none, 1, false}},
		{"stuck at StuckRun-1 is not stuck", testType, seq(0, repeat(20, 9)...), verdict{none, none, 1, false}},
		{"stuck at StuckRun", testType, seq(0, repeat(20, 10)...), verdict{[]string{"stuck"}, []string{"stuck"}, 0.6, true}},
		{"stuck counts only the current run", testType, join(seq(0, repeat(20, 9)...), seq(9, v(21)), seq(10, repeat(20, 9)...)), verdict{none, none, 1, false}},
		{"a null does not break a stuck run", testType, join(seq(0, repeat(20, 5)...), seq(5, nil), seq(6, repeat(20, 5)...)), verdict{[]string{"stuck"}, []string{"stuck"}, 0.6, true}},
		{"gap exactly GapFactor intervals is not a gap", testType, join(seq(0, v(20)), seq(3, v(20))), verdict{none, none, 1, false}},
		{"gap", testType, join(seq(0, v(20)), seq(3.001, v(20))), verdict{[]string{"gap"}, []string{"gap"}, 0.8, true}},
		{"gap counts from a null reading", testType, join(seq(0, v(20), nil), seq(4, v(20))), verdict{none, none, 1, false}},
		{"null", testType, seq(0, v(20), nil), verdict{none, []string{"null"}, 0, false}},
		{"null after a gap", testType, join(seq(0, v(20)), seq(10, nil)), verdict{[]string{"gap"}, []string{"null", "gap"}, 0, true}},
		{"null with history triggers no value rule", testType, join(stdTwo(), seq(30, nil)), verdict{none, []string{"null"}, 0, false}},
		{"duplicate", testType, join(seq(0, v(20), v(21)), seq(1, v(21))), verdict{none, []string{"duplicate"}, 0.5, false}},
		{"duplicate out of range", testType, join(seq(0, v(20), v(21)), seq(1, v(120))), verdict{[]string{"out_of_range"}, []string{"out_of_range", "duplicate"}, 0, true}},
		{"duplicate is judged against the original's history", testType, join(stdTwo(), seq(30, v(21)), seq(30, v(26.5))), verdict{[]string{"zscore"}, []string{"duplicate"}, 0.5, true}},
		{"out of range, jump and deviation together", testType, join(stdTwo(), seq(30, v(150))), verdict{[]string{"zscore", "out_of_range", "rate_of_change"}, []string{"out_of_range"}, 0.4, true}},
		{"stuck after a gap", testType, join(seq(0, repeat(20, 9)...), seq(13, v(20))), verdict{[]string{"stuck", "gap"}, []string{"stuck", "gap"}, 0.4, true}},
		{"out of range and stuck", testType, seq(0, repeat(101, 10)...), verdict{[]string{"out_of_range", "stuck"}, []string{"out_of_range", "stuck"}, 0, true}},
		{"NaN is a null", testType, seq(0, v(20), v(math.NaN())), verdict{none, []string{"null"}, 0, false}},
		{"infinity is a null", testType, seq(0, v(20), v(math.Inf(1))), verdict{none, []string{"null"}, 0, false}},
		{"out of order is judged on range only", testType, join(seq(0, v(20), v(21)), seq(0.5, v(200))), verdict{[]string{"out_of_range"}, []string{"out_of_range"}, 0.4, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := push(tt.typ, tt.readings)
			got := verdict{e.Reasons, e.QualityFlags, e.Quality, e.Anomaly}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPushRollingStats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		readings []at
		want     transform.Stats
	}{
		{"first reading has no history", seq(0, v(20)), transform.Stats{}},
		{"one value has no std", seq(0, v(20), v(21)), transform.Stats{Count: 1, Mean: 20, Min: 20, Max: 20}},
		{"exact mean and std, z defined at MinHistory", join(stdTwo(), seq(30, v(26.5))), transform.Stats{Count: 30, Mean: 20, Std: 2, HasStd: true, Min: 18, Max: 23, Z: 3.25, HasZ: true}},
		{"no z below MinHistory", join(stdTwo()[1:], seq(30, v(26.5))), transform.Stats{Count: 29, Mean: 19.93103448275862, Std: 1.9987680935080028, HasStd: true, Min: 18, Max: 23}},
		{"nulls are not history", seq(0, v(20), nil, v(22), nil, v(23)), transform.Stats{Count: 2, Mean: 21, Std: math.Sqrt2, HasStd: true, Min: 20, Max: 22}},
		{"null reading has stats but no z", join(stdTwo(), seq(30, nil)), transform.Stats{Count: 30, Mean: 20, Std: 2, HasStd: true, Min: 18, Max: 23}},
		{"constant history has zero std and no z", join(seq(0, repeat(5, 40)...), seq(40, v(6))), transform.Stats{Count: 40, Mean: 5, Std: 0, HasStd: true, Min: 5, Max: 5}},
		// Window [t − 1h, t): at minute 60 the value of minute 0 is still in.
		{"window start is included", join(seq(0, v(100)), seq(1, repeat(0, 58)...), seq(60, v(1))), transform.Stats{Count: 59, Mean: 100.0 / 59, Std: 100 / math.Sqrt(59), HasStd: true, Min: 0, Max: 100, Z: (1 - 100.0/59) / (100 / math.Sqrt(59)), HasZ: true}},
		{"older values leave the window", join(seq(0, v(100)), seq(1, repeat(0, 58)...), seq(60.001, v(1))), transform.Stats{Count: 58, Mean: 0, Std: 0, HasStd: true, Min: 0, Max: 0}},
		{"after a gap longer than the window the history is empty", join(seq(0, repeat(20, 30)...), seq(120, v(20))), transform.Stats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := push(testType, tt.readings)
			// 1e-14 relative: the only inexact cases are irrational.
			if diff := cmp.Diff(tt.want, e.Rolling, cmpopts.EquateApprox(1e-14, 0)); diff != "" {
				t.Errorf("rolling stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRollingWindowHorizon: the same readings give different rolling
// statistics with a 15-minute horizon (ROLLING_WINDOW=15m) than with the
// default hour, each exactly the values of its own [t − Window, t).
func TestRollingWindowHorizon(t *testing.T) {
	t.Parallel()
	// Minutes 0..59 carry the value of their minute, then minute 60.
	var values []*float64
	for m := range 61 {
		values = append(values, v(float64(m)))
	}
	readings := seq(0, values...)
	last := func(window time.Duration) transform.Stats {
		p := transform.DefaultParams()
		p.Window = window
		s := transform.NewDeviceState(testDevice, testType, testLocation, p)
		var e transform.Enriched
		for _, a := range readings {
			e = s.Push(toReading(a))
		}
		return e.Rolling
	}
	tests := []struct {
		window time.Duration
		want   transform.Stats
	}{
		// Minutes 0..59: 60 consecutive integers, variance 60·61/12.
		{time.Hour, transform.Stats{Count: 60, Mean: 29.5, Std: math.Sqrt(305), HasStd: true, Min: 0, Max: 59, Z: 30.5 / math.Sqrt(305), HasZ: true}},
		// Minutes 45..59 (the window start included): 15 values, variance
		// 15·16/12, below MinHistory so no z.
		{15 * time.Minute, transform.Stats{Count: 15, Mean: 52, Std: math.Sqrt(20), HasStd: true, Min: 45, Max: 59}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, last(tt.window), cmpopts.EquateApprox(1e-14, 0)); diff != "" {
			t.Errorf("Window %s: rolling stats at minute 60 (-want +got):\n%s", tt.window, diff)
		}
	}

	// Every reading of an irregular series with nulls: the count is the
	// number of values in [t − Window, t), for both horizons.
	var series []at
	for i := range 200 {
		m := float64(i) * 0.75
		if i%7 == 3 {
			series = append(series, at{m, nil})
			continue
		}
		series = append(series, at{m, v(float64(i % 11))})
	}
	for _, window := range []time.Duration{15 * time.Minute, time.Hour} {
		p := transform.DefaultParams()
		p.Window = window
		s := transform.NewDeviceState(testDevice, testType, testLocation, p)
		for i, a := range series {
			got := s.Push(toReading(a)).Rolling.Count
			want := 0
			at := toReading(a).Time
			for _, b := range series[:i] {
				if bt := toReading(b).Time; b.value != nil && !bt.Before(at.Add(-window)) && bt.Before(at) {
					want++
				}
			}
			if got != want {
				t.Fatalf("Window %s, reading %d at minute %v: count %d, want %d", window, i, a.minute, got, want)
			}
		}
	}
}

func TestDuplicateDoesNotEnterHistory(t *testing.T) {
	t.Parallel()
	base := join(stdTwo(), seq(30, v(21)))
	next := seq(31, v(20))
	clean := push(testType, join(base, next))
	withDup := push(testType, join(base, seq(30, v(90)), seq(30, v(21)), next))
	if diff := cmp.Diff(clean.Rolling, withDup.Rolling); diff != "" {
		t.Errorf("rolling stats after duplicates (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(clean.Reasons, withDup.Reasons); diff != "" {
		t.Errorf("reasons after duplicates (-want +got):\n%s", diff)
	}
}

func TestOutOfOrderLeavesStateUntouched(t *testing.T) {
	t.Parallel()
	base := join(stdTwo(), seq(30, v(21)))
	next := seq(31, v(20))
	clean := push(testType, join(base, next))
	withLate := push(testType, join(base, seq(12.5, v(90)), next))
	if diff := cmp.Diff(clean, withLate); diff != "" {
		t.Errorf("after an out-of-order reading (-want +got):\n%s", diff)
	}
}

func TestEnrichment(t *testing.T) {
	t.Parallel()
	s := transform.NewDeviceState(testDevice, testType, testLocation, transform.DefaultParams())
	r := toReading(at{0, v(20)})
	r.Battery, r.RSSI = 87.5, -71
	got := s.Push(r)
	want := transform.Enriched{
		Reading:  r,
		TypeCode: "TEST", Metric: "level", Unit: "u", ValidMin: 0, ValidMax: 100,
		LocationID: "LOC-0001", Site: "Rotterdam Botlek", Building: "RTM-A", Floor: 2, Zone: "north",
		Reasons: []string{}, QualityFlags: []string{}, Quality: 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("enriched (-want +got):\n%s", diff)
	}
}

func TestParamsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*transform.Params)
		want   string
	}{
		{"defaults", func(*transform.Params) {}, ""},
		{"window", func(p *transform.Params) { p.Window = 0 }, "transform: Window must be positive, got 0s"},
		{"min history", func(p *transform.Params) { p.MinHistory = 1 }, "transform: MinHistory must be at least 2, got 1"},
		{"z threshold", func(p *transform.Params) { p.ZThreshold = math.NaN() }, "transform: ZThreshold must be positive, got NaN"},
		{"stuck run", func(p *transform.Params) { p.StuckRun = 1 }, "transform: StuckRun must be at least 2, got 1"},
		{"gap factor", func(p *transform.Params) { p.GapFactor = -1 }, "transform: GapFactor must be positive, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := transform.DefaultParams()
			tt.change(&p)
			got := ""
			if err := p.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}
