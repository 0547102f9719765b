package anomaly

import (
	"math"
	"time"
)

// Rules are the thresholds for one device: the transform parameters combined
// with the physical limits of the device type. A rule whose threshold is not
// set (zero) never fires, so an unknown device type raises no range or rate
// alarms.
type Rules struct {
	// ZThreshold: zscore fires when |z| > ZThreshold.
	ZThreshold float64
	// ValidMin and ValidMax bound the physical range, bounds included;
	// out_of_range is checked only when ValidMax > ValidMin.
	ValidMin, ValidMax float64
	// MaxRatePerMin: rate_of_change fires when |v − prev| / minutes > MaxRatePerMin,
	// where minutes is the time since the previous value, but at least
	// RateFloor: readings closer together than the device's expected
	// interval may still differ by what one interval allows, so sensor
	// noise at a fast cadence is not read as a steep rate.
	MaxRatePerMin float64
	RateFloor     time.Duration
	// StuckRun: stuck fires on the StuckRun-th and later identical consecutive value.
	StuckRun int
	// GapAfter: gap fires when the time since the previous reading exceeds it
	// (GapFactor × ExpectedInterval).
	GapAfter time.Duration
}

// Observation is what the rules see of one reading: its value and what the
// device's state says about the readings before it.
type Observation struct {
	Value      float64
	ValueValid bool

	// Z is the z-score against the trailing window; ZValid is false when it
	// is undefined (too little history, zero spread, or no value).
	Z      float64
	ZValid bool

	// PrevValue is the previous non-null value, SincePrevValue the time
	// since it; HasPrevValue is false for the first value of a device.
	PrevValue      float64
	SincePrevValue time.Duration
	HasPrevValue   bool

	// SincePrev is the time since the previous reading, null or not;
	// HasPrev is false for the first reading of a device.
	SincePrev time.Duration
	HasPrev   bool

	// Run is the number of identical consecutive non-null values ending
	// with this one (1 when it differs from the previous value).
	Run int
}

// Evaluate returns every rule that fires for o. A reading without value
// triggers no value rule, only gap.
func (r Rules) Evaluate(o Observation) Reasons {
	var out Reasons
	if o.HasPrev && r.GapAfter > 0 && o.SincePrev > r.GapAfter {
		out |= Gap
	}
	if !o.ValueValid {
		return out
	}
	if o.ZValid && r.ZThreshold > 0 && math.Abs(o.Z) > r.ZThreshold {
		out |= ZScore
	}
	if r.ValidMax > r.ValidMin && (o.Value < r.ValidMin || o.Value > r.ValidMax) {
		out |= OutOfRange
	}
	if o.HasPrevValue && r.MaxRatePerMin > 0 && o.SincePrevValue > 0 {
		// Compare |Δ| with the allowed change rather than dividing, so that
		// a change of exactly MaxRatePerMin per minute is not a violation.
		minutes := float64(max(o.SincePrevValue, r.RateFloor)) / float64(time.Minute)
		if math.Abs(o.Value-o.PrevValue) > r.MaxRatePerMin*minutes {
			out |= RateOfChange
		}
	}
	if r.StuckRun > 0 && o.Run >= r.StuckRun {
		out |= Stuck
	}
	return out
}

// StandardScore is the z-score (v − mean) / std when count ≥ minHistory and std > 0; ok is
// false otherwise.
func StandardScore(v, mean, std float64, count, minHistory int) (z float64, ok bool) {
	if count < minHistory || count < 2 || !(std > 0) {
		return 0, false
	}
	return (v - mean) / std, true
}
