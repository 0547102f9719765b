package window

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Decimal is an exact decimal number, coefficient × 10^exponent, like
// PostgreSQL's numeric. The zero value is 0. A Decimal is immutable (every
// operation returns a new one), so copying it, and an Agg holding it, is
// safe.
//
// Sums of float64 values depend on the order of addition; sums of Decimals
// do not. That is what lets partial window aggregates merge in any order,
// in Go or in SQL, into the identical result.
type Decimal struct {
	coef *big.Int // nil means 0; never modified once set
	exp  int32
}

// FromFloat converts v exactly as PostgreSQL casts float8 to numeric: to 15
// significant decimal digits (DBL_DIG, "%.15g", rounding half to even on
// the exact binary value), then exactly. Verified on PostgreSQL 15:
//
//	SELECT (1/3.0)::float8::numeric;                    -- 0.333333333333333
//	SELECT 21.123456789012345678::float8::numeric;      -- 21.1234567890123
//	SELECT 100000000000000.5::float8::numeric;          -- 100000000000000 (tie to even)
//	SELECT 100000000000001.5::float8::numeric;          -- 100000000000002
//	SELECT '-0'::float8::numeric;                       -- 0
//	SELECT '1e-320'::float8::numeric;                   -- 0.000…000999988867182683
//
// The SQL sink must therefore aggregate value::numeric (sum(value::numeric),
// sum(value::numeric * value::numeric)), never float8 sums; note that
// numeric ^ 2 rounds, while numeric * numeric is exact. FromFloat panics on
// NaN and ±Inf, which have no decimal form (the decoder quarantines them).
func FromFloat(v float64) Decimal {
	coef, exp := Float8Numeric(v)
	if coef == 0 {
		return Decimal{}
	}
	return Decimal{coef: big.NewInt(coef), exp: exp}
}

// Float8Numeric is FromFloat(v) as coef × 10^exp, without allocating:
// |coef| < 10^15 and has no trailing zero digit (0 for zero).
func Float8Numeric(v float64) (coef int64, exp int32) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		panic(fmt.Sprintf("window: no decimal for %v", v))
	}
	// 'e' with 14 digits after the point is %.15g's digits in one layout:
	// [-]d.dddddddddddddde±dd.
	var buf [32]byte
	s := strconv.AppendFloat(buf[:0], v, 'e', 14, 64)
	negative := s[0] == '-'
	if negative {
		s = s[1:]
	}
	for _, c := range s[:16] {
		if c != '.' {
			coef = coef*10 + int64(c-'0')
		}
	}
	if coef == 0 {
		return 0, 0
	}
	e := 0 // sign and digits after 'e'
	for _, c := range s[18:] {
		e = e*10 + int(c-'0')
	}
	if s[17] == '-' {
		e = -e
	}
	exp = int32(e - 14)
	for coef%10 == 0 {
		coef /= 10
		exp++
	}
	if negative {
		coef = -coef
	}
	return coef, exp
}

// newDecimal normalises coef × 10^exp by dropping trailing zero digits, so
// each value has one representation.
func newDecimal(coef *big.Int, exp int32) Decimal {
	if coef.Sign() == 0 {
		return Decimal{}
	}
	if coef.IsInt64() {
		c := coef.Int64()
		if c%10 != 0 {
			return Decimal{coef: coef, exp: exp}
		}
		for c%10 == 0 {
			c /= 10
			exp++
		}
		return Decimal{coef: big.NewInt(c), exp: exp}
	}
	if coef.Bit(0) == 1 { // odd: no trailing zero
		return Decimal{coef: coef, exp: exp}
	}
	q, r := new(big.Int), new(big.Int)
	ten := big.NewInt(10)
	for {
		q.QuoRem(coef, ten, r)
		if r.Sign() != 0 {
			return Decimal{coef: coef, exp: exp}
		}
		coef, q = q, new(big.Int)
		exp++
	}
}

// Parts returns d as coef × 10^exp, for writing a numeric column; coef is
// a fresh copy the caller may keep.
func (d Decimal) Parts() (coef *big.Int, exp int32) {
	return new(big.Int).Set(d.coefOrZero()), d.exp
}

