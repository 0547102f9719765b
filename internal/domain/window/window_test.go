package window

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestStartEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, start, end string
	}{
		{"2026-11-28T14:00:00Z", "2026-11-28T14:00:00Z", "2026-11-28T14:01:00Z"},
		{"2026-11-28T14:00:59.999999999Z", "2026-11-28T14:00:00Z", "2026-11-28T14:01:00Z"},
		{"2026-11-28T14:01:00Z", "2026-11-28T14:01:00Z", "2026-11-28T14:02:00Z"},
		{"2026-11-28T23:59:30.5Z", "2026-11-28T23:59:00Z", "2026-11-29T00:00:00Z"},
		{"2026-11-28T15:30:45+01:30", "2026-11-28T14:00:00Z", "2026-11-28T14:01:00Z"},
		{"2026-11-28T09:00:07.25-05:00", "2026-11-28T14:00:00Z", "2026-11-28T14:01:00Z"},
		{"1969-12-31T23:59:59.5Z", "1969-12-31T23:59:00Z", "1970-01-01T00:00:00Z"},
	}
	for _, tc := range cases {
		start, end := Length(Default).Start(ts(tc.in)), Length(0).End(ts(tc.in))
		if start != ts(tc.start) || end != ts(tc.end) {
			t.Errorf("window of %s = [%v, %v), want [%s, %s)", tc.in, start, end, tc.start, tc.end)
		}
	}
	// A wall-clock time with a monotonic reading and a zone still maps to a
	// plain UTC minute.
	local := time.Date(2026, 11, 28, 15, 0, 30, 0, time.FixedZone("CET", 3600))
	if got := Length(time.Minute).Start(local); got != ts("2026-11-28T14:00:00Z") || got.Location() != time.UTC {
		t.Errorf("Start(%v) = %v in %v", local, got, got.Location())
	}
}

func TestLengthFiveMinutes(t *testing.T) {
	t.Parallel()
	win := Length(5 * time.Minute)
	cases := []struct {
		in, start, end string
	}{
		{"2026-11-28T14:00:00Z", "2026-11-28T14:00:00Z", "2026-11-28T14:05:00Z"},
		{"2026-11-28T14:04:59.999999Z", "2026-11-28T14:00:00Z", "2026-11-28T14:05:00Z"},
		{"2026-11-28T14:05:00Z", "2026-11-28T14:05:00Z", "2026-11-28T14:10:00Z"},
		{"2026-11-28T14:57:30Z", "2026-11-28T14:55:00Z", "2026-11-28T15:00:00Z"},
		{"2026-11-28T15:33:00+01:30", "2026-11-28T14:00:00Z", "2026-11-28T14:05:00Z"},
		{"1969-12-31T23:59:59.5Z", "1969-12-31T23:55:00Z", "1970-01-01T00:00:00Z"},
	}
	for _, tc := range cases {
		start, end := win.Start(ts(tc.in)), win.End(ts(tc.in))
		if start != ts(tc.start) || end != ts(tc.end) {
			t.Errorf("5m window of %s = [%v, %v), want [%s, %s)", tc.in, start, end, tc.start, tc.end)
		}
	}

	late := []struct {
		watermark, event string
		allowed          time.Duration
		want             bool
	}{
		// A watermark past the minute is not past the 5-minute window.
		{"2026-11-28T14:01:00Z", "2026-11-28T14:00:30Z", 0, false},
		{"2026-11-28T14:04:59.999999Z", "2026-11-28T14:00:00Z", 0, false},
		{"2026-11-28T14:05:00Z", "2026-11-28T14:04:59.999999Z", 0, true},
		{"2026-11-28T14:05:00Z", "2026-11-28T14:05:00Z", 0, false},
		{"2026-11-28T14:06:59.999999Z", "2026-11-28T14:00:00Z", 2 * time.Minute, false},
		{"2026-11-28T14:07:00Z", "2026-11-28T14:00:00Z", 2 * time.Minute, true},
	}
	for _, tc := range late {
		w := RestoreWatermark(ts(tc.watermark))
		if got := w.Late(ts(tc.event), win, tc.allowed); got != tc.want {
			t.Errorf("5m: Late(%s, %v) with watermark %s = %v, want %v", tc.event, tc.allowed, tc.watermark, got, tc.want)
		}
	}
}

func TestLengthValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		d    time.Duration
		want string // "" for valid
	}{
		{0, ""},
		{30 * time.Second, ""},
		{time.Minute, ""},
		{2 * time.Minute, ""},
		{5 * time.Minute, ""},
		{15 * time.Minute, ""},
		{time.Hour, ""},
		{-time.Minute, "must be positive"},
		{1500 * time.Millisecond, "must be a whole number of seconds"},
		{7 * time.Minute, "must divide one hour evenly (such as 30s, 1m, 2m, 5m, 10m, 15m, 30m or 1h)"},
		{2 * time.Hour, "must divide one hour evenly (such as 30s, 1m, 2m, 5m, 10m, 15m, 30m or 1h)"},
	}
	for _, tc := range cases {
		got := ""
		if err := Length(tc.d).Validate(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("Length(%s).Validate() = %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := Length(0).Duration(); got != time.Minute {
		t.Errorf("the zero Length is %s, want 1m", got)
	}
}

func TestFromFloatMatchesPostgreSQL(t *testing.T) {
	t.Parallel()
	// Right-hand sides from PostgreSQL 15: SELECT <value>::float8::numeric.
	cases := []struct {
		v    float64
		want string
	}{
		{1 / 3.0, "0.333333333333333"},
		{21.123456789012345678, "21.1234567890123"},
		{100000000000000.5, "100000000000000"}, // tie, to even
		{100000000000001.5, "100000000000002"}, // tie, to even
		{math.Copysign(0, -1), "0"},
		{0, "0"},
		{21.5, "21.5"},
		{-61, "-61"},
		{0.1, "0.1"},
		{1e-320, "0." + strings.Repeat("0", 320) + "999988867182683"},
		{math.MaxFloat64, "179769313486232" + strings.Repeat("0", 294)},
		{1e21, "1" + strings.Repeat("0", 21)},
		{-1.5e-7, "-0.00000015"},
		{1000000000000001, "1000000000000000"},
		{5e-324, "0." + strings.Repeat("0", 323) + "494065645841247"},
	}
	for _, tc := range cases {
		if got := FromFloat(tc.v).String(); got != tc.want {
			t.Errorf("FromFloat(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

// TestFromFloatIsFifteenDigits checks FromFloat against the definition: the
// exact value of strconv.FormatFloat(v, 'g', 15, 64).
func TestFromFloatIsFifteenDigits(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		v := randomValue(rng)
		want, ok := new(big.Rat).SetString(strconv.FormatFloat(v, 'g', 15, 64))
		if !ok {
			t.Fatalf("cannot parse %v", v)
		}
		if got := FromFloat(v).Rat(); got.Cmp(want) != 0 {
			t.Fatalf("FromFloat(%v) = %s, want %s", v, got.FloatString(20), want.FloatString(20))
		}
	}
}

func TestFromFloatPanicsOnNonFinite(t *testing.T) {
	t.Parallel()
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("FromFloat(%v) did not panic", v)
				}
			}()
			FromFloat(v)
		}()
		func() {
			defer func() {
				if err, _ := recover().(error); !errors.Is(err, ErrNonFinite) {
					t.Errorf("Agg.Add(%v) panicked with %v, want ErrNonFinite", v, err)
				}
			}()
			var a Agg
			a.Add(v)
		}()
	}
}

