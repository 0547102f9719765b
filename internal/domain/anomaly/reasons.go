// Package anomaly holds the per-reading anomaly rules, their mapping onto the
// kinds of anomaly the simulator injects, and the scoring of detections
// against ground truth. It is pure: the transform computes the rolling state
// of a device and asks Rules.Evaluate which rules fire for one reading.
package anomaly

import "fmt"

// Reason names as stored in the warehouse (anomaly_reasons), in canonical order.
const (
	ReasonZScore       = "zscore"
	ReasonOutOfRange   = "out_of_range"
	ReasonRateOfChange = "rate_of_change"
	ReasonStuck        = "stuck"
	ReasonGap          = "gap"
)

// Reasons is the set of rules that fired for one reading. A reading is
// anomalous when the set is not empty.
type Reasons uint8

// The rules, one bit each, in canonical order.
const (
	ZScore Reasons = 1 << iota
	OutOfRange
	RateOfChange
	Stuck
	Gap

	reasonCount = iota
)

const reasonMask = 1<<reasonCount - 1

var reasonNames = [reasonCount]string{ReasonZScore, ReasonOutOfRange, ReasonRateOfChange, ReasonStuck, ReasonGap}

// namesBySet gives every set one shared name slice, so that evaluating a
// reading allocates nothing.
var namesBySet [1 << reasonCount][]string

func init() {
	for set := range 1 << reasonCount {
		names := []string{}
		for i := range reasonCount {
			if set&(1<<i) != 0 {
				names = append(names, reasonNames[i])
			}
		}
		namesBySet[set] = names[:len(names):len(names)]
	}
}

// Has reports whether every reason of x is in r.
func (r Reasons) Has(x Reasons) bool { return r&x == x }

// Strings returns the reason names in canonical order, never nil. The slice
// is shared by every caller: do not modify it.
func (r Reasons) Strings() []string { return namesBySet[r&reasonMask] }

// String joins the names with commas, for logs and test output.
func (r Reasons) String() string {
	s := ""
	for i, n := range r.Strings() {
		if i > 0 {
			s += ","
		}
		s += n
	}
	return s
}

// ParseReasons turns stored reason names back into a set. Order does not
// matter; an unknown name is an error.
func ParseReasons(names []string) (Reasons, error) {
	var r Reasons
	for _, n := range names {
		found := false
		for i, known := range reasonNames {
			if n == known {
				r |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("anomaly: unknown reason %q", n)
		}
	}
	return r, nil
}