// ParseDecimal reads a finite decimal such as PostgreSQL prints a numeric:
// an optional sign, digits with an optional point, and an optional exponent
// ("-12.5", "0.000001", "1.5e-7").
func ParseDecimal(s string) (Decimal, error) {
	body := s
	negative := false
	if body != "" && (body[0] == '+' || body[0] == '-') {
		negative = body[0] == '-'
		body = body[1:]
	}
	mantissa, expPart, hasExp := strings.Cut(strings.ToLower(body), "e")
	intPart, fracPart, _ := strings.Cut(mantissa, ".")
	digits := intPart + fracPart
	if digits == "" || !allDigits(digits) {
		return Decimal{}, fmt.Errorf("window: %q is not a decimal", s)
	}
	exp := -len(fracPart)
	if hasExp {
		e, err := strconv.Atoi(expPart)
		if err != nil {
			return Decimal{}, fmt.Errorf("window: %q is not a decimal", s)
		}
		exp += e
	}
	if exp < math.MinInt32/2 || exp > math.MaxInt32/2 {
		return Decimal{}, fmt.Errorf("window: %q: exponent out of range", s)
	}
	coef, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		return Decimal{}, fmt.Errorf("window: %q is not a decimal", s)
	}
	if negative {
		coef.Neg(coef)
	}
	return newDecimal(coef, int32(exp)), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// smallPow10 caches 10^0 … 10^63; never modified.
var smallPow10 = func() (p [64]*big.Int) {
	p[0] = big.NewInt(1)
	for i := 1; i < len(p); i++ {
		p[i] = new(big.Int).Mul(p[i-1], big.NewInt(10))
	}
	return p
}()

func pow10(n int64) *big.Int {
	if n < int64(len(smallPow10)) {
		return smallPow10[n]
	}
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(n), nil)
}

// aligned returns the coefficients of d and e scaled to their smaller
// exponent, and that exponent. The results may alias d's or e's coefficient
// and must not be modified.
func aligned(d, e Decimal) (dc, ec *big.Int, exp int32) {
	dc, ec = d.coefOrZero(), e.coefOrZero()
	switch {
	case d.exp > e.exp:
		return new(big.Int).Mul(dc, pow10(int64(d.exp)-int64(e.exp))), ec, e.exp
	case e.exp > d.exp:
		return dc, new(big.Int).Mul(ec, pow10(int64(e.exp)-int64(d.exp))), d.exp
	}
	return dc, ec, d.exp
}

var zero = new(big.Int)

func (d Decimal) coefOrZero() *big.Int {
	if d.coef == nil {
		return zero
	}
	return d.coef
}

// Add returns d + e, exactly.
func (d Decimal) Add(e Decimal) Decimal {
	if d.coef == nil {
		return e
	}
	if e.coef == nil {
		return d
	}
	dc, ec, exp := aligned(d, e)
	return newDecimal(new(big.Int).Add(dc, ec), exp)
}

// Mul returns d × e, exactly.
func (d Decimal) Mul(e Decimal) Decimal {
	if d.coef == nil || e.coef == nil {
		return Decimal{}
	}
	return newDecimal(new(big.Int).Mul(d.coef, e.coef), d.exp+e.exp)
}

// Cmp compares d and e: -1, 0 or +1.
func (d Decimal) Cmp(e Decimal) int {
	if ds, es := d.Sign(), e.Sign(); ds != es || ds == 0 {
		return max(-1, min(1, ds-es))
	}
	dc, ec, _ := aligned(d, e)
	return dc.Cmp(ec)
}

// Equal reports whether d and e are the same number.
func (d Decimal) Equal(e Decimal) bool { return d.Cmp(e) == 0 }

// Sign returns -1, 0 or +1.
func (d Decimal) Sign() int { return d.coefOrZero().Sign() }

// Rat returns d as a new big.Rat.
func (d Decimal) Rat() *big.Rat {
	if d.exp >= 0 {
		return new(big.Rat).SetInt(new(big.Int).Mul(d.coefOrZero(), pow10(int64(d.exp))))
	}
	return new(big.Rat).SetFrac(d.coefOrZero(), pow10(-int64(d.exp)))
}

