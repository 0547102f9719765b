package batch

import (
	"fmt"
	"math/big"
)

// FactSums are the additive figures of a set of fact rows: a shard's load
// reports those of the rows it inserted, and the sums of every shard are
// the window's, without reading the facts again. Quality and Checksum are
// exact decimal sums (PostgreSQL numeric), so adding them up in any order
// gives the figures a single query over all the rows gives.
type FactSums struct {
	Rows      int64 `json:"rows"`
	Anomalies int64 `json:"anomalies"`
	// Quality is the sum of the rows' quality scores as numeric.
	Quality string `json:"quality"`
	// Checksum is the sum of the first 60 bits of the md5 of every row's
	// data columns (warehouse.Run.Measure).
	Checksum string `json:"checksum"`
}

// Add returns s plus o.
func (s FactSums) Add(o FactSums) (FactSums, error) {
	q, err := addDecimal(s.Quality, o.Quality)
	if err != nil {
		return s, fmt.Errorf("quality sum: %w", err)
	}
	c, err := addDecimal(s.Checksum, o.Checksum)
	if err != nil {
		return s, fmt.Errorf("checksum sum: %w", err)
	}
	return FactSums{Rows: s.Rows + o.Rows, Anomalies: s.Anomalies + o.Anomalies, Quality: q, Checksum: c}, nil
}

// DQScore is the mean quality score, 0 without rows.
func (s FactSums) DQScore() (float64, error) {
	if s.Rows == 0 {
		return 0, nil
	}
	q, ok := new(big.Rat).SetString(zeroIfEmpty(s.Quality))
	if !ok {
		return 0, fmt.Errorf("quality sum %q is not a decimal", s.Quality)
	}
	f, _ := q.Quo(q, new(big.Rat).SetInt64(s.Rows)).Float64()
	return f, nil
}

// FactChecksum is the checksum runs report: "rows:sum".
func (s FactSums) FactChecksum() string {
	return fmt.Sprintf("%d:%s", s.Rows, zeroIfEmpty(s.Checksum))
}

func zeroIfEmpty(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// addDecimal adds two decimal numbers exactly and prints the sum as
// PostgreSQL prints a numeric of the larger scale of the two.
func addDecimal(a, b string) (string, error) {
	a, b = zeroIfEmpty(a), zeroIfEmpty(b)
	x, ok := new(big.Rat).SetString(a)
	if !ok {
		return "", fmt.Errorf("%q is not a decimal", a)
	}
	y, ok := new(big.Rat).SetString(b)
	if !ok {
		return "", fmt.Errorf("%q is not a decimal", b)
	}
	return x.Add(x, y).FloatString(max(scale(a), scale(b))), nil
}

// scale is the number of digits after the decimal point.
func scale(s string) int {
	for i := range len(s) {
		if s[i] == '.' {
			return len(s) - i - 1
		}
	}
	return 0
}
