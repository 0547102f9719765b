package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Encode returns m as indented JSON. The bytes depend only on m: the model
// holds no map and no wall-clock time, so the same training gives the same
// bytes.
func Encode(m *Model) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("model: encode %s: %w", m.Version, err)
	}
	return append(b, '\n'), nil
}

// Decode parses a model that Encode wrote. It refuses another format
// version, unknown fields, and a model that is incomplete or inconsistent:
// parameters missing or of the wrong length, a feature schema or feature
// list that is not this package's derivation, or a Version that does not
// match the parameters.
func Decode(b []byte) (*Model, error) {
	var head struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("model: decode: %w", err)
	}
	switch {
	case head.Format == nil:
		return nil, errors.New("model: decode: no format version: not an encoded model")
	case *head.Format != FormatVersion:
		return nil, fmt.Errorf("model: decode: format version %d, this build reads %d", *head.Format, FormatVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	m := new(Model)
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("model: decode: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// validate checks that m is complete and consistent, so that Score cannot
// index out of range or return a number that is not a probability.
func (m *Model) validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("model %s: incomplete or inconsistent: %s", m.Version, fmt.Sprintf(format, args...))
	}
	nf := len(m.Features)
	switch {
	case m.Format != FormatVersion:
		return fail("format version %d, want %d", m.Format, FormatVersion)
	case m.Kind != KindLogistic && m.Kind != KindStumps:
		return fail("kind %q, want %q or %q", m.Kind, KindLogistic, KindStumps)
	case len(m.Inputs) == 0:
		return fail("no inputs")
	case m.SchemaHash != SchemaHash(m.Inputs):
		return fail("schema hash %s is not that of its inputs and feature version %d (%s)", short(m.SchemaHash), FeatureVersion, short(SchemaHash(m.Inputs)))
	case !slices.Equal(m.Features, featureNames(m.DeviceTypes)):
		return fail("features %v are not those of feature version %d over device types %v", m.Features, FeatureVersion, m.DeviceTypes)
	case !slices.IsSorted(m.DeviceTypes) || len(slices.Compact(slices.Clone(m.DeviceTypes))) != len(m.DeviceTypes):
		return fail("device types %v are not sorted and distinct", m.DeviceTypes)
	case len(m.ExpectedCounts) != len(m.DeviceTypes):
		return fail("%d expected counts for %d device types", len(m.ExpectedCounts), len(m.DeviceTypes))
	case m.DefaultExpectedCount <= 0:
		return fail("default expected count %d, want > 0", m.DefaultExpectedCount)
	case len(m.Center) != nf || len(m.Scale) != nf:
		return fail("%d centres and %d scales for %d features", len(m.Center), len(m.Scale), nf)
	case m.Kind == KindLogistic && (len(m.Weights) != nf || len(m.Stumps) != 0):
		return fail("a logistic model needs %d weights and no stumps, has %d and %d", nf, len(m.Weights), len(m.Stumps))
	case m.Kind == KindStumps && (len(m.Weights) != 0 || len(m.Stumps) == 0):
		return fail("a stumps model needs stumps and no weights, has %d and %d", len(m.Stumps), len(m.Weights))
	case !(m.Threshold >= 0 && m.Threshold <= 1):
		return fail("threshold %g, want in [0, 1]", m.Threshold)
	case !isFinite(m.Intercept) || !allFinite(m.Center) || !allFinite(m.Weights):
		return fail("a parameter is NaN or infinite")
	}
	for i, s := range m.Scale {
		if !(s > 0) || math.IsInf(s, 0) {
			return fail("scale of feature %s is %g, want positive and finite", m.Features[i], s)
		}
	}
	for i, s := range m.Stumps {
		if s.Feature < 0 || s.Feature >= nf || !isFinite(s.Threshold) || !isFinite(s.Left) || !isFinite(s.Right) {
			return fail("stump %d %+v: want a feature in [0, %d) and finite values", i, s, nf)
		}
	}
	if want := m.Kind + "-" + m.paramHash()[:12]; m.Version != want {
		return fail("version %q does not match the parameters, which hash to %q", m.Version, want)
	}
	return nil
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func allFinite(vs []float64) bool {
	for _, v := range vs {
		if !isFinite(v) {
			return false
		}
	}
	return true
}
