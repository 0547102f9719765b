package batch

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalidGate is returned for gate thresholds out of range.
var ErrInvalidGate = errors.New("invalid data-quality gate")

// Gate is the data-quality gate of a run: before Load, a run whose staged
// output breaches it waits for an operator's approval. Zero fields are off.
type Gate struct {
	// DQMin is the least mean quality score (0..1) of the transformed
	// readings.
	DQMin float64 `json:"dq_min,omitempty"`
	// RejectMax is the largest share (0..1) of the extracted readings that
	// may be rejected (cannot be enriched).
	RejectMax float64 `json:"reject_max,omitempty"`
}

// On reports whether the gate checks anything.
func (g Gate) On() bool { return g.DQMin > 0 || g.RejectMax > 0 }

// Validate refuses thresholds outside [0, 1].
func (g Gate) Validate() error {
	for _, v := range []struct {
		name string
		v    float64
	}{{"dq_min", g.DQMin}, {"reject_max", g.RejectMax}} {
		if math.IsNaN(v.v) || v.v < 0 || v.v > 1 {
			return fmt.Errorf("%w: %s %v: want a number from 0 to 1 (0: off)", ErrInvalidGate, v.name, v.v)
		}
	}
	return nil
}

// DeviceDQ is one device's quality in a DQ report.
type DeviceDQ struct {
	DeviceID string  `json:"device_id"`
	Rows     int64   `json:"rows"`
	DQScore  float64 `json:"dq_score"`
}

// DQReport is the data quality of a run's staged output, before Load.
type DQReport struct {
	Rows       int64   `json:"rows"`     // transformed readings
	DQScore    float64 `json:"dq_score"` // their mean quality score
	Extracted  int64   `json:"extracted"`
	Rejects    int64   `json:"rejects"`
	RejectRate float64 `json:"reject_rate"` // Rejects / Extracted
	// Rules counts the readings each anomaly rule flagged, Flags each
	// quality flag, RejectReasons the rejects by reason.
	Rules         map[string]int64 `json:"rules"`
	Flags         map[string]int64 `json:"flags"`
	RejectReasons map[string]int64 `json:"reject_reasons"`
	// WorstDevices are the 10 devices of lowest mean quality score.
	WorstDevices []DeviceDQ `json:"worst_devices"`
	// Breaches say how the report breaches the gate; none when it passes.
	Breaches []string `json:"breaches,omitempty"`
}

// Check fills r.Breaches against the gate and reports whether it passes.
func (g Gate) Check(r *DQReport) bool {
	r.Breaches = nil
	if g.DQMin > 0 && r.DQScore < g.DQMin {
		r.Breaches = append(r.Breaches, fmt.Sprintf("DQ score %.4f is below the minimum %.4f", r.DQScore, g.DQMin))
	}
	if g.RejectMax > 0 && r.RejectRate > g.RejectMax {
		r.Breaches = append(r.Breaches, fmt.Sprintf("%d of %d readings rejected (%.4f), more than the maximum %.4f", r.Rejects, r.Extracted, r.RejectRate, g.RejectMax))
	}
	return len(r.Breaches) == 0
}
