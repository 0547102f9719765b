package model

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// FormatVersion is the version of the encoding of Model that Encode writes
// and Decode accepts.
const FormatVersion = 1

// The kinds of model.
const (
	KindLogistic = "logistic"
	KindStumps   = "stumps"
)

// Options tune Train. Zero values take the defaults of the kind:
//
//	             logistic  stumps
//	Iterations   1000      200      gradient steps; boosting rounds
//	LearningRate 0.5       0.1      step size; shrinkage of each stump
//	L2           0.001     1        on the weights (not the intercept); on the leaf values
type Options struct {
	Kind         string  `json:"kind"` // KindLogistic (default) or KindStumps
	Seed         int64   `json:"seed"` // recorded only: training uses no randomness
	Iterations   int     `json:"iterations"`
	LearningRate float64 `json:"learning_rate"`
	L2           float64 `json:"l2"`
}

// Training is what the caller records about the training run. Train fills
// everything but SplitAt, which the caller sets when it split the rows
// (SplitByTime, SplitLastDays). It is not part of the model's Version.
type Training struct {
	From    time.Time `json:"from"`     // the first training hour
	To      time.Time `json:"to"`       // the end of the last training hour
	SplitAt time.Time `json:"split_at"` // where the test set starts, zero if none
	// RunIDs are the dwh.ml_features run_id values of the training rows,
	// sorted and deduplicated ("" when the rows carry none is left out).
	RunIDs    []string `json:"run_ids"`
	Rows      int      `json:"rows"`
	Positives int      `json:"positives"`
	Seed      int64    `json:"seed"`
	Options   Options  `json:"options"` // with the defaults filled in
}

// Stump is one boosted decision stump: it adds Left to the log-odds of a
// row whose standardised feature Feature is <= Threshold, Right otherwise.
type Stump struct {
	Feature   int     `json:"feature"`
	Threshold float64 `json:"threshold"`
	Left      float64 `json:"left"`
	Right     float64 `json:"right"`
}

// Model is a trained model. Encode and Decode carry all of it; Score reads
// only the exported fields, so a decoded model scores like the original.
type Model struct {
	Format     int      `json:"format"`  // FormatVersion
	Version    string   `json:"version"` // Kind-<first 12 hex digits of the SHA-256 of the parameters>
	Kind       string   `json:"kind"`
	SchemaHash string   `json:"schema_hash"` // SchemaHash(Inputs)
	Inputs     []Column `json:"inputs"`
	// Features are the names of the derived features, in vector order;
	// DeviceTypes are the types of the one-hot, sorted, with the largest
	// count seen for each in training (ExpectedCounts) and over all types
	// (DefaultExpectedCount, for a type not seen in training).
	Features             []string `json:"features"`
	DeviceTypes          []string `json:"device_types"`
	ExpectedCounts       []int    `json:"expected_counts"`
	DefaultExpectedCount int      `json:"default_expected_count"`
	// Standardisation: feature i enters as (x − Center[i]) / Scale[i].
	Center []float64 `json:"center"`
	Scale  []float64 `json:"scale"`
	// Intercept is the bias of the logistic model and the base log-odds of
	// the stumps; Weights (logistic) or Stumps (stumps) hold the rest.
	Intercept float64   `json:"intercept"`
	Weights   []float64 `json:"weights,omitempty"`
	Stumps    []Stump   `json:"stumps,omitempty"`
	Threshold float64   `json:"threshold"` // Flag when Score >= Threshold
	Training  Training  `json:"training"`
}

