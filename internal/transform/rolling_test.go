package transform

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/reading"
)

// naiveStats recomputes the history of a reading from scratch: the values
// with time in [t − window, t), corrected two-pass mean and variance.
func naiveStats(values []sample, t int64, window time.Duration) (st Stats) {
	// values are in time order: scan back from the end.
	var in []float64
	for i := len(values) - 1; i >= 0 && values[i].t >= t-int64(window); i-- {
		if values[i].t < t {
			in = append(in, values[i].v)
		}
	}
	slices.Reverse(in)
	st.Count = len(in)
	if len(in) == 0 {
		return st
	}
	st.Min, st.Max = in[0], in[0]
	total := 0.0
	for _, x := range in {
		total += x
		st.Min, st.Max = min(st.Min, x), max(st.Max, x)
	}
	n := float64(len(in))
	st.Mean = total / n
	dev, devSq := 0.0, 0.0
	for _, x := range in {
		dev += x - st.Mean
		devSq += (x - st.Mean) * (x - st.Mean)
	}
	st.Mean += dev / n
	if len(in) >= 2 {
		st.Std, st.HasStd = math.Sqrt(max(devSq-dev*dev/n, 0)/(n-1)), true
	}
	return st
}

// scenario draws one random device history: a level with noise, steps of
// irregular length with occasional gaps longer than the window, nulls,
// duplicates, stuck plateaus, huge spikes and level shifts.
type scenario struct {
	rng    *rand.Rand
	level  float64
	noise  float64
	window time.Duration
}

func newScenario(seed uint64) *scenario {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	levels := []float64{0, 20, -1e3, 1e6, 1e9}
	noises := []float64{1e-3, 1, 1e3}
	windows := []time.Duration{10 * time.Minute, time.Hour}
	return &scenario{
		rng:    rng,
		level:  levels[rng.IntN(len(levels))],
		noise:  noises[rng.IntN(len(noises))],
		window: windows[rng.IntN(len(windows))],
	}
}

func (s *scenario) readings(n int) []reading.Reading {
	out := make([]reading.Reading, 0, n)
	now := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	plateau, plateauValue := 0, 0.0
	for len(out) < n {
		r := reading.Reading{DeviceID: "P-001"}
		switch p := s.rng.Float64(); {
		case p < 0.03 && len(out) > 0: // duplicate of the previous time
			r.Time = out[len(out)-1].Time
		case p < 0.035: // gap, sometimes longer than the window
			now = now.Add(time.Duration(s.rng.Int64N(int64(2 * s.window))))
			r.Time = now
		default:
			now = now.Add(time.Second + time.Duration(s.rng.Int64N(int64(90*time.Second))))
			r.Time = now
		}
		r.ValueValid = s.rng.Float64() >= 0.05
		switch p := s.rng.Float64(); {
		case plateau > 0:
			plateau--
			r.Value = plateauValue
		case p < 0.01:
			plateau, plateauValue = 5+s.rng.IntN(80), s.level+s.noise*s.rng.NormFloat64()
			r.Value = plateauValue
		case p < 0.02:
			r.Value = s.level + 1e6*s.noise*s.rng.NormFloat64()
		case p < 0.025:
			s.level += 50 * s.noise * s.rng.NormFloat64()
			r.Value = s.level
		default:
			r.Value = s.level + s.noise*s.rng.NormFloat64()
		}
		out = append(out, r)
	}
	return out
}

func closeRel(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Abs(want)
}

// TestRollingMatchesNaive is the property test of the rolling statistics:
// on random histories they match a from-scratch recomputation, count, min
// and max exactly, mean and std to 1e-9 relative.
func TestRollingMatchesNaive(t *testing.T) {
	t.Parallel()
	typ := reading.DeviceType{Code: "P", ValidMin: -1e12, ValidMax: 1e12, MaxRatePerMin: 1e12, ExpectedInterval: time.Minute}
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			sc := newScenario(seed)
			p := DefaultParams()
			p.Window = sc.window
			s := NewDeviceState(reading.Device{ID: "P-001"}, typ, reading.Location{}, p)
			var accepted []sample
			var lastTime time.Time
			for i, r := range sc.readings(4000) {
				got := s.Push(r).Rolling
				want := naiveStats(accepted, r.Time.UnixNano(), p.Window)
				if r.ValueValid {
					want.Z, want.HasZ = 0, false
					if want.Count >= p.MinHistory && want.Std > 0 {
						want.Z, want.HasZ = (r.Value-want.Mean)/want.Std, true
					}
				}
				ok := got.Count == want.Count && got.HasStd == want.HasStd && got.HasZ == want.HasZ &&
					got.Min == want.Min && got.Max == want.Max &&
					closeRel(got.Mean, want.Mean, 1e-9) && closeRel(got.Std, want.Std, 1e-9)
				if ok && want.HasZ {
					// The mean's own rounding (a few ulps of |mean|) moves z
					// by about 1e-16·|mean|/std, whichever way it is computed.
					ok = math.Abs(got.Z-want.Z) <= 1e-9*max(1, math.Abs(want.Z))+1e-13*math.Abs(want.Mean)/want.Std
				}
				if !ok {
					t.Fatalf("reading %d (level %g noise %g window %s): got %+v, want %+v", i, sc.level, sc.noise, sc.window, got, want)
				}
				// A reading at the time of the previous one, null or not, is
				// a duplicate and stays out of the history.
				if i == 0 || r.Time.After(lastTime) {
					if r.ValueValid {
						accepted = append(accepted, sample{r.Time.UnixNano(), r.Value})
					}
					lastTime = r.Time
				}
			}
		})
	}
}

// TestRollingRebaseIsAmortised checks the cost of keeping the sums exact on
// ordinary data: the values re-read by rebases stay below one per reading.
func TestRollingRebaseIsAmortised(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	var w rolling
	var st Stats
	const n = 100_000
	reread := 0
	for i := range n {
		ts := int64(i) * int64(time.Minute)
		w.evictBefore(ts - int64(time.Hour))
		before := w.rebases
		w.stats(&st)
		if w.rebases != before {
			reread += w.values.len()
		}
		w.add(ts, 20+3*math.Sin(float64(i)/229)+0.1*rng.NormFloat64())
	}
	if reread >= n {
		t.Errorf("rebases re-read %d values for %d readings, want fewer than one per reading", reread, n)
	}
	t.Logf("rebases: %d, values re-read: %d for %d readings", w.rebases, reread, n)
}
