package transform_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// TestDetectionOnSimulatedFleet runs the fleet simulator's data, 30 devices
// × 2 days with its default anomaly rates, through the transform and scores
// the detections against the simulator's ground truth. The counts are
// golden: the simulator is deterministic for a seed.
func TestDetectionOnSimulatedFleet(t *testing.T) {
	t.Parallel()
	fleet := simulate.NewFleet(42, 30)
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]reading.DeviceType{}
	for _, typ := range fleet.Types {
		types[typ.Code] = typ
	}
	locations := map[string]reading.Location{}
	for _, loc := range fleet.Locations {
		locations[loc.ID] = loc
	}
	from := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	to := from.Add(48 * time.Hour)

	var truth []anomaly.TruthEvent
	var detections []anomaly.Detection
	readings := 0
	for _, dev := range fleet.Devices {
		s := transform.NewDeviceState(dev, types[dev.TypeCode], locations[dev.LocationID], transform.DefaultParams())
		err := gen.Range(dev, from, to, func(day simulate.DeviceDay) error {
			for _, a := range day.Anomalies {
				truth = append(truth, anomaly.TruthEvent{DeviceID: a.DeviceID, Kind: anomaly.Kind(a.Kind), Start: a.Start, End: a.End})
			}
			for _, r := range day.Readings {
				readings++
				e := s.Push(r)
				if kinds := e.Kinds(); len(kinds) > 0 {
					detections = append(detections, anomaly.Detection{DeviceID: e.DeviceID, Time: e.Time, Kinds: kinds})
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got := anomaly.Score(truth, detections, gen.Interval())
	t.Logf("%d readings, %d events, %d detections; scores:\n%s", readings, len(truth), len(detections), anomaly.FormatMetrics(got))

	counts := map[anomaly.Kind][5]int{} // TP, FP, events, found, FN
	for k, m := range got {
		counts[k] = [5]int{m.TP, m.FP, m.Events, m.Found, m.FN}
	}
	want := map[anomaly.Kind][5]int{
		anomaly.KindSpike:      {121, 0, 121, 121, 0},
		anomaly.KindOutOfRange: {66, 0, 66, 66, 0},
		anomaly.KindStuck:      {329, 0, 11, 11, 0},
		anomaly.KindGap:        {10, 0, 10, 10, 0},
		anomaly.KindNull:       {184, 0, 184, 184, 0},
		// zscore without a jump is weak evidence of drift: the simulated
		// environment (weather, occupancy, machine load) moves values
		// beyond 3σ of the last hour far more often than drift does.
		anomaly.KindDrift: {58, 1377, 4, 4, 0},
	}
	if readings != 85723 || len(truth) != 396 || len(detections) != 2145 {
		t.Errorf("got %d readings, %d events, %d detections; want 85723, 396, 2145", readings, len(truth), len(detections))
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