func TestParseDecimal(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, want string
	}{
		{"0", "0"}, {"-0", "0"}, {"+0.000", "0"}, {"21.50", "21.5"}, {"-61", "-61"}, {"1500", "1500"},
		{".5", "0.5"}, {"5.", "5"}, {"1.5e-7", "0.00000015"}, {"1.5E3", "1500"}, {"-12e+2", "-1200"},
		{"0.333333333333333", "0.333333333333333"},
		{"123456789012345678901234567890.000000000000000000001", "123456789012345678901234567890.000000000000000000001"},
	}
	for _, tc := range cases {
		d, err := ParseDecimal(tc.in)
		if err != nil {
			t.Errorf("ParseDecimal(%q): %v", tc.in, err)
			continue
		}
		if got := d.String(); got != tc.want {
			t.Errorf("ParseDecimal(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "-", ".", "abc", "1/3", "0x10", "1e", "1e+", "NaN", "Infinity", "1 000", "1.2.3", "1e99999999999"} {
		if d, err := ParseDecimal(bad); err == nil {
			t.Errorf("ParseDecimal(%q) = %s, want an error", bad, d)
		}
	}
}

func TestDecimalArithmeticAgreesWithRat(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		a, b := FromFloat(randomValue(rng)), FromFloat(randomValue(rng))
		ra, rb := a.Rat(), b.Rat()
		if got, want := a.Add(b).Rat(), new(big.Rat).Add(ra, rb); got.Cmp(want) != 0 {
			t.Fatalf("%s + %s = %s", a, b, a.Add(b))
		}
		if got, want := a.Mul(b).Rat(), new(big.Rat).Mul(ra, rb); got.Cmp(want) != 0 {
			t.Fatalf("%s × %s = %s", a, b, a.Mul(b))
		}
		if got, want := a.Cmp(b), ra.Cmp(rb); got != want {
			t.Fatalf("Cmp(%s, %s) = %d, want %d", a, b, got, want)
		}
		if back, err := ParseDecimal(a.Add(b).String()); err != nil || !back.Equal(a.Add(b)) {
			t.Fatalf("String/ParseDecimal round trip of %s: %s, %v", a.Add(b), back, err)
		}
		if got, want := a.Float64(), func() float64 { f, _ := ra.Float64(); return f }(); got != want {
			t.Fatalf("Float64(%s) = %v, want %v", a, got, want)
		}
	}
}

// randomValue draws finite floats: mostly sensor-like, some from the whole
// float64 range, zeros of both signs, integers.
func randomValue(rng *rand.Rand) float64 {
	switch rng.IntN(10) {
	case 0:
		for {
			if f := math.Float64frombits(rng.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		}
	case 1:
		return []float64{0, math.Copysign(0, -1), 0.1, 0.2, 0.3, 1e-7, 1e16, 1 / 3.0}[rng.IntN(8)]
	case 2:
		return float64(rng.IntN(20001) - 10000)
	default:
		return rng.NormFloat64()*15 + 21
	}
}

// TestMergeInAnyOrderIsExact splits random values into random partial
// aggregates, merges them in random orders and groupings, and requires the
// identical aggregate every time, equal to one pass over the values and to
// an independent big.Rat computation.
func TestMergeInAnyOrderIsExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	floatSumsDiffered := 0
	for trial := range 300 {
		values := make([]float64, 1+rng.IntN(80))
		for i := range values {
			values[i] = randomValue(rng)
			if trial%2 == 0 { // half the trials stay sensor-like, so float sums are meaningful
				values[i] = rng.NormFloat64()*15 + 21
			}
		}
		var single Agg
		wantSum, wantSumSq := new(big.Rat), new(big.Rat)
		for _, v := range values {
			single.Add(v)
			r, _ := new(big.Rat).SetString(strconv.FormatFloat(v, 'g', 15, 64))
			wantSum.Add(wantSum, r)
			wantSumSq.Add(wantSumSq, new(big.Rat).Mul(r, r))
		}
		if single.Sum.Rat().Cmp(wantSum) != 0 || single.SumSq.Rat().Cmp(wantSumSq) != 0 || single.Count != int64(len(values)) {
			t.Fatalf("trial %d: single pass %+v, want sum %s sumsq %s", trial, single, wantSum, wantSumSq)
		}
		if single.Min != minOf(values) || single.Max != maxOf(values) {
			t.Fatalf("trial %d: min/max %v/%v, want %v/%v", trial, single.Min, single.Max, minOf(values), maxOf(values))
		}
		for shuffle := range 5 {
			got := mergeRandomly(rng, values)
			if !got.Equal(single) {
				t.Fatalf("trial %d shuffle %d: merged %s, single pass %s", trial, shuffle, describe(got), describe(single))
			}
			if got.Sum.String() != single.Sum.String() || got.SumSq.String() != single.SumSq.String() {
				t.Fatalf("trial %d: equal sums print differently", trial)
			}
		}
		if floatSum(values) != floatSum(reversed(values)) {
			floatSumsDiffered++
		}
	}
	// The seed is fixed: this shows float64 sums would not have been exact.
	if want := 131; floatSumsDiffered != want {
		t.Errorf("float64 sums differed by order in %d trials, want %d", floatSumsDiffered, want)
	}
}

