package warehouse

import (
	"crypto/md5"
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// checksumSettings pins the session settings the text of a fact row
// depends on, inside the transaction that measures facts in SQL: UTC ISO
// timestamps and the shortest exact float text. FactSummer writes the same
// text in Go, so the two agree whatever the server's defaults are.
const checksumSettings = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL extra_float_digits = 1`

// FactSummer adds up batch.FactSums of fact rows as the transform writes
// them, with the figures PostgreSQL gives for the same rows in the fact
// table (factSumsSelect): the count, the anomalies, the exact numeric sum
// of the quality scores, and the sum of the first 60 bits of the md5 of
// each row's text, written here as PostgreSQL writes ROW(…)::text under
// checksumSettings. A load whose facts are exactly the transform's rows
// takes these instead of reading its facts again. The zero value is empty.
type FactSummer struct {
	rows, anomalies int64
	// The checksum sum, 128 bits: every term is below 2^60.
	hashHi, hashLo uint64
	// The quality sum: coefficients by decimal exponent (each term is
	// below 10^15 in magnitude), flushed into wide before they could
	// overflow, and the largest scale of a term, which is the sum's.
	coef  map[int32]int64
	wide  map[int32]*big.Int
	scale int32
	buf   []byte
	dev   deviceText

	lastQ    float64
	lastCoef int64
	lastExp  int32
}

// qualityFlushAt keeps a coefficient sum below 2^63 after one more term.
const qualityFlushAt = math.MaxInt64 - 1e15

// Add adds one fact row.
func (s *FactSummer) Add(e *transform.Enriched) {
	s.rows++
	if e.Anomaly {
		s.anomalies++
	}
	s.buf = s.dev.appendRow(s.buf[:0], e)
	sum := md5.Sum(s.buf)
	var carry uint64
	s.hashLo, carry = bits.Add64(s.hashLo, binary.BigEndian.Uint64(sum[:8])>>4, 0)
	s.hashHi += carry

	if e.Quality != s.lastQ || s.rows == 1 {
		// Scores repeat: the last one's decimal is kept.
		s.lastQ = e.Quality
		s.lastCoef, s.lastExp = window.Float8Numeric(e.Quality)
	}
	c, exp := s.lastCoef, s.lastExp
	if c == 0 {
		return
	}
	s.scale = max(s.scale, -exp)
	if s.coef == nil {
		s.coef, s.wide = map[int32]int64{}, map[int32]*big.Int{}
	}
	v := s.coef[exp] + c
	s.coef[exp] = v
	if v > qualityFlushAt || v < -qualityFlushAt {
		s.flush(exp)
	}
}

func (s *FactSummer) flush(exp int32) {
	w := s.wide[exp]
	if w == nil {
		w = new(big.Int)
		s.wide[exp] = w
	}
	w.Add(w, big.NewInt(s.coef[exp]))
	delete(s.coef, exp)
}

// Sums returns the sums of the rows added so far.
func (s *FactSummer) Sums() batch.FactSums {
	for exp := range s.coef {
		s.flush(exp)
	}
	quality := new(big.Rat)
	for exp, c := range s.wide {
		t := new(big.Rat).SetInt(c)
		p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(exp, -exp))), nil))
		if exp >= 0 {
			t.Mul(t, p)
		} else {
			t.Quo(t, p)
		}
		quality.Add(quality, t)
	}
	hash := new(big.Int).SetUint64(s.hashHi)
	hash.Lsh(hash, 64).Add(hash, new(big.Int).SetUint64(s.hashLo))
	return batch.FactSums{
		Rows: s.rows, Anomalies: s.anomalies,
		Quality:  quality.FloatString(int(s.scale)),
		Checksum: hash.String(),
	}
}

// appendFactRow appends the text of ROW(factChecksumColumns) of e's fact
// row, as record_out writes it.
func appendFactRow(b []byte, e *transform.Enriched) []byte {
	var dev deviceText
	return dev.appendRow(b, e)
}

// deviceText keeps the text of the columns a device's fact rows share
// (its id, type and location) from one row to the next: a transform
// writes each device's rows one after the other.
type deviceText struct {
	id, typeCode, metric, unit, locationID, site, building, zone string
	floor                                                        int
	idText, shared                                               []byte
	set                                                          bool
	// The text of recent values: a trailing minimum or maximum is one
	// of the last readings' values, and batteries and quality scores
	// repeat.
	recent floatTexts
}

// floatTexts keeps the text of the floats appended last, a direct-mapped
// cache by their bits.
type floatTexts struct {
	bits [128]uint64
	len  [128]uint8 // 0: empty
	text [128][maxFloat8Text]byte
}

// maxFloat8Text is the longest text appendFloat8 writes
// ("-2.2250738585072014e-308").
const maxFloat8Text = 24

// append appends v as appendFloat8 does.
func (c *floatTexts) append(b []byte, v float64) []byte {
	k := math.Float64bits(v)
	i := (k ^ k>>31) * 0x9e3779b97f4a7c15 >> 57
	if n := c.len[i]; n > 0 && c.bits[i] == k {
		return append(b, c.text[i][:n]...)
	}
	start := len(b)
	b = appendFloat8(b, v)
	if t := b[start:]; len(t) <= maxFloat8Text {
		c.bits[i], c.len[i] = k, uint8(copy(c.text[i][:], t))
	}
	return b
}

// appendRow appends the text of e's row (see appendFactRow), taking the
// device's columns from the last row when they are the same.
func (d *deviceText) appendRow(b []byte, e *transform.Enriched) []byte {
	if !d.set || d.id != e.DeviceID || d.typeCode != e.TypeCode || d.metric != e.Metric || d.unit != e.Unit ||
		d.locationID != e.LocationID || d.site != e.Site || d.building != e.Building || d.zone != e.Zone || d.floor != e.Floor {
		d.id, d.typeCode, d.metric, d.unit, d.locationID, d.site, d.building, d.zone, d.floor =
			e.DeviceID, e.TypeCode, e.Metric, e.Unit, e.LocationID, e.Site, e.Building, e.Zone, e.Floor
		d.idText = appendRecordText(d.idText[:0], e.DeviceID)
		d.shared = d.shared[:0]
		for _, t := range [...]string{e.TypeCode, e.Metric, e.Unit, e.LocationID, e.Site, e.Building} {
			d.shared = append(d.shared, ',')
			d.shared = appendRecordText(d.shared, t)
		}
		d.shared = append(d.shared, ',')
		d.shared = strconv.AppendInt(d.shared, int64(e.Floor), 10)
		d.shared = append(d.shared, ',')
		d.shared = appendRecordText(d.shared, e.Zone)
		d.set = true
	}
	st := e.Rolling
	b = append(b, '(')
	b = append(b, d.idText...)
	b = append(b, ',', '"')
	b = appendTimestamptz(b, e.Time)
	b = append(b, '"', ',')
	if e.ValueValid {
		b = d.recent.append(b, e.Value)
	}
	b = append(b, ',')
	b = d.recent.append(b, e.Battery)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(e.RSSI), 10)
	b = append(b, d.shared...)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(st.Count), 10)
	b = append(b, ',')
	if st.Count > 0 {
		b = appendFloat8(b, st.Mean)
	}
	b = append(b, ',')
	if st.Count > 0 && st.HasStd {
		b = appendFloat8(b, st.Std)
	}
	b = append(b, ',')
	if st.Count > 0 {
		b = d.recent.append(b, st.Min)
	}
	b = append(b, ',')
	if st.Count > 0 {
		b = d.recent.append(b, st.Max)
	}
	b = append(b, ',')
	if st.Count > 0 && st.HasZ {
		b = appendFloat8(b, st.Z)
	}
	if e.Anomaly {
		b = append(b, ",t,"...)
	} else {
		b = append(b, ",f,"...)
	}
	b = appendTextArray(b, e.Reasons)
	b = append(b, ',')
	b = d.recent.append(b, e.Quality)
	b = append(b, ',')
	b = appendTextArray(b, e.QualityFlags)
	return append(b, ')')
}

// appendFloat8 appends v as float8out writes it with extra_float_digits
// above 0: the shortest text that reads back exactly, in fixed notation
// for decimal exponents from -4 to 14 and in scientific notation with a
// signed exponent of at least two digits otherwise.
func appendFloat8(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "Infinity"...)
	case math.IsInf(v, -1):
		return append(b, "-Infinity"...)
	case v == 0:
		if math.Signbit(v) {
			return append(b, "-0"...)
		}
		return append(b, '0')
	}
	var tmp [32]byte
	sci := strconv.AppendFloat(tmp[:0], v, 'e', -1, 64)
	if math.Abs(v) >= 1<<53 {
		// Only here can the shortest text lie exactly halfway to a
		// neighbouring float, which Go takes and PostgreSQL does not.
		// These are all in scientific notation.
		return append(b, pgShortestLarge(tmp[:0], v, sci)...)
	}
	// sci is [-]d[.ddd]e±dd: split it into sign, digits and the decimal
	// exponent of the first digit.
	neg := sci[0] == '-'
	if neg {
		sci = sci[1:]
	}
	var digits [17]byte
	n, at := 0, 0
	for ; sci[at] != 'e'; at++ {
		if sci[at] != '.' {
			digits[n] = sci[at]
			n++
		}
	}
	exp := 0
	for _, c := range sci[at+2:] {
		exp = exp*10 + int(c-'0')
	}
	if sci[at+1] == '-' {
		exp = -exp
	}
	if neg {
		b = append(b, '-')
	}
	switch {
	case exp < -4 || exp >= 15:
		return append(b, sci...)
	case exp < 0: // 0.000ddd
		b = append(b, '0', '.')
		for range -exp - 1 {
			b = append(b, '0')
		}
		return append(b, digits[:n]...)
	case exp+1 >= n: // ddd000
		b = append(b, digits[:n]...)
		for range exp + 1 - n {
			b = append(b, '0')
		}
		return b
	default: // dd.ddd
		b = append(b, digits[:exp+1]...)
		b = append(b, '.')
		return append(b, digits[exp+1:n]...)
	}
}

// pgShortestLarge returns the scientific text PostgreSQL's shortest
// output gives for v, whose magnitude is at least 2^53, given Go's. Go's
// shortest text may lie exactly on the boundary between v and a
// neighbouring float (round half to even reads it back as v), while
// PostgreSQL's Ryu build (without STRICTLY_SHORTEST) keeps strictly
// inside; it then takes the nearest text of the next length that does.
// The boundaries of floats from 2^53 up are integers, so this is the only
// range where they can be short decimals.
func pgShortestLarge(dst []byte, v float64, goText []byte) []byte {
	a := math.Abs(v)
	exact := new(big.Rat).SetFloat64(a)
	lo, hi := new(big.Rat), new(big.Rat)
	prev := math.Nextafter(a, 0)
	next := math.Nextafter(a, math.Inf(1))
	lo.Add(exact, new(big.Rat).SetFloat64(prev)).Quo(lo, big.NewRat(2, 1))
	if math.IsInf(next, 1) {
		hi.Sub(exact, lo).Add(hi, exact)
	} else {
		hi.Add(exact, new(big.Rat).SetFloat64(next)).Quo(hi, big.NewRat(2, 1))
	}
	inside := func(text []byte) bool {
		t := string(text)
		if t[0] == '-' {
			t = t[1:]
		}
		r, ok := new(big.Rat).SetString(t)
		return ok && r.Cmp(lo) > 0 && r.Cmp(hi) < 0
	}
	if inside(goText) {
		return goText
	}
	digits := 0
	for _, c := range goText {
		if c == 'e' {
			break
		}
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	for n := digits + 1; n <= 17; n++ {
		if text := strconv.AppendFloat(dst[:0], v, 'e', n-1, 64); inside(text) {
			return text
		}
	}
	return strconv.AppendFloat(dst[:0], v, 'e', 16, 64)
}

// appendTimestamptz appends t as timestamptz_out writes it under
// checksumSettings: "2006-01-02 15:04:05[.ffffff]+00", microseconds
// without trailing zeros.
func appendTimestamptz(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 1000 || year > 9999 {
		b = t.AppendFormat(b, "2006-01-02 15:04:05")
	} else {
		b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
			byte('0'+int(month)/10), byte('0'+int(month)%10), '-', byte('0'+day/10), byte('0'+day%10), ' ',
			byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+minute/10), byte('0'+minute%10), ':', byte('0'+sec/10), byte('0'+sec%10))
	}
	if us := t.Nanosecond() / 1000; us > 0 {
		var frac [7]byte
		frac[0] = '.'
		for i, n := 6, us; i >= 1; i-- {
			frac[i] = byte('0' + n%10)
			n /= 10
		}
		end := 7
		for frac[end-1] == '0' {
			end--
		}
		b = append(b, frac[:end]...)
	}
	return append(b, "+00"...)
}

// appendRecordText appends a text field as record_out does: in double
// quotes, doubling quotes and backslashes, when it is empty or holds a
// quote, a backslash, a parenthesis, a comma or white space.
func appendRecordText(b []byte, s string) []byte {
	return appendQuoted(b, s, `"\(),`, s == "", 0)
}

