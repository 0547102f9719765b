package anomaly

import "github.com/iot-etl/iot-etl/internal/domain/quality"

// Kind is a kind of anomaly as the simulator injects it and as ground truth
// names it. Rules and kinds differ: a spike, for instance, is what a z-score
// violation and a rate-of-change violation together say about one reading.
type Kind string

// The kinds, in canonical order (see AllKinds).
const (
	KindSpike      Kind = "spike"
	KindOutOfRange Kind = "out_of_range"
	KindStuck      Kind = "stuck"
	KindGap        Kind = "gap"
	KindNull       Kind = "null"
	KindDrift      Kind = "drift"
)

// AllKinds lists every kind in canonical order.
var AllKinds = []Kind{KindSpike, KindOutOfRange, KindStuck, KindGap, KindNull, KindDrift}

// kindsBySet holds the classification of every (reasons, null) pair, so
// ClassifySet allocates nothing. Index: reasons | null<<reasonCount.
var kindsBySet [1 << (reasonCount + 1)][]Kind

func init() {
	for i := range len(kindsBySet) {
		kindsBySet[i] = classify(Reasons(i&reasonMask), i>>reasonCount != 0)
	}
}

// classify maps rules onto kinds:
//
//	spike        ⇐ zscore ∧ rate_of_change ∧ ¬out_of_range
//	out_of_range ⇐ out_of_range
//	stuck        ⇐ stuck
//	gap          ⇐ gap
//	null         ⇐ quality flag null
//	drift        ⇐ zscore ∧ ¬rate_of_change ∧ ¬out_of_range
//
// A value beyond the valid range almost always jumps and deviates too; it
// is an out_of_range event, not a spike, hence ¬out_of_range on spike.
func classify(r Reasons, null bool) []Kind {
	kinds := []Kind{}
	oor := r.Has(OutOfRange)
	if r.Has(ZScore|RateOfChange) && !oor {
		kinds = append(kinds, KindSpike)
	}
	if oor {
		kinds = append(kinds, KindOutOfRange)
	}
	if r.Has(Stuck) {
		kinds = append(kinds, KindStuck)
	}
	if r.Has(Gap) {
		kinds = append(kinds, KindGap)
	}
	if null {
		kinds = append(kinds, KindNull)
	}
	if r.Has(ZScore) && !r.Has(RateOfChange) && !oor {
		kinds = append(kinds, KindDrift)
	}
	return kinds[:len(kinds):len(kinds)]
}

// ClassifySet returns the kinds a reading with these reasons and quality
// flags is evidence of, in canonical order, never nil. The slice is shared:
// do not modify it.
func ClassifySet(r Reasons, f quality.Flags) []Kind {
	i := int(r & reasonMask)
	if f.Has(quality.Null) {
		i |= 1 << reasonCount
	}
	return kindsBySet[i]
}

// Classify is ClassifySet for stored reason and flag names (as read back
// from the warehouse). Unknown names are ignored.
func Classify(reasons, flags []string) []Kind {
	var r Reasons
	for _, n := range reasons {
		if one, err := ParseReasons([]string{n}); err == nil {
			r |= one
		}
	}
	var f quality.Flags
	for _, n := range flags {
		if one, err := quality.ParseFlags([]string{n}); err == nil {
			f |= one
		}
	}
	return ClassifySet(r, f)
}