// mergeRandomly shuffles values, cuts them into random parts, aggregates
// each part, then merges random pairs until one aggregate is left.
func mergeRandomly(rng *rand.Rand, values []float64) Agg {
	shuffled := append([]float64(nil), values...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var parts []Agg
	for len(shuffled) > 0 {
		n := 1 + rng.IntN(len(shuffled))
		var a Agg
		for _, v := range shuffled[:n] {
			a.Add(v)
		}
		parts = append(parts, a)
		shuffled = shuffled[n:]
		if rng.IntN(4) == 0 {
			parts = append(parts, Agg{}) // empty partials merge as nothing
		}
	}
	for len(parts) > 1 {
		i := rng.IntN(len(parts))
		j := rng.IntN(len(parts) - 1)
		if j >= i {
			j++
		}
		merged := parts[i]
		merged.Merge(parts[j])
		parts[i] = merged
		parts = append(parts[:j], parts[j+1:]...)
	}
	return parts[0]
}

func describe(a Agg) string {
	return fmt.Sprintf("{n=%d sum=%s sumsq=%s min=%v max=%v}", a.Count, a.Sum, a.SumSq, a.Min, a.Max)
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func floatSum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

func reversed(v []float64) []float64 {
	r := make([]float64, len(v))
	for i, x := range v {
		r[len(v)-1-i] = x
	}
	return r
}

func TestMeanStdDevAgreeWithFloats(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 500 {
		values := make([]float64, 2+rng.IntN(100))
		scale := math.Pow(10, float64(rng.IntN(9)-4))
		for i := range values {
			values[i] = (rng.NormFloat64()*15 + 21) * scale
		}
		var a Agg
		for _, v := range values {
			a.Add(v)
		}
		mean := floatSum(values) / float64(len(values))
		var ss float64
		for _, v := range values {
			ss += (v - mean) * (v - mean)
		}
		std := math.Sqrt(ss / float64(len(values)-1))
		if !near(a.Mean(), mean) || !near(a.StdDev(), std) {
			t.Fatalf("trial %d: mean %v std %v, floats say %v and %v", trial, a.Mean(), a.StdDev(), mean, std)
		}
	}
	cases := []struct {
		values          []float64
		mean, stdDev    float64
		describeAsWords string
	}{
		{nil, 0, 0, "empty"},
		{[]float64{5}, 5, 0, "one value has no sample deviation"},
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 5, math.Sqrt(32.0 / 7), "textbook"},
		{[]float64{1e14 + 1, 1e14 + 2, 1e14 + 3}, 1e14 + 2, 1, "large offset, no cancellation"},
		{[]float64{1e15 + 1, 1e15 + 1}, 1e15, 0, "beyond 15 significant digits values round, as in PostgreSQL"},
		{[]float64{0.1, 0.1, 0.1}, 0.1, 0, "identical values have exactly zero deviation"},
	}
	for _, tc := range cases {
		var a Agg
		for _, v := range tc.values {
			a.Add(v)
		}
		if a.Mean() != tc.mean || a.StdDev() != tc.stdDev {
			t.Errorf("%s: mean %v std %v, want %v and %v", tc.describeAsWords, a.Mean(), a.StdDev(), tc.mean, tc.stdDev)
		}
	}
}

func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*max(1, math.Abs(want))
}