func (o Options) withDefaults() (Options, error) {
	if o.Kind == "" {
		o.Kind = KindLogistic
	}
	var iter int
	var lr, l2 float64
	switch o.Kind {
	case KindLogistic:
		iter, lr, l2 = 1000, 0.5, 0.001
	case KindStumps:
		iter, lr, l2 = 200, 0.1, 1
	default:
		return o, fmt.Errorf("model: unknown kind %q: want %q or %q", o.Kind, KindLogistic, KindStumps)
	}
	if o.Iterations < 0 || !(o.LearningRate >= 0) || math.IsInf(o.LearningRate, 0) || !(o.L2 >= 0) || math.IsInf(o.L2, 0) {
		return o, fmt.Errorf("model: options %+v: want iterations, learning rate and L2 zero (default) or positive and finite", o)
	}
	if o.Iterations == 0 {
		o.Iterations = iter
	}
	if o.LearningRate == 0 {
		o.LearningRate = lr
	}
	if o.L2 == 0 {
		o.L2 = l2
	}
	return o, nil
}

// Train fits a model of kind o.Kind to rows, whose Truth is the target. The
// order of rows does not matter: Train sorts a copy by (DeviceID, Hour),
// which must be unique as in dwh.ml_features.
func Train(rows []Row, o Options) (*Model, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("model: no training rows")
	}
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.DeviceID, b.DeviceID), a.Hour.Compare(b.Hour))
	})
	tr := Training{From: rows[0].Hour.UTC(), To: rows[0].Hour.UTC(), Rows: len(rows), Seed: o.Seed, Options: o}
	typeMax := map[string]int{}
	for i := range rows {
		r := &rows[i]
		if i > 0 && r.DeviceID == rows[i-1].DeviceID && r.Hour.Equal(rows[i-1].Hour) {
			return nil, fmt.Errorf("model: two training rows for device %s hour %s", r.DeviceID, r.Hour.UTC().Format(time.RFC3339))
		}
		if r.Truth {
			tr.Positives++
		}
		if h := r.Hour.UTC(); h.Before(tr.From) {
			tr.From = h
		} else if h.After(tr.To) {
			tr.To = h
		}
		if r.RunID != "" {
			tr.RunIDs = append(tr.RunIDs, r.RunID)
		}
		typeMax[r.DeviceType] = max(typeMax[r.DeviceType], r.Count)
	}
	tr.To = tr.To.Add(time.Hour)
	slices.Sort(tr.RunIDs)
	tr.RunIDs = slices.Compact(tr.RunIDs)
	switch tr.Positives {
	case 0:
		return nil, fmt.Errorf("model: none of the %d training rows is positive (Truth): nothing to learn", len(rows))
	case len(rows):
		return nil, fmt.Errorf("model: all %d training rows are positive (Truth): nothing to learn", len(rows))
	}

	m := &Model{Format: FormatVersion, Kind: o.Kind, Inputs: Inputs(), Training: tr}
	m.SchemaHash = SchemaHash(m.Inputs)
	for t, n := range typeMax {
		m.DeviceTypes = append(m.DeviceTypes, t)
		m.DefaultExpectedCount = max(m.DefaultExpectedCount, n)
	}
	slices.Sort(m.DeviceTypes)
	for _, t := range m.DeviceTypes {
		m.ExpectedCounts = append(m.ExpectedCounts, typeMax[t])
	}
	m.Features = featureNames(m.DeviceTypes)

	d := m.deriver()
	nf := len(m.Features)
	x := make([][]float64, len(rows))
	y := make([]float64, len(rows))
	for i := range rows {
		x[i] = make([]float64, nf)
		d.derive(&rows[i], x[i])
		y[i] = indicator(rows[i].Truth)
	}
	m.Center, m.Scale = standardise(x, nf)

	switch o.Kind {
	case KindLogistic:
		m.Intercept, m.Weights = fitLogistic(x, y, o)
	case KindStumps:
		m.Intercept, m.Stumps = fitStumps(x, y, o)
	}

	scores := make([]float64, len(rows))
	truth := make([]bool, len(rows))
	for i := range x {
		scores[i] = sigmoid(m.logit(x[i]))
		truth[i] = rows[i].Truth
	}
	m.Threshold = bestF1Threshold(scores, truth)
	m.Version = m.Kind + "-" + m.paramHash()[:12]
	return m, nil
}

