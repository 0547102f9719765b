package anomaly

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// TruthEvent is one injected anomaly: on DeviceID, readings from Start to
// End (both included) are of this Kind. For KindGap, Start and End are the
// first and last missing slot.
type TruthEvent struct {
	DeviceID string
	Kind     Kind
	Start    time.Time
	End      time.Time
}

// Detection is one reading the pipeline classified as evidence of Kinds.
type Detection struct {
	DeviceID string
	Time     time.Time
	Kinds    []Kind
}

// Metrics score one kind. TP and FP count detections (readings); Events,
// Found and FN count truth events. Precision = TP/(TP+FP) and is 1 when
// there is no detection; Recall = Found/Events and is 1 when there is no
// event.
type Metrics struct {
	TP, FP    int
	Events    int
	Found, FN int
	Precision float64
	Recall    float64
}

// GapMatchSlots is how many expected intervals after the end of a gap event
// a gap detection may come: the first reading after the gap carries it.
const GapMatchSlots = 3

// Score matches detections against truth, per kind, and returns metrics for
// every kind of AllKinds.
//
// A detection of kind k on a device is a true positive when it falls inside
// a truth event of kind k on the same device: Start ≤ Time ≤ End, or for
// gaps End < Time ≤ End + GapMatchSlots × expectedInterval. Otherwise it is
// a false positive. An event is found when at least one detection of its
// kind matches it; an event not found is a false negative.
func Score(truth []TruthEvent, detections []Detection, expectedInterval time.Duration) map[Kind]Metrics {
	type key struct {
		device string
		kind   Kind
	}
	type span struct {
		from, to time.Time // the match window, both included
		event    int       // index into found
		reach    time.Time // the latest `to` of this span and every earlier one
	}
	gapTolerance := GapMatchSlots * expectedInterval
	spans := map[key][]span{}
	found := make([]bool, len(truth))
	out := map[Kind]Metrics{}
	for _, k := range AllKinds {
		out[k] = Metrics{}
	}
	for i, ev := range truth {
		s := span{from: ev.Start, to: ev.End, event: i}
		if ev.Kind == KindGap {
			// (End, End + tolerance]: one nanosecond after End is the first
			// instant a time can take.
			s.from, s.to = ev.End.Add(time.Nanosecond), ev.End.Add(gapTolerance)
		}
		k := key{ev.DeviceID, ev.Kind}
		spans[k] = append(spans[k], s)
		m := out[ev.Kind]
		m.Events++
		out[ev.Kind] = m
	}
	for k, list := range spans {
		slices.SortFunc(list, func(a, b span) int { return a.from.Compare(b.from) })
		for i := range list {
			list[i].reach = list[i].to
			if i > 0 && list[i-1].reach.After(list[i].reach) {
				list[i].reach = list[i-1].reach
			}
		}
		spans[k] = list
	}
	for _, d := range detections {
		for _, kind := range d.Kinds {
			list := spans[key{d.DeviceID, kind}]
			// Spans starting at or before d.Time, scanned backwards while
			// an earlier span could still reach it.
			n, _ := slices.BinarySearchFunc(list, d.Time, func(s span, t time.Time) int {
				if s.from.After(t) {
					return 1
				}
				return -1
			})
			matched := false
			for i := n - 1; i >= 0 && !list[i].reach.Before(d.Time); i-- {
				if !list[i].to.Before(d.Time) {
					matched = true
					found[list[i].event] = true
				}
			}
			m := out[kind]
			if matched {
				m.TP++
			} else {
				m.FP++
			}
			out[kind] = m
		}
	}
	for i, ev := range truth {
		m := out[ev.Kind]
		if found[i] {
			m.Found++
		} else {
			m.FN++
		}
		out[ev.Kind] = m
	}
	for k, m := range out {
		out[k] = m.withRates()
	}
	return out
}

func (m Metrics) withRates() Metrics {
	m.Precision, m.Recall = 1, 1
	if m.TP+m.FP > 0 {
		m.Precision = float64(m.TP) / float64(m.TP+m.FP)
	}
	if m.Events > 0 {
		m.Recall = float64(m.Found) / float64(m.Events)
	}
	return m
}

// Combine adds up the scores of disjoint sets of devices (Score matches
// per device and kind, so the counts add up) and recomputes the rates: the
// scores of a run's shards are the run's.
func Combine(parts ...map[Kind]Metrics) map[Kind]Metrics {
	out := map[Kind]Metrics{}
	for _, k := range AllKinds {
		out[k] = Metrics{}
	}
	for _, p := range parts {
		for k, m := range p {
			t := out[k]
			t.TP, t.FP, t.Events, t.Found, t.FN = t.TP+m.TP, t.FP+m.FP, t.Events+m.Events, t.Found+m.Found, t.FN+m.FN
			out[k] = t
		}
	}
	for k, m := range out {
		out[k] = m.withRates()
	}
	return out
}

// FormatMetrics renders scores as one line per kind in canonical order, for
// test failures and CLI output.
func FormatMetrics(scores map[Kind]Metrics) string {
	var b strings.Builder
	for _, k := range AllKinds {
		m, ok := scores[k]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "%-12s TP=%d FP=%d events=%d found=%d FN=%d precision=%.3f recall=%.3f\n",
			k, m.TP, m.FP, m.Events, m.Found, m.FN, m.Precision, m.Recall)
	}
	return b.String()
}
