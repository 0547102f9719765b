package simulate

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// Live returns the reading device dev sends at t, for a stream simulator:
// the same signal model as Day, with measurement noise drawn from rng. With
// probability anomalyRatio the reading is an anomaly instead (see LiveKind).
func (g *Generator) Live(dev reading.Device, t time.Time, rng *rand.Rand, anomalyRatio float64) reading.Reading {
	r, _ := g.LiveKind(dev, t, rng, anomalyRatio)
	return r
}

// LiveKind is Live that also says which anomaly, if any, it injected: ""
// for a normal reading, else Spike, OutOfRange or Null, drawn in the
// proportions of DefaultRates (2:1:3). Kinds that span several readings
// (stuck, drift, gap) need state across calls and are the caller's to make.
//
// A live spike is offset by 3 to 6 x MaxRatePerMin and stays inside the
// valid range; an out-of-range value lies 5-50% of the range beyond a bound.
func (g *Generator) LiveKind(dev reading.Device, t time.Time, rng *rand.Rand, anomalyRatio float64) (reading.Reading, Kind) {
	m := g.model(dev)
	v := m.signal(t, m.env.utcOffset(t)) + m.sigma*truncatedNormal(rng)
	r := reading.Reading{
		Time:       t,
		DeviceID:   dev.ID,
		ValueValid: true,
		Battery:    m.battery(t),
		RSSI:       int32(math.Round(m.rssiBase + math.Max(-4, math.Min(4, 1.2*rng.NormFloat64())))),
	}
	var kind Kind
	if anomalyRatio > 0 && rng.Float64() < anomalyRatio {
		switch u := rng.IntN(6); {
		case u < 2:
			kind = Spike
			offset := (3 + 3*rng.Float64()) * m.typ.MaxRatePerMin
			if v+offset > m.hi || v-offset >= m.lo && rng.IntN(2) == 0 {
				offset = -offset
			}
			v = min(max(v+offset, m.lo), m.hi)
		case u < 3:
			kind = OutOfRange
			beyond := (0.05 + 0.45*rng.Float64()) * (m.typ.ValidMax - m.typ.ValidMin)
			if rng.IntN(2) == 0 {
				v = m.typ.ValidMax + beyond
			} else {
				v = m.typ.ValidMin - beyond
			}
		default:
			kind = Null
			r.ValueValid = false
		}
	}
	if r.ValueValid {
		r.Value = float64(quantize(v)) / 1000
	}
	return r, kind
}
