package model_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/model"
)

var kinds = []string{model.KindLogistic, model.KindStumps}

func f(v float64) *float64 { return &v }

// smallRows are three simulated days of 12 devices: enough for every kind
// of anomaly, quick to train on.
func smallRows(t *testing.T) []model.Row {
	t.Helper()
	return simulatedRows(t, 7, 12, 3)
}

func TestSchemaHash(t *testing.T) {
	t.Parallel()
	// A change here is a change of the model's inputs or of FeatureVersion:
	// models trained before it must fail CheckSchema.
	const want = "c22542f8b361b6c135700f7fcdabec7e27b82cfba1f4eded89d7b6639f52e40c"
	if got := model.SchemaHash(model.Inputs()); got != want {
		t.Errorf("SchemaHash(Inputs()) = %s, want %s", got, want)
	}
	retyped := model.Inputs()
	retyped[1].Type = "bigint"
	swapped := model.Inputs()
	swapped[2], swapped[3] = swapped[3], swapped[2]
	for _, cols := range [][]model.Column{nil, retyped, swapped, model.Inputs()[1:]} {
		if model.SchemaHash(cols) == want {
			t.Errorf("SchemaHash(%v) equals that of Inputs()", cols)
		}
	}
}

func TestTrainIsDeterministic(t *testing.T) {
	t.Parallel()
	rows := smallRows(t)
	shuffled := slices.Clone(rows)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var encoded [][]byte
			var versions []string
			for _, in := range [][]model.Row{rows, rows, shuffled} {
				m, err := model.Train(in, model.Options{Kind: kind, Seed: 5})
				if err != nil {
					t.Fatal(err)
				}
				b, err := model.Encode(m)
				if err != nil {
					t.Fatal(err)
				}
				encoded = append(encoded, b)
				versions = append(versions, m.Version)
			}
			if !strings.HasPrefix(versions[0], kind+"-") || len(versions[0]) != len(kind)+13 {
				t.Errorf("version %q, want %s- and 12 hex digits", versions[0], kind)
			}
			for i, what := range []string{"second training", "training on shuffled rows"} {
				if versions[i+1] != versions[0] {
					t.Errorf("%s: version %s, first %s", what, versions[i+1], versions[0])
				}
				if !bytes.Equal(encoded[i+1], encoded[0]) {
					t.Errorf("%s: encoding differs (-first +this):\n%s", what, cmp.Diff(string(encoded[0]), string(encoded[i+1])))
				}
			}
		})
	}
}

func TestTrainRecordsTraining(t *testing.T) {
	t.Parallel()
	rows := smallRows(t)
	m, err := model.Train(rows, model.Options{Kind: model.KindStumps, Seed: 9, Iterations: 50})
	if err != nil {
		t.Fatal(err)
	}
	positives := 0
	for _, r := range rows {
		if r.Truth {
			positives++
		}
	}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	want := model.Training{
		From:      day.Add(time.Hour), // features.Build needs the hour before
		To:        day.Add(71 * time.Hour),
		RunIDs:    []string{"sim-2026-03-02", "sim-2026-03-03", "sim-2026-03-04"},
		Rows:      len(rows),
		Positives: positives,
		Seed:      9,
		Options:   model.Options{Kind: model.KindStumps, Seed: 9, Iterations: 50, LearningRate: 0.1, L2: 1},
	}
	if diff := cmp.Diff(want, m.Training); diff != "" {
		t.Errorf("training (-want +got):\n%s", diff)
	}
	if len(m.Stumps) != 50 || len(m.Weights) != 0 {
		t.Errorf("%d stumps and %d weights, want 50 and 0", len(m.Stumps), len(m.Weights))
	}
	wantTypes := []string{"CO2", "HUM", "PRES", "PWR", "TEMP", "VIB"}
	if diff := cmp.Diff(wantTypes, m.DeviceTypes); diff != "" {
		t.Errorf("device types (-want +got):\n%s", diff)
	}
	if m.Features[len(m.Features)-1] != "type_VIB" || !slices.Equal(m.ExpectedCounts, []int{60, 60, 60, 60, 60, 60}) {
		t.Errorf("features %v, expected counts %v", m.Features, m.ExpectedCounts)
	}
}