// standardise centres and scales x in place, column by column, and returns
// the centres and scales. A constant column keeps scale 1.
func standardise(x [][]float64, nf int) (center, scale []float64) {
	center, scale = make([]float64, nf), make([]float64, nf)
	n := float64(len(x))
	for j := range nf {
		var sum float64
		for i := range x {
			sum += x[i][j]
		}
		mean := sum / n
		var ss float64
		for i := range x {
			d := x[i][j] - mean
			ss += d * d
		}
		sd := math.Sqrt(ss / n)
		if !(sd > 1e-12) || math.IsInf(sd, 0) {
			sd = 1
		}
		center[j], scale[j] = mean, sd
		for i := range x {
			x[i][j] = (x[i][j] - mean) / sd
		}
	}
	return center, scale
}

func (m *Model) deriver() *deriver {
	return &deriver{types: m.DeviceTypes, expected: m.ExpectedCounts, fallback: m.DefaultExpectedCount}
}

// features returns the standardised feature vector of r.
func (m *Model) features(r *Row) []float64 {
	x := make([]float64, len(m.Features))
	m.deriver().derive(r, x)
	for j := range x {
		x[j] = (x[j] - m.Center[j]) / m.Scale[j]
	}
	return x
}

// logit is the log-odds of the standardised feature vector x.
func (m *Model) logit(x []float64) float64 {
	z := m.Intercept
	for j, w := range m.Weights {
		z += w * x[j]
	}
	for _, s := range m.Stumps {
		if x[s.Feature] <= s.Threshold {
			z += s.Left
		} else {
			z += s.Right
		}
	}
	return z
}

// Score is the model's probability, in [0, 1], that an anomaly happened in
// the hour of r.
func (m *Model) Score(r *Row) float64 {
	return sigmoid(m.logit(m.features(r)))
}

// Flag says whether the model flags r: Score(r) >= m.Threshold.
func (m *Model) Flag(r *Row) bool { return m.Score(r) >= m.Threshold }

// CheckSchema checks that cols, the input columns of dwh.ml_features as the
// database has them (see Inputs), are those the model was trained on. The
// error names the missing, extra and retyped columns.
func (m *Model) CheckSchema(cols []Column) error {
	found := SchemaHash(cols)
	if found == m.SchemaHash {
		return nil
	}
	return fmt.Errorf("model %s: trained on feature schema %s but dwh.ml_features has %s: %s",
		m.Version, short(m.SchemaHash), short(found), schemaDiff(m.Inputs, cols))
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// paramHash is the hex SHA-256 of everything that determines the model's
// scores: the model without Version and Training.
func (m *Model) paramHash() string {
	p := *m
	p.Version, p.Training = "", Training{}
	b, err := json.Marshal(&p)
	if err != nil {
		// Only NaN or Inf fail to marshal, and Train and Decode keep them out.
		panic(fmt.Sprintf("model: marshal parameters: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sigmoid is the logistic function, computed without overflow; NaN gives 0.
func sigmoid(z float64) float64 {
	switch {
	case math.IsNaN(z):
		return 0
	case z >= 0:
		return 1 / (1 + math.Exp(-z))
	default:
		e := math.Exp(z)
		return e / (1 + e)
	}
}

// bestF1Threshold is the score threshold (flag when score >= threshold)
// that maximises F1 over the training scores, ties going to the higher one.
func bestF1Threshold(scores []float64, truth []bool) float64 {
	positives := 0
	for _, t := range truth {
		if t {
			positives++
		}
	}
	best, bestF1 := 1.0, -1.0
	for _, g := range rankGroups(scores, truth) {
		f1 := 2 * float64(g.tp) / float64(2*g.tp+g.fp+(positives-g.tp))
		if f1 > bestF1 {
			best, bestF1 = g.score, f1
		}
	}
	return best
}
