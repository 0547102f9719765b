package transform

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
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
// duplicates, stuck plateaus, huge spikes and level shifts. One seed in
// four starts before the Unix epoch (negative times).
type scenario struct {
	rng    *rand.Rand
	level  float64
	noise  float64
	window time.Duration
	start  time.Time
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
		start:  starts[seed%uint64(len(starts))],
	}
}

var starts = []time.Time{
	time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC),
	time.Date(2026, 3, 2, 0, 7, 13, 0, time.UTC),
	time.Date(2026, 3, 2, 23, 59, 59, 999_999_999, time.UTC),
	time.Date(1969, 12, 31, 22, 53, 7, 0, time.UTC),
}

func (s *scenario) readings(n int) []reading.Reading {
	out := make([]reading.Reading, 0, n)
	now := s.start
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
// on random histories they match a from-scratch recomputation (two-pass),
// count, min and max exactly, std to 1e-12 relative, the mean to 1e-13 of
// |mean| + std (observed: 6e-15 and 1.3e-15).
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
					math.Abs(got.Mean-want.Mean) <= 1e-13*(math.Abs(want.Mean)+want.Std) && closeRel(got.Std, want.Std, 1e-12)
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

// sameBits reports whether two Stats are identical bit for bit.
func sameBits(a, b Stats) bool {
	f := math.Float64bits
	return a.Count == b.Count && a.HasStd == b.HasStd && a.HasZ == b.HasZ &&
		f(a.Mean) == f(b.Mean) && f(a.Std) == f(b.Std) && f(a.Min) == f(b.Min) && f(a.Max) == f(b.Max) && f(a.Z) == f(b.Z)
}

// checkWindowOnly pushes rs through one state from the start and through
// fresh states started at each of starts (indexes into rs), and requires
// that a reading whose window [t − window, t) lies after the fresh start
// gets the same statistics, bit for bit, from both: they depend on the
// values in the window only, not on where the history began.
func checkWindowOnly(t *testing.T, rs []reading.Reading, window time.Duration, starts []int) {
	t.Helper()
	typ := reading.DeviceType{Code: "P", ValidMin: -1e12, ValidMax: 1e12, MaxRatePerMin: 1e12, ExpectedInterval: time.Minute}
	p := DefaultParams()
	p.Window = window
	full := NewDeviceState(reading.Device{ID: "P-001"}, typ, reading.Location{}, p)
	want := make([]Stats, len(rs))
	for i, r := range rs {
		want[i] = full.Push(r).Rolling
	}
	compared := 0
	for _, j := range starts {
		s := NewDeviceState(reading.Device{ID: "P-001"}, typ, reading.Location{}, p)
		for i := j; i < len(rs); i++ {
			got := s.Push(rs[i]).Rolling
			// Strictly after: a reading at the start time itself may be a
			// duplicate the full history set aside.
			if rs[i].Time.Sub(rs[j].Time) <= window {
				continue
			}
			if !sameBits(got, want[i]) {
				t.Fatalf("reading %d, history from reading %d (%s): got %+v, from the start %+v", i, j, rs[j].Time.Format(time.RFC3339Nano), got, want[i])
			}
			compared++
		}
	}
	if compared == 0 {
		t.Fatal("no reading compared")
	}
}

// TestRollingDependsOnWindowOnly: on the random histories of the property
// test, a history started at any later reading gives every reading whose
// window it covers the statistics of the full history, bit for bit.
func TestRollingDependsOnWindowOnly(t *testing.T) {
	t.Parallel()
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			sc := newScenario(seed)
			rs := sc.readings(3000)
			var starts []int
			for range 6 {
				starts = append(starts, sc.rng.IntN(len(rs)-200))
			}
			checkWindowOnly(t, rs, sc.window, starts)
		})
	}
}

// denseReadings is one reading a second: a slow wave with noise around
// level, a few nulls, and spikes.
func denseReadings(n int, start time.Time, level, noise float64, rng *rand.Rand) []reading.Reading {
	out := make([]reading.Reading, n)
	for i := range out {
		v := level + noise*(3*math.Sin(float64(i)/2000)+rng.NormFloat64())
		if rng.IntN(5000) == 0 {
			v += 1e6 * noise
		}
		out[i] = reading.Reading{DeviceID: "P-001", Time: start.Add(time.Duration(i) * time.Second), Value: v, ValueValid: rng.IntN(100) != 0}
	}
	return out
}

// TestRollingDenseDependsOnWindowOnly: the same at one reading a second
// (3600 values in the window, readings on block boundaries and on window
// starts), histories started on and off block boundaries.
func TestRollingDenseDependsOnWindowOnly(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 3))
	rs := denseReadings(4*3600, time.Date(2026, 11, 2, 3, 59, 58, 0, time.UTC), 1e6, 1e-3, rng)
	checkWindowOnly(t, rs, time.Hour, []int{1, 2, 3, 37, 226, 901, 902, 903, 2000, 3601, 5000, 6107})
}

