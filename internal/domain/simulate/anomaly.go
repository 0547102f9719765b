package simulate

import "time"

// Kind is a kind of injected anomaly; the values are those of
// anomaly_ground_truth.kind.
type Kind string

// The anomaly kinds. See docs/data-generator.md for their exact definitions.
const (
	Spike      Kind = "spike"        // one reading far off the recent level, inside the valid range
	OutOfRange Kind = "out_of_range" // one reading outside the valid range
	Stuck      Kind = "stuck"        // a run of readings that repeat the last normal value exactly
	Drift      Kind = "drift"        // an offset ramping up linearly for hours, then gone
	Null       Kind = "null"         // one reading without a value
	Gap        Kind = "gap"          // an outage: consecutive slots without readings
)

// Kinds lists every kind, in the order the generator places them.
var Kinds = []Kind{Drift, Gap, Stuck, Spike, OutOfRange, Null}

// Anomaly is one injected event: the ground truth that detection is scored
// against. Start and End are the times of its first and last slot (equal
// for single-reading kinds).
//
// Magnitude depends on the kind: for spike and out_of_range the signed
// offset from the value the device would have reported; for drift the signed
// peak offset; for stuck the number of repeated readings; for gap the number
// of missing slots; for null 1.
type Anomaly struct {
	DeviceID  string
	Kind      Kind
	Start     time.Time
	End       time.Time
	Magnitude float64
}

// Rates are the expected numbers of events per device per UTC day, drawn
// from a Poisson distribution, plus the expected fraction of slots dropped.
// Dropouts are isolated single missing readings, so the next reading is
// never more than two intervals away; they are not ground truth.
//
// An event that finds no room in its day under the placement rules is not
// injected, so very high rates saturate (about 9 single-reading events per
// day at a 1-minute interval).
type Rates struct {
	Spike      float64
	OutOfRange float64
	Stuck      float64
	Drift      float64
	Null       float64
	Gap        float64
	Dropout    float64
}

// DefaultRates are the rates of `starter seed`.
func DefaultRates() Rates {
	return Rates{Spike: 2, OutOfRange: 1, Stuck: 0.3, Drift: 0.1, Null: 3, Gap: 0.3, Dropout: 0.002}
}

func (r Rates) of(k Kind) float64 {
	switch k {
	case Spike:
		return r.Spike
	case OutOfRange:
		return r.OutOfRange
	case Stuck:
		return r.Stuck
	case Drift:
		return r.Drift
	case Null:
		return r.Null
	case Gap:
		return r.Gap
	}
	return 0
}