// appendTextArray appends a text[] field: the array as array_out writes
// it, then quoted as a record field.
func appendTextArray(b []byte, elems []string) []byte {
	var tmp [128]byte
	arr := append(tmp[:0], '{')
	for i, s := range elems {
		if i > 0 {
			arr = append(arr, ',')
		}
		// array_out quotes an element that is empty, reads NULL, or holds
		// a brace, a comma, a quote, a backslash or white space, and
		// escapes quotes and backslashes with a backslash.
		arr = appendQuoted(arr, s, `{},"\`, s == "" || strings.EqualFold(s, "NULL"), '\\')
	}
	arr = append(arr, '}')
	return appendRecordText(b, string(arr))
}

// appendQuoted appends s, in double quotes when force is set or s holds
// one of specials or white space. Inside the quotes, a quote or a
// backslash is preceded by escape, or doubled when escape is 0.
func appendQuoted(b []byte, s, specials string, force bool, escape byte) []byte {
	quote := force
	for i := 0; i < len(s) && !quote; i++ {
		quote = strings.IndexByte(specials, s[i]) >= 0 || isSpace(s[i])
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			if escape == 0 {
				b = append(b, c)
			} else {
				b = append(b, escape)
			}
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// isSpace is C's isspace in the C locale, which record_out and array_out
// use.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