// TestRollingAccuracy checks hard cases against the two-pass reference at
// every reading: a large offset with tiny variation, a spike far above
// the level entering and leaving the window, a sensor stuck for longer
// than the window (mean exact, std exactly 0) and the level that follows.
func TestRollingAccuracy(t *testing.T) {
	t.Parallel()
	type gen func(i int, rng *rand.Rand) float64
	tests := []struct {
		name     string
		interval time.Duration
		n        int
		value    gen
	}{
		{"offset 1e6, variation 1e-6", time.Second, 3 * 3600, func(i int, rng *rand.Rand) float64 { return 1e6 + 1e-6*rng.NormFloat64() }},
		{"offset 1e9, variation 1e-3", 7 * time.Second, 3000, func(i int, rng *rand.Rand) float64 { return 1e9 + 1e-3*rng.NormFloat64() }},
		{"offset -1e6, slow drift", time.Second, 2 * 3600, func(i int, rng *rand.Rand) float64 { return -1e6 + 1e-4*float64(i) + 1e-5*rng.NormFloat64() }},
		{"spike leaves the window", time.Minute, 300, func(i int, rng *rand.Rand) float64 {
			if i == 100 {
				return 1e12
			}
			return 20 + 0.01*rng.NormFloat64()
		}},
		{"stuck sensor", 30 * time.Second, 600, func(i int, rng *rand.Rand) float64 {
			if i >= 100 && i < 400 {
				return 1e6 + 0.1
			}
			return 1e6 + 1e-3*rng.NormFloat64()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(11, 12))
			var w rolling
			var held []sample
			worstMean, worstStd := 0.0, 0.0
			start := time.Date(2026, 11, 2, 5, 3, 1, 0, time.UTC).UnixNano()
			for i := range tt.n {
				ts := start + int64(i)*int64(tt.interval)
				w.evictBefore(ts - int64(time.Hour))
				var got Stats
				w.stats(&got)
				want := naiveStats(held, ts, time.Hour)
				if got.Count != want.Count || got.Min != want.Min || got.Max != want.Max || got.HasStd != want.HasStd {
					t.Fatalf("reading %d: got %+v, want %+v", i, got, want)
				}
				if want.Min == want.Max && (got.Mean != want.Min || got.Std != 0) {
					t.Fatalf("reading %d: constant window of %v: mean %v std %v, want exact", i, want.Min, got.Mean, got.Std)
				}
				if want.Count > 0 {
					worstMean = max(worstMean, math.Abs(got.Mean-want.Mean)/(math.Abs(want.Mean)+want.Std))
				}
				if want.Std > 0 {
					worstStd = max(worstStd, math.Abs(got.Std-want.Std)/want.Std)
				}
				v := tt.value(i, rng)
				w.add(ts, v)
				held = append(held, sample{ts, v})
			}
			if worstMean > 1e-14 || worstStd > 1e-12 {
				t.Errorf("worst error: mean %.2g of |mean| + std, std %.2g relative; want ≤ 1e-14 and 1e-12", worstMean, worstStd)
			}
			t.Logf("worst error: mean %.2g of |mean| + std, std %.2g relative", worstMean, worstStd)
		})
	}
}

// TestRollingRereadIsAmortised checks the cost of assembling the windows,
// at one reading a second with nulls and gaps: each value is summed once
// more when its block becomes the head, and a lone block is re-summed
// rarely, so the values re-read stay below 1.1 per value added.
func TestRollingRereadIsAmortised(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	var w rolling
	var st Stats
	const n = 100_000
	ts, added := int64(0), 0
	for i := range n {
		ts += int64(time.Second)
		if rng.IntN(20_000) == 0 {
			ts += int64(time.Duration(rng.Int64N(int64(2 * time.Hour))))
		}
		w.evictBefore(ts - int64(time.Hour))
		w.stats(&st)
		if rng.IntN(50) != 0 {
			w.add(ts, 20+3*math.Sin(float64(i)/229)+0.1*rng.NormFloat64())
			added++
		}
	}
	if float64(w.reread) >= 1.1*float64(added) {
		t.Errorf("re-read %d values for %d added, want fewer than 1.1 per value", w.reread, added)
	}
	t.Logf("values re-read: %d for %d added", w.reread, added)
}

func TestBlockOf(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ t, want int64 }{
		{0, 0}, {1, 0}, {blockSpan - 1, 0}, {blockSpan, 1}, {-1, -1}, {-blockSpan, -1}, {-blockSpan - 1, -2},
	} {
		if got := blockOf(tt.t); got != tt.want {
			t.Errorf("blockOf(%d) = %d, want %d", tt.t, got, tt.want)
		}
	}
}
