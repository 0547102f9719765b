// Package quality scores how trustworthy one sensor reading is. A reading
// carries a set of flags (null, out_of_range, duplicate, stuck, gap); each
// flag costs a fixed penalty and the score is what remains of 1. It is pure:
// the transform decides which flags apply, this package names and prices them.
package quality

import "fmt"

// Flag names as stored in the warehouse (quality_flags), in canonical order.
const (
	FlagNull       = "null"         // the reading carries no value
	FlagOutOfRange = "out_of_range" // the value is outside the device type's valid range
	FlagDuplicate  = "duplicate"    // a second reading with the same device and time
	FlagStuck      = "stuck"        // the value repeats for StuckRun readings or more
	FlagGap        = "gap"          // readings are missing before this one
)

// Flags is a set of quality flags. The zero value is a clean reading.
type Flags uint8

// The flags, one bit each, in canonical order.
const (
	Null Flags = 1 << iota
	OutOfRange
	Duplicate
	Stuck
	Gap

	flagCount = iota
)

var flagNames = [flagCount]string{FlagNull, FlagOutOfRange, FlagDuplicate, FlagStuck, FlagGap}

// penaltyPercent prices each flag in hundredths, so that scores are exact
// decimal fractions (1 − 0.4 − 0.2 is 0.4, not 0.39999999999999997).
var penaltyPercent = [flagCount]int{100, 60, 50, 40, 20}

// Tables indexed by the set: every set has one shared name slice and one
// score, so scoring a reading allocates nothing.
var (
	namesBySet [1 << flagCount][]string
	scoreBySet [1 << flagCount]float64
)

func init() {
	for set := range 1 << flagCount {
		names := []string{}
		percent := 100
		for i := range flagCount {
			if set&(1<<i) != 0 {
				names = append(names, flagNames[i])
				percent -= penaltyPercent[i]
			}
		}
		namesBySet[set] = names[:len(names):len(names)]
		scoreBySet[set] = float64(max(percent, 0)) / 100
	}
}

// Has reports whether every flag of x is in f.
func (f Flags) Has(x Flags) bool { return f&x == x }

// Strings returns the flag names in canonical order, never nil. The slice
// is shared by every caller: do not modify it.
func (f Flags) Strings() []string { return namesBySet[f&(1<<flagCount-1)] }

// String joins the names with commas, for logs and test output.
func (f Flags) String() string {
	s := ""
	for i, n := range f.Strings() {
		if i > 0 {
			s += ","
		}
		s += n
	}
	return s
}

// Score is clamp(1 − Σ penalties of f, 0, 1). The penalties are
// null 1.0, out_of_range 0.6, duplicate 0.5, stuck 0.4, gap 0.2, so a clean
// reading scores exactly 1 and a reading without value scores 0.
func (f Flags) Score() float64 { return scoreBySet[f&(1<<flagCount-1)] }

// Penalty is the price of one flag (for a set: the unclamped sum).
func Penalty(f Flags) float64 {
	percent := 0
	for i := range flagCount {
		if f&(1<<i) != 0 {
			percent += penaltyPercent[i]
		}
	}
	return float64(percent) / 100
}

// ParseFlags turns stored flag names back into a set. Order does not matter;
// an unknown name is an error.
func ParseFlags(names []string) (Flags, error) {
	var f Flags
	for _, n := range names {
		found := false
		for i, known := range flagNames {
			if n == known {
				f |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("quality: unknown flag %q", n)
		}
	}
	return f, nil
}
