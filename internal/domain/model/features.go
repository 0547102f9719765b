package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
)

// Row is one device-hour of dwh.ml_features, with its ground truth when
// known.
type Row struct {
	DeviceID             string
	Hour                 time.Time
	DeviceType           string
	Zone                 string
	HourOfDay, DayOfWeek int
	Count                int
	// NULL is nil.
	Mean, Std, Min, Max, Slope, PrevHourMean *float64
	AnomalyCount                             int
	MeanQuality                              float64
	RunID                                    string // dwh.ml_features.run_id; Train records the set in Training.RunIDs
	Truth                                    bool   // a seeded anomaly overlaps the hour; for training and evaluation only
}

// Column is one input column the model reads: its name in dwh.ml_features
// and its PostgreSQL type as information_schema.columns.data_type spells it
// ("text", "smallint", "integer", "double precision").
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// FeatureVersion is the version of the derivation of the features from the
// input columns (the package comment lists them). Change it with the
// derivation: it is part of SchemaHash, so a model trained on an older
// derivation fails CheckSchema and Decode instead of scoring wrong.
const FeatureVersion = 1

// RatioCap bounds every ratio feature: a value over a near-zero standard
// deviation would otherwise dominate the standardisation.
const RatioCap = 1000.0

// Inputs are the columns of dwh.ml_features the model reads, in the table's
// column order. The caller passes CheckSchema the same columns as
// information_schema.columns lists them (WHERE column_name = ANY(names)
// ORDER BY ordinal_position).
func Inputs() []Column {
	return []Column{
		{"device_type", "text"},
		{"count", "integer"},
		{"mean", "double precision"},
		{"std", "double precision"},
		{"min", "double precision"},
		{"max", "double precision"},
		{"slope", "double precision"},
		{"anomaly_count", "integer"},
		{"mean_quality", "double precision"},
		{"prev_hour_mean", "double precision"},
	}
}

// SchemaHash is the hex SHA-256 of the input columns (name and type, in
// order) and of FeatureVersion.
func SchemaHash(cols []Column) string {
	h := sha256.New()
	fmt.Fprintf(h, "iot-etl model feature schema\nfeature_version %d\n", FeatureVersion)
	for _, c := range cols {
		// Names and types hold no tab or newline, so the lines are unambiguous.
		fmt.Fprintf(h, "%s\t%s\n", c.Name, c.Type)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// baseFeatures are the features every model has, before the one-hot of the
// device types.
var baseFeatures = []string{
	"log1p_anomaly_count",
	"log1p_missing",
	"stuck",
	"spike_up",
	"spike_down",
	"jump",
	"trend",
	"mean_quality",
	"null_mean",
	"null_std",
	"null_slope",
	"null_prev_hour_mean",
}

const typePrefix = "type_"

// featureNames lists the features of a model over deviceTypes.
func featureNames(deviceTypes []string) []string {
	names := append([]string(nil), baseFeatures...)
	for _, t := range deviceTypes {
		names = append(names, typePrefix+t)
	}
	return names
}

// deriver turns rows into raw (unstandardised) feature vectors.
type deriver struct {
	types    []string // sorted
	expected []int    // per type: the largest count seen in training
	fallback int      // for a type not seen in training
}

func (d *deriver) typeIndex(t string) int {
	for i, s := range d.types {
		if s == t {
			return i
		}
	}
	return -1
}

// derive writes the features of r into x (len(baseFeatures)+len(d.types)).
func (d *deriver) derive(r *Row, x []float64) {
	clear(x)
	ti := d.typeIndex(r.DeviceType)
	expected := d.fallback
	if ti >= 0 {
		expected = d.expected[ti]
		x[len(baseFeatures)+ti] = 1
	}
	std := finiteOr(r.Std, 0)
	x[0] = math.Log1p(float64(max(r.AnomalyCount, 0)))
	x[1] = math.Log1p(float64(max(expected-r.Count, 0)))
	if r.Std != nil && *r.Std == 0 && r.Count > 1 {
		x[2] = 1
	}
	if r.Mean != nil && r.Max != nil {
		x[3] = ratio(*r.Max-*r.Mean, std)
	}
	if r.Mean != nil && r.Min != nil {
		x[4] = ratio(*r.Mean-*r.Min, std)
	}
	if r.Mean != nil && r.PrevHourMean != nil {
		x[5] = ratio(math.Abs(*r.Mean-*r.PrevHourMean), std)
	}
	if r.Slope != nil {
		x[6] = ratio(math.Abs(*r.Slope)*60, std)
	}
	x[7] = finite(r.MeanQuality)
	x[8] = indicator(r.Mean == nil)
	x[9] = indicator(r.Std == nil)
	x[10] = indicator(r.Slope == nil)
	x[11] = indicator(r.PrevHourMean == nil)
}

// ratio is num/den capped at ±RatioCap; 0 when den is not a positive finite
// number or num is not finite.
func ratio(num, den float64) float64 {
	if !(den > 0) || math.IsInf(den, 0) || math.IsNaN(num) || math.IsInf(num, 0) {
		return 0
	}
	return math.Max(-RatioCap, math.Min(RatioCap, num/den))
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func finiteOr(p *float64, def float64) float64 {
	if p == nil || math.IsNaN(*p) || math.IsInf(*p, 0) {
		return def
	}
	return *p
}

func indicator(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// schemaDiff describes how cols differ from want: missing, retyped and
// extra columns, or their order when only that differs.
func schemaDiff(want, cols []Column) string {
	got := make(map[string]string, len(cols))
	for _, c := range cols {
		got[c.Name] = c.Type
	}
	wanted := make(map[string]bool, len(want))
	var problems []string
	for _, c := range want {
		wanted[c.Name] = true
		switch typ, ok := got[c.Name]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("column %q is missing", c.Name))
		case typ != c.Type:
			problems = append(problems, fmt.Sprintf("column %q is %s, not %s", c.Name, typ, c.Type))
		}
	}
	for _, c := range cols {
		if !wanted[c.Name] {
			problems = append(problems, fmt.Sprintf("column %q is extra", c.Name))
		}
	}
	if len(problems) == 0 {
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = c.Name
		}
		problems = append(problems, "the columns come in another order: "+strings.Join(names, ", "))
	}
	return strings.Join(problems, "; ")
}
