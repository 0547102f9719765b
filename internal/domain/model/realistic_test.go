package model_test

import (
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/model"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// simulatedRows runs the fleet simulator (seed, devices, days from Monday 2
// March 2026) through the transform, the hourly aggregator and
// features.Build, the way the batch fills dwh.ml_features, and marks the
// rows that a ground-truth event overlaps.
func simulatedRows(t testing.TB, seed int64, devices, days int) []model.Row {
	t.Helper()
	fleet := simulate.NewFleet(seed, devices)
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
	to := from.AddDate(0, 0, days)

	type span struct{ start, end time.Time }
	truth := map[string][]span{}
	g := features.NewAggregator()
	for _, dev := range fleet.Devices {
		s := transform.NewDeviceState(dev, types[dev.TypeCode], locations[dev.LocationID], transform.DefaultParams())
		err := gen.Range(dev, from, to, func(day simulate.DeviceDay) error {
			for _, a := range day.Anomalies {
				truth[a.DeviceID] = append(truth[a.DeviceID], span{a.Start, a.End})
			}
			for _, r := range day.Readings {
				e := s.Push(r)
				g.Add(&e)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	built := features.Build(g.Hours(), from, to)
	rows := make([]model.Row, len(built))
	for i, b := range built {
		rows[i] = model.Row{
			DeviceID: b.DeviceID, Hour: b.Hour, DeviceType: b.DeviceType, Zone: b.Zone,
			HourOfDay: b.HourOfDay, DayOfWeek: b.DayOfWeek, Count: b.Count,
			Mean: b.Mean, Std: b.Std, Min: b.Min, Max: b.Max, Slope: b.Slope, PrevHourMean: b.PrevHourMean,
			AnomalyCount: b.AnomalyCount, MeanQuality: b.MeanQuality, RunID: "sim-" + b.Hour.Format("2006-01-02"),
		}
		// Start and End are the first and last slot of the event: it
		// overlaps [hour, hour+1h) when it starts before the hour ends and
		// ends at or after the hour starts.
		for _, sp := range truth[b.DeviceID] {
			if sp.start.Before(b.Hour.Add(time.Hour)) && !sp.end.Before(b.Hour) {
				rows[i].Truth = true
				break
			}
		}
	}
	return rows
}

// TestRealistic trains on six simulated days of 20 devices and evaluates on
// the seventh, against the rule detector on the same rows. Everything is
// deterministic, so the metrics are golden. The test day holds a drift of
// CO2-003 (01:00 to 09:00) that neither the rules nor the models catch:
// hourly features see a slow ramp as normal variation.
func TestRealistic(t *testing.T) {
	t.Parallel()
	rows := simulatedRows(t, 42, 20, 7)
	train, test, at, err := model.SplitLastDays(rows, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC); !at.Equal(want) || len(train) != 2851 || len(test) != 459 {
		t.Fatalf("split at %s into %d train and %d test rows, want %s, 2851 and 459", at, len(train), len(test), want)
	}
	truth := make([]bool, len(test))
	rules := make([]float64, len(test))
	for i := range test {
		truth[i] = test[i].Truth
		rules[i] = model.RuleScore(&test[i])
	}
	ruleM := model.Evaluate(rules, truth, model.RuleThreshold)
	t.Logf("rules:    %s", ruleM)
	const wantRules = "rows=459 positives=149 TP=107 FP=108 FN=42 precision=0.4977 recall=0.7181 PR-AUC=0.5883"
	if got := ruleM.String(); got != wantRules {
		t.Errorf("rules: got  %s\nwant %s", got, wantRules)
	}
	for _, tt := range []struct {
		kind, want string
		floor      float64 // PR-AUC at least
	}{
		{model.KindLogistic, "rows=459 positives=149 TP=139 FP=0 FN=10 precision=1.0000 recall=0.9329 PR-AUC=0.9643", 0.95},
		{model.KindStumps, "rows=459 positives=149 TP=139 FP=0 FN=10 precision=1.0000 recall=0.9329 PR-AUC=0.9607", 0.95},
	} {
		m, err := model.Train(train, model.Options{Kind: tt.kind})
		if err != nil {
			t.Fatal(err)
		}
		scores := make([]float64, len(test))
		for i := range test {
			scores[i] = m.Score(&test[i])
		}
		got := model.Evaluate(scores, truth, m.Threshold)
		t.Logf("%-9s %s (threshold %.4f, version %s)", tt.kind+":", got, m.Threshold, m.Version)
		if got.String() != tt.want {
			t.Errorf("%s: got  %s\nwant %s", tt.kind, got, tt.want)
		}
		if got.PRAUC < ruleM.PRAUC+0.2 || got.PRAUC < tt.floor {
			t.Errorf("%s: PR-AUC %.4f, want at least the rules' %.4f + 0.2 and %.2f", tt.kind, got.PRAUC, ruleM.PRAUC, tt.floor)
		}
	}
}