func TestAggEdges(t *testing.T) {
	t.Parallel()
	var empty, a Agg
	a.Add(21.5)
	b := a
	b.Merge(Agg{})
	if !b.Equal(a) {
		t.Errorf("merging an empty aggregate changed %s to %s", describe(a), describe(b))
	}
	c := Agg{Min: 7, Max: 9} // an empty aggregate with stray min/max
	if !c.Equal(empty) {
		t.Error("empty aggregates differ by their meaningless min/max")
	}
	c.Merge(a)
	if !c.Equal(a) {
		t.Errorf("merging into an empty aggregate gave %s, want %s", describe(c), describe(a))
	}
	// Copies are independent: Add replaces, never mutates, shared decimals.
	d := a
	d.Add(1)
	if a.Count != 1 || a.Sum.String() != "21.5" || a.SumSq.String() != "462.25" {
		t.Errorf("adding to a copy changed the original: %s", describe(a))
	}
	// Signed zeros: -0 is below 0 whatever the order, as min() defines.
	var z1, z2 Agg
	z1.Add(0)
	z1.Add(math.Copysign(0, -1))
	z2.Add(math.Copysign(0, -1))
	z2.Add(0)
	if math.Signbit(z1.Min) != math.Signbit(z2.Min) || math.Signbit(z1.Max) != math.Signbit(z2.Max) || !z1.Equal(z2) {
		t.Errorf("signed zeros depend on order: %s vs %s", describe(z1), describe(z2))
	}
	if diff := cmp.Diff("0", z1.Sum.String()); diff != "" {
		t.Errorf("sum of zeros (-want +got):\n%s", diff)
	}
}

func TestWatermarkLate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		watermark string // "" for none observed
		event     string
		allowed   time.Duration
		want      bool
	}{
		{"nothing observed: nothing is late", "", "2000-01-01T00:00:00Z", 0, false},
		{"same window", "2026-11-28T14:00:59.999999Z", "2026-11-28T14:00:00Z", 0, false},
		{"watermark exactly at the window end closes it", "2026-11-28T14:01:00Z", "2026-11-28T14:00:59.999999Z", 0, true},
		{"a microsecond before the end keeps it open", "2026-11-28T14:00:59.999999Z", "2026-11-28T14:00:00Z", 0, false},
		{"next window is on time", "2026-11-28T14:01:00Z", "2026-11-28T14:01:00Z", 0, false},
		{"older than the watermark but in its window", "2026-11-28T14:01:30Z", "2026-11-28T14:01:00Z", 0, false},
		{"allowed lateness: exactly at end+allowed is late", "2026-11-28T14:03:00Z", "2026-11-28T14:00:30Z", 2 * time.Minute, true},
		{"allowed lateness: a microsecond before end+allowed", "2026-11-28T14:02:59.999999Z", "2026-11-28T14:00:30Z", 2 * time.Minute, false},
		{"allowed lateness within a window", "2026-11-28T14:01:10Z", "2026-11-28T14:00:59Z", 10 * time.Second, true},
		{"allowed lateness within a window, open", "2026-11-28T14:01:09Z", "2026-11-28T14:00:59Z", 10 * time.Second, false},
		{"negative allowed counts as zero", "2026-11-28T14:00:59Z", "2026-11-28T14:00:00Z", -time.Hour, false},
		{"events ahead of the watermark are never late", "2026-11-28T14:00:00Z", "2026-11-28T14:04:00Z", 0, false},
		{"offsets do not matter", "2026-11-28T15:01:00+01:00", "2026-11-28T14:00:30Z", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var w Watermark
			if tc.watermark != "" {
				w.Observe(ts(tc.watermark))
			}
			if got := w.Late(ts(tc.event), 0, tc.allowed); got != tc.want {
				t.Errorf("Late(%s, %v) with watermark %s = %v, want %v", tc.event, tc.allowed, tc.watermark, got, tc.want)
			}
		})
	}
}

