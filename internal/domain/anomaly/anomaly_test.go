package anomaly_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/quality"
)

var (
	rules   = anomaly.Rules{ZThreshold: 3, ValidMin: 0, ValidMax: 100, MaxRatePerMin: 10, StuckRun: 10, GapAfter: 3 * time.Minute}
	floored = anomaly.Rules{ZThreshold: 3, ValidMin: 0, ValidMax: 100, MaxRatePerMin: 10, RateFloor: time.Minute, StuckRun: 10, GapAfter: 3 * time.Minute}
)

// steady is a reading one minute after a previous value of 50, z 0.
func steady(change func(*anomaly.Observation)) anomaly.Observation {
	o := anomaly.Observation{
		Value: 50, ValueValid: true, ZValid: true,
		PrevValue: 50, SincePrevValue: time.Minute, HasPrevValue: true,
		SincePrev: time.Minute, HasPrev: true, Run: 1,
	}
	change(&o)
	return o
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rules anomaly.Rules
		obs   anomaly.Observation
		want  []string
	}{
		{"clean", rules, steady(func(*anomaly.Observation) {}), []string{}},
		{"z above", rules, steady(func(o *anomaly.Observation) { o.Z = 3.0001 }), []string{"zscore"}},
		{"z exactly threshold", rules, steady(func(o *anomaly.Observation) { o.Z = -3 }), []string{}},
		{"z undefined", rules, steady(func(o *anomaly.Observation) { o.Z, o.ZValid = 50, false }), []string{}},
		{"above max", rules, steady(func(o *anomaly.Observation) { o.Value, o.PrevValue = 100.001, 100 }), []string{"out_of_range"}},
		{"at max", rules, steady(func(o *anomaly.Observation) { o.Value, o.PrevValue = 100, 100 }), []string{}},
		{"range rule off without a range", anomaly.Rules{}, steady(func(o *anomaly.Observation) { o.Value = -5 }), []string{}},
		{"rate above", rules, steady(func(o *anomaly.Observation) { o.Value = 60.5 }), []string{"rate_of_change"}},
		{"rate exactly max", rules, steady(func(o *anomaly.Observation) { o.Value = 40 }), []string{}},
		{"rate over 90 s", rules, steady(func(o *anomaly.Observation) { o.Value, o.SincePrevValue = 65, 90*time.Second }), []string{}},
		// Without a floor, 2 in 10 s is 12/min; with the expected interval
		// as floor it is 2 per interval, within the limit of 10.
		{"fast cadence without floor", rules, steady(func(o *anomaly.Observation) { o.Value, o.SincePrevValue = 52, 10*time.Second }), []string{"rate_of_change"}},
		{"fast cadence with floor", floored, steady(func(o *anomaly.Observation) { o.Value, o.SincePrevValue = 52, 10*time.Second }), []string{}},
		{"fast cadence with floor, steep", floored, steady(func(o *anomaly.Observation) { o.Value, o.SincePrevValue = 60.5, 10*time.Second }), []string{"rate_of_change"}},
		{"floor does not shorten longer spans", floored, steady(func(o *anomaly.Observation) { o.Value, o.SincePrevValue = 65, 90*time.Second }), []string{}},
		{"rate without previous value", rules, steady(func(o *anomaly.Observation) { o.Value, o.HasPrevValue = 90, false }), []string{}},
		{"stuck below run", rules, steady(func(o *anomaly.Observation) { o.Run = 9 }), []string{}},
		{"stuck at run", rules, steady(func(o *anomaly.Observation) { o.Run = 10 }), []string{"stuck"}},
		{"gap exactly limit", rules, steady(func(o *anomaly.Observation) { o.SincePrev = 3 * time.Minute }), []string{}},
		{"gap", rules, steady(func(o *anomaly.Observation) { o.SincePrev = 3*time.Minute + 1 }), []string{"gap"}},
		{"gap without previous reading", rules, steady(func(o *anomaly.Observation) { o.SincePrev, o.HasPrev = time.Hour, false }), []string{}},
		{"null triggers only gap", rules, steady(func(o *anomaly.Observation) {
			o.ValueValid, o.Value, o.Z, o.Run, o.SincePrev = false, 500, 9, 20, time.Hour
		}), []string{"gap"}},
		{"all at once, canonical order", rules, steady(func(o *anomaly.Observation) {
			o.Value, o.Z, o.Run, o.SincePrev, o.SincePrevValue = 200, 8, 12, 5*time.Minute, 5*time.Minute
		}), []string{"zscore", "out_of_range", "rate_of_change", "stuck", "gap"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, tt.rules.Evaluate(tt.obs).Strings()); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStandardScore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		v, mean, std      float64
		count, minHistory int
		wantZ             float64
		wantOK            bool
	}{
		{"defined", 26, 20, 2, 30, 30, 3, true},
		{"too little history", 26, 20, 2, 29, 30, 0, false},
		{"zero std", 26, 20, 0, 60, 30, 0, false},
		{"one value", 26, 20, 2, 1, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			z, ok := anomaly.StandardScore(tt.v, tt.mean, tt.std, tt.count, tt.minHistory)
			if z != tt.wantZ || ok != tt.wantOK {
				t.Errorf("StandardScore = %v, %v; want %v, %v", z, ok, tt.wantZ, tt.wantOK)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reasons, flags []string
		want           []anomaly.Kind
	}{
		{nil, nil, []anomaly.Kind{}},
		{[]string{"zscore", "rate_of_change"}, nil, []anomaly.Kind{anomaly.KindSpike}},
		{[]string{"rate_of_change"}, nil, []anomaly.Kind{}},
		{[]string{"zscore"}, nil, []anomaly.Kind{anomaly.KindDrift}},
		{[]string{"zscore", "out_of_range"}, []string{"out_of_range"}, []anomaly.Kind{anomaly.KindOutOfRange}},
		{[]string{"zscore", "out_of_range", "rate_of_change"}, []string{"out_of_range"}, []anomaly.Kind{anomaly.KindOutOfRange}},
		{[]string{"stuck", "gap"}, []string{"stuck", "gap"}, []anomaly.Kind{anomaly.KindStuck, anomaly.KindGap}},
		{[]string{"gap"}, []string{"null", "gap"}, []anomaly.Kind{anomaly.KindGap, anomaly.KindNull}},
		{nil, []string{"null"}, []anomaly.Kind{anomaly.KindNull}},
		{nil, []string{"duplicate"}, []anomaly.Kind{}},
		{[]string{"rate_of_change", "zscore", "stuck", "unknown"}, nil, []anomaly.Kind{anomaly.KindSpike, anomaly.KindStuck}},
	}
	for _, tt := range tests {
		t.Run(caseName(tt.reasons, tt.flags), func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, anomaly.Classify(tt.reasons, tt.flags)); diff != "" {
				t.Errorf("kinds (-want +got):\n%s", diff)
			}
		})
	}
}