// Float64 returns the float64 nearest to d.
func (d Decimal) Float64() float64 {
	f, _ := d.Rat().Float64()
	return f
}

// String returns d in plain decimal notation without exponent or trailing
// zeros ("21.5", "-0.000001", "1500"): the text PostgreSQL's numeric input
// reads back exactly.
func (d Decimal) String() string {
	if d.coef == nil {
		return "0"
	}
	digits := d.coef.String()
	sign := ""
	if digits[0] == '-' {
		sign, digits = "-", digits[1:]
	}
	if d.exp >= 0 {
		return sign + digits + strings.Repeat("0", int(d.exp))
	}
	point := len(digits) + int(d.exp)
	if point > 0 {
		return sign + digits[:point] + "." + digits[point:]
	}
	return sign + "0." + strings.Repeat("0", -point) + digits
}

// Agg is the mergeable aggregate of one window of one device: the count of
// values, their exact sum and sum of squares (each value taken as
// FromFloat(v), as PostgreSQL's value::numeric), and min and max. The zero
// value is the empty aggregate. Null readings carry no value and are not
// counted, like SQL count(value).
//
// Merging partial aggregates in any order and grouping gives an Agg Equal to
// the single-pass one; with float64 sums it would not.
type Agg struct {
	Count    int64
	Sum      Decimal
	SumSq    Decimal
	Min, Max float64 // meaningless when Count is 0
}

// ErrNonFinite is the panic value of Agg.Add for NaN or ±Inf.
var ErrNonFinite = errors.New("window: NaN and ±Inf cannot be aggregated")

// Add adds one value. It panics for NaN and ±Inf: the decoder quarantines
// them, so reaching here would be a bug.
func (a *Agg) Add(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		panic(ErrNonFinite)
	}
	d := FromFloat(v)
	a.Sum = a.Sum.Add(d)
	a.SumSq = a.SumSq.Add(d.Mul(d))
	if a.Count == 0 {
		a.Min, a.Max = v, v
	} else {
		// The builtins order -0 below 0 whatever the argument order, so
		// min and max do not depend on the order of values either.
		a.Min, a.Max = min(a.Min, v), max(a.Max, v)
	}
	a.Count++
}

// Merge adds the values aggregated in o.
func (a *Agg) Merge(o Agg) {
	if o.Count == 0 {
		return
	}
	if a.Count == 0 {
		*a = o
		return
	}
	a.Count += o.Count
	a.Sum = a.Sum.Add(o.Sum)
	a.SumSq = a.SumSq.Add(o.SumSq)
	a.Min, a.Max = min(a.Min, o.Min), max(a.Max, o.Max)
}

// Equal reports whether a and o aggregate the same values: equal counts,
// sums and sums of squares (exactly), min and max (as float8 compares, so
// -0 equals 0). Empty aggregates are equal whatever their Min and Max.
func (a Agg) Equal(o Agg) bool {
	if a.Count != o.Count {
		return false
	}
	if a.Count == 0 {
		return true
	}
	return a.Sum.Equal(o.Sum) && a.SumSq.Equal(o.SumSq) && a.Min == o.Min && a.Max == o.Max
}

// Mean is Sum/Count, rounded once to float64; 0 when Count is 0 (SQL would
// say NULL; callers check Count).
func (a Agg) Mean() float64 {
	if a.Count == 0 {
		return 0
	}
	f, _ := new(big.Rat).Quo(a.Sum.Rat(), big.NewRat(a.Count, 1)).Float64()
	return f
}

// StdDev is the sample standard deviation (n−1 in the denominator, as SQL
// stddev_samp), 0 when Count < 2 (SQL would say NULL). The variance
// (SumSq − Sum²/n)/(n−1) is computed exactly, so it is never negative and
// does not depend on how the aggregate was assembled.
func (a Agg) StdDev() float64 {
	if a.Count < 2 {
		return 0
	}
	n := big.NewRat(a.Count, 1)
	sum := a.Sum.Rat()
	v := new(big.Rat).Mul(sum, sum)
	v.Quo(v, n)
	v.Sub(a.SumSq.Rat(), v)
	v.Quo(v, n.Sub(n, big.NewRat(1, 1)))
	f, _ := v.Float64()
	return math.Sqrt(f)
}
