package transform_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// signal is the normal behaviour of one device type: a daily cycle around
// a base level with gaussian noise well below the type's rate limit.
type signal struct {
	base, amplitude, noise float64
}

var signals = map[string]signal{
	"TEMP": {21, 2, 0.08},
	"HUM":  {45, 8, 0.25},
	"PRES": {1010, 3, 0.05},
	"CO2":  {650, 150, 7},
	"VIB":  {4, 1, 0.15},
	"PWR":  {2500, 700, 35},
}

// synthDevice generates one device's readings over days UTC days from
// start, one per minute, with injected events like the fleet simulator's:
// spike (one reading offset by 2.2–4 × MaxRatePerMin, inside the range),
// out_of_range (one reading beyond the range), stuck (20–60 equal
// readings), drift (offset ramping to 5–15 × noise over 6–18 h, then held),
// null (one reading without value) and gap (4–120 missing readings). Every
// event starts at least 70 slots into its UTC day and 70 slots after the
// previous event's end.
func synthDevice(rng *rand.Rand, id string, typ reading.DeviceType, start time.Time, days int) ([]reading.Reading, []anomaly.TruthEvent) {
	sig := signals[typ.Code]
	const slotsPerDay = 1440
	slots := days * slotsPerDay
	phase := rng.Float64() * 2 * math.Pi
	slot := func(i int) time.Time { return start.Add(time.Duration(i) * time.Minute) }

	type event struct {
		kind       anomaly.Kind
		start, len int
		size       float64 // spike or drift offset, out-of-range value
	}
	var events []event
	next := 70
	kinds := []anomaly.Kind{anomaly.KindSpike, anomaly.KindSpike, anomaly.KindOutOfRange, anomaly.KindStuck, anomaly.KindNull, anomaly.KindGap}
	for day := range days {
		if next < day*slotsPerDay+70 {
			next = day*slotsPerDay + 70
		}
		order := append([]anomaly.Kind(nil), kinds...)
		if day == 0 && rng.IntN(2) == 0 {
			order = append(order, anomaly.KindDrift)
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			ev := event{kind: k, start: next + rng.IntN(120), len: 1}
			switch k {
			case anomaly.KindSpike:
				ev.size = (2.2 + 1.8*rng.Float64()) * typ.MaxRatePerMin
				if sig.base+ev.size > typ.ValidMax-sig.amplitude {
					ev.size = -ev.size
				}
			case anomaly.KindOutOfRange:
				margin := (0.01 + 0.1*rng.Float64()) * (typ.ValidMax - typ.ValidMin)
				ev.size = typ.ValidMax + margin
				if rng.IntN(2) == 0 {
					ev.size = typ.ValidMin - margin
				}
			case anomaly.KindStuck:
				ev.len = 20 + rng.IntN(41)
			case anomaly.KindGap:
				ev.len = 4 + rng.IntN(117)
			case anomaly.KindDrift:
				ev.len = 360 + rng.IntN(721)
				ev.size = (5 + 10*rng.Float64()) * sig.noise
			}
			if ev.start+ev.len+70 > (day+1)*slotsPerDay {
				break // the day is full
			}
			events = append(events, ev)
			next = ev.start + ev.len + 70
		}
	}

	var readings []reading.Reading
	var truth []anomaly.TruthEvent
	for _, ev := range events {
		truth = append(truth, anomaly.TruthEvent{DeviceID: id, Kind: ev.kind, Start: slot(ev.start), End: slot(ev.start + ev.len - 1)})
	}
	drift, stuckUntil, stuckValue := 0.0, -1, 0.0
	ei := 0
	for i := range slots {
		for ei < len(events) && events[ei].start+events[ei].len <= i && events[ei].kind != anomaly.KindDrift {
			ei++
		}
		value := sig.base + sig.amplitude*math.Sin(2*math.Pi*float64(i)/slotsPerDay+phase) + sig.noise*rng.NormFloat64() + drift
		r := reading.Reading{Time: slot(i), DeviceID: id, Value: value, ValueValid: true}
		if ei < len(events) && i >= events[ei].start {
			ev := events[ei]
			switch ev.kind {
			case anomaly.KindSpike:
				r.Value += ev.size
			case anomaly.KindOutOfRange:
				r.Value = ev.size
			case anomaly.KindNull:
				r.Value, r.ValueValid = 0, false
			case anomaly.KindGap:
				continue
			case anomaly.KindStuck:
				if stuckUntil < i {
					stuckUntil, stuckValue = ev.start+ev.len-1, r.Value
				}
				r.Value = stuckValue
			case anomaly.KindDrift:
				if i < ev.start+ev.len {
					drift = ev.size * float64(i-ev.start+1) / float64(ev.len)
				} else {
					ei++ // the offset is held from here on
				}
			}
		}
		readings = append(readings, r)
	}
	return readings, truth
}

// detect runs readings through a fresh DeviceState and returns the
// detections: every reading that is evidence of at least one kind.
func detect(id string, typ reading.DeviceType, readings []reading.Reading) []anomaly.Detection {
	s := transform.NewDeviceState(reading.Device{ID: id, TypeCode: typ.Code}, typ, reading.Location{}, transform.DefaultParams())
	var out []anomaly.Detection
	for _, r := range readings {
		e := s.Push(r)
		if kinds := e.Kinds(); len(kinds) > 0 {
			out = append(out, anomaly.Detection{DeviceID: id, Time: e.Time, Kinds: kinds})
		}
	}
	return out
}

// TestDetectionOnSyntheticFleet runs 30 devices × 2 days of synthetic data
// with injected events through the transform and scores the detections.
// The counts are golden (the generator is seeded); spike, out_of_range and
// stuck must reach precision and recall ≥ 0.9.
func TestDetectionOnSyntheticFleet(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(2026, 3))
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var truth []anomaly.TruthEvent
	var detections []anomaly.Detection
	for _, typ := range reading.Catalog {
		for n := 1; n <= 5; n++ {
			id := fmt.Sprintf("%s-%03d", typ.Code, n)
			readings, events := synthDevice(rng, id, typ, start, 2)
			truth = append(truth, events...)
			detections = append(detections, detect(id, typ, readings)...)
		}
	}
	got := anomaly.Score(truth, detections, time.Minute)
	t.Logf("scores:\n%s", anomaly.FormatMetrics(got))

	counts := map[anomaly.Kind][5]int{} // TP, FP, Events, Found, FN
	for k, m := range got {
		counts[k] = [5]int{m.TP, m.FP, m.Events, m.Found, m.FN}
	}
	want := map[anomaly.Kind][5]int{
		anomaly.KindSpike:      {107, 0, 107, 107, 0},
		anomaly.KindOutOfRange: {54, 0, 54, 54, 0},
		anomaly.KindStuck:      {1593, 0, 55, 55, 0},
		anomaly.KindGap:        {54, 0, 54, 54, 0},
		anomaly.KindNull:       {53, 0, 53, 53, 0},
		// A one-hour trailing window barely sees a drift of a few noise
		// widths per hour; drift detections are mostly noise beyond 3σ.
		anomaly.KindDrift: {21, 582, 7, 7, 0},
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("TP, FP, events, found, FN per kind (-want +got):\n%s", diff)
	}
	for _, k := range []anomaly.Kind{anomaly.KindSpike, anomaly.KindOutOfRange, anomaly.KindStuck} {
		if m := got[k]; m.Precision < 0.9 || m.Recall < 0.9 {
			t.Errorf("%s: precision %.3f recall %.3f, want both ≥ 0.9", k, m.Precision, m.Recall)
		}
	}
}