// TestWatermarkReplay feeds events one at a time, persisting and restoring
// the watermark between "batches", and requires the same classification as
// one uninterrupted pass: the exactly-once replay guarantee.
func TestWatermarkReplay(t *testing.T) {
	t.Parallel()
	base := ts("2026-11-28T14:00:00Z")
	offsets := []time.Duration{0, 30 * time.Second, 61 * time.Second, 10 * time.Second, 59 * time.Second,
		125 * time.Second, 119 * time.Second, 60 * time.Second, 180 * time.Second, 121 * time.Second}
	const allowed = time.Second
	var w Watermark
	var pass []bool
	for _, off := range offsets {
		pass = append(pass, w.Accept(base.Add(off), Length(Default), allowed))
	}
	wantPass := []bool{true, true, true, false, false, true, false, false, true, true}
	if diff := cmp.Diff(wantPass, pass); diff != "" {
		t.Fatalf("accepted (-want +got):\n%s", diff)
	}
	if got := w.Time(); got != base.Add(180*time.Second) {
		t.Errorf("watermark %v, want 14:03:00: late events must not move it", got)
	}
	for cut := range offsets {
		var first Watermark
		for _, off := range offsets[:cut] {
			first.Accept(base.Add(off), Length(Default), allowed)
		}
		restored := RestoreWatermark(first.Time()) // committed with the offsets
		for i, off := range offsets[cut:] {
			if got := restored.Accept(base.Add(off), Length(Default), allowed); got != wantPass[cut+i] {
				t.Fatalf("restored at %d: event %d accepted = %v, want %v", cut, cut+i, got, wantPass[cut+i])
			}
		}
	}
}

func TestWatermarkRestore(t *testing.T) {
	t.Parallel()
	if w := RestoreWatermark(time.Time{}); !w.IsZero() || w.Late(time.Unix(0, 0), Length(Default), 0) {
		t.Errorf("restoring the zero time gave %v", w.Time())
	}
	at := time.Date(2026, 11, 28, 15, 0, 0, 0, time.FixedZone("CET", 3600))
	w := RestoreWatermark(at)
	if got := w.Time(); got != ts("2026-11-28T14:00:00Z") || got.Location() != time.UTC {
		t.Errorf("RestoreWatermark(%v).Time() = %v", at, got)
	}
	w.Observe(ts("2026-11-28T13:00:00Z"))
	if got := w.Time(); got != ts("2026-11-28T14:00:00Z") {
		t.Errorf("an older event moved the watermark back to %v", got)
	}
}

func ExampleAgg() {
	// Floats: the sum depends on the order of addition.
	a, b, c := 0.1, 0.2, 0.3
	fmt.Println((a+b)+c == (c+b)+a)

	// Aggregates: two consumers' partial aggregates of one window merge to
	// the same exact result in either order.
	var first, second Agg
	first.Add(0.1)
	first.Add(0.2)
	second.Add(0.3)
	ab, ba := first, second
	ab.Merge(second)
	ba.Merge(first)
	fmt.Println(ab.Equal(ba), ab.Count, ab.Sum, ab.SumSq, ab.Min, ab.Max)
	fmt.Printf("mean %.4f stddev %.4f\n", ab.Mean(), ab.StdDev())
	// Output:
	// false
	// true 3 0.6 0.14 0.1 0.3
	// mean 0.2000 stddev 0.1000
}

func ExampleWatermark() {
	const allowed = 0
	var w Watermark
	for _, at := range []string{"14:00:10", "14:01:00", "14:00:59", "14:01:30"} {
		t := ts("2026-11-28T" + at + "Z")
		if !w.Accept(t, Length(Default), allowed) {
			fmt.Println(at, ReasonLate, "window", Length(Default).Start(t).Format("15:04"), "closed")
			continue
		}
		fmt.Println(at, "on time in window", Length(Default).Start(t).Format("15:04"), "watermark", w.Time().Format("15:04:05"))
	}
	// Output:
	// 14:00:10 on time in window 14:00 watermark 14:00:10
	// 14:01:00 on time in window 14:01 watermark 14:01:00
	// 14:00:59 late window 14:00 closed
	// 14:01:30 on time in window 14:01 watermark 14:01:30
}

func BenchmarkAggAdd(b *testing.B) {
	values := make([]float64, 1024)
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range values {
		values[i] = math.Round((rng.NormFloat64()*15+21)*100) / 100
	}
	b.ReportAllocs()
	var a Agg
	i := 0
	for b.Loop() {
		if i%60 == 0 {
			a = Agg{} // a window of a minute of readings
		}
		a.Add(values[i%len(values)])
		i++
	}
}