func TestTrainErrors(t *testing.T) {
	t.Parallel()
	h := time.Date(2026, 3, 2, 5, 0, 0, 0, time.UTC)
	neg := model.Row{DeviceID: "A", Hour: h, DeviceType: "TEMP", Count: 60}
	pos := model.Row{DeviceID: "B", Hour: h, DeviceType: "TEMP", Count: 60, AnomalyCount: 1, Truth: true}
	tests := []struct {
		name string
		rows []model.Row
		o    model.Options
		want string
	}{
		{"no rows", nil, model.Options{}, "model: no training rows"},
		{"no positive", []model.Row{neg}, model.Options{}, "model: none of the 1 training rows is positive (Truth): nothing to learn"},
		{"no negative", []model.Row{pos}, model.Options{}, "model: all 1 training rows are positive (Truth): nothing to learn"},
		{"unknown kind", []model.Row{neg, pos}, model.Options{Kind: "forest"}, `model: unknown kind "forest": want "logistic" or "stumps"`},
		{"negative iterations", []model.Row{neg, pos}, model.Options{Iterations: -1}, "model: options {Kind:logistic Seed:0 Iterations:-1 LearningRate:0 L2:0}: want iterations, learning rate and L2 zero (default) or positive and finite"},
		{"NaN L2", []model.Row{neg, pos}, model.Options{L2: math.NaN()}, "model: options {Kind:logistic Seed:0 Iterations:0 LearningRate:0 L2:NaN}: want iterations, learning rate and L2 zero (default) or positive and finite"},
		{"duplicate device-hour", []model.Row{neg, pos, neg}, model.Options{}, "model: two training rows for device A hour 2026-03-02T05:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := model.Train(tt.rows, tt.o)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Train = %v, %v; want error %q", m, err, tt.want)
			}
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	rows := smallRows(t)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			m, err := model.Train(rows, model.Options{Kind: kind})
			if err != nil {
				t.Fatal(err)
			}
			m.Training.SplitAt = time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)
			b, err := model.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := model.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(m, got); diff != "" {
				t.Errorf("decoded model (-want +got):\n%s", diff)
			}
			again, err := model.Encode(got)
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("re-encoding differs (err %v)", err)
			}
			for i := range rows {
				if a, b := m.Score(&rows[i]), got.Score(&rows[i]); a != b {
					t.Fatalf("row %d: decoded model scores %v, original %v", i, b, a)
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	m, err := model.Train(smallRows(t), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	// edit decodes b into a map, applies fn and encodes it again.
	edit := func(fn func(map[string]any)) []byte {
		var obj map[string]any
		if err := json.Unmarshal(b, &obj); err != nil {
			t.Fatal(err)
		}
		fn(obj)
		out, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	incomplete := "model " + m.Version + ": incomplete or inconsistent: "
	tests := []struct {
		name string
		in   []byte
		want string // the error starts with it
	}{
		{"empty", nil, "model: decode: unexpected end of JSON input"},
		{"not an object", []byte(`[1, 2]`), "model: decode: json: cannot unmarshal array"},
		{"no format", edit(func(o map[string]any) { delete(o, "format") }), "model: decode: no format version: not an encoded model"},
		{"newer format", edit(func(o map[string]any) { o["format"] = 2 }), "model: decode: format version 2, this build reads 1"},
		{"unknown field", edit(func(o map[string]any) { o["trees"] = []int{} }), `model: decode: json: unknown field "trees"`},
		{"no weights", edit(func(o map[string]any) { delete(o, "weights") }), incomplete + "a logistic model needs 18 weights and no stumps, has 0 and 0"},
		{"no kind", edit(func(o map[string]any) { delete(o, "kind") }), incomplete + `kind "", want "logistic" or "stumps"`},
		{"no inputs", edit(func(o map[string]any) { delete(o, "inputs") }), incomplete + "no inputs"},
		{"short scale", edit(func(o map[string]any) { o["scale"] = o["scale"].([]any)[1:] }), incomplete + "18 centres and 17 scales for 18 features"},
		{"zero scale", edit(func(o map[string]any) { o["scale"].([]any)[0] = 0 }), incomplete + "scale of feature log1p_anomaly_count is 0, want positive and finite"},
		{"other feature version", edit(func(o map[string]any) { o["features"].([]any)[0] = "anomaly_count" }), incomplete + "features ["},
		{"schema hash", edit(func(o map[string]any) { o["schema_hash"] = strings.Repeat("0", 64) }), incomplete + "schema hash 000000000000 is not that of its inputs"},
		{"threshold", edit(func(o map[string]any) { o["threshold"] = 1.5 }), incomplete + "threshold 1.5, want in [0, 1]"},
		{"tampered weight", edit(func(o map[string]any) { o["weights"].([]any)[0] = 42.0 }), incomplete + `version "` + m.Version + `" does not match the parameters, which hash to "logistic-`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := model.Decode(tt.in)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Decode = %v, %v; want an error starting %q", got, err, tt.want)
			}
		})
	}
}

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	m, err := model.Train(smallRows(t), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	without := func(name string) []model.Column {
		return slices.DeleteFunc(model.Inputs(), func(c model.Column) bool { return c.Name == name })
	}
	retyped := model.Inputs()
	retyped[1].Type = "bigint"
	reordered := model.Inputs()
	reordered[0], reordered[1] = reordered[1], reordered[0]
	tests := []struct {
		name string
		cols []model.Column
		want string // "" for no error; else the part after the hashes
	}{
		{"inputs", model.Inputs(), ""},
		{"missing", without("slope"), `column "slope" is missing`},
		{"retyped", retyped, `column "count" is bigint, not integer`},
		{"extra", append(model.Inputs(), model.Column{Name: "zone", Type: "text"}), `column "zone" is extra`},
		{"all three", append(without("std"), model.Column{Name: "zone", Type: "text"}),
			`column "std" is missing; column "zone" is extra`},
		{"reordered", reordered, "the columns come in another order: count, device_type, mean, std, min, max, slope, anomaly_count, mean_quality, prev_hour_mean"},
		{"none", nil, `column "device_type" is missing; column "count" is missing; column "mean" is missing; column "std" is missing; column "min" is missing; column "max" is missing; column "slope" is missing; column "anomaly_count" is missing; column "mean_quality" is missing; column "prev_hour_mean" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := m.CheckSchema(tt.cols)
			if tt.want == "" {
				if err != nil {
					t.Errorf("CheckSchema(Inputs()) = %v", err)
				}
				return
			}
			want := fmt.Sprintf("model %s: trained on feature schema %s but dwh.ml_features has %s: %s",
				m.Version, m.SchemaHash[:12], model.SchemaHash(tt.cols)[:12], tt.want)
			if err == nil || err.Error() != want {
				t.Errorf("CheckSchema error\n got %v\nwant %s", err, want)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	// By score: 0.9 T | 0.8 F T | 0.7 T F F | 0.2 T | 0.1 F. Flagging at
	// 0.7 finds TP 3, FP 3, FN 1. Average precision over the distinct
	// scores, each tie group counted at once:
	// 0.9: P 1/1, ΔR 1/4; 0.8: P 2/3, ΔR 1/4; 0.7: P 3/6, ΔR 1/4;
	// 0.2: P 4/7, ΔR 1/4; 0.1: ΔR 0. Sum: 1/4 + 1/6 + 1/8 + 1/7 = 115/168.
	scores := []float64{0.8, 0.7, 0.9, 0.1, 0.7, 0.2, 0.8, 0.7}
	truth := []bool{false, true, true, false, false, true, true, false}
	tests := []struct {
		name      string
		scores    []float64
		truth     []bool
		threshold float64
		want      model.Metrics
	}{
		{"ties", scores, truth, 0.7, model.Metrics{Rows: 8, Positives: 4, TP: 3, FP: 3, FN: 1, Precision: 0.5, Recall: 0.75, PRAUC: 115.0 / 168}},
		{"nothing flagged", scores, truth, 0.95, model.Metrics{Rows: 8, Positives: 4, TP: 0, FP: 0, FN: 4, Precision: 0, Recall: 0, PRAUC: 115.0 / 168}},
		// One tie group of everything: AP is the positive rate.
		{"all equal", []float64{0.5, 0.5, 0.5, 0.5}, []bool{true, false, false, false}, 0.5, model.Metrics{Rows: 4, Positives: 1, TP: 1, FP: 3, Precision: 0.25, Recall: 1, PRAUC: 0.25}},
		{"perfect", []float64{0.9, 0.1, 0.8}, []bool{true, false, true}, 0.5, model.Metrics{Rows: 3, Positives: 2, TP: 2, Precision: 1, Recall: 1, PRAUC: 1}},
		{"no positives", []float64{0.9, 0.1}, []bool{false, false}, 0.5, model.Metrics{Rows: 2, FP: 1}},
		// NaN ranks last and is never flagged.
		{"NaN", []float64{math.NaN(), 0.3}, []bool{true, false}, 0, model.Metrics{Rows: 2, Positives: 1, FP: 1, FN: 1, PRAUC: 0.5}},
		{"empty", nil, nil, 0.5, model.Metrics{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := model.Evaluate(tt.scores, tt.truth, tt.threshold)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
		})
	}
	// The order of the rows, within ties too, does not change anything.
	rng := rand.New(rand.NewPCG(3, 4))
	want := model.Evaluate(scores, truth, 0.7)
	for range 20 {
		s, tr := slices.Clone(scores), slices.Clone(truth)
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i]; tr[i], tr[j] = tr[j], tr[i] })
		if got := model.Evaluate(s, tr, 0.7); got != want {
			t.Fatalf("shuffled %v %v: %+v, want %+v", s, tr, got, want)
		}
	}
}

func TestRuleScore(t *testing.T) {
	t.Parallel()
	rows := []model.Row{{AnomalyCount: 0}, {AnomalyCount: 1}, {AnomalyCount: 7}}
	var scores []float64
	for i := range rows {
		scores = append(scores, model.RuleScore(&rows[i]))
	}
	got := model.Evaluate(scores, []bool{false, true, false}, model.RuleThreshold)
	want := model.Metrics{Rows: 3, Positives: 1, TP: 1, FP: 1, Precision: 0.5, Recall: 1, PRAUC: 0.5}
	if !slices.Equal(scores, []float64{0, 1, 7}) || got != want {
		t.Errorf("rule scores %v, metrics %+v; want [0 1 7], %+v", scores, got, want)
	}
}

// TestNoNaN trains on rows with every kind of degenerate value mixed into
// simulated ones and checks that the parameters and every score are finite.
func TestNoNaN(t *testing.T) {
	t.Parallel()
	h := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
	odd := []model.Row{
		{DeviceID: "X-1", DeviceType: "TEMP"},                                             // count 0, everything NULL
		{DeviceID: "X-2", DeviceType: "TEMP", Count: 1, Mean: f(3), Min: f(3), Max: f(3)}, // one value: std, slope NULL
		{DeviceID: "X-3", DeviceType: "PWR", Count: 60, Mean: f(5), Std: f(0), Min: f(5), Max: f(5), Slope: f(0), PrevHourMean: f(9), Truth: true},
		{DeviceID: "X-4", DeviceType: "HUM", Count: 60, Mean: f(5), Std: f(1e-300), Min: f(-1e300), Max: f(1e300), Slope: f(1e300), PrevHourMean: f(-1e300), AnomalyCount: 60, Truth: true},
		{DeviceID: "X-5", DeviceType: "CO2", Count: 60, Mean: f(math.NaN()), Std: f(math.Inf(1)), Min: f(math.Inf(-1)), Max: f(math.NaN()), Slope: f(math.NaN()), MeanQuality: math.NaN()},
		{DeviceID: "X-6", DeviceType: "CO2", Count: -3, Mean: f(1), Std: f(-2), Min: f(0), Max: f(2), AnomalyCount: -1, MeanQuality: math.Inf(-1)},
		{DeviceID: "X-7", DeviceType: "NEW", Count: 600, Mean: f(1), Std: f(2), Min: f(0), Max: f(9), Slope: f(-1)}, // a type not seen in training
	}
	for i := range odd {
		odd[i].Hour = h
	}
	rows := append(smallRows(t), odd[:6]...)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			m, err := model.Train(rows, model.Options{Kind: kind})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := model.Encode(m); err != nil { // Encode refuses parameters that are not finite
				t.Fatal(err)
			}
			for i := range odd {
				s := m.Score(&odd[i])
				if math.IsNaN(s) || s < 0 || s > 1 {
					t.Errorf("row %s scores %v, want a probability", odd[i].DeviceID, s)
				}
			}
			var sum float64
			for i := range rows {
				sum += m.Score(&rows[i])
			}
			if math.IsNaN(sum) || math.IsInf(sum, 0) {
				t.Errorf("sum of training scores %v", sum)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var rows []model.Row
	for _, hours := range []int{1, 23, 24, 47, 48, 70} { // days 0, 0, 1, 1, 2, 2
		rows = append(rows, model.Row{DeviceID: "A", Hour: day.Add(time.Duration(hours) * time.Hour)})
	}
	rows[2], rows[5] = rows[5], rows[2] // any order
	hoursOf := func(rs []model.Row) []int {
		var out []int
		for _, r := range rs {
			out = append(out, int(r.Hour.Sub(day)/time.Hour))
		}
		return out
	}
	train, test := model.SplitByTime(rows, day.Add(24*time.Hour))
	if diff := cmp.Diff([][]int{{1, 23}, {70, 47, 48, 24}}, [][]int{hoursOf(train), hoursOf(test)}); diff != "" {
		t.Errorf("SplitByTime (-want +got):\n%s", diff)
	}
	for days, want := range map[int][][]int{1: {{1, 23, 47, 24}, {70, 48}}, 2: {{1, 23}, {70, 47, 48, 24}}} {
		train, test, at, err := model.SplitLastDays(rows, days)
		if err != nil {
			t.Fatal(err)
		}
		if wantAt := day.AddDate(0, 0, 3-days); !at.Equal(wantAt) {
			t.Errorf("SplitLastDays(%d) at %s, want %s", days, at, wantAt)
		}
		if diff := cmp.Diff(want, [][]int{hoursOf(train), hoursOf(test)}); diff != "" {
			t.Errorf("SplitLastDays(%d) (-want +got):\n%s", days, diff)
		}
	}
	for _, tt := range []struct {
		rows []model.Row
		days int
		want string
	}{
		{rows, 3, "model: split at 2026-03-02T00:00:00Z (last 3 days): no training rows before it"},
		{rows, 0, "model: split off 0 days: want at least 1"},
		{nil, 1, "model: split: no rows"},
	} {
		if _, _, _, err := model.SplitLastDays(tt.rows, tt.days); err == nil || err.Error() != tt.want {
			t.Errorf("SplitLastDays(%d rows, %d) error %v, want %q", len(tt.rows), tt.days, err, tt.want)
		}
	}
}
