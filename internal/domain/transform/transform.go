// Package transform turns raw readings of one device into enriched facts:
// device and location attributes, trailing rolling statistics, anomaly
// reasons and a quality score. It is pure and incremental: a DeviceState is
// fed the readings of one device in time order, costs a small constant per
// reading (O(1) amortised updates and a merge of at most five partial sums
// of the trailing hour) and allocates nothing once warm, so the batch ETL can stream
// millions of rows through it and the stream ETL can keep one per device.
package transform

import (
	"fmt"
	"math"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/quality"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// Params tune the rolling statistics and the anomaly rules.
type Params struct {
	// Window is the length of the trailing history [t − Window, t).
	Window time.Duration
	// MinHistory is the number of values the history needs before a
	// z-score is computed.
	MinHistory int
	// ZThreshold: |z| above it is a zscore anomaly.
	ZThreshold float64
	// StuckRun: the StuckRun-th identical consecutive value is stuck.
	StuckRun int
	// GapFactor: more than GapFactor × ExpectedInterval since the previous
	// reading is a gap.
	GapFactor float64
}

// DefaultParams are the production parameters: a one-hour window, 30 values
// of history, |z| > 3, 10 identical values, 3 missed intervals.
func DefaultParams() Params {
	return Params{Window: time.Hour, MinHistory: 30, ZThreshold: 3, StuckRun: 10, GapFactor: 3}
}

// Validate names the first parameter that cannot work.
func (p Params) Validate() error {
	switch {
	case p.Window <= 0:
		return fmt.Errorf("transform: Window must be positive, got %s", p.Window)
	case p.MinHistory < 2:
		return fmt.Errorf("transform: MinHistory must be at least 2, got %d", p.MinHistory)
	case !(p.ZThreshold > 0):
		return fmt.Errorf("transform: ZThreshold must be positive, got %v", p.ZThreshold)
	case p.StuckRun < 2:
		return fmt.Errorf("transform: StuckRun must be at least 2, got %d", p.StuckRun)
	case !(p.GapFactor > 0):
		return fmt.Errorf("transform: GapFactor must be positive, got %v", p.GapFactor)
	}
	return nil
}

// Stats describe the trailing history [t − Window, t) of a reading: the
// non-null values of the device in that window, the reading itself
// excluded. Mean, Min and Max are defined when Count > 0, Std (sample
// standard deviation, n − 1) when HasStd, Z when HasZ.
type Stats struct {
	Count    int
	Mean     float64
	Std      float64
	HasStd   bool
	Min, Max float64
	// Z is (value − Mean) / Std, defined when the reading has a value,
	// Count ≥ MinHistory and Std > 0.
	Z    float64
	HasZ bool
}

// Enriched is one reading with everything the warehouse stores about it.
type Enriched struct {
	reading.Reading

	// From the device type.
	TypeCode           string
	Metric             string
	Unit               string
	ValidMin, ValidMax float64
	// From the location.
	LocationID string
	Site       string
	Building   string
	Floor      int
	Zone       string

	Rolling Stats

	// Anomaly is true when at least one rule fired; Reasons names them in
	// canonical order (a shared slice: do not modify).
	Anomaly   bool
	Reasons   []string
	ReasonSet anomaly.Reasons

	// Quality is the score in [0, 1]; QualityFlags names the flags in
	// canonical order (a shared slice: do not modify).
	Quality      float64
	QualityFlags []string
	FlagSet      quality.Flags

	// OutOfOrder marks a reading older than the device's previous one. It
	// left the device state untouched and has no rolling statistics.
	OutOfOrder bool
}

// Kinds returns the kinds of anomaly this reading is evidence of (shared
// slice: do not modify).
func (e *Enriched) Kinds() []anomaly.Kind { return anomaly.ClassifySet(e.ReasonSet, e.FlagSet) }

// DeviceState is the incremental state of one device. It is not safe for
// concurrent use; keep one per device.
type DeviceState struct {
	params   Params
	rules    anomaly.Rules
	template Enriched // enrichment filled in once
	window   rolling

	hasLast   bool
	lastTime  int64 // Unix ns of the previous accepted reading
	lastStats Stats // history of the previous accepted reading, for its duplicates

	hasPrevValue  bool
	prevValue     float64
	prevValueTime int64
	run           int // identical consecutive non-null values ending with prevValue
}

// NewDeviceState starts the state of dev with its type and location. It
// panics when p is invalid (check Params.Validate where p is configured).
func NewDeviceState(dev reading.Device, typ reading.DeviceType, loc reading.Location, p Params) *DeviceState {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return &DeviceState{
		params: p,
		rules: anomaly.Rules{
			ZThreshold:    p.ZThreshold,
			ValidMin:      typ.ValidMin,
			ValidMax:      typ.ValidMax,
			MaxRatePerMin: typ.MaxRatePerMin,
			RateFloor:     typ.ExpectedInterval,
			StuckRun:      p.StuckRun,
			GapAfter:      time.Duration(p.GapFactor * float64(typ.ExpectedInterval)),
		},
		template: Enriched{
			Reading:    reading.Reading{DeviceID: dev.ID},
			TypeCode:   typ.Code,
			Metric:     typ.Metric,
			Unit:       typ.Unit,
			ValidMin:   typ.ValidMin,
			ValidMax:   typ.ValidMax,
			LocationID: loc.ID,
			Site:       loc.Site,
			Building:   loc.Building,
			Floor:      loc.Floor,
			Zone:       loc.Zone,
		},
	}
}

// Push evaluates r against the device's history and then adds it to the
// history. Readings must come in increasing time:
//   - a reading with the same time as the previous one is a duplicate: it
//     is flagged, judged against the history of the original (z-score and
//     range only) and does not enter the history;
//   - an older reading is marked OutOfOrder, judged on range only, and
//     leaves the state untouched.
//
// A value that is NaN or infinite is treated as missing (ValueValid false).
func (s *DeviceState) Push(r reading.Reading) Enriched {
	e := s.template
	e.Reading = r
	if e.ValueValid && (math.IsNaN(e.Value) || math.IsInf(e.Value, 0)) {
		e.Value, e.ValueValid = 0, false
	}
	t := r.Time.UnixNano()
	obs := anomaly.Observation{Value: e.Value, ValueValid: e.ValueValid}
	var flags quality.Flags

	switch {
	case s.hasLast && t < s.lastTime:
		e.OutOfOrder = true
	case s.hasLast && t == s.lastTime:
		flags |= quality.Duplicate
		e.Rolling = s.lastStats
		s.score(&e.Rolling, &obs)
	default:
		s.window.evictBefore(t - int64(s.params.Window))
		s.window.stats(&e.Rolling)
		s.lastStats = e.Rolling
		s.score(&e.Rolling, &obs)
		obs.HasPrev, obs.SincePrev = s.hasLast, time.Duration(t-s.lastTime)
		s.hasLast, s.lastTime = true, t
		if e.ValueValid {
			obs.HasPrevValue = s.hasPrevValue
			obs.PrevValue = s.prevValue
			obs.SincePrevValue = time.Duration(t - s.prevValueTime)
			if s.hasPrevValue && e.Value == s.prevValue {
				s.run++
			} else {
				s.run = 1
			}
			obs.Run = s.run
			s.hasPrevValue, s.prevValue, s.prevValueTime = true, e.Value, t
			s.window.add(t, e.Value)
		}
	}

	reasons := s.rules.Evaluate(obs)
	if !e.ValueValid {
		flags |= quality.Null
	}
	if reasons.Has(anomaly.OutOfRange) {
		flags |= quality.OutOfRange
	}
	if reasons.Has(anomaly.Stuck) {
		flags |= quality.Stuck
	}
	if reasons.Has(anomaly.Gap) {
		flags |= quality.Gap
	}
	e.ReasonSet, e.Reasons, e.Anomaly = reasons, reasons.Strings(), reasons != 0
	e.FlagSet, e.QualityFlags, e.Quality = flags, flags.Strings(), flags.Score()
	return e
}

// score sets the z-score of the reading in st and obs.
func (s *DeviceState) score(st *Stats, obs *anomaly.Observation) {
	st.Z, st.HasZ = 0, false
	if !obs.ValueValid {
		return
	}
	st.Z, st.HasZ = anomaly.StandardScore(obs.Value, st.Mean, st.Std, st.Count, s.params.MinHistory)
	obs.Z, obs.ZValid = st.Z, st.HasZ
}