func caseName(reasons, flags []string) string {
	r, _ := anomaly.ParseReasons(reasons)
	f, _ := quality.ParseFlags(flags)
	return "reasons=" + r.String() + ";flags=" + f.String()
}

func TestParseReasons(t *testing.T) {
	t.Parallel()
	got, err := anomaly.ParseReasons([]string{"gap", "zscore", "gap"})
	if err != nil || got != anomaly.Gap|anomaly.ZScore {
		t.Errorf("ParseReasons = %v, %v; want zscore,gap", got, err)
	}
	if _, err := anomaly.ParseReasons([]string{"spike"}); err == nil || err.Error() != `anomaly: unknown reason "spike"` {
		t.Errorf("ParseReasons(spike) error = %v", err)
	}
}

func TestScore(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	m := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	det := func(dev string, minute int, kinds ...anomaly.Kind) anomaly.Detection {
		return anomaly.Detection{DeviceID: dev, Time: m(minute), Kinds: kinds}
	}
	truth := []anomaly.TruthEvent{
		{DeviceID: "A", Kind: anomaly.KindSpike, Start: m(10), End: m(10)},
		{DeviceID: "A", Kind: anomaly.KindSpike, Start: m(200), End: m(200)},
		{DeviceID: "A", Kind: anomaly.KindStuck, Start: m(100), End: m(129)},
		{DeviceID: "B", Kind: anomaly.KindGap, Start: m(50), End: m(59)}, // missing 50..59
		{DeviceID: "B", Kind: anomaly.KindGap, Start: m(300), End: m(309)},
		{DeviceID: "B", Kind: anomaly.KindNull, Start: m(400), End: m(400)},
	}
	detections := []anomaly.Detection{
		det("A", 10, anomaly.KindSpike),                    // TP
		det("A", 11, anomaly.KindSpike),                    // FP: next reading
		det("B", 10, anomaly.KindSpike),                    // FP: other device
		det("A", 109, anomaly.KindStuck),                   // TP
		det("A", 129, anomaly.KindStuck),                   // TP: End is included
		det("A", 130, anomaly.KindStuck),                   // FP: after End
		det("B", 59, anomaly.KindGap),                      // FP: the last missing slot itself
		det("B", 60, anomaly.KindGap),                      // TP: first reading after the gap
		det("B", 62, anomaly.KindGap),                      // TP: End + 3 intervals is included
		det("B", 63, anomaly.KindGap),                      // FP: beyond End + 3 intervals
		det("B", 313, anomaly.KindGap, anomaly.KindNull),   // FP twice
		det("B", 400, anomaly.KindNull, anomaly.KindDrift), // TP null, FP drift
	}
	got := anomaly.Score(truth, detections, time.Minute)
	want := map[anomaly.Kind]anomaly.Metrics{
		anomaly.KindSpike:      {TP: 1, FP: 2, Events: 2, Found: 1, FN: 1, Precision: 1.0 / 3, Recall: 0.5},
		anomaly.KindOutOfRange: {Precision: 1, Recall: 1},
		anomaly.KindStuck:      {TP: 2, FP: 1, Events: 1, Found: 1, Precision: 2.0 / 3, Recall: 1},
		anomaly.KindGap:        {TP: 2, FP: 3, Events: 2, Found: 1, FN: 1, Precision: 0.4, Recall: 0.5},
		anomaly.KindNull:       {TP: 1, FP: 1, Events: 1, Found: 1, Precision: 0.5, Recall: 1},
		anomaly.KindDrift:      {FP: 1, Precision: 0, Recall: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}
	// Scored device by device and combined, the scores are the same.
	byDevice := func(dev string) ([]anomaly.TruthEvent, []anomaly.Detection) {
		var tr []anomaly.TruthEvent
		var ds []anomaly.Detection
		for _, e := range truth {
			if e.DeviceID == dev {
				tr = append(tr, e)
			}
		}
		for _, d := range detections {
			if d.DeviceID == dev {
				ds = append(ds, d)
			}
		}
		return tr, ds
	}
	ta, da := byDevice("A")
	tb, db := byDevice("B")
	combined := anomaly.Combine(anomaly.Score(ta, da, time.Minute), anomaly.Score(tb, db, time.Minute))
	if diff := cmp.Diff(want, combined); diff != "" {
		t.Errorf("combined per-device scores (-want +got):\n%s", diff)
	}
}

func TestScoreOverlappingEvents(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	h := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Hour) }
	// A long drift containing a short one: a detection inside both finds both,
	// one after the short one still matches the long one.
	truth := []anomaly.TruthEvent{
		{DeviceID: "A", Kind: anomaly.KindDrift, Start: h(0), End: h(10)},
		{DeviceID: "A", Kind: anomaly.KindDrift, Start: h(2), End: h(3)},
		{DeviceID: "A", Kind: anomaly.KindDrift, Start: h(20), End: h(21)},
	}
	detections := []anomaly.Detection{
		{DeviceID: "A", Time: h(2), Kinds: []anomaly.Kind{anomaly.KindDrift}},
		{DeviceID: "A", Time: h(5), Kinds: []anomaly.Kind{anomaly.KindDrift}},
		{DeviceID: "A", Time: h(15), Kinds: []anomaly.Kind{anomaly.KindDrift}},
	}
	got := anomaly.Score(truth, detections, time.Minute)[anomaly.KindDrift]
	want := anomaly.Metrics{TP: 2, FP: 1, Events: 3, Found: 2, FN: 1, Precision: 2.0 / 3, Recall: 2.0 / 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}
}
