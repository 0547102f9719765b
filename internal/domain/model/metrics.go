package model

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// RuleThreshold is the rule-based detector's threshold: it flags a row
// with RuleScore >= RuleThreshold, an hour with at least one flagged reading.
const RuleThreshold = 1.0

// RuleScore is the rule-based detector's score of r: its anomaly_count.
// Evaluate compares it with the model's Score on the same rows.
func RuleScore(r *Row) float64 { return float64(r.AnomalyCount) }

// Metrics are the quality of scores against the truth.
type Metrics struct {
	Rows, Positives, TP, FP, FN int
	// Precision is TP/(TP+FP), 0 when nothing is flagged; Recall is
	// TP/Positives, 0 without positives.
	Precision, Recall float64
	// PRAUC is the average precision: Σ (R_k − R_{k−1})·P_k over the
	// distinct scores k from the highest down, where P_k and R_k are the
	// precision and recall of flagging every row scoring at least k. Rows
	// of equal score count together, so it depends on neither their order
	// nor how ties would be broken. 0 without positives.
	PRAUC float64
}

// String formats the metrics on one line.
func (m Metrics) String() string {
	return fmt.Sprintf("rows=%d positives=%d TP=%d FP=%d FN=%d precision=%.4f recall=%.4f PR-AUC=%.4f",
		m.Rows, m.Positives, m.TP, m.FP, m.FN, m.Precision, m.Recall, m.PRAUC)
}

// Evaluate scores scores[i] against truth[i], flagging a row when its score
// is >= threshold. A NaN score ranks below every other score and is never
// flagged. It panics unless scores and truth have the same length.
func Evaluate(scores []float64, truth []bool, threshold float64) Metrics {
	if len(scores) != len(truth) {
		panic(fmt.Sprintf("model: Evaluate: %d scores but %d truths", len(scores), len(truth)))
	}
	m := Metrics{Rows: len(scores)}
	for i, s := range scores {
		flagged := s >= threshold
		switch {
		case truth[i] && flagged:
			m.TP++
		case truth[i]:
			m.FN++
		case flagged:
			m.FP++
		}
		if truth[i] {
			m.Positives++
		}
	}
	if m.TP+m.FP > 0 {
		m.Precision = float64(m.TP) / float64(m.TP+m.FP)
	}
	if m.Positives > 0 {
		m.Recall = float64(m.TP) / float64(m.Positives)
		prevTP := 0
		for _, g := range rankGroups(scores, truth) {
			if g.tp > prevTP {
				m.PRAUC += float64(g.tp-prevTP) / float64(m.Positives) * float64(g.tp) / float64(g.tp+g.fp)
			}
			prevTP = g.tp
		}
	}
	return m
}

// rankGroup is one distinct score with the true and false positives of
// flagging every row scoring at least as high.
type rankGroup struct {
	score  float64
	tp, fp int
}

// rankGroups lists the distinct scores from the highest down, NaN last.
func rankGroups(scores []float64, truth []bool) []rankGroup {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	// cmp.Compare orders NaN first; reversed, last.
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	var groups []rankGroup
	tp, fp := 0, 0
	for k, i := range idx {
		if truth[i] {
			tp++
		} else {
			fp++
		}
		if k+1 < len(idx) && sameScore(scores[idx[k+1]], scores[i]) {
			continue
		}
		groups = append(groups, rankGroup{scores[i], tp, fp})
	}
	return groups
}

func sameScore(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

// SplitByTime splits rows at a time: rows with Hour < at are the training
// set, the rest the test set. Both keep the order of rows.
func SplitByTime(rows []Row, at time.Time) (train, test []Row) {
	for _, r := range rows {
		if r.Hour.Before(at) {
			train = append(train, r)
		} else {
			test = append(test, r)
		}
	}
	return train, test
}

// SplitLastDays splits rows so that the last days whole UTC days, ending
// with the day of the latest Hour, are the test set: at is midnight UTC
// days−1 days before that day. It fails when days < 1 or either side would
// be empty.
func SplitLastDays(rows []Row, days int) (train, test []Row, at time.Time, err error) {
	if days < 1 {
		return nil, nil, time.Time{}, fmt.Errorf("model: split off %d days: want at least 1", days)
	}
	if len(rows) == 0 {
		return nil, nil, time.Time{}, errors.New("model: split: no rows")
	}
	last := rows[0].Hour
	for _, r := range rows[1:] {
		if r.Hour.After(last) {
			last = r.Hour
		}
	}
	at = last.UTC().Truncate(24*time.Hour).AddDate(0, 0, -(days - 1))
	train, test = SplitByTime(rows, at)
	if len(train) == 0 {
		return nil, nil, at, fmt.Errorf("model: split at %s (last %d days): no training rows before it", at.Format(time.RFC3339), days)
	}
	return train, test, at, nil
}
